"""Counting rules: one small pure function per module type, one generic engine (``engine.py``).

A handle receives the module, its inputs and output of one call, and the time layout of the
call, and returns ``{counter: value}`` where a value is either

- a python ``int``: the same count at every time step of the call (shape-only counts), or
- an int64 tensor of shape ``[T]``: the count of each time step (data-dependent counts), or
- :class:`Rows`: whole-number counts per row (time-major) times a python int, summed into the time
  steps by the engine once per forward (cheaper than a reduction per call), or
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
    FLOAT32_EXACT,
    binary_channel_counts,
    channel_nonzero_counts,
    conv_dense_macs,
    conv_ops_from_counts,
    conv_row_counts,
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
    construction, or made from such outputs by operations that keep 0/1 (observed provenance, not a
    guess); the handle may then skip the value check. For a product (matmul) it is a pair of such
    flags, one per operand. ``input_range`` is the input's value range when it is known by
    construction (:mod:`~gac_analysis.accounting.ranges`: whole numbers within ``(lo, hi)``, e.g.
    ``(0, 2)`` for the sum of two spike maps), else None. ``binary_output`` is True for a neuron whose
    own outputs are 0/1 by construction.
    """

    __slots__ = ("T", "layout", "spike_input", "binary_output", "input_range")

    def __init__(
        self,
        T: int,
        layout: str,
        spike_input: bool | tuple[bool, bool] = False,
        binary_output: bool = False,
        input_range: tuple[int, int] | None = None,
    ):
        self.T = T
        self.layout = layout
        self.spike_input = spike_input
        self.binary_output = binary_output
        self.input_range = input_range

    def per_step(self, per_row: torch.Tensor) -> torch.Tensor:
        """Sum a per-row int64 count ``[rows]`` (time-major rows) into ``[T]``; mixed (or rows that do
        not split into T steps): the 0-dim total."""
        if self.layout == "mixed" or per_row.numel() % self.T or per_row.numel() == 0:
            return per_row.sum()
        return per_row.reshape(self.T, -1).sum(1)

    def uniform(self, total: int) -> int:
        """A shape-only count of the whole call, as a count per time step (mixed: the total)."""
        return total if self.layout == "mixed" else total // self.T


class Rows:
    """A data-dependent count of one call given per row: ``values[r]`` (whole numbers, any dtype, rows
    time-major as :meth:`CallShape.per_step` reads them) times the python int ``scale``.

    A handle may return it instead of a ``[T]`` tensor: the engine then sums every call's rows into
    their time steps once per forward, with a few tensor operations for all calls together, instead of
    a reduction (and a dtype conversion) per call."""

    __slots__ = ("values", "scale")

    def __init__(self, values: torch.Tensor, scale: int = 1):
        self.values = values
        self.scale = scale


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


#: Values looked at first by :func:`host_input_kind` (a real-valued map almost always shows it there).
KIND_SAMPLE = 64


def nonzero_map(x: torch.Tensor) -> torch.Tensor:
    """A float map of ``x``'s non-zeros: 1 where ``x != 0``, else 0 (NaN stays NaN). Float arithmetic:
    on the CPU a bool-valued comparison is several times slower than these two float passes."""
    return x.sign().abs_()


def _whole(x: torch.Tensor) -> bool:
    """Every value of a float tensor is a whole number (one pass; read on the host)."""
    lo, hi = torch.aminmax(torch.frac(x))
    return float(lo) == 0 and float(hi) == 0


def _head_not_whole(x: torch.Tensor) -> bool:
    """One of the first few values of a float tensor is not a whole number (or is NaN): the tensor is
    real-valued, told without a pass over it."""
    if not (x.is_floating_point() and x.is_contiguous()):
        return False
    return any(v % 1 or v != v for v in x.view(-1)[:KIND_SAMPLE].tolist())  # inf % 1 is NaN: truthy


def host_is_binary(x: torch.Tensor) -> bool:
    """Every value of a CPU tensor is 0 or 1, read on the host: a first value that is not whole decides
    it at once; then a min/max pass (a value outside [0, 1] decides it); then a whole-number pass."""
    if x.numel() == 0 or x.dtype == torch.bool:
        return True
    if _head_not_whole(x):
        return False
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (lo >= 0 and hi <= 1):  # also NaN
        return False
    return not x.is_floating_point() or _whole(x)


def host_input_kind(x: torch.Tensor) -> tuple[str, bool]:
    """``(kind, active)`` of a CPU tensor read on the host: kind ``binary`` (every value 0 or 1),
    ``integer`` (whole numbers, not all 0/1) or ``real``; ``active``: some value is non-zero. A
    real-valued map is told by its first few values (one not whole decides it); otherwise one min/max
    pass and one whole-number pass; NaN is real."""
    if x.numel() == 0:
        return "binary", False
    if _head_not_whole(x):  # a value that is not whole (or NaN): real, and non-zero
        return "real", True
    lo, hi = (float(v) for v in torch.aminmax(x))
    active = lo != 0 or hi != 0
    if lo != lo or hi != hi:  # NaN
        return "real", True
    whole = not x.is_floating_point() or _whole(x)
    if whole and lo >= 0 and hi <= 1:
        return "binary", active
    return ("integer" if whole else "real"), active


def _kind_flags(kind: str, active: bool, integer_key: bool = True) -> dict:
    """The per-call input-kind flags (python ints) of a host-known kind, as :func:`_input_kind` sets them."""
    flags = {"binary_calls": int(active and kind == "binary")}
    if integer_key:
        flags["integer_calls"] = int(active and kind == "integer")
    flags["real_calls"] = int(active and kind == "real")
    return flags


def _synaptic_by_kind(kind: str, ops: Rows, value_ops) -> dict:
    """Exact synaptic ops of a call whose input kind is known on the host, under its counter: ACs
    (binary), integer ops and their value-weighted count (integer), effective MACs (real)."""
    if kind == "binary":
        return {"acs": ops, "effective_macs": 0}
    if kind == "integer":
        return {"acs": 0, "integer_ops": ops, "integer_value_ops": value_ops, "effective_macs": 0}
    return {"acs": 0, "integer_ops": 0, "effective_macs": ops}


def conv_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Conv1d/2d/3d: dense MACs, exact synaptic ops, input events, bias adds.

    For an integer-valued input (values k, e.g. the sum of two spike maps) ``synaptic_value_ops``
    weights every (input, weight) pair by ``abs(k)``: the count of the "k ACs for value k" pricing.
    The input kind comes from the input's provenance (a neuron's 0/1 output) or, on the CPU where
    reading a value costs nothing, from one look at the values; then one matrix product per count
    gives every row's counts (:func:`~gac_analysis.accounting.kernels.conv_row_counts`). Elsewhere
    (other devices, half precision, non-'zeros' padding) every count is computed and selected without
    a sync."""
    x = inputs[0]
    nd = len(m.kernel_size)
    rows = x.reshape(-1, *x.shape[x.dim() - nd - 1 :])
    geometry = (m.kernel_size, m.stride, m.padding, m.dilation, m.in_channels, m.out_channels, m.groups)
    result = {"dense_macs": cs.uniform(conv_dense_macs(tuple(rows.shape), *geometry) * rows.shape[0])}
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    counts = _conv_value_counts(m, rows, cs)
    if counts is None:
        counts = _conv_counts_on_device(m, rows, cs)
    return {**result, **counts}


def _conv_value_counts(m: nn.Module, rows: torch.Tensor, cs: CallShape) -> dict | None:
    """The counts of :func:`conv_handle` that depend on the input's values (``rows``: ``[R, C, *spatial]``),
    where its kind is known by construction or read on the CPU; None where the general device path
    (:func:`_conv_counts_on_device`) must count them."""
    if m.padding_mode != "zeros" or rows.dtype not in _EXACT_FLOATS:
        return None
    known = cs.input_range
    if cs.spike_input is True:  # a neuron's 0/1 output: every non-zero input is a spike
        kind, flags = "binary", {"binary_calls": 1}
    elif rows.device.type != "cpu":
        return None
    elif known is not None and known[0] >= 0:
        return _conv_counts_whole(m, rows, known[1])
    else:
        kind, active = host_input_kind(rows)
        flags = _kind_flags(kind, active, integer_key=kind != "binary")
    return {**flags, **_conv_counts_by_kind(m, rows, kind)}


#: Float dtypes whose sums of 0/1 values the fast paths keep exact (float32 below 2**24, else float64).
_EXACT_FLOATS = (torch.float32, torch.float64)


def _conv_counts_by_kind(m: nn.Module, rows: torch.Tensor, kind: str) -> dict:
    """Counts of a conv call whose input kind is known on the host (see :func:`conv_handle`)."""
    scale = int(m.out_channels) // int(m.groups)
    if kind == "binary":
        counts = conv_row_counts(rows, m)
    else:  # one pass: the non-zero channels at each position, as a one-channel map
        nd = len(m.kernel_size)
        per_position = nonzero_map(rows).sum(-(nd + 1))
        counts = conv_row_counts(per_position, m, max_value=rows.shape[-(nd + 1)], summed=True)
    value_ops = None
    if kind == "integer":
        value_ops = Rows(conv_row_counts(rows.abs(), m, max_value=None)[:, 0], scale)
    ops, nnz = counts.unbind(-1)
    return {"input_nnz": Rows(nnz), **_synaptic_by_kind(kind, Rows(ops, scale), value_ops)}


def _whole_sums(x: torch.Tensor, dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """``(non-zero counts, value sums, kind, active)`` of a map of non-negative whole numbers (a range from
    0, :mod:`~gac_analysis.accounting.ranges`) summed over ``dim``: a non-zero is a value of at least 1,
    so the values clamped at 1 count the non-zeros; the map is binary when both totals agree (no value
    above 1), else integer (float64 totals, exact; read on the host)."""
    nnz, values = x.clamp(max=1).sum(dim, dtype=dtype), x.sum(dim, dtype=dtype)
    nnz_total = float(nnz.sum(dtype=torch.float64))
    kind = "binary" if float(values.sum(dtype=torch.float64)) == nnz_total else "integer"
    return nnz, values, kind, nnz_total > 0


def _conv_counts_whole(m: nn.Module, rows: torch.Tensor, hi: int) -> dict:
    """Counts of a conv call (CPU) whose input holds whole numbers from 0 to ``hi`` by construction (a
    sum of spike maps): no value check (:func:`_whole_sums` over the channels; the values weight the
    "k ACs for value k" count)."""
    nd = len(m.kernel_size)
    channels = rows.shape[-(nd + 1)]
    dtype = torch.float32 if channels * hi < FLOAT32_EXACT else torch.float64
    nnz_positions, value_positions, kind, active = _whole_sums(rows, -(nd + 1), dtype)
    ops, nnz = conv_row_counts(nnz_positions, m, max_value=channels, summed=True).unbind(-1)
    scale = int(m.out_channels) // int(m.groups)
    value_ops = None
    if kind == "integer":
        value_ops = Rows(conv_row_counts(value_positions, m, max_value=channels * hi, summed=True)[:, 0], scale)
    return {
        **_kind_flags(kind, active, integer_key=kind != "binary"),
        "input_nnz": Rows(nnz),
        **_synaptic_by_kind(kind, Rows(ops, scale), value_ops),
    }


def _conv_counts_on_device(m: nn.Module, rows: torch.Tensor, cs: CallShape) -> dict:
    """Counts of a conv call without a host-known input kind: every count computed, the kind kept as
    0-dim flags on the device (no sync); ``engine._split_synaptic`` selects the counters."""
    nd = len(m.kernel_size)
    result = {}
    if cs.spike_input:  # a neuron output (0/1 by construction): the float channel sum counts
        counts = binary_channel_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        result["binary_calls"] = torch.ones((), dtype=torch.int64, device=rows.device)
    else:
        counts = channel_nonzero_counts(rows, nd)
        per_row_nnz = counts.sum(dim=tuple(range(1, nd + 1)))
        nnz = per_row_nnz.sum()
        binary = torch.count_nonzero(rows == 1) == nnz
        result.update(_input_kind(binary, nnz, is_integer_valued(rows)))
        magnitude = rows.abs().sum(dim=-(nd + 1), dtype=torch.float64).round().to(torch.int64)
        result["synaptic_value_ops"] = cs.per_step(conv_ops_from_counts(magnitude, m))
    result["synaptic_ops"] = cs.per_step(conv_ops_from_counts(counts, m))
    result["input_nnz"] = cs.per_step(per_row_nnz)
    return result


def linear_handle(m: nn.Linear, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Linear: dense MACs, exact synaptic ops (nnz x out_features), input events, bias adds
    (integer input: also the value-weighted count, see :func:`conv_handle`; the input kind from
    provenance or, on the CPU, from the values, as there)."""
    x = inputs[0].reshape(-1, m.in_features)
    result = {"dense_macs": cs.uniform(x.shape[0] * m.in_features * m.out_features)}
    if m.bias is not None:
        result["bias_adds"] = cs.uniform(out.numel())
    counts = _linear_value_counts(m, x, cs)
    if counts is not None:
        return {**result, **counts}
    per_row_nnz = nonzero_count(x, dims=(1,))
    result.update(
        {
            "synaptic_ops": cs.per_step(per_row_nnz * m.out_features),
            **_input_kind(is_binary(x), per_row_nnz.sum(), is_integer_valued(x)),
            "input_nnz": cs.per_step(per_row_nnz),
        }
    )
    if not cs.spike_input:
        magnitude = x.abs().sum(dim=1, dtype=torch.float64).round().to(torch.int64)
        result["synaptic_value_ops"] = cs.per_step(magnitude * m.out_features)
    return result


def _linear_value_counts(m: nn.Linear, x: torch.Tensor, cs: CallShape) -> dict | None:
    """The value-dependent counts of :func:`linear_handle` (``x``: ``[R, in_features]``), as
    :func:`_conv_value_counts`."""
    if x.dtype in _EXACT_FLOATS and (cs.spike_input is True or x.device.type == "cpu"):
        known = cs.input_range
        sum_dtype = torch.float32 if m.in_features < FLOAT32_EXACT else torch.float64
        if cs.spike_input is True:
            kind, flags = "binary", {"binary_calls": 1}
            nnz = x.sum(1, dtype=sum_dtype)
        elif known is not None and known[0] >= 0:  # whole numbers from 0 (ranges.py): no value check
            whole_dtype = torch.float32 if m.in_features * known[1] < FLOAT32_EXACT else torch.float64
            nnz, values, kind, active = _whole_sums(x, 1, whole_dtype)
            flags = _kind_flags(kind, active)
        else:
            kind, active = host_input_kind(x)
            flags = _kind_flags(kind, active)
            nnz = (x if kind == "binary" else nonzero_map(x)).sum(1, dtype=sum_dtype)
            values = x.abs().sum(1, dtype=torch.float64) if kind == "integer" else None
        value_ops = Rows(values, m.out_features) if kind == "integer" else None
        return {
            **flags,
            "input_nnz": Rows(nnz),
            **_synaptic_by_kind(kind, Rows(nnz, m.out_features), value_ops),
        }
    return None


def lif_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Neuron ``[T, B, ...]``: spikes per step (exact int64) and neuron updates (one per neuron per step).

    The output of :class:`LIF` (and of a neuron the engine knows fires 0/1, ``cs.binary_output``) is
    0/1 by construction, so the float sum of one step is its exact spike count (float32 below 2**24
    neurons per step, float64 above); other neuron types are counted by non-zeros.
    """
    per_step = out.reshape(out.shape[0], -1)
    if (cs.binary_output or isinstance(m, LIF)) and out.dtype in _EXACT_FLOATS:
        dtype = torch.float32 if per_step.shape[1] < FLOAT32_EXACT else torch.float64
        spikes = per_step.sum(1, dtype=dtype)  # whole numbers: the engine converts them exactly
        return {"spikes": spikes, "neuron_steps": out.numel() // out.shape[0]}
    # any other neuron: its non-zero outputs count as spikes, and a call whose outputs are not all 0/1
    # (a graded neuron, a surrogate with spiking=False) is flagged, so the report says what its rate means
    graded = int(not host_is_binary(out)) if out.device.type == "cpu" else (~is_binary(out)).long()
    return {
        "spikes": nonzero_count(per_step, dims=(1,)),
        "neuron_steps": out.numel() // out.shape[0],
        "graded_calls": graded,
    }


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
    """Adaptive average pooling: (window - 1) adds per output and one scaling multiply per output
    element, over the adaptive windows (:func:`adaptive_pool_counts`)."""
    return {k: cs.uniform(v) for k, v in adaptive_pool_counts("avgpool", inputs[0].shape, out.shape, _nd(m)).items()}


def maxpool_handle(m: nn.Module, inputs: tuple, out: torch.Tensor, cs: CallShape) -> dict:
    """Adaptive max pooling: (window - 1) compares per output element (:func:`adaptive_pool_counts`)."""
    return {k: cs.uniform(v) for k, v in adaptive_pool_counts("maxpool", inputs[0].shape, out.shape, _nd(m)).items()}


def _nd(pool: nn.Module) -> int:
    """The spatial axes of a pooling module (its class name ends in ``1d``, ``2d`` or ``3d``)."""
    return int(type(pool).__name__[-2]) if type(pool).__name__[-2:] in ("1d", "2d", "3d") else 2


@functools.lru_cache(maxsize=4096)
def _adaptive_taps_1d(length: int, n_out: int) -> int:
    """Input positions read by all ``n_out`` windows of one adaptive pooling axis: window ``i`` spans
    ``[floor(i * length / n_out), ceil((i + 1) * length / n_out))`` (PyTorch's windows), so windows
    overlap when ``length`` does not split evenly and repeat positions when the map is enlarged."""
    return sum(-(-(i + 1) * length // n_out) - (i * length // n_out) for i in range(n_out))


def adaptive_pool_counts(kind: str, x_shape, out_shape, nd: int) -> dict:
    """Counts of an adaptive pooling call over the last ``nd`` axes: ``taps - outputs`` compares (max) or adds plus one
    multiply per output (average), ``taps`` the input elements read by all windows of a plane. Exact
    for any output size, smaller or larger than the input; a global pool reads every input once."""
    in_sp, out_sp = tuple(x_shape[-nd:]), tuple(out_shape[-nd:])
    n_plane = math.prod(out_sp)
    planes = math.prod(out_shape) // max(n_plane, 1)
    taps = math.prod(_adaptive_taps_1d(int(a), int(b)) for a, b in zip(in_sp, out_sp))
    extra = planes * (taps - n_plane)
    if kind == "maxpool":
        return {"compares": extra}
    return {"adds": extra, "muls": math.prod(out_shape)}


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


#: The functions a rule's module type calls in its own forward (what its rule counts), by op. A subclass
#: that overrides ``forward`` with more work around them is counted "open" (:func:`extends_forward`).
PRIMITIVES: dict[str, frozenset[str]] = {
    **{f"conv{d}d": frozenset({f"conv{d}d", "pad"}) for d in (1, 2, 3)},
    "linear": frozenset({"linear"}),
    "batchnorm": frozenset({"batch_norm"}),
    "layernorm": frozenset({"layer_norm"}),
    "sigmoid": frozenset({"sigmoid"}),
    "relu": frozenset({"relu", "threshold"}),
    "gelu": frozenset({"gelu"}),
    "tanh": frozenset({"tanh"}),
    "softmax": frozenset({"softmax"}),
    "maxpool": frozenset(
        f"{a}max_pool{d}d{w}" for a in ("", "_", "adaptive_") for d in (1, 2, 3) for w in ("", "_with_indices")
    ),
    "avgpool": frozenset(f"{a}avg_pool{d}d" for a in ("", "adaptive_") for d in (1, 2, 3)),
}
#: Modules whose forwards are known to do only their rule's work around reshapes (SpikingJelly's ``layer``
#: wrappers in 's'/'m' mode, torch's own classes, this project's modules).
_TRUSTED_FORWARDS = ("torch.", "spikingjelly.activation_based.layer", "gac_analysis.")


#: Where a neuron's own ``forward`` is the library's: it only runs the neuron's dynamics.
_TRUSTED_NEURON_FORWARDS = ("torch.", "spikingjelly.", "gac_analysis.")
#: The methods of a neuron (SpikingJelly's ``MemoryModule``) that run its dynamics: one step, or a sequence.
NEURON_DYNAMICS = ("single_step_forward", "multi_step_forward")


def extends_forward(module: nn.Module, table=HANDLES) -> bool:
    """``module`` is a user's subclass of a rule's type whose own forward may do more than the rule
    counts (``class ScaledConv(nn.Conv2d): def forward(self, x): y = super().forward(x); return y * y.mean()``,
    or an override of ``_conv_forward``: any method with "forward" in its name, outside torch, SpikingJelly
    and this project): the engine then intercepts the operations of that forward, all but its base calls,
    the type's own functions (:data:`PRIMITIVES`), or for a neuron its dynamics (:data:`NEURON_DYNAMICS`),
    which the rule counts. A neuron's ``forward`` is work around its dynamics only when it calls a
    ``forward`` or a dynamics method (``super().forward(x)``, ``neuron.IFNode.forward(self, x)``); one that
    calls none is a hand-written neuron update, the neuron's own work (:func:`_calls_dynamics`), and an
    override of a dynamics method is the neuron's dynamics. False for rules without known primitives."""
    for module_type, op, _ in table:
        if isinstance(module, module_type):
            if op == "lif":
                owner = _forward_owner(module)
                return not owner.__module__.startswith(_TRUSTED_NEURON_FORWARDS) and _calls_dynamics(
                    owner.__dict__["forward"]
                )
            if op not in PRIMITIVES:
                return False
            return any(
                "forward" in name and callable(value)
                for c in type(module).__mro__[: type(module).__mro__.index(module_type)]
                if not c.__module__.startswith(_TRUSTED_FORWARDS)
                for name, value in vars(c).items()
            )
    return False


def _forward_owner(module: nn.Module) -> type:
    """The class of ``module``'s MRO that defines the ``forward`` it runs."""
    return next(c for c in type(module).__mro__ if "forward" in c.__dict__)


def _calls_dynamics(forward) -> bool:
    """The code of a neuron's ``forward`` (or of a function nested in it) calls a ``forward`` (its base
    class's: ``super().forward``, ``Base.forward(self, x)``) or one of :data:`NEURON_DYNAMICS`, by name."""
    code = getattr(forward, "__code__", None)
    stack = [code] if code is not None else []
    names: set[str] = set()
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    return bool(names.intersection(("forward", *NEURON_DYNAMICS)))


def own_primitives(module: nn.Module, op: str) -> frozenset[str]:
    """The functions of :data:`PRIMITIVES` that ``module``'s base forward calls: a conv pads with ``pad``
    only for its non-'zeros' padding modes (with 'zeros', a ``pad`` in a subclass's forward is the
    subclass's own work)."""
    if op == "lif":  # a neuron's base calls are its dynamics methods, not functions
        return frozenset()
    own = PRIMITIVES[op]
    if "pad" in own and getattr(module, "padding_mode", "zeros") == "zeros":
        own = own - {"pad"}
    return own


def call_arg(args: tuple, kwargs: dict, i: int, name: str, default=None):
    """Argument ``i`` (or keyword ``name``) of an intercepted torch call, else ``default``."""
    return args[i] if len(args) > i else kwargs.get(name, default)


def _as_dims(value, nd: int):
    """A size argument as a tuple of ``nd`` ints (an int repeated); None stays None; a string as it is."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return (value,) * nd
    value = tuple(value)
    return value * nd if len(value) == 1 and nd > 1 else value


def _same_parameter(given, own) -> bool:
    """A weight or bias argument stands for the module's own: both absent, or both of the module's shape."""
    if given is None or own is None:
        return given is None and own is None
    return isinstance(given, torch.Tensor) and tuple(given.shape) == tuple(own.shape)


def base_call_matches(module: nn.Module, op: str, name: str, args: tuple, kwargs: dict) -> bool:
    """A call of one of ``op``'s own functions (:func:`own_primitives`) made inside ``module``'s forward is
    the module's base call: its geometry (weight shape, stride, padding, dilation, groups, pooling
    window, normalised shape, dim) is the module's, which its rule reads. Any other call of that function
    (another stride, a slice of the weight, a child's depthwise blur) is counted as that function."""
    if name == "pad":  # a non-'zeros' conv's own (own_primitives): its padding, in its mode
        amounts = call_arg(args, kwargs, 1, "pad")
        return (
            amounts is not None
            and tuple(amounts) == tuple(module._reversed_padding_repeated_twice)
            and call_arg(args, kwargs, 2, "mode", "constant") == module.padding_mode
        )
    if op.startswith("conv"):
        nd = len(module.kernel_size)
        padding = module.padding if module.padding_mode == "zeros" else 0
        return (
            _same_parameter(call_arg(args, kwargs, 1, "weight"), module.weight)
            and _same_parameter(call_arg(args, kwargs, 2, "bias"), module.bias)
            and _as_dims(call_arg(args, kwargs, 3, "stride", 1), nd) == _as_dims(module.stride, nd)
            and _as_dims(call_arg(args, kwargs, 4, "padding", 0), nd) == _as_dims(padding, nd)
            and _as_dims(call_arg(args, kwargs, 5, "dilation", 1), nd) == _as_dims(module.dilation, nd)
            and call_arg(args, kwargs, 6, "groups", 1) == module.groups
        )
    if op == "linear":
        return _same_parameter(call_arg(args, kwargs, 1, "weight"), module.weight) and _same_parameter(
            call_arg(args, kwargs, 2, "bias"), module.bias
        )
    if op == "layernorm":
        shape = call_arg(args, kwargs, 1, "normalized_shape")
        return _as_dims(shape, 1) == tuple(module.normalized_shape)
    if op == "softmax":
        return call_arg(args, kwargs, 1, "dim") == module.dim
    if op in ("maxpool", "avgpool"):
        return _same_window(module, name, args, kwargs)
    return True  # batch norm and activations: counted from their input and output alone


def _same_window(module: nn.Module, name: str, args: tuple, kwargs: dict) -> bool:
    """A pooling call's window (or an adaptive pool's output size) is the module's."""
    nd = int(name.split("pool")[1][0])
    if name.startswith("adaptive"):
        return _as_dims(call_arg(args, kwargs, 1, "output_size"), nd) == _as_dims(module.output_size, nd)
    kernel = _as_dims(call_arg(args, kwargs, 1, "kernel_size"), nd)
    stride = _as_dims(call_arg(args, kwargs, 2, "stride"), nd) or kernel  # None or () -> the kernel
    padding = _as_dims(call_arg(args, kwargs, 3, "padding", 0), nd)
    own_stride = _as_dims(module.stride, nd) or _as_dims(module.kernel_size, nd)
    same = (kernel, stride, padding) == (_as_dims(module.kernel_size, nd), own_stride, _as_dims(module.padding, nd))
    if "max" in name:
        same = same and _as_dims(call_arg(args, kwargs, 4, "dilation", 1), nd) == _as_dims(module.dilation, nd)
    return same


def find_handle(module: nn.Module, table=HANDLES) -> tuple[str, Handle] | None:
    """The (op name, handle) of the first rule of ``table`` whose type ``module`` is an instance of."""
    for module_type, op, handle in table:
        if isinstance(module, module_type):
            return op, handle
    return None
