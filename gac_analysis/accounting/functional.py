"""Counting rules for tensor operations called outside any counted module (``x + y``, ``q @ k``, ``x.sum()``).

Module hooks see only modules. What a forward does between modules (residual adds written as ``+``,
spike masks, attention products, reductions) is seen here, by a narrow
:class:`torch.overrides.TorchFunctionMode`: for each call it looks at the function's name once
(cached per function object) and either

- passes the call straight on when it runs inside a counted module (a conv's own ``F.conv2d``, a
  neuron's internal arithmetic: the module's rule covers them) or outside the model's forward;
- counts it as **free** (views, copies, concatenation, indexing, dtype/device moves, allocation,
  dropout in eval): data movement that performs no arithmetic;
- applies a **rule** (below) to its arguments and output; or
- records it as **unsupported** (name, module path, calls, output elements), so that nothing is
  dropped in silence.

Only Python-level torch functions are intercepted, not every aten op (SpikingJelly's dispatch-level
counters intercept every aten call, which is what makes them slow).

Rules (counts per call; "n" is the output's number of elements):

| function                                   | counts                                                          |
|--------------------------------------------|-----------------------------------------------------------------|
| add, sub, rsub (and ``+``, ``-``)          | n adds                                                          |
| mul, div (and ``*``, ``/``, scalar scaling) | n multiplies                                                   |
| matmul, mm, bmm, ``@``, einsum (2 operands)| dense MACs; exact ACs / effective MACs (see :func:`matmul_counts`) |
| einsum (1 operand: permutation / sum)      | (input - output) adds                                           |
| sum / mean                                 | (input - output) adds; mean: + n multiplies                     |
| max / min / amax / amin (reductions)       | (input - output) compares; elementwise max(a, b): n compares    |
| gt, ge, lt, le, eq, ne, where, clamp       | n compares                                                      |
| relu / sigmoid / gelu, tanh, exp, sqrt, rsqrt | n compares / n sigmoids / n activations                      |
| softmax, log_softmax                       | n exps (activations) + n divides + (n - rows) adds              |
| layer_norm, batch_norm                     | as the LayerNorm / BatchNorm module rules                       |
| max_pool / avg_pool 1d/2d/3d               | exact window taps (padding, stride, dilation, ceil_mode)         |
| adaptive pools                             | as the module rules (exact taps of PyTorch's adaptive windows)  |

A row's ``op`` is the function's name (``gt``, ``where``, ``exp``), or the name whose counters it shares
(``sub`` -> ``add``, ``div`` -> ``mul``, ``mm`` -> ``matmul``; :func:`op_label`).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch.overrides import TorchFunctionMode

from gac_analysis.accounting import ranges
from gac_analysis.accounting.handles import (
    KIND_SAMPLE,
    CallShape,
    Rows,
    adaptive_pool_counts,
    conv_handle,
    host_is_binary,
    is_binary,
    layernorm_counts,
    linear_handle,
    nonzero_map,
    softmax_counts,
    window_pool_counts,
)
from gac_analysis.accounting.handles import (
    call_arg as _arg,
)
from gac_analysis.accounting.kernels import FLOAT32_EXACT

#: Functions that perform no arithmetic (data movement, views, metadata, allocation, eval dropout).
FREE_OPS = frozenset(
    {
        "get",
        "getitem",
        "setitem",
        "len",
        "iter",
        "bool",
        "index",
        "int",
        "float",
        "format",
        "repr",
        "hash",
        "contains",
        "reduce_ex",
        "deepcopy",
        "setstate",
        "array",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "swapaxes",
        "swapdims",
        "movedim",
        "moveaxis",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "broadcast_to",
        "repeat",
        "tile",
        "repeat_interleave",
        "contiguous",
        "clone",
        "detach",
        "to",
        "cpu",
        "cuda",
        "double",
        "half",
        "bfloat16",
        "long",
        "type",
        "type_as",
        "cat",
        "concat",
        "concatenate",
        "stack",
        "hstack",
        "vstack",
        "chunk",
        "split",
        "tensor_split",
        "unbind",
        "narrow",
        "select",
        "index_select",
        "gather",
        "take",
        "flip",
        "roll",
        "unfold",
        "as_strided",
        "diagonal",
        "dim",
        "size",
        "numel",
        "nelement",
        "stride",
        "storage_offset",
        "data_ptr",
        "untyped_storage",
        "is_contiguous",
        "is_floating_point",
        "element_size",
        "item",
        "tolist",
        "requires_grad_",
        "_set_grad_enabled",  # `with torch.no_grad():` / `enable_grad` inside a forward: a mode, no arithmetic
        "zeros_like",
        "ones_like",
        "full_like",
        "empty_like",
        "rand_like",
        "randn_like",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "new_tensor",
        "zero",
        "fill",
        "copy",
        "zeros",
        "ones",
        "full",
        "empty",
        "arange",
        "tensor",
        "as_tensor",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "pad",
        "identity",
        "is_nonzero",
        "masked_select",
        "numpy",
    }
)

_DUNDER_BASES = {
    "add",
    "sub",
    "mul",
    "truediv",
    "div",
    "floordiv",
    "matmul",
    "and",
    "or",
    "xor",
    "pow",
    "mod",
    "lshift",
    "rshift",
}


def op_name(func) -> str:
    """A torch function's base name: ``Tensor.__radd__`` -> ``add``, ``Tensor.mul_`` -> ``mul``,
    ``F.max_pool2d`` -> ``max_pool2d``, attribute getters -> ``get``."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("r", "i") and name[1:] in _DUNDER_BASES:
            name = name[1:]
        return "div" if name == "truediv" else name
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


# --------------------------------------------------------------------------- elementwise and reductions


def _adds(args, kwargs, out, cs):
    return {"adds": cs.uniform(out.numel())}


def _muls(args, kwargs, out, cs):
    return {"muls": cs.uniform(out.numel())}


def _compares(args, kwargs, out, cs):
    return {"compares": cs.uniform(out.numel())}


def _sigmoids(args, kwargs, out, cs):
    return {"sigmoids": cs.uniform(out.numel())}


def _activations(args, kwargs, out, cs):
    return {"activations": cs.uniform(out.numel())}


def _reduce_adds(args, kwargs, out, cs, *, mean: bool = False):
    n_in, n_out = args[0].numel(), out.numel()
    c = {"adds": n_in - n_out}
    if mean:
        c["muls"] = n_out
    return {k: cs.uniform(v) for k, v in c.items()}


def _sum(args, kwargs, out, cs):
    return _reduce_adds(args, kwargs, out, cs)


def _mean(args, kwargs, out, cs):
    return _reduce_adds(args, kwargs, out, cs, mean=True)


def _minmax(args, kwargs, out, cs):
    other = _arg(args, kwargs, 1, "other")
    values = out[0] if isinstance(out, (tuple, list)) else out
    if isinstance(other, torch.Tensor):  # elementwise max(a, b)
        return {"compares": cs.uniform(values.numel())}
    return {"compares": cs.uniform(args[0].numel() - values.numel())}


def _softmax(args, kwargs, out, cs):
    dim = _arg(args, kwargs, 1, "dim", -1)
    rows = out.numel() // max(out.shape[dim], 1) if out.dim() else 1
    return {k: cs.uniform(v) for k, v in softmax_counts(out.numel(), rows).items()}


def _layer_norm(args, kwargs, out, cs):
    shape = _arg(args, kwargs, 1, "normalized_shape")
    weight, bias = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    c = layernorm_counts(out.numel(), math.prod(shape), weight is not None, bias is not None)
    return {k: cs.uniform(v) for k, v in c.items()}


def _batch_norm(args, kwargs, out, cs):
    n = cs.uniform(out.numel())
    return {"muls": n, "adds": n}


def _window_pool(kind: str, nd: int):
    def rule(args, kwargs, out, cs):
        values = out[0] if isinstance(out, (tuple, list)) else out
        kernel = _arg(args, kwargs, 1, "kernel_size")
        stride = _arg(args, kwargs, 2, "stride") or kernel
        padding = _arg(args, kwargs, 3, "padding", 0)
        dilation = _arg(args, kwargs, 4, "dilation", 1) if kind == "maxpool" else 1
        c = window_pool_counts(kind, args[0].shape, values.shape, nd, kernel, stride, padding, dilation)
        return {k: cs.uniform(v) for k, v in c.items()}

    rule.op = kind
    return rule


def _adaptive_pool(kind: str, nd: int):
    def rule(args, kwargs, out, cs):
        values = out[0] if isinstance(out, (tuple, list)) else out
        return {k: cs.uniform(v) for k, v in adaptive_pool_counts(kind, args[0].shape, values.shape, nd).items()}

    rule.op = kind
    return rule


# --------------------------------------------------------------------------- products


def matmul_counts(a: torch.Tensor, b: torch.Tensor, spikes: tuple[bool, bool] = (False, False)) -> dict:
    """Exact counts of ``a @ b`` (broadcast batch dims), per element of the output's batch dims.

    - ``pairs``: products of two non-zeros, ``sum_k nnz(a[..., :, k]) * nnz(b[..., k, :])``;
    - ``a_fanout`` / ``b_fanout``: ``nnz(a) x N`` / ``nnz(b) x M``: every non-zero of one operand times
      the other's free length (the convention of SpikingJelly's SynOpCounter for spike x real, and the
      "alternative" spike x spike count of the hardware literature);
    - ``binary_a`` / ``binary_b``: 0-dim bool flags; ``dense``: M K N times the batch size (int).

    ``spikes``: operands known to be 0/1 neuron outputs (their value check is skipped). All tensors
    int64 on the operands' device, no host synchronisation."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    col_a = (a != 0).sum(-2, dtype=torch.int64)  # [..., K]
    row_b = (b != 0).sum(-1, dtype=torch.int64)  # [..., K]
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    pairs = (col_a * row_b).sum(-1).expand(batch)
    a_fan = (col_a.sum(-1) * n).expand(batch)
    b_fan = (row_b.sum(-1) * m).expand(batch)
    known = torch.ones((), dtype=torch.bool, device=a.device)
    return {
        "pairs": pairs,
        "a_fanout": a_fan,
        "b_fanout": b_fan,
        "binary_a": known if spikes[0] else is_binary(a),
        "binary_b": known if spikes[1] else is_binary(b),
        "dense": math.prod(batch) * m * k * n,
        "rows": math.prod(batch),
    }


def _product_counts(c: dict, cs: CallShape) -> dict:
    """Price-ready counters of a product from :func:`matmul_counts` or the einsum equivalent.

    spike x spike: ``acs`` = pairs of two ones (SpikingJelly's convention too); the alternative
    ``nnz(a) x N`` is kept as ``acs_alt`` (reported, not priced). spike x real: ``acs`` = non-zeros of
    the spike operand x the real operand's free length. real x real: ``effective_macs`` = pairs of two
    non-zeros."""
    ba, bb = c["binary_a"], c["binary_b"]
    zero = torch.zeros((), dtype=torch.int64, device=ba.device)
    both = ba & bb
    acs = torch.where(both, c["pairs"], torch.where(ba, c["a_fanout"], torch.where(bb, c["b_fanout"], zero)))
    macs = torch.where(~ba & ~bb, c["pairs"], zero)
    alt = torch.where(both, c["a_fanout"], zero)
    active = c["a_fanout"].sum() > 0
    either = ba | bb
    return {
        "dense_macs": cs.uniform(c["dense"]),
        "acs": cs.per_step(acs.reshape(-1)),
        "effective_macs": cs.per_step(macs.reshape(-1)),
        "acs_alt": cs.per_step(alt.reshape(-1)),
        "spike_spike_calls": (both & active).long(),
        "binary_calls": (either & active).long(),
        "real_calls": (~either & active).long(),
    }


def _operand_binary(t: torch.Tensor, known: bool) -> bool | None:
    """Whether a product operand holds only 0 and 1, known on the host: from provenance, or read on the
    CPU (where reading costs nothing); None elsewhere (or for dtypes whose float sums are not exact)."""
    if t.dtype not in (torch.float32, torch.float64):
        return None
    if known:
        return True
    if t.device.type != "cpu":
        return None
    return host_is_binary(t)


def _has_nonzero(t: torch.Tensor) -> torch.Tensor | bool:
    """Some value of ``t`` is non-zero: a look at its first values, else one min/max pass (a 0-dim
    tensor on devices other than the CPU: no sync)."""
    if t.numel() == 0:
        return False
    if t.device.type == "cpu" and t.is_contiguous() and bool(t.view(-1)[:KIND_SAMPLE].any()):
        return True
    lo, hi = torch.aminmax(t)
    return (lo != 0) | (hi != 0)


def _host_product_counts(a: torch.Tensor, b: torch.Tensor, ba: bool, bb: bool, cs: CallShape) -> dict:
    """The counters of :func:`_product_counts` for a product whose operand kinds are known on the host:
    only the counts that kind needs, per element of the broadcast batch as
    :class:`~gac_analysis.accounting.handles.Rows` (float sums of whole numbers, float32 while every
    sum stays below 2**24, else float64)."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    dtype = torch.float32 if m * k * n < FLOAT32_EXACT else torch.float64

    def per_batch(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1) if tuple(t.shape) == tuple(batch) else t.expand(batch).reshape(-1)

    counts: dict = {"dense_macs": cs.uniform(math.prod(batch) * m * k * n)}
    if ba and bb:  # spike x spike: products of two ones; the alternative nnz(a) x N reported
        col_a, row_b = a.sum(-2, dtype=dtype), b.sum(-1, dtype=dtype)
        nnz_a = col_a.sum(-1)
        counts.update(acs=Rows(per_batch((col_a * row_b).sum(-1))), effective_macs=0, acs_alt=Rows(per_batch(nnz_a), n))
    elif ba:  # spike x real: every spike of a meets a row of N weights
        nnz_a = a.sum((-2, -1), dtype=dtype)
        counts.update(acs=Rows(per_batch(nnz_a), n), effective_macs=0, acs_alt=0)
    elif bb:
        nnz_a = None  # only whether a has a non-zero is needed (the flags below)
        counts.update(acs=Rows(per_batch(b.sum((-2, -1), dtype=dtype)), m), effective_macs=0, acs_alt=0)
    else:  # real x real: products of two non-zeros
        col_a, row_b = nonzero_map(a).sum(-2, dtype=dtype), nonzero_map(b).sum(-1, dtype=dtype)
        nnz_a = col_a.sum(-1)
        counts.update(acs=0, effective_macs=Rows(per_batch((col_a * row_b).sum(-1))), acs_alt=0)
    # a call whose a is all zeros is evidence of no kind
    active = _has_nonzero(a) if nnz_a is None else nnz_a.sum() > 0
    active = int(bool(active)) if a.device.type == "cpu" else active.long()
    flags = {"spike_spike_calls": active * (ba and bb), "binary_calls": active * (ba or bb)}
    return {**counts, **flags, "real_calls": active * (not (ba or bb))}


def _matmul(args, kwargs, out, cs):
    a, b = args[0], _arg(args, kwargs, 1, "other", None)
    if b is None:
        b = _arg(args, kwargs, 1, "mat2")
    spikes = cs.spike_input if isinstance(cs.spike_input, tuple) else (False, False)
    ba = _operand_binary(a, spikes[0])
    bb = _operand_binary(b, spikes[1]) if ba is not None else None
    if ba is not None and bb is not None:
        return _host_product_counts(a, b, ba, bb, cs)
    return _product_counts(matmul_counts(a, b, spikes), cs)


def _einsum_operands(args: tuple) -> tuple:
    """The operands of ``einsum(eq, *operands)`` or ``einsum(eq, [operands])``."""
    return tuple(args[1]) if len(args) == 2 and isinstance(args[1], (tuple, list)) else tuple(args[1:])


def _einsum(args, kwargs, out, cs):
    """einsum without ellipsis: one operand (a permutation or a sum over dropped indices: adds), or
    two (the same counts as :func:`_matmul`, time-mixed; an index of size 1 in one operand broadcasts
    to the other's size). Repeated indices in one operand (diagonals), ellipsis and three or more
    operands have no rule (None: listed as unsupported)."""
    eq, ops = args[0].replace(" ", ""), _einsum_operands(args)
    terms = eq.split("->")[0].split(",")
    if "..." in eq or len(ops) != len(terms) or len(ops) not in (1, 2):
        return None
    if any(len(set(t)) != len(t) or len(t) != op.dim() for t, op in zip(terms, ops)):
        return None
    if len(ops) == 1:
        return {"adds": cs.uniform(ops[0].numel() - out.numel())} if isinstance(out, torch.Tensor) else None
    (a, b), (ia, ib) = ops, terms
    size = dict(zip(ia, a.shape))
    for i, n in zip(ib, b.shape):
        size[i] = max(size.get(i, 1), n)
    a = a.expand(*(size[i] for i in ia))  # broadcast views: every use of an operand's value is counted
    b = b.expand(*(size[i] for i in ib))
    only_a = math.prod(size[i] for i in set(ia) - set(ib))
    only_b = math.prod(size[i] for i in set(ib) - set(ia))
    pairs = torch.einsum(f"{ia},{ib}->", (a != 0).double(), (b != 0).double()).round().to(torch.int64)
    c = {
        "pairs": pairs,
        "a_fanout": (a != 0).sum(dtype=torch.int64) * only_b,
        "b_fanout": (b != 0).sum(dtype=torch.int64) * only_a,
        "binary_a": is_binary(a),
        "binary_b": is_binary(b),
        "dense": math.prod(size.values()),
    }
    return _product_counts(c, CallShape(cs.T, "mixed"))


@functools.lru_cache(maxsize=256)
def _conv_geometry(
    nd: int, in_channels: int, out_channels: int, kernel: tuple, stride, padding, dilation, groups: int, bias: bool
):
    """A weightless (meta) ``nn.Conv{nd}d`` with a functional call's geometry, for the module rule."""
    conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[nd - 1]
    return conv(
        in_channels,
        out_channels,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        device="meta",
    )


@functools.lru_cache(maxsize=256)
def _linear_geometry(in_features: int, out_features: int, bias: bool):
    """A weightless (meta) ``nn.Linear`` with a functional call's shapes, for the module rule."""
    return torch.nn.Linear(in_features, out_features, bias=bias, device="meta")


def _hashable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _functional_conv(nd: int):
    """``F.conv{nd}d(input, weight, bias, stride, padding, dilation, groups)`` between modules (or a call
    inside an open module with other arguments than the module's): the conv rule, exact, with the
    call's own geometry (zero padding: a ``F.pad`` before it is its own, free, call). ``rule.module_of``
    gives that geometry as a weightless module (the report's geometry columns)."""

    def module_of(args, kwargs):
        weight = _arg(args, kwargs, 1, "weight")
        if not isinstance(weight, torch.Tensor) or weight.dim() != nd + 2:
            return None
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        return _conv_geometry(
            nd,
            int(weight.shape[1]) * groups,
            int(weight.shape[0]),
            tuple(weight.shape[2:]),
            _hashable(_arg(args, kwargs, 3, "stride", 1)),
            _hashable(_arg(args, kwargs, 4, "padding", 0)),
            _hashable(_arg(args, kwargs, 5, "dilation", 1)),
            groups,
            _arg(args, kwargs, 2, "bias") is not None,
        )

    return _synaptic_function(conv_handle, module_of, unbatched_dims=nd + 1)  # [C, *spatial]: one image


def _linear_module_of(args, kwargs):
    weight = _arg(args, kwargs, 1, "weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    return _linear_geometry(int(weight.shape[1]), int(weight.shape[0]), _arg(args, kwargs, 2, "bias") is not None)


def _synaptic_function(handle, module_of, unbatched_dims: int):
    """A function rule running a module rule (``handle``) on a weightless module of the call's own geometry
    (``module_of(args, kwargs)``, also the row's geometry columns); ``unbatched_dims``: the input rank of a
    call on one image without a batch axis. The engine reads the input's value range for it (``synaptic``)."""

    def rule(args, kwargs, out, cs):
        x, geometry = _arg(args, kwargs, 0, "input"), module_of(args, kwargs)
        if not isinstance(x, torch.Tensor) or geometry is None:
            return None
        return handle(geometry, (x,), out, cs)

    rule.synaptic = True
    rule.module_of = module_of
    rule.unbatched = lambda x, args, kwargs: x.dim() == unbatched_dims
    return rule


#: ``F.linear(input, weight, bias)``: the linear rule, exact, with the call's own shapes.
_functional_linear = _synaptic_function(linear_handle, _linear_module_of, unbatched_dims=1)
_matmul.op = "matmul"
_einsum.op = lambda args: "matmul" if len(_einsum_operands(args)) == 2 else "einsum"

#: Function base name -> rule ``(args, kwargs, out, CallShape) -> {counter: value}``; the rule's
#: ``op`` attribute (default: the function's alias or name, :func:`op_label`) names the report row.
FUNCTION_RULES = {
    "add": _adds,
    "sub": _adds,
    "rsub": _adds,
    "mul": _muls,
    "div": _muls,
    "true_divide": _muls,
    "square": _muls,
    **{f"conv{d}d": _functional_conv(d) for d in (1, 2, 3)},
    "linear": _functional_linear,
    "matmul": _matmul,
    "mm": _matmul,
    "bmm": _matmul,
    "einsum": _einsum,
    "sum": _sum,
    "mean": _mean,
    "max": _minmax,
    "min": _minmax,
    "amax": _minmax,
    "amin": _minmax,
    "maximum": _compares,
    "minimum": _compares,
    "gt": _compares,
    "ge": _compares,
    "lt": _compares,
    "le": _compares,
    "eq": _compares,
    "ne": _compares,
    "greater": _compares,
    "less": _compares,
    "where": _compares,
    "clamp": _compares,
    "clip": _compares,
    "relu": _compares,
    "sigmoid": _sigmoids,
    "gelu": _activations,
    "tanh": _activations,
    "exp": _activations,
    "sqrt": _activations,
    "rsqrt": _activations,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    **{f"max_pool{d}d": _window_pool("maxpool", d) for d in (1, 2, 3)},
    **{f"avg_pool{d}d": _window_pool("avgpool", d) for d in (1, 2, 3)},
    **{f"adaptive_avg_pool{d}d": _adaptive_pool("avgpool", d) for d in (1, 2, 3)},
    **{f"adaptive_max_pool{d}d": _adaptive_pool("maxpool", d) for d in (1, 2, 3)},
}
#: Functions whose output can be finite where an input holds NaN or inf (comparisons: a hand-written
#: neuron's threshold; clipping and saturating maps, as the sentinel's modules): a NaN or inf made
#: between modules could vanish there unseen, so the finiteness sentinel watches their inputs
#: (``finite.FiniteWatch.flag_function_inputs``). Not ``where``: it drops the values it does not select
#: (``torch.where(mask, x, nan)`` is ordinary code), and a selected NaN or inf stays in its output.
VANISHING = frozenset(
    """gt ge lt le eq ne greater greater_equal less less_equal clamp clip clamp_min clamp_max relu
    hardtanh sigmoid tanh sign heaviside threshold minimum maximum fmin fmax""".split()
)

#: Report labels of functions counted with another's counters under its name (``x - y`` is an add).
OP_ALIASES = {"sub": "add", "rsub": "add", "div": "mul", "true_divide": "mul", "mm": "matmul", "bmm": "matmul"}


def op_label(name: str, rule, args: tuple) -> str:
    """The ``op`` of a counted function call's row: the rule's own ``op`` (a name, or a function of the
    call's arguments), else the function's alias (:data:`OP_ALIASES`), else its name. So rules shared
    by several functions (compares, activations) name each function's rows after that function."""
    label = getattr(rule, "op", None)
    if callable(label):
        return label(args)
    return label or OP_ALIASES.get(name, name)


FREE, RULE, UNSUPPORTED = 0, 1, 2


class OpClassifier:
    """Classify torch functions by name once per function object: ``(kind, name, rule, value rule)``,
    kind ``FREE``, ``RULE`` or ``UNSUPPORTED``, the value rule from :func:`value_rule`."""

    def __init__(self, rules: dict | None = None, free: frozenset = FREE_OPS):
        self.rules = dict(FUNCTION_RULES if rules is None else rules)
        self.free = free
        self._cache: dict = {}

    def classify(self, func) -> tuple[int, str, object, tuple[int, str | None]]:
        try:
            return self._cache[func]
        except (KeyError, TypeError):
            pass
        name = op_name(func)
        if name in self.rules:
            kind, rule = RULE, self.rules[name]
        elif name in self.free:
            kind, rule = FREE, None
        else:
            kind, rule = UNSUPPORTED, None
        entry = (kind, name, rule, value_rule(func, name))
        try:
            self._cache[func] = entry
        except TypeError:
            pass
        return entry


#: Free operations whose output holds only values of their tensor inputs (copies, views, selections,
#: concatenation, dtype moves): a tensor of known value range (a 0/1 spike map: ``ranges.BINARY``) gives
#: one of the same range, so a conv or product reading the result needs no value check
#: (:meth:`OpCounter.track_values <gac_analysis.accounting.engine.OpCounter.track_values>`).
RANGE_PRESERVING = FREE_OPS & frozenset(
    """
    getitem view view_as reshape reshape_as flatten unflatten permute transpose t swapaxes swapdims movedim
    moveaxis squeeze unsqueeze expand expand_as broadcast_to repeat tile repeat_interleave contiguous clone
    detach to double half bfloat16 cat concat concatenate stack chunk split tensor_split unbind narrow select
    index_select gather flip roll
    """.split()
)

#: Pooling functions whose first output holds only values of their input (the max of a window).
RANGE_KEEPING_POOLS = frozenset(f"{p}max_pool{d}d" for p in ("", "adaptive_") for d in (1, 2, 3))

#: What a call does to the value ranges of :mod:`~gac_analysis.accounting.ranges` (see
#: :func:`value_rule`): keeps its inputs' range in every output, in its first output, computes it by
#: interval arithmetic, writes into its first argument (the range is forgotten), or none of these.
KEEP, KEEP_FIRST, ARITHMETIC, IN_PLACE, NO_RANGE = range(5)


def value_rule(func, name: str) -> tuple[int, str | None]:
    """``(what, arithmetic op)`` of a torch function for value ranges (``what`` one of ``KEEP``,
    ``KEEP_FIRST``, ``ARITHMETIC``, ``IN_PLACE``, ``NO_RANGE``)."""
    op = ranges.arithmetic_of(func)
    if op is not None:
        return ARITHMETIC, op
    if ranges.writes_in_place(func):
        return IN_PLACE, None
    if name in RANGE_PRESERVING:
        return KEEP, None
    if name in RANGE_KEEPING_POOLS:
        return KEEP_FIRST, None
    return NO_RANGE, None


class FunctionCounter(TorchFunctionMode):
    """The narrow interception layer: hands every call made inside the model's forward, outside any
    counted module, to ``counter.on_function(kind, name, rule, args, kwargs, out)``, and, while the
    forward has tensors of known value range, to ``counter.track_values``. The counter puts it on the
    torch-function stack only while the model's forward runs, and takes it off while a counted module
    runs."""

    def __init__(self, counter, classifier: OpClassifier):
        super().__init__()
        self.counter = counter
        self.classifier = classifier

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        c = self.counter
        if c.quiet:
            return func(*args, **kwargs)
        kind, name, rule, what = self.classifier.classify(func)
        open_calls = c.open_calls
        if (
            open_calls
            and name in open_calls[-1].primitives
            and c.path == open_calls[-1].path  # made by the open module's own forward, not by a child's
            and self._owns(open_calls[-1], name, args, kwargs)
        ):
            out = func(*args, **kwargs)  # an open module's base call: its rule counts it, now
            with _ours(f"the base call {name} of {c.path}"):
                open_calls[-1].record(name, args, kwargs, out)
            return out
        if c.watch_inputs is not None and name in VANISHING:  # NaN/inf could vanish here: watched
            c.watch_inputs(f"{c.path}:{name}", args)
        out = func(*args, **kwargs)  # the model's own operation: what it raises is the model's
        try:  # (a try, not a context manager: this runs for every call between modules)
            if kind == FREE:
                c.free_calls += 1
            else:
                c.on_function(kind, name, rule, args, kwargs, out)
            if c._ranges:
                c.track_values(what, args, kwargs, out)
        except Exception as e:
            _mark_ours(e, f"the {name} rule")
            raise
        return out

    @staticmethod
    def _owns(record, name: str, args: tuple, kwargs: dict) -> bool:
        with _ours(f"the base-call check of {name}"):
            return record.owns(name, args, kwargs)


def _mark_ours(e: BaseException, where: str) -> None:
    from gac_analysis.accounting.engine import mark_internal

    mark_internal(e, where)


@contextlib.contextmanager
def _ours(where: str):
    """What raises inside is the counting's own error (``engine.mark_internal``), not the model's."""
    try:
        yield
    except Exception as e:
        _mark_ours(e, where)
        raise


__all__ = [
    "FREE_OPS",
    "FUNCTION_RULES",
    "RANGE_PRESERVING",
    "RANGE_KEEPING_POOLS",
    "value_rule",
    "FunctionCounter",
    "OpClassifier",
    "matmul_counts",
    "op_name",
    "op_label",
    "OP_ALIASES",
    "_first_tensor",
]
