"""Checks that a batch of images is what the models expect: float ``[B, 3, H, W]``, finite."""

from __future__ import annotations

import torch

from gac_analysis.errors import DataError


def validate_images(x: torch.Tensor, *, where: str) -> None:
    """Raise :class:`DataError` unless ``x`` is a usable batch of images.

    A usable batch is a ``torch.Tensor`` of floating dtype with shape ``[B, 3, H, W]``,
    ``B, H, W >= 1``, and no NaN or infinite values.

    Args:
        x: the batch to check.
        where: what the batch is (a source name, a file), quoted at the start of the message.

    Raises:
        DataError: one line naming the problem (``not a tensor``, ``dimensions``,
            ``channels``, ``dtype``, ``empty``, ``NaN`` / ``inf`` with their counts and the
            index of the first bad value) and what to do.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(
            f"{where}: images are a {type(x).__name__}, not a tensor: pass a torch.Tensor of shape [B,3,H,W]"
        )
    shape = list(x.shape)
    if x.dim() != 4:
        raise DataError(
            f"{where}: images have {x.dim()} dimensions (shape {shape}), expected 4 [B,3,H,W]: "
            "add a batch dimension with x.unsqueeze(0) or reshape"
        )
    if shape[1] != 3:
        raise DataError(
            f"{where}: images have {shape[1]} channels (shape {shape}), expected 3 (RGB): "
            "convert grey images with x.repeat(1,3,1,1) and drop alpha channels"
        )
    if not x.dtype.is_floating_point:
        raise DataError(
            f"{where}: images have dtype {x.dtype}, expected a float dtype: convert with x.float() / 255 and normalise"
        )
    if shape[0] == 0 or shape[2] == 0 or shape[3] == 0:
        raise DataError(f"{where}: empty batch (shape {shape}): pass at least one image of at least 1x1 pixels")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        first = tuple(int(v) for v in (~finite).nonzero()[0])
        parts = []
        if n_nan:
            parts.append(f"{n_nan} NaN")
        if n_inf:
            parts.append(f"{n_inf} inf")
        raise DataError(
            f"{where}: images contain {' and '.join(parts)} values (shape {shape}), "
            f"first at index {list(first)}: check the data files and preprocessing"
        )
