"""Counting rules: one small pure function per module type, one generic engine (``engine.py``).

A handle receives the module, its inputs and output of one call, and the time layout of the
call, and returns ``{counter: value}`` where a value is either

- a python ``int``: the same count at every time step of the call (shape-only counts), or
- an int64 tensor of shape ``[T]``: the count of each time step (data-dependent counts), or
- for time-mixed modules (``gac_time == "mixed"``), an ``int`` or 0-dim tensor: the call's total.

Counters (all are operation or event counts, summed over the images of the call):

| counter          | meaning                                                                   |
|------------------|---------------------------------------------------------------------------|
| dense_macs       | multiply-accumulates of the dense layer (shape only)                      |
| synaptic_ops     | exact (non-zero input, weight) pairs that meet in the output map          |
| binary_calls     | 1 when the call's input had non-zeros, all equal to 1 (a spike tensor)    |
| real_calls       | 1 when the call's input had other non-zero values (real-valued)           |
| input_nnz        | non-zero input elements (input events, theta_in)                          |
| bias_adds        | one add per output element of a layer with bias                           |
| muls / adds / compares | elementwise multiplies / adds / comparisons (BN, pooling, gating ...) |
| sigmoids         | sigmoid evaluations                                                       |
| spikes           | output spikes of a LIF call                                               |
| neuron_steps     | neuron updates of a LIF call (leak multiply + input add + threshold compare) |

Rules are matched by ``isinstance`` in table order (subclasses of nn.Conv2d are counted), and the
table is extensible with :func:`register_handle`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from gac_analysis.accounting.kernels import (
    binary_channel_counts,
    channel_nonzero_counts,
    conv_dense_macs_per_row,
    conv_ops_from_counts,
    is_binary,
    nonzero_count,
)
from gac_analysis.energy.units import SYNAPTIC_OPS as SYNAPTIC_OPS  # one home of the op names, re-exported
from gac_analysis.models.layers import Add, Mul
from gac_analysis.models.neurons import LIF

Handle = Callable[[nn.Module, tuple, torch.Tensor, "CallShape"], dict]


class CallShape:
    """How one call's leading dimension maps to time steps, and what is known of its input.

    ``layout`` ``"TB"``: rows ``[T*B, ...]`` time-major; ``"T"``: ``[T, B, ...]``; ``"mixed"``: time is
    a feature axis, counts are not split by step. ``spike_input`` is True when the engine saw the
    input tensor come out of a neuron whose outputs are 0/1 by construction (observed provenance,
    not a guess); the handle may then skip the value check.
    """

    __slots__ = ("T", "layout", "spike_input")

    def __init__(self, T: int, layout: str, spike_input: bool = False):
        self.T = T
        self.layout = layout
        self.spike_input = spike_input

    def per_step(self, per_row: torch.Tensor) -> torch.Tensor:
        """Sum a per-row int64 count ``[rows]`` (time-major rows) into ``[T]``; mixed: the total."""
        if self.layout == "mixed":
            return per_row.sum()
        return per_row.reshape(self.T, -1).sum(1)

    def uniform(self, total: int) -> int:
        """A shape-only count of the whole call, as a count per time step (mixed: the total)."""
        return total if self.layout == "mixed" else total // self.T


def _input_kind(binary: torch.Tensor, nnz_total: torch.Tensor) -> dict:
    """Observed input kind of one call as two 0-dim int64 flags. A call whose input is all zeros is
    evidence of neither kind (it fits both): it sets neither flag."""
    active = nnz_total > 0
    return {"binary_calls": (binary & active).long(), "real_calls": (~binary & active).long()}


def conv_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Conv1d/2d/3d: dense MACs, exact synaptic ops, input events, bias adds."""
    x = inputs[0]
    nd = len(m.kernel_size)
    rows = x.reshape(-1, *x.shape[x.dim() - nd - 1:])
    if cs.spike_input:  # a LIF output (0/1 by construction): no value check needed
        counts = binary_channel_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        kind = {"binary_calls": torch.ones((), dtype=torch.int64, device=x.device)}
    else:
        counts = channel_nonzero_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        nnz = per_row_nnz.sum()
        kind = _input_kind(torch.count_nonzero(rows == 1) == nnz, nnz)
    result = {
        "dense_macs": cs.uniform(conv_dense_macs_per_row(rows.shape, m) * rows.shape[0]),
        "synaptic_ops": cs.per_step(conv_ops_from_counts(counts, m)),
        **kind,
        "input_nnz": cs.per_step(per_row_nnz),
    }
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    return result


def linear_handle(m: nn.Linear, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Linear: dense MACs, exact synaptic ops (nnz x out_features), input events, bias adds."""
    x = inputs[0].reshape(-1, m.in_features)
    per_row_nnz = nonzero_count(x, dims=(1,))
    result = {
        "dense_macs": cs.uniform(x.shape[0] * m.in_features * m.out_features),
        "synaptic_ops": cs.per_step(per_row_nnz * m.out_features),
        **_input_kind(is_binary(x), per_row_nnz.sum()),
        "input_nnz": cs.per_step(per_row_nnz),
    }
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    return result


def lif_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """LIF ``[T, B, ...]``: spikes per step (exact int64) and neuron updates (one per neuron per step).

    The output of :class:`LIF` is 0/1 by construction, so the float sum of one sample's step (fewer
    than 2**24 neurons) is its exact spike count; other neuron types are counted by non-zeros.
    """
    per_sample = out.reshape(out.shape[0], out.shape[1], -1)
    if isinstance(m, LIF) and per_sample.shape[-1] < 2**24:
        spikes = per_sample.sum(-1).to(torch.int64).sum(1)
    else:
        spikes = nonzero_count(per_sample, dims=(1, 2))
    return {"spikes": spikes, "neuron_steps": out.numel() // out.shape[0]}


def batchnorm_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """BatchNorm (eval, unfolded): one multiply and one add per element (y = x * scale + shift)."""
    n = cs.uniform(out.numel())
    return {"muls": n, "adds": n}


def add_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Elementwise add (residual, TA sum): one add per output element."""
    return {"adds": cs.uniform(out.numel())}


def mul_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Elementwise multiply (gating, TA x SCA): one multiply per output element."""
    return {"muls": cs.uniform(out.numel())}


def sigmoid_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Sigmoid: one evaluation per element (priced by the energy convention)."""
    return {"sigmoids": cs.uniform(out.numel())}


def relu_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """ReLU: one compare per element."""
    return {"compares": cs.uniform(out.numel())}


def avgpool_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Average pooling: (window - 1) adds per output (input - output elements for a partition) and one
    scaling multiply per output element. Exact for adaptive/global pooling, which partitions the input."""
    return {"adds": cs.uniform(inputs[0].numel() - out.numel()), "muls": cs.uniform(out.numel())}


def maxpool_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Max pooling (partitioning windows): (window - 1) compares per output element."""
    return {"compares": cs.uniform(inputs[0].numel() - out.numel())}


#: The rule table, matched by isinstance in order. Extend with register_handle.
HANDLES: list[tuple[type, str, Handle]] = [
    (LIF, "lif", lif_handle),
    (nn.Conv1d, "conv1d", conv_handle),
    (nn.Conv2d, "conv2d", conv_handle),
    (nn.Conv3d, "conv3d", conv_handle),
    (nn.Linear, "linear", linear_handle),
    (nn.modules.batchnorm._BatchNorm, "batchnorm", batchnorm_handle),
    (Add, "add", add_handle),
    (Mul, "mul", mul_handle),
    (nn.Sigmoid, "sigmoid", sigmoid_handle),
    (nn.ReLU, "relu", relu_handle),
    (nn.AdaptiveAvgPool1d, "avgpool", avgpool_handle),
    (nn.AdaptiveAvgPool2d, "avgpool", avgpool_handle),
    (nn.AdaptiveAvgPool3d, "avgpool", avgpool_handle),
    (nn.AdaptiveMaxPool1d, "maxpool", maxpool_handle),
    (nn.AdaptiveMaxPool2d, "maxpool", maxpool_handle),
    (nn.AdaptiveMaxPool3d, "maxpool", maxpool_handle),
]

def register_handle(module_type: type, op: str, handle: Handle, *, first: bool = True) -> None:
    """Add a counting rule for ``module_type`` (placed before the built-ins unless ``first=False``)."""
    entry = (module_type, op, handle)
    if first:
        HANDLES.insert(0, entry)
    else:
        HANDLES.append(entry)


def find_handle(module: nn.Module) -> tuple[str, Handle] | None:
    """The (op name, handle) of the first rule whose type ``module`` is an instance of."""
    for module_type, op, handle in HANDLES:
        if isinstance(module, module_type):
            return op, handle
    return None
