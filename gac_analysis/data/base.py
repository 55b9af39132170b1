"""The :class:`DataSource` container and the image stores behind it.

A data source is a finite, ordered, deterministic set of images with integer labels
(``-1`` where the label is unknown). Its images live in an *image store*: an object with
``len(store)`` and ``store.load(indices) -> float32 [B, 3, H, W]`` that returns
normalised images. Three stores cover every source:

* :class:`TensorStore` -- images already normalised, kept in memory (random, digits);
* :class:`Uint8Store` -- raw ``uint8`` pixels in memory, scaled/normalised per batch
  (CIFAR, photos), so a 50 000-image training split costs 150 MB instead of 600 MB;
* :class:`FileStore` -- image files read lazily, one batch at a time (folder).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F

from gac_analysis.data.validate import validate_images
from gac_analysis.errors import DataError

#: Per-channel normalisation that leaves the values unchanged (used for ``random``).
IDENTITY_MEAN = (0.0, 0.0, 0.0)
IDENTITY_STD = (1.0, 1.0, 1.0)


def one_line(text: object) -> str:
    """Collapse ``text`` (an exception message, a path) to a single line."""
    return " ".join(str(text).split())


class ImageStore(Protocol):
    """Where a :class:`DataSource` keeps its images."""

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """Return the images at ``indices`` as normalised float32 ``[B, 3, H, W]``."""
        ...


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``x`` float ``[B, 3, H, W]``."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float ``[B, C, H, W]`` to ``[B, C, size, size]`` (bilinear, align_corners=False)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@dataclass
class TensorStore:
    """Images already normalised, in memory: float32 ``[N, 3, H, W]``."""

    images: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(list(indices), dtype=torch.long)].clone()


@dataclass
class Uint8Store:
    """Raw pixels in memory, ``uint8 [N, 3, H, W]`` with values 0..255.

    ``load`` scales to [0, 1], optionally resizes to ``size x size`` (bilinear,
    align_corners=False) and normalises with ``mean`` / ``std`` (per channel).
    """

    pixels: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int | None = None

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        x = self.pixels[torch.as_tensor(list(indices), dtype=torch.long)].to(torch.float32) / 255.0
        if self.size is not None:
            x = resize_bilinear(x, self.size)
        return _normalise(x, self.mean, self.std)


@dataclass
class FileStore:
    """Image files read lazily: ``transform(path)`` gives one float32 ``[3, H, W]`` image."""

    paths: list[Path]
    transform: Callable[[Path], torch.Tensor]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.transform(self.paths[i]) for i in indices])


@dataclass
class DataSource:
    """A finite, ordered, deterministic set of images.

    Attributes:
        name: the spec it was opened from, e.g. ``"digits"``, ``"cifar10:/data/c10"``.
        images: the image store (see the module docstring); ``len(images) == len(labels)``.
        labels: int64 ``[N]`` class indices, ``-1`` where unknown.
        image_size: ``(H, W)`` in pixels of every image that :meth:`batches` yields.
        mean, std: the per-channel normalisation applied, ``x = (pixel/255 - mean) / std``.
        split: ``"train"``, ``"test"``, ``"all"``, or ``None`` where the source has no splits.
        seed: the seed that produced the images (``random``), else ``None``.
        extra: further provenance merged into :meth:`describe` (path, classes, ...).
    """

    name: str
    images: ImageStore
    labels: torch.Tensor
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    split: str | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise DataError(
                f"data source '{self.name}' is an empty data set (0 images): "
                "point it at data that holds at least one image"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (n,):
            raise DataError(
                f"data source '{self.name}': labels must be int64 [{n}], got "
                f"{self.labels.dtype} {list(self.labels.shape)}: this is a bug in the loader"
            )

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self, batch_size: int, *, indices: Sequence[int] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` batches in order.

        Args:
            batch_size: images per batch (> 0); the last batch may be smaller.
            indices: optional subset of positions ``0 <= i < len(self)``, visited in the given
                order (used to shard the data across processes); ``None`` means all images.

        Yields:
            ``images`` float32 ``[B, 3, H, W]`` (normalised, see :meth:`describe`) and
            ``labels`` int64 ``[B]`` (``-1`` where unknown).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise DataError(
                f"data source '{self.name}': batch_size must be a positive integer, "
                f"got {batch_size!r}: pass e.g. batch_size=32"
            )
        order = self._check_indices(indices)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x = self.images.load(chunk)
            validate_images(x, where=f"data source '{self.name}' images {chunk[0]}..{chunk[-1]}")
            y = self.labels[torch.as_tensor(chunk, dtype=torch.long)].clone()
            yield x, y

    def _check_indices(self, indices: Sequence[int] | None) -> list[int]:
        n = len(self)
        if indices is None:
            return list(range(n))
        if isinstance(indices, torch.Tensor):
            indices = indices.reshape(-1).tolist()
        out: list[int] = []
        for i in indices:
            try:
                k = operator.index(i)
            except TypeError:
                raise DataError(
                    f"data source '{self.name}': index {i!r} is not an integer: pass integer positions in indices"
                ) from None
            if not 0 <= k < n:
                raise DataError(
                    f"data source '{self.name}': index {k} is out of range for {n} images: pass indices in 0..{n - 1}"
                )
            out.append(k)
        return out

    def describe(self) -> dict[str, Any]:
        """Provenance of the images, JSON-serialisable.

        Keys: ``source`` (the spec), ``num_images`` (images used), ``image_size`` ``[H, W]``,
        ``normalization`` ``{"mean": [3], "std": [3]}`` (applied after scaling to [0, 1]),
        ``split``, ``seed``, ``labels_known`` (bool), plus source-specific ``extra`` keys
        (for instance ``num_available``, ``path``, ``classes``).
        """
        info: dict[str, Any] = {
            "source": self.name,
            "num_images": len(self),
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "normalization": {
                "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std],
            },
            "split": self.split,
            "seed": self.seed,
            "labels_known": bool((self.labels >= 0).any().item()),
        }
        info.update(self.extra)
        return info
