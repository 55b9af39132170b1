"""Shared helpers of the counting tests: a module fed a fixed input, and a record of the value ranges the
engine looks up."""

from __future__ import annotations

import contextlib

import pytest
from torch import nn

from gac_analysis.accounting.engine import OpCounter


class FixedInput(nn.Module):
    """Feeds a fixed input ``x`` to one module (``T`` time steps, as ``[T*B, ...]`` rows): no provenance,
    so the counting rules check the values."""

    def __init__(self, module, x, T):
        super().__init__()
        self.m, self.x, self.T = module, x, T

    def forward(self, images):
        return self.m(self.x)


@contextlib.contextmanager
def recorded_ranges():
    """Within the block, every value-range lookup of the engine is recorded as ``(shape, range)``."""
    seen: list[tuple[tuple[int, ...], tuple[int, int] | None]] = []
    original = OpCounter._range_of

    def spy(self, x):
        known = original(self, x)
        seen.append((tuple(x.shape), known))
        return known

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OpCounter, "_range_of", spy)
        yield seen
