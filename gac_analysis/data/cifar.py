"""CIFAR-10 / CIFAR-100 from the standard python-pickle batch folders.

Layout (as distributed by the dataset authors):

* CIFAR-10: ``cifar-10-batches-py/`` with ``test_batch`` and ``data_batch_1`` .. ``_5``;
* CIFAR-100: ``cifar-100-python/`` with ``test`` and ``train``.

Each file is a pickled dict with ``b"data"`` (uint8 ``[N, 3072]``, channel-major RGB
32x32) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). Pixels are scaled
to [0, 1] and normalised with the CIFAR statistics below, per batch.

The pickles are read with a restricted unpickler that only builds plain containers and
numpy arrays, so a tampered file cannot run code; anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gac_analysis.data.base import DataSource, Uint8Store, one_line
from gac_analysis.errors import DataError

# The normalisation of the GAC reference code's CIFAR loaders (so that a reference checkpoint sees the
# inputs it was trained on): CIFAR-10 mean/std and CIFAR-100 mean/std, per RGB channel.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
NORMALIZATION = {"cifar10": (CIFAR_MEAN, CIFAR_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}

#: kind -> (sub-folder name, {split: batch files}, label key, number of classes)
_LAYOUTS: dict[str, tuple[str, dict[str, list[str]], str, int]] = {
    "cifar10": (
        "cifar-10-batches-py",
        {"test": ["test_batch"], "train": [f"data_batch_{i}" for i in range(1, 6)]},
        "labels",
        10,
    ),
    "cifar100": ("cifar-100-python", {"test": ["test"], "train": ["train"]}, "fine_labels", 100),
}

# The globals a numpy-array pickle needs (numpy 1.x and 2.x module names).
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: uint8 ``[N, 3, 32, 32]`` pixels and int64 ``[N]`` labels."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(
            f"cannot read CIFAR batch file {path}: {one_line(e.strerror or e)}: check its permissions"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(
            f"corrupt CIFAR batch file {path} ({type(e).__name__}: {one_line(e)}): "
            "download the python version of the data set again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"corrupt CIFAR batch file {path}: holds a {type(obj).__name__}, not a dict: "
            "download the python version of the data set again"
        )
    # Python-2 pickles give bytes keys; pickles written by Python 3 give str keys.
    table = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    for key in ("data", label_key):
        if key not in table:
            raise DataError(
                f"corrupt CIFAR batch file {path}: no key b'{key}' (has {sorted(map(str, table))}): "
                "use the python version of the data set (cifar-10-python / cifar-100-python)"
            )
    try:
        data = np.asarray(table["data"])
        labels = np.asarray(table[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"corrupt CIFAR batch file {path}: {one_line(e)}: download it again") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(
            f"corrupt CIFAR batch file {path}: data is {data.dtype} {list(data.shape)}, "
            "expected uint8 [N, 3072]: download the python version of the data set again"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"corrupt CIFAR batch file {path}: {data.shape[0]} images but {labels.shape[0]} labels: download it again"
        )
    return data.reshape(-1, 3, 32, 32), labels


def resolve_cifar_dir(kind: str, raw_path: str, split: str) -> tuple[Path, list[Path]]:
    """Find the batch folder for ``kind`` under ``raw_path`` and the files of ``split``.

    ``raw_path`` is the folder holding the batch files or its parent holding
    ``cifar-10-batches-py`` / ``cifar-100-python``.
    """
    sub, files, _, _ = _LAYOUTS[kind]
    spec = f"{kind}:{raw_path}"
    root = Path(raw_path).expanduser()
    if not root.exists():
        raise DataError(
            f"{kind} folder not found: {root} (from '{spec}'): "
            f"pass the folder holding {files['test'][0]} or its parent holding {sub}"
        )
    if not root.is_dir():
        raise DataError(
            f"{kind} path is not a folder: {root} (from '{spec}'): "
            f"pass the folder holding {files['test'][0]} or its parent holding {sub}"
        )
    folder = root / sub if (root / sub).is_dir() else root
    paths = [folder / name for name in files[split]]
    for p in paths:
        if not p.is_file():
            raise DataError(
                f"{kind} batch file missing: expected {p} for split '{split}' (from '{spec}'): "
                f"pass the folder holding {files[split][0]} or its parent holding {sub}"
            )
    return folder.resolve(), paths


def open_cifar(kind: str, raw_path: str, *, num_images: int | None, image_size: int | None, split: str) -> DataSource:
    """Open ``cifar10:PATH`` or ``cifar100:PATH`` (``kind`` is ``"cifar10"``/``"cifar100"``).

    ``split`` is ``"test"`` or ``"train"``; ``image_size`` (default 32, the native size)
    resizes bilinearly; ``num_images`` keeps the first N images of the split.
    """
    _, files, label_key, num_classes = _LAYOUTS[kind]
    if split not in files:
        raise DataError(f"{kind} has no split {split!r} (from '{kind}:{raw_path}'): use test or train")
    folder, paths = resolve_cifar_dir(kind, raw_path, split)
    datas, labels = [], []
    remaining = num_images
    for p in paths:
        if remaining is not None and remaining <= 0:
            break
        d, lab = _load_batch(p, label_key)
        if remaining is not None:
            d, lab = d[:remaining], lab[:remaining]
            remaining -= d.shape[0]
        datas.append(d)
        labels.append(lab)
    data = np.concatenate(datas) if len(datas) > 1 else datas[0]
    lab = np.concatenate(labels) if len(labels) > 1 else labels[0]
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise DataError(
            f"corrupt {kind} labels in {folder}: values {int(lab.min())}..{int(lab.max())}, "
            f"expected 0..{num_classes - 1}: download the data set again"
        )
    size = 32 if image_size is None else image_size
    mean, std = NORMALIZATION[kind]
    return DataSource(
        name=f"{kind}:{raw_path}",
        images=Uint8Store(
            torch.from_numpy(np.ascontiguousarray(data)),
            mean,
            std,
            size=None if size == 32 else size,
        ),
        labels=torch.from_numpy(lab.astype(np.int64)),
        image_size=(size, size),
        mean=mean,
        std=std,
        split=split,
        seed=None,
        extra={"path": str(folder), "files": [p.name for p in paths], "num_classes": num_classes},
    )
