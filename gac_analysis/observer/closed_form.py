"""The exact dynamic duration of direct coding for a constant input, in closed form (float64).

A LIF neuron with decay ``b``, threshold ``V``, hard reset to 0 and membrane starting at 0, driven by
the same input current ``I`` at every step, has (before its first spike) the membrane

    u_j = I * (1 - b^j) / (1 - b),      j = 1, 2, ...

and it fires at the first step ``k`` with ``u_k > V`` (strictly). After the reset the trajectory
starts again from 0, so the spike train is exactly periodic with period ``k``:

- ``I > V``: ``k = 1``, it fires at every step: duration 1;
- ``I / (1 - b) <= V`` (includes ``I <= 0``): it never fires, the output is constant 0: duration 1;
- else ``k`` is the first step with ``u_k > V``. Seen through a window of T steps, the duration is
  ``k`` when ``k <= T`` (``k - 1`` zeros then a spike, repeated) and 1 when ``k > T`` (the window
  shows only zeros).

Near-threshold neurons: when the membrane comes within ``near_tol`` (default 1e-6, in membrane units)
of ``V`` at some step ``j <= min(k, T)``, float32 rounding in the simulated neuron may decide the
comparison either way; such neurons are flagged so that a comparison with the simulation can count
them apart.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gac_analysis.observer.dynamics import dynamic_duration

__all__ = [
    "ClosedForm",
    "membrane_before_first_spike",
    "direct_closed_form",
    "closed_form_duration",
    "simulated_direct_duration",
]

NEAR_THRESHOLD_TOL = 1e-6


class ClosedForm(NamedTuple):
    """Per-neuron closed-form facts (all shaped like the input current ``I``)."""

    duration: torch.Tensor  # int64, 1..T: the dynamic duration seen in the window
    first_spike: torch.Tensor  # int64, the step k of the first spike if k <= T, else 0 (no spike in the window)
    near_threshold: torch.Tensor  # bool, membrane within near_tol of V at some step j <= min(k, T)


def membrane_before_first_spike(I: torch.Tensor, T: int, decay: float) -> torch.Tensor:
    """``u_j = I (1 - b^j) / (1 - b)`` for j = 1..T, float64 ``[T, *I.shape]`` (membrane units)."""
    I64 = torch.as_tensor(I).to(torch.float64)
    j = torch.arange(1, T + 1, dtype=torch.float64)
    gain = (1.0 - decay**j) / (1.0 - decay)  # [T]
    return gain.reshape(T, *([1] * I64.dim())) * I64.unsqueeze(0)


def direct_closed_form(
    I: torch.Tensor, T: int, decay: float, v_threshold: float, *, near_tol: float = NEAR_THRESHOLD_TOL
) -> ClosedForm:
    """Closed-form direct-coding duration, first spike and near-threshold flag for constant inputs ``I``.

    Args:
        I: input currents (any shape; one neuron per element), cast to float64.
        T: the number of time steps in the window (>= 1).
        decay, v_threshold: the LIF constants ``b`` and ``V``.
        near_tol: membrane distance to ``V`` below which a neuron is flagged near-threshold.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1 (got {T})")
    u = membrane_before_first_spike(I, T, decay)  # [T, *]
    above = u > v_threshold
    fires = above.any(dim=0)
    k = torch.where(
        fires, above.to(torch.int8).argmax(dim=0).to(torch.int64) + 1, torch.zeros(fires.shape, dtype=torch.int64)
    )
    duration = torch.where(fires, k, torch.ones_like(k))
    # steps j <= min(k, T): the whole window where it does not fire within T
    steps = torch.arange(1, T + 1, dtype=torch.int64).reshape(T, *([1] * k.dim()))
    horizon = torch.where(fires, k, torch.full_like(k, T))
    near = (((u - v_threshold).abs() <= near_tol) & (steps <= horizon.unsqueeze(0))).any(dim=0)
    return ClosedForm(duration, k, near)


def closed_form_duration(I: torch.Tensor, T: int, decay: float, v_threshold: float) -> torch.Tensor:
    """Just the closed-form duration (int64, 1..T) of :func:`direct_closed_form`."""
    return direct_closed_form(I, T, decay, v_threshold).duration


def simulated_direct_duration(lif: torch.nn.Module, I: torch.Tensor, T: int) -> torch.Tensor:
    """Measured duration of a real LIF module driven by ``I`` repeated over T steps (int64, shape of ``I``)."""
    with torch.no_grad():
        spikes = lif(I.unsqueeze(0).expand(T, *I.shape).contiguous())
    return dynamic_duration(spikes, 0.0)
