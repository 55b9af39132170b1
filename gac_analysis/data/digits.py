"""scikit-learn's bundled hand-written digits (offline), as 32x32 RGB images.

``sklearn.datasets.load_digits()`` holds 1797 grey 8x8 images with values 0..16 and
labels 0..9. They are scaled to [0, 1] (divided by 16), resized to 32x32 (bilinear,
``align_corners=False``), repeated to 3 channels and normalised with mean 0.5, std 0.5
per channel, so values lie in [-1, 1].

The held-out split is fixed: ``torch.randperm(1797)`` under
``torch.Generator().manual_seed(0)`` -- independent of any user seed -- whose first
1437 positions are ``"train"`` and the remaining 360 are ``"test"``; ``"all"`` is every
image in the original order.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from gac_analysis.data.base import DataSource, TensorStore, resize_bilinear
from gac_analysis.errors import DataError

DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)
DIGITS_TOTAL = 1797
DIGITS_TRAIN = 1437
DIGITS_SPLIT_SEED = 0
DIGITS_SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits: float32 ``[1797, 8, 8]`` values 0..16 and int64 labels ``[1797]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.as_tensor(d.images, dtype=torch.float32)
    labels = torch.as_tensor(d.target, dtype=torch.int64)
    if images.shape != (DIGITS_TOTAL, 8, 8):
        raise DataError(
            f"scikit-learn digits have shape {list(images.shape)}, expected [1797, 8, 8]: reinstall scikit-learn"
        )
    return images, labels


def digits_indices(split: str) -> torch.Tensor:
    """Positions (int64) of ``split`` in the original 1797-image order."""
    if split == "all":
        return torch.arange(DIGITS_TOTAL)
    perm = torch.randperm(DIGITS_TOTAL, generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    if split == "train":
        return perm[:DIGITS_TRAIN]
    if split == "test":
        return perm[DIGITS_TRAIN:]
    raise DataError(f"unknown digits split {split!r}: use train, test or all")


def digits_split(split: str, *, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of one split, ready for a model.

    Args:
        split: ``"train"`` (1437 images), ``"test"`` (360, held out) or ``"all"`` (1797).
        image_size: side in pixels of the square output images (default 32).

    Returns:
        ``images`` float32 ``[N, 3, image_size, image_size]`` normalised to [-1, 1]
        (mean 0.5, std 0.5 after scaling to [0, 1]) and ``labels`` int64 ``[N]`` in 0..9.
    """
    idx = digits_indices(split)
    raw, labels = _raw_digits()
    x = (raw[idx] / 16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    x = resize_bilinear(x, image_size).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    return x.contiguous(), labels[idx].clone()


def open_digits(*, num_images: int | None, image_size: int | None, seed: int, split: str) -> DataSource:
    """The ``digits`` source; ``seed`` is unused (the split is fixed, see the module docstring)."""
    size = 32 if image_size is None else image_size
    images, labels = digits_split(split, image_size=size)
    available = int(images.shape[0])
    if num_images is not None:
        images, labels = images[:num_images], labels[:num_images]
    return DataSource(
        name="digits",
        images=TensorStore(images),
        labels=labels,
        image_size=(size, size),
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        split=split,
        seed=None,
        extra={
            "num_available": available,
            "split_seed": DIGITS_SPLIT_SEED,
            "num_classes": 10,
            "origin": "sklearn.datasets.load_digits (8x8 grey, 0..16), resized bilinear",
        },
    )
