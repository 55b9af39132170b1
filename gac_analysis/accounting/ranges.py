"""Value ranges known by construction: which tensors of a forward hold whole numbers within known bounds.

A neuron whose outputs are 0/1 by construction gives its output the range ``(0, 1)``. Operations that
only move values (views, copies, concatenation, max pooling) keep their input's range; elementwise
``+``, ``-`` and ``*`` of tensors with known ranges, or of one such tensor and a whole-number scalar,
give the range that interval arithmetic bounds (SEW's ``ADD`` of two spike maps: ``(0, 2)``; its
``IAND``, ``x * (1 - y)``: ``(0, 1)``). A counting rule that reads a tensor of known range needs no
value check to know that it holds whole numbers (and, for ``(0, 1)``, that it is a spike map), which
saves passes over the data. A range is a bound, not the observed minimum and maximum: a map of range
``(0, 2)`` may hold only 0 and 1.

Ranges are sound only while the values stay representable exactly: a range whose bound a dtype cannot
hold as an exact whole number (float32 beyond 2**24, half beyond 2**11, ...) is dropped. Everything here
is pure; the engine keeps the ranges of one forward (``OpCounter._ranges``) and forgets a storage's
range when an operation without a range rule writes into it.
"""

from __future__ import annotations

import functools
import math

import torch

#: A closed interval ``(lo, hi)`` of whole numbers.
Range = tuple[int, int]

#: The range of a spike map.
BINARY: Range = (0, 1)

#: Largest magnitude each dtype holds as an exact whole number (every smaller whole number too).
_EXACT_BOUND = {
    torch.float64: 2**53,
    torch.float32: 2**24,
    torch.float16: 2**11,
    torch.bfloat16: 2**8,
    torch.bool: 1,
    torch.uint8: 255,
}

#: Raw function names (``func.__name__``) -> arithmetic of :func:`result_range`. Reflected dunders
#: (``1 - x`` calls ``Tensor.__rsub__(x, 1)``) swap their operands.
_ARITHMETIC = {
    **dict.fromkeys(("add", "add_", "__add__", "__radd__", "__iadd__"), "add"),
    **dict.fromkeys(("sub", "sub_", "subtract", "__sub__", "__isub__"), "sub"),
    **dict.fromkeys(("rsub", "__rsub__"), "rsub"),
    **dict.fromkeys(("mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__"), "mul"),
}


def arithmetic_of(func) -> str | None:
    """``"add"``, ``"sub"``, ``"rsub"`` (``b - a``) or ``"mul"`` for the torch functions whose result
    range :func:`result_range` bounds; else None."""
    return _ARITHMETIC.get(getattr(func, "__name__", ""))


_IN_PLACE_DUNDERS = frozenset(
    f"__i{base}__" for base in "add sub mul truediv floordiv div matmul and or xor pow mod lshift rshift".split()
)


def writes_in_place(func) -> bool:
    """The function writes into its first argument: an in-place method (``x.fill_``), an augmented
    assignment (``x += y``) or ``__setitem__`` (an ``out=`` argument is the caller's to check)."""
    name = getattr(func, "__name__", "")
    if name.startswith("__"):
        return name in _IN_PLACE_DUNDERS or name == "__setitem__"
    return name.endswith("_")


@functools.lru_cache(maxsize=1024)
def representable(dtype: torch.dtype, r: Range) -> bool:
    """Every whole number of ``r`` is exact in ``dtype`` (integer dtypes: within their limits). Cached: the
    engine asks it for every marked tensor, nearly always of the same few (dtype, range) pairs."""
    if dtype in _EXACT_BOUND:
        bound = _EXACT_BOUND[dtype]
        return -bound <= r[0] and r[1] <= bound and (dtype not in (torch.bool, torch.uint8) or r[0] >= 0)
    if not dtype.is_floating_point and not dtype.is_complex:
        info = torch.iinfo(dtype)
        return info.min <= r[0] and r[1] <= info.max
    return False


def scalar_range(value) -> Range | None:
    """The one-point range of a whole-number python scalar (bool, int, or a finite whole float)."""
    if isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return (int(value), int(value))
    return None


def combine(op: str, a: Range, b: Range) -> Range:
    """Interval arithmetic: the range of ``a op b`` (``rsub``: ``b - a``)."""
    if op == "add":
        return (a[0] + b[0], a[1] + b[1])
    if op == "sub":
        return (a[0] - b[1], a[1] - b[0])
    if op == "rsub":
        return (b[0] - a[1], b[1] - a[0])
    corners = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return (min(corners), max(corners))


def union(first: Range, *others: Range) -> Range:
    """The smallest range holding every given range (``first`` itself when no other widens it)."""
    lo, hi = first
    for r in others:
        if r[0] < lo:
            lo = r[0]
        if r[1] > hi:
            hi = r[1]
    return first if (lo, hi) == first else (lo, hi)


def is_binary(r: Range | None) -> bool:
    """A known range within ``(0, 1)``: the values are 0/1 (a spike map)."""
    return r is not None and r[0] >= 0 and r[1] <= 1


def result_range(op: str, args: tuple, kwargs: dict, range_of) -> Range | None:
    """The range of an arithmetic call's result (``op`` from :func:`arithmetic_of`), or None when an
    operand's range is unknown. ``range_of(tensor)`` gives a tensor operand's known range; ``alpha``
    (``torch.add(a, b, alpha=k)``) must be a whole number."""
    if len(args) < 1:
        return None
    a = args[0]
    b = args[1] if len(args) > 1 else kwargs.get("other")
    ranges = []
    for operand in (a, b):
        r = range_of(operand) if isinstance(operand, torch.Tensor) else scalar_range(operand)
        if r is None:
            return None
        ranges.append(r)
    alpha = kwargs.get("alpha", 1)
    if alpha != 1:
        k = scalar_range(alpha)
        if k is None or op in ("mul", "rsub"):  # rsub's alpha scales its first operand
            return None
        ranges[1] = combine("mul", ranges[1], k)
    return combine(op, ranges[0], ranges[1])


__all__ = [
    "BINARY",
    "Range",
    "arithmetic_of",
    "combine",
    "is_binary",
    "representable",
    "result_range",
    "scalar_range",
    "union",
    "writes_in_place",
]
