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
| synaptic_value_ops | like synaptic_ops with each pair weighted by abs(input value) (integer input) |
| binary_calls     | 1 when the call's input had non-zeros, all equal to 1 (a spike tensor)    |
| integer_calls    | 1 when the call's input was integer-valued but not binary (e.g. SEW ADD)  |
| real_calls       | 1 when the call's input had other non-zero values (real-valued)           |
| input_nnz        | non-zero input elements (input events, theta_in)                          |
| bias_adds        | one add per output element of a layer with bias                           |
| muls / adds / compares | elementwise multiplies / adds / comparisons (BN, pooling, gating ...) |
| sigmoids         | sigmoid evaluations                                                       |
| activations      | other non-linear evaluations (GELU, tanh, exp of softmax, rsqrt of norms) |
| spikes           | output spikes of a LIF call                                               |
| neuron_steps     | neuron updates of a LIF call (leak multiply + input add + threshold compare) |

Rules are matched by ``isinstance`` in table order (subclasses of nn.Conv2d are counted). The
built-in table :data:`HANDLES` is immutable: :func:`register_handle` returns an extended copy that
one counter uses (``CounterConfig(handles=...)`` or ``profile(..., handles=...)``), so adding a
rule never changes another counter or the rest of the process.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from spikingjelly.activation_based.neuron.base_node import BaseNode, SimpleBaseNode
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

#: Neuron base classes: every instance is a LIF site (spikes, neurons, rates), whatever its dynamics.
NEURON_TYPES: tuple[type, ...] = (LIF, BaseNode, SimpleBaseNode)


class CallShape:
    """How one call's leading dimension maps to time steps, and what is known of its input.

    ``layout`` ``"TB"``: rows ``[T*B, ...]`` time-major; ``"T"``: ``[T, B, ...]``; ``"mixed"``: time is
    a feature axis, counts are not split by step. (A single-step call, ``[B, ...]`` holding one time
    step, is given ``T=1`` and layout ``"TB"``; the engine places it at its step.) ``spike_input`` is
    True when the engine saw the input tensor come out of a neuron whose outputs are 0/1 by
    construction (observed provenance, not a guess); the handle may then skip the value check. For a
    product (matmul) it is a pair of such flags, one per operand.
    """

    __slots__ = ("T", "layout", "spike_input")

    def __init__(self, T: int, layout: str, spike_input: bool | tuple[bool, bool] = False):
        self.T = T
        self.layout = layout
        self.spike_input = spike_input

    def per_step(self, per_row: torch.Tensor) -> torch.Tensor:
        """Sum a per-row int64 count ``[rows]`` (time-major rows) into ``[T]``; mixed (or rows that do
        not split into T steps): the 0-dim total."""
        if self.layout == "mixed" or per_row.numel() % self.T or per_row.numel() == 0:
            return per_row.sum()
        return per_row.reshape(self.T, -1).sum(1)

    def uniform(self, total: int) -> int:
        """A shape-only count of the whole call, as a count per time step (mixed: the total)."""
        return total if self.layout == "mixed" else total // self.T


def _input_kind(binary: torch.Tensor, nnz_total: torch.Tensor, integer: torch.Tensor | None = None) -> dict:
    """Observed input kind of one call as 0-dim int64 flags (binary / integer / real). A call whose
    input is all zeros is evidence of no kind (it fits all): it sets no flag."""
    active = nnz_total > 0
    flags = {"binary_calls": (binary & active).long()}
    if integer is None:
        flags["real_calls"] = (~binary & active).long()
        return flags
    integer = integer & ~binary & active
    flags["integer_calls"] = integer.long()
    flags["real_calls"] = (~binary & ~integer & active).long()
    return flags


def is_integer_valued(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor: every element of ``x`` is a whole number (no sync)."""
    if not x.is_floating_point():
        return torch.ones((), dtype=torch.bool, device=x.device)
    return (x == x.round()).all()


def conv_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Conv1d/2d/3d: dense MACs, exact synaptic ops, input events, bias adds.

    For an integer-valued input (values k, e.g. the sum of two spike maps) ``synaptic_value_ops``
    weights every (input, weight) pair by ``abs(k)``: the count of the "k ACs for value k" pricing.
    On the CPU, where reading a flag costs nothing, the input kind is decided first and only the
    counts it needs are computed; elsewhere every count is computed and selected without a sync."""
    x = inputs[0]
    nd = len(m.kernel_size)
    rows = x.reshape(-1, *x.shape[x.dim() - nd - 1 :])
    result = {"dense_macs": cs.uniform(conv_dense_macs_per_row(rows.shape, m) * rows.shape[0])}
    on_cpu = x.device.type == "cpu"
    if cs.spike_input or (on_cpu and bool(is_binary(rows))):  # 0/1 values: the float channel sum counts
        counts = binary_channel_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        if cs.spike_input:  # a neuron output (0/1 by construction)
            result["binary_calls"] = torch.ones((), dtype=torch.int64, device=x.device)
        else:
            result.update(_input_kind(torch.ones((), dtype=torch.bool), per_row_nnz.sum()))
    else:
        counts = channel_nonzero_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        nnz = per_row_nnz.sum()
        integer = is_integer_valued(rows)
        if on_cpu:  # not binary (decided above): integer or real
            binary = torch.zeros((), dtype=torch.bool)
            integer = torch.tensor(bool(integer))
        else:
            binary = torch.count_nonzero(rows == 1) == nnz
        result.update(_input_kind(binary, nnz, integer))
        if not on_cpu or bool(integer):
            magnitude = rows.abs().sum(dim=-(nd + 1), dtype=torch.float64).round().to(torch.int64)
            result["synaptic_value_ops"] = cs.per_step(conv_ops_from_counts(magnitude, m))
    result["synaptic_ops"] = cs.per_step(conv_ops_from_counts(counts, m))
    result["input_nnz"] = cs.per_step(per_row_nnz)
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    return result


def linear_handle(m: nn.Linear, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Linear: dense MACs, exact synaptic ops (nnz x out_features), input events, bias adds
    (integer input: also the value-weighted count, see :func:`conv_handle`)."""
    x = inputs[0].reshape(-1, m.in_features)
    per_row_nnz = nonzero_count(x, dims=(1,))
    result = {
        "dense_macs": cs.uniform(x.shape[0] * m.in_features * m.out_features),
        "synaptic_ops": cs.per_step(per_row_nnz * m.out_features),
        **_input_kind(binary := is_binary(x), per_row_nnz.sum(), integer := is_integer_valued(x)),
        "input_nnz": cs.per_step(per_row_nnz),
    }
    if not cs.spike_input and (x.device.type != "cpu" or bool(integer & ~binary)):
        magnitude = x.abs().sum(dim=1, dtype=torch.float64).round().to(torch.int64)
        result["synaptic_value_ops"] = cs.per_step(magnitude * m.out_features)
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    return result


def lif_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Neuron ``[T, B, ...]``: spikes per step (exact int64) and neuron updates (one per neuron per step).

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


def layernorm_counts(numel: int, normalized: int, weight: bool, bias: bool) -> dict:
    """LayerNorm of ``numel`` elements in groups of ``normalized``: per element one add for the mean,
    one subtract, one square and one add for the variance, one multiply by 1/std; one rsqrt per group;
    the affine part adds a multiply (weight) and an add (bias) per element."""
    groups = numel // max(normalized, 1)
    return {
        "adds": 3 * numel + (numel if bias else 0),
        "muls": 2 * numel + (numel if weight else 0),
        "activations": groups,
    }


def layernorm_handle(m: nn.LayerNorm, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """LayerNorm: see :func:`layernorm_counts`."""
    c = layernorm_counts(
        out.numel(),
        math.prod(m.normalized_shape),
        getattr(m, "weight", None) is not None,
        getattr(m, "bias", None) is not None,
    )
    return {k: cs.uniform(v) for k, v in c.items()}


def add_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Elementwise add (residual, TA sum): one add per output element."""
    return {"adds": cs.uniform(out.numel())}


def mul_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Elementwise multiply (gating, TA x SCA): one multiply per output element."""
    return {"muls": cs.uniform(out.numel())}


def sigmoid_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Sigmoid: one evaluation per element (priced by the energy convention)."""
    return {"sigmoids": cs.uniform(out.numel())}


def activation_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """GELU / tanh / other smooth non-linearity: one evaluation per element."""
    return {"activations": cs.uniform(out.numel())}


def softmax_counts(numel: int, rows: int) -> dict:
    """Softmax of ``numel`` elements in ``rows`` rows: one exp and one divide per element, and
    ``numel - rows`` adds for the row sums."""
    return {"activations": numel, "muls": numel, "adds": numel - rows}


def softmax_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Softmax along ``m.dim``: see :func:`softmax_counts`."""
    dim = m.dim if m.dim is not None else -1
    rows = out.numel() // max(out.shape[dim], 1) if out.dim() else 1
    return {k: cs.uniform(v) for k, v in softmax_counts(out.numel(), rows).items()}


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


def _tuple(v, nd: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * nd


@functools.lru_cache(maxsize=4096)
def _taps_1d(length: int, n_out: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Input positions (inside ``[0, length)``) read by all ``n_out`` windows of one pooling axis."""
    return sum(1 for o in range(n_out) for j in range(kernel) if 0 <= o * stride - padding + j * dilation < length)


def window_pool_taps(in_spatial, out_spatial, kernel, stride, padding, dilation=1) -> int:
    """Input elements read by all windows of one plane of a (non-adaptive) pooling: exact with
    padding (padded taps read nothing), stride, dilation and ``ceil_mode`` (the output size is taken
    from the actual output). Windows are separable, so the count is a product over axes."""
    nd = len(in_spatial)
    k, p, d = _tuple(kernel, nd), _tuple(padding, nd), _tuple(dilation, nd)
    s = _tuple(stride if stride not in (None, (), []) else kernel, nd)
    return math.prod(_taps_1d(int(a), int(b), *args) for a, b, *args in zip(in_spatial, out_spatial, k, s, p, d))


def window_pool_counts(kind: str, x_shape, out_shape, nd: int, kernel, stride, padding, dilation=1) -> dict:
    """Counts of a non-adaptive pooling call: max: ``taps - outputs`` compares per plane; average:
    ``taps - outputs`` adds per plane and one multiply (the division) per output element."""
    in_sp, out_sp = tuple(x_shape[-nd:]), tuple(out_shape[-nd:])
    n_plane = math.prod(out_sp)
    planes = math.prod(out_shape) // max(n_plane, 1)
    extra = planes * (window_pool_taps(in_sp, out_sp, kernel, stride, padding, dilation) - n_plane)
    if kind == "maxpool":
        return {"compares": extra}
    return {"adds": extra, "muls": math.prod(out_shape)}


def window_pool_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """MaxPool/AvgPool 1d/2d/3d (non-adaptive): see :func:`window_pool_counts`."""
    nd = {nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.MaxPool2d: 2, nn.AvgPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool3d: 3}[
        next(t for t in _WINDOW_POOLS if isinstance(m, t))
    ]
    kind = "maxpool" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) else "avgpool"
    c = window_pool_counts(
        kind, inputs[0].shape, out.shape, nd, m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1)
    )
    return {k: cs.uniform(v) for k, v in c.items()}


_WINDOW_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)

#: The built-in rule table, matched by isinstance in order. Immutable: extend a copy with
#: :func:`register_handle`.
HANDLES: tuple[tuple[type, str, Handle], ...] = (
    (LIF, "lif", lif_handle),
    (BaseNode, "lif", lif_handle),
    (SimpleBaseNode, "lif", lif_handle),
    (nn.Conv1d, "conv1d", conv_handle),
    (nn.Conv2d, "conv2d", conv_handle),
    (nn.Conv3d, "conv3d", conv_handle),
    (nn.Linear, "linear", linear_handle),
    (nn.modules.batchnorm._BatchNorm, "batchnorm", batchnorm_handle),
    (nn.LayerNorm, "layernorm", layernorm_handle),
    (Add, "add", add_handle),
    (Mul, "mul", mul_handle),
    (nn.Sigmoid, "sigmoid", sigmoid_handle),
    (nn.ReLU, "relu", relu_handle),
    (nn.GELU, "gelu", activation_handle),
    (nn.Tanh, "tanh", activation_handle),
    (nn.Softmax, "softmax", softmax_handle),
    (nn.AdaptiveAvgPool1d, "avgpool", avgpool_handle),
    (nn.AdaptiveAvgPool2d, "avgpool", avgpool_handle),
    (nn.AdaptiveAvgPool3d, "avgpool", avgpool_handle),
    (nn.AdaptiveMaxPool1d, "maxpool", maxpool_handle),
    (nn.AdaptiveMaxPool2d, "maxpool", maxpool_handle),
    (nn.AdaptiveMaxPool3d, "maxpool", maxpool_handle),
    *((t, "maxpool" if "Max" in t.__name__ else "avgpool", window_pool_handle) for t in _WINDOW_POOLS),
)


def register_handle(module_type: type, op: str, handle: Handle, *, table=HANDLES, first: bool = True) -> tuple:
    """A copy of ``table`` with a rule for ``module_type`` added (before the others unless ``first=False``).

    Nothing global changes: pass the result to one counter, ``CounterConfig(handles=...)`` or
    ``profile(..., handles=...)``."""
    entry = (module_type, op, handle)
    return (entry, *table) if first else (*table, entry)


def find_handle(module: nn.Module, table=HANDLES) -> tuple[str, Handle] | None:
    """The (op name, handle) of the first rule of ``table`` whose type ``module`` is an instance of."""
    for module_type, op, handle in table:
        if isinstance(module, module_type):
            return op, handle
    return None
