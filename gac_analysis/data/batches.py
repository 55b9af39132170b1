"""The one way the analyses walk over images: batches of a tensor, a DataSource or an iterable."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from gac_analysis.data.validate import validate_images
from gac_analysis.errors import ConfigError, DataError

__all__ = ["iter_image_batches"]


def iter_image_batches(images: Any, batch_size: int = 32, *, split: bool = False) -> Iterator[torch.Tensor]:
    """Yield the checked image batches ``[B, 3, H, W]`` of ``images``.

    ``images`` is a tensor ``[B, 3, H, W]`` (one batch), a :class:`~gac_analysis.data.DataSource` (its batches of
    ``batch_size`` images, labels dropped) or an iterable of tensors or ``(images, labels)`` pairs. With
    ``split``, larger batches are cut into pieces of at most ``batch_size`` images. Every batch is checked by
    :func:`~gac_analysis.data.validate_images` (:class:`DataError` naming ``batch i``); no batches yield
    nothing (a rank with an empty shard has nothing to analyse).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(images, torch.Tensor):
        items: Any = [images]
    elif hasattr(images, "batches") and callable(images.batches):
        items = images.batches(batch_size)
    else:
        try:
            items = iter(images)
        except TypeError:
            raise DataError(
                f"images must be a tensor [B, 3, H, W], a data source or an iterable of batches, got "
                f"{type(images).__name__}"
            ) from None
    for i, item in enumerate(items):
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        validate_images(x, where=f"batch {i}")
        if not split:
            yield x
            continue
        for start in range(0, x.shape[0], batch_size):
            yield x[start : start + batch_size]
