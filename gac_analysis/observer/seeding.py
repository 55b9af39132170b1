"""Seeded weights for GAC parts a checkpoint cannot provide (TA at another T, or no GAC at all)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SEED", "seed_parameters_"]

#: The seed of every seeded GAC weight in the observer (``torch.Generator().manual_seed(SEED)``).
SEED = 0


def seed_parameters_(module: nn.Module, seed: int = SEED) -> nn.Module:
    """Overwrite every parameter of ``module`` in place with seeded draws; returns ``module``.

    One ``torch.Generator`` seeded with ``seed`` walks the parameters in registration order; a weight
    of fan-in ``f`` (input channels x kernel elements) gets ``U(-1/sqrt(f), 1/sqrt(f))``, which is the
    distribution of PyTorch's default conv initialisation, so seeded and freshly built modules are on
    the same scale. The global torch RNG is not touched.
    """
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, p in module.named_parameters():
            fan_in = p.shape[1] * math.prod(p.shape[2:]) if p.dim() >= 2 else p.numel()
            bound = 1.0 / math.sqrt(max(1, fan_in))
            draw = torch.rand(p.shape, generator=g, dtype=torch.float64) * (2 * bound) - bound
            p.copy_(draw.to(p.dtype))
    return module
