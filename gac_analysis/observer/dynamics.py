"""Per-neuron measures of encoder output sequences, vectorised over neurons.

Every function takes a time-major tensor ``o`` of shape ``[T, N]`` (or ``[T, *]``: the trailing
axes are the neurons) holding what one observer sees at each of the T time steps, and returns
one value per neuron (shape ``[N]`` / ``[*]``) unless it is a population measure.

Units: durations, counts and times are in **time steps** (1-based, t = 1..T); the variance is
in squared output units (spikes: dimensionless 0/1; GAC: gate values in (0, 1)); entropies are
in **bits**.

Value equality (the *stated tolerance*): two output values ``a`` and ``b`` are equal when

    |a - b| <= atol   and   (a == 0) == (b == 0)        (``exact_zero=True``, the default)

i.e. real values are compared within ``atol``, but a zero and a non-zero value are never equal:
whether a neuron emitted something at all is an exact event, not a rounding question. Without this
rule a gate value below ``atol`` (``sigmoid(-14) ~ 8e-7``) would make a spike look like silence and
the tool itself would manufacture ``T_g < T_d``. Pass ``exact_zero=False`` for the plain
``|a - b| <= atol`` rule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "values_equal",
    "dynamic_duration",
    "distinct_values",
    "last_change",
    "temporal_variance",
    "pattern_keys",
    "PatternCounter",
    "pattern_entropy",
    "entropy_bits",
]


def _as_2d(o: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    if not isinstance(o, torch.Tensor):
        o = torch.as_tensor(o)
    if o.dim() < 1 or o.shape[0] < 1:
        raise ValueError(f"expected a time-major tensor [T, N] with T >= 1, got shape {list(o.shape)}")
    if o.dim() == 1:
        return o.reshape(o.shape[0], 1), ()
    return o.reshape(o.shape[0], -1), tuple(o.shape[1:])


def values_equal(a: torch.Tensor, b: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> torch.Tensor:
    """Elementwise equality under the stated tolerance (see the module docstring): bool tensor."""
    eq = (a - b).abs() <= atol
    if exact_zero:
        eq &= (a == 0) == (b == 0)
    return eq


def dynamic_duration(o: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> torch.Tensor:
    """Dynamic duration of every neuron's sequence, in time steps (int64, values 1..T).

    The smallest period ``p`` in 1..T with ``o[t + p] == o[t]`` (within ``atol``) for every
    t in 1..T-p; ``p = T`` (always a period, vacuously) means no repetition was seen in the window.
    A constant sequence has duration 1.
    """
    x, shape = _as_2d(o)
    T = x.shape[0]
    out = torch.full((x.shape[1],), T, dtype=torch.int64)
    found = torch.zeros(x.shape[1], dtype=torch.bool)
    nz = (x != 0) if exact_zero else None
    for p in range(1, T):
        eq = (x[p:] - x[:-p]).abs() <= atol
        if nz is not None:
            eq &= nz[p:] == nz[:-p]
        ok = eq.all(dim=0) & ~found
        out[ok] = p
        found |= ok
        if bool(found.all()):
            break
    return out.reshape(shape)


def distinct_values(o: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> torch.Tensor:
    """Number of distinct output values over the T steps of every neuron (int64, 1..T).

    Values closer than ``atol`` are one value, by chaining: the sorted values are split wherever two
    neighbours differ by more than ``atol``. With ``exact_zero`` the value 0 is always its own group.
    """
    x, shape = _as_2d(o)
    x = x.to(torch.float64) if not x.is_floating_point() else x
    if exact_zero:
        nz = x != 0
        has_zero = (~nz).any(dim=0)
        v = torch.where(nz, x, torch.full_like(x, math.inf)).sort(dim=0).values
        finite = torch.isfinite(v[1:])
        gaps = ((v[1:] - v[:-1]) > atol) & finite
        count = has_zero.long() + nz.any(dim=0).long() + gaps.sum(dim=0)
    else:
        v = x.sort(dim=0).values
        count = 1 + ((v[1:] - v[:-1]) > atol).sum(dim=0)
    return count.reshape(shape)


def last_change(o: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> torch.Tensor:
    """Time step (1-based) of the last change ``max t with o[t] != o[t-1]``; 0 for a constant sequence (int64)."""
    x, shape = _as_2d(o)
    T = x.shape[0]
    if T == 1:
        return torch.zeros(x.shape[1], dtype=torch.int64).reshape(shape)
    changed = ~values_equal(x[1:], x[:-1], atol, exact_zero=exact_zero)  # row i: step t = i + 2
    steps = torch.arange(2, T + 1, dtype=torch.int64).unsqueeze(1)
    out = torch.where(changed, steps, torch.zeros_like(steps)).max(dim=0).values
    return out.reshape(shape)


def temporal_variance(o: torch.Tensor) -> torch.Tensor:
    """Population variance over time of every neuron, ``mean_t (o[t] - mean_t o)^2`` (float64, squared output units)."""
    x, shape = _as_2d(o)
    return x.to(torch.float64).var(dim=0, unbiased=False).reshape(shape)


def pattern_keys(o: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> torch.Tensor:
    """Integer keys ``[N, K]`` that identify each neuron's sequence as a *pattern*.

    Real values are quantised on a grid of step ``atol``: ``round(o / atol)`` (with ``atol = 0`` the
    exact float bits are used). With ``exact_zero`` the zero/non-zero pattern is appended, so a value
    below ``atol / 2`` is never merged with silence. Two neurons have the same pattern iff their key
    rows are equal. (A grid is not the same as the tolerance comparison: two values within ``atol``
    can fall into neighbouring cells; the grid is what makes "the same pattern" transitive.)
    """
    x, _ = _as_2d(o)
    if atol > 0:
        q = torch.round(x.to(torch.float64) / atol).to(torch.int64)
    elif x.is_floating_point():
        q = x.to(torch.float64).view(torch.int64)
    else:
        q = x.to(torch.int64)
    if exact_zero:
        q = torch.cat([q, (x != 0).to(torch.int64)], dim=0)
    return q.T.contiguous()


def entropy_bits(counts: torch.Tensor) -> float:
    """Shannon entropy in bits of a distribution given by counts (zeros ignored)."""
    c = counts.to(torch.float64)
    c = c[c > 0]
    if c.numel() == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * torch.log2(p)).sum().item()) + 0.0


def _unique_rows(keys: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an int64 matrix and their (weighted) counts, exact (rows compared byte by byte)."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if weights is None:
        counts = np.bincount(inverse)
    else:
        counts = np.zeros(first.shape[0], dtype=np.int64)
        np.add.at(counts, inverse, weights)
    return keys[first], counts.astype(np.int64)


class PatternCounter:
    """Exact counts of the distinct sequences seen across a population, updated batch by batch.

    Keeps one key row per *distinct* pattern (not per neuron), so spikes (at most 2^T patterns) cost
    almost nothing; real GAC outputs, nearly all distinct, cost ``K`` int64 per distinct pattern.
    """

    def __init__(self, atol: float = 0.0, *, exact_zero: bool = True):
        self.atol = atol
        self.exact_zero = exact_zero
        self.keys: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    def update(self, o: torch.Tensor) -> None:
        keys, counts = _unique_rows(pattern_keys(o, self.atol, exact_zero=self.exact_zero).numpy())
        if self.keys is not None:
            keys, counts = _unique_rows(np.concatenate([self.keys, keys]), np.concatenate([self.counts, counts]))
        self.keys, self.counts = keys, counts

    @property
    def num_patterns(self) -> int:
        return 0 if self.counts is None else int(self.counts.size)

    @property
    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def entropy(self) -> float:
        """Entropy in bits of the pattern distribution (0 for an empty counter)."""
        return 0.0 if self.counts is None else entropy_bits(torch.from_numpy(self.counts))


def pattern_entropy(o: torch.Tensor, atol: float = 0.0, *, exact_zero: bool = True) -> float:
    """Entropy in bits of the distribution of whole sequences across the population ``o[T, N]``.

    Each neuron contributes its sequence ``o[:, n]``, quantised as in :func:`pattern_keys`
    (grid step ``atol``, exact zero/non-zero pattern); ``H = -sum_s P(s) log2 P(s)`` over the distinct
    patterns s. Ranges from 0 (every neuron shows the same sequence) to ``log2(N)`` (all distinct).
    """
    counter = PatternCounter(atol, exact_zero=exact_zero)
    counter.update(o)
    return counter.entropy()
