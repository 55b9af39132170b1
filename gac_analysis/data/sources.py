"""Open a data source from its spec string (``random``, ``digits``, ``cifar10:PATH`` ...)."""

from __future__ import annotations

import os

import torch

from gac_analysis.data.base import IDENTITY_MEAN, IDENTITY_STD, DataSource, TensorStore
from gac_analysis.data.cifar import open_cifar
from gac_analysis.data.digits import DIGITS_SPLITS, open_digits
from gac_analysis.data.images import open_folder, open_photos
from gac_analysis.errors import DataError

#: Sources without an argument, and sources of the form ``NAME:PATH``.
PLAIN_SOURCES = ("random", "digits", "photos")
PATH_SOURCES = ("cifar10", "cifar100", "folder")
SPLITS = ("train", "test", "all")
RANDOM_DEFAULT_NUM = 16
RANDOM_DEFAULT_SIZE = 32

_VALID = "use random, digits, photos, cifar10:PATH, cifar100:PATH or folder:PATH"


def _check_positive(value: int | None, what: str, spec: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DataError(
            f"data source '{spec}': {what} must be a positive integer, got {value!r}: "
            f"pass {what} >= 1 (or leave it unset)"
        )


def _available_memory_bytes() -> int | None:
    """Physical memory free now (Linux and most POSIX systems), or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits_in_memory(nbytes: int, what: str) -> None:
    """A :class:`DataError` (one line) when ``what``, made at once, would not fit in the free memory."""
    free = _available_memory_bytes()
    if free is not None and nbytes > free:
        raise DataError(
            f"{what} would take {nbytes / 2**30:.3g} GiB at once, more than the {free / 2**30:.3g} GiB of free "
            "memory: use fewer --num-images or a smaller --image-size"
        )


def open_random(*, num_images: int | None, image_size: int | None, seed: int) -> DataSource:
    """Seeded standard-normal images, float32 ``[N, 3, S, S]``, labels -1.

    Defaults: ``N = 16``, ``S = 32``. The same seed gives the same images.
    """
    n = RANDOM_DEFAULT_NUM if num_images is None else num_images
    size = RANDOM_DEFAULT_SIZE if image_size is None else image_size
    _check_fits_in_memory(n * 3 * size * size * 4, f"random data: {n} images of {size}x{size}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g, dtype=torch.float32)
    return DataSource(
        name="random",
        images=TensorStore(x),
        labels=torch.full((n,), -1, dtype=torch.int64),
        image_size=(size, size),
        mean=IDENTITY_MEAN,
        std=IDENTITY_STD,
        split=None,
        seed=seed,
        extra={"distribution": "standard normal, torch.randn with torch.Generator().manual_seed(seed)"},
    )


def open_source(
    spec: str,
    *,
    num_images: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> DataSource:
    """Open the data source named by ``spec``.

    Args:
        spec: ``random``, ``digits``, ``photos``, ``cifar10:PATH``, ``cifar100:PATH`` or
            ``folder:PATH`` (see the modules of :mod:`gac_analysis.data`).
        num_images: keep only the first N images (N >= 1); more than available uses all
            (``describe()["num_images"]`` says how many). ``None``: all (16 for ``random``).
        image_size: side in pixels of the square images; default 32 for random, digits and
            CIFAR, 224 for photos and folder.
        seed: seed of the ``random`` images; the other sources are fixed and ignore it.
        split: ``"test"`` (default, held out), ``"train"``, or ``"all"`` (digits only);
            ignored by random, photos and folder, which have no splits.

    Raises:
        DataError: unknown spec, empty or missing path, missing or corrupt files, no images,
            bad ``num_images`` / ``image_size`` / ``split``.
    """
    if not isinstance(spec, str):
        raise DataError(f"data source spec must be a string, got {type(spec).__name__}: {_VALID}")
    spec = spec.strip()
    _check_positive(num_images, "num_images", spec)
    _check_positive(image_size, "image_size", spec)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"data source '{spec}': seed must be an integer, got {seed!r}: pass e.g. seed=0")
    if split not in SPLITS:
        raise DataError(f"data source '{spec}': unknown split {split!r}: use test, train or all")

    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    path = path.strip()
    if name in PLAIN_SOURCES and not sep:
        if name == "random":
            return open_random(num_images=num_images, image_size=image_size, seed=seed)
        if name == "digits":
            if split not in DIGITS_SPLITS:  # pragma: no cover - SPLITS == DIGITS_SPLITS today
                raise DataError(f"unknown digits split {split!r}: use train, test or all")
            return open_digits(num_images=num_images, image_size=image_size, seed=seed, split=split)
        return open_photos(num_images=num_images, image_size=image_size)
    if name in PATH_SOURCES:
        if not path:
            raise DataError(f"data source '{spec}' has an empty path: use {name}:PATH with PATH the data folder")
        if name == "folder":
            return open_folder(path, num_images=num_images, image_size=image_size)
        return open_cifar(name, path, num_images=num_images, image_size=image_size, split=split)
    if name in PLAIN_SOURCES:
        raise DataError(f"data source '{spec}': {name} takes no path: use plain '{name}'")
    raise DataError(f"unknown data source '{spec}': {_VALID}")
