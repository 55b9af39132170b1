"""Light, seeded, batched augmentation for training (no torchvision).

All functions take a normalised batch ``x`` float32 ``[B, C, H, W]`` and a ``torch.Generator`` that
drives every random choice, so a run is reproducible from its seed.

* :func:`random_shift` -- pad by ``pad`` pixels with ``fill`` and crop back to ``H x W`` at a random
  offset: a translation by up to ``pad`` pixels in each direction (``pad=2`` for digits; ``pad=4`` is
  the reference CIFAR ``RandomCrop(32, padding=4)``).
* :func:`random_hflip` -- mirror each image left-right with probability 1/2 (CIFAR only: a flipped
  digit is another glyph).

``fill`` is the normalised value of a black (zero) pixel, ``-mean / std`` per channel, which is what
padding the raw image with zeros before normalising would give.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Augmentation policies by name, with what each does (recorded in checkpoints).
POLICY_DESCRIPTIONS = {
    "none": "none",
    "digits": "random shift <= 2 px (pad 2 with black, crop)",
    "cifar": "random crop (pad 4) + horizontal flip",
}
POLICIES = tuple(POLICY_DESCRIPTIONS)


def zero_pixel_fill(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The normalised value of a zero pixel per channel: ``-mean / std``."""
    return tuple(-m / s for m, s in zip(mean, std))


def random_shift(
    x: torch.Tensor, gen: torch.Generator, *, pad: int, fill: float | Sequence[float] = 0.0
) -> torch.Tensor:
    """Translate every image of ``x`` by an independent random offset in ``[-pad, pad]^2``."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=0.0)
    fills = torch.as_tensor(fill, dtype=x.dtype).reshape(-1)
    if fills.numel() not in (1, c):
        raise ValueError(f"fill needs 1 or {c} values, got {fills.numel()}")
    if bool((fills != 0).any()):
        border = torch.ones(1, 1, h, w, dtype=x.dtype)
        border = 1.0 - F.pad(border, (pad, pad, pad, pad), value=0.0)  # 1 on the padding
        padded = padded + border * fills.view(1, -1, 1, 1)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # [B, 1, 1, W]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return padded[bi, ci, rows, cols].contiguous()


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    if not bool(flip.any()):
        return x
    out = x.clone()
    out[flip] = x[flip].flip(-1)
    return out


def make_augment(policy: str, *, fill: float | Sequence[float] = 0.0) -> Augment | None:
    """The augmentation of a named policy: ``none`` (``None``), ``digits`` (shift <= 2 px) or
    ``cifar`` (crop with padding 4 + horizontal flip)."""
    if policy == "none":
        return None
    if policy == "digits":
        return lambda x, g: random_shift(x, g, pad=2, fill=fill)
    if policy == "cifar":
        return lambda x, g: random_hflip(random_shift(x, g, pad=4, fill=fill), g)
    raise ValueError(f"unknown augmentation policy {policy!r}; use one of {POLICIES}")
