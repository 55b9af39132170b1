"""Exact synaptic-operation counting kernels (pure functions, torch only).

Definitions
-----------
For a convolution or linear layer with input ``x``, the exact number of synaptic
operations of one input row (accumulates, ACs, when ``x`` holds binary spikes;
effective MACs when ``x`` is real-valued and sparse) is the number of
``(non-zero input element, weight)`` pairs that meet inside the output map::

    ops[n] = sum(conv(indicator(x[n] != 0), ones_like(W)))

with the layer's stride, padding (including PyTorch's string paddings ``'same'``
and ``'valid'``), dilation and groups. Zero padding contributes nothing; the
non-``'zeros'`` padding modes (``'reflect'``, ``'replicate'``, ``'circular'``)
copy real input values into the padded border, and those copies are counted.
For a linear layer ``ops = nnz(x_row) * out_features``.

Dense MACs depend on shapes only: conv ``out.numel() * (C_in / groups) *
prod(kernel)``; linear ``in_features * out_features`` per row.

Efficient conv counting
-----------------------
Each input element at spatial position ``p`` of channel ``c`` is read by
``fanout[p]`` ``(output position, kernel tap)`` pairs, and this happens for each
of the ``C_out / groups`` output channels of ``c``'s group. ``fanout`` depends on
the geometry only (input spatial size, kernel, stride, padding, dilation), so::

    ops[n] = (C_out / groups) * sum_p (sum_c ind[n, c, p]) * fanout[p]

``fanout`` is computed once per geometry and device as the gradient of
``conv(ones, ones).sum()`` with respect to the input, which reproduces PyTorch's
own padding rules exactly (``'same'`` with an even kernel pads
``total // 2`` on the left and the rest on the right), and is cached.

Every count is an ``int64`` tensor (float32 is exact only up to 2**24). No
function here synchronises with the device (no ``.item()``, ``.tolist()`` or
``bool(tensor)``): results stay on ``x``'s device.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "brute_force_synaptic_ops",
    "conv_dense_macs",
    "conv_dense_macs_per_row",
    "conv_fanout",
    "conv_output_spatial",
    "conv_synaptic_ops",
    "is_binary",
    "linear_dense_macs_per_row",
    "linear_synaptic_ops",
    "nonzero_count",
    "conv_row_counts",
]

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_STRING_PADDINGS = ("same", "valid")

Padding = str | int | Sequence[int]


# --------------------------------------------------------------------------- helpers


def _as_tuple(value: int | Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``nd`` python ints (an int is repeated)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = tuple(operator.index(v) for v in value)
        if len(out) == 1 and nd != 1:
            out = out * nd
        if len(out) != nd:
            raise ValueError(f"{name} has {len(out)} entries, expected {nd}")
        return out
    return (operator.index(value),) * nd


def _norm_padding(padding: Padding, nd: int) -> str | tuple[int, ...]:
    if isinstance(padding, str):
        if padding not in _STRING_PADDINGS:
            raise ValueError(f"padding string must be 'same' or 'valid', got {padding!r}")
        return padding
    pad = _as_tuple(padding, nd, "padding")
    if any(p < 0 for p in pad):
        raise ValueError(f"padding must be non-negative, got {pad}")
    return pad


def _norm_geometry(
    spatial: Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str | tuple[int, ...], tuple[int, ...]]:
    spatial_t = tuple(operator.index(s) for s in spatial)
    nd = len(spatial_t)
    if nd not in _CONV_FN:
        raise ValueError(f"only 1, 2 or 3 spatial dims are supported, got {nd}")
    if any(s < 0 for s in spatial_t):
        raise ValueError(f"spatial sizes must be non-negative, got {spatial_t}")
    kernel_t = _as_tuple(kernel, nd, "kernel")
    stride_t = _as_tuple(stride, nd, "stride")
    dilation_t = _as_tuple(dilation, nd, "dilation")
    if any(k < 1 for k in kernel_t) or any(s < 1 for s in stride_t) or any(d < 1 for d in dilation_t):
        raise ValueError("kernel, stride and dilation must be >= 1")
    padding_n = _norm_padding(padding, nd)
    if padding_n == "same" and any(s != 1 for s in stride_t):
        raise ValueError("padding='same' is only supported with stride 1 (as in PyTorch)")
    return spatial_t, kernel_t, stride_t, padding_n, dilation_t


def _resolve_device(device: torch.device | str | None) -> torch.device:
    """A device with its index filled in, so cache keys do not alias ('cuda' vs 'cuda:0')."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type != "cpu" and dev.index is None:
        # Zero-size allocation: no data, no synchronisation; resolves the current index.
        dev = torch.empty(0, device=dev).device
    return dev


def _conv_nd(conv: nn.Module) -> int:
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"expected an nn.Conv1d/Conv2d/Conv3d (or subclass), got {type(conv).__name__}")
    return len(conv.kernel_size)


def _check_conv_input(x: torch.Tensor, conv: nn.Module, nd: int) -> None:
    if x.dim() < nd + 1:
        raise ValueError(
            f"{type(conv).__name__} input must have at least {nd + 1} dims "
            f"([..., C, *spatial]), got shape {tuple(x.shape)}"
        )
    c_in = int(conv.in_channels)
    if c_in > 0 and x.shape[-(nd + 1)] != c_in:  # in_channels == 0: uninitialised lazy conv
        raise ValueError(f"{type(conv).__name__} expects {c_in} input channels, input shape is {tuple(x.shape)}")


# --------------------------------------------------------------------------- geometry


def conv_output_spatial(
    spatial: Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
) -> tuple[int, ...]:
    """Output spatial size of a convolution (python ints), as PyTorch computes it.

    ``padding`` is an int, a per-dim tuple, ``'valid'`` (no padding) or ``'same'``
    (output size equals input size; stride must be 1). A geometry whose dilated
    kernel does not fit gives 0 in that dim (an empty output map) instead of a
    negative size.
    """
    spatial_t, kernel_t, stride_t, pad, dil_t = _norm_geometry(spatial, kernel, stride, padding, dilation)
    if pad == "same":
        return spatial_t
    if pad == "valid":
        pad = (0,) * len(spatial_t)
    return tuple(
        max(0, (s + 2 * p - d * (k - 1) - 1) // st + 1)
        for s, k, st, p, d in zip(spatial_t, kernel_t, stride_t, pad, dil_t)
    )


@functools.lru_cache(maxsize=1024)
def _fanout_cached(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: str | tuple[int, ...],
    dilation: tuple[int, ...],
    device: torch.device,
) -> torch.Tensor:
    """Cached int64 fanout on ``device``. Shared: callers must not modify it in place."""
    if 0 in conv_output_spatial(spatial, kernel, stride, padding, dilation) or 0 in spatial:
        # Empty output map (or empty input): no pair meets anywhere.
        return torch.zeros(spatial, dtype=torch.int64, device=device)
    # float64 keeps the small-integer arithmetic exact on every backend that has it (and is
    # never down-cast by autocast); MPS lacks float64, where float32 is still exact because
    # every partial sum is an integer <= prod(kernel). round() guards against any algorithm
    # that is not bit-exact.
    dtype = torch.float32 if device.type == "mps" else torch.float64
    conv_fn = _CONV_FN[len(spatial)]
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        # 'same' with an even kernel warns about a zero-padded copy: harmless for this tiny map.
        warnings.filterwarnings("ignore", message=".*padding='same'.*")
        inp = torch.ones((1, 1, *spatial), dtype=dtype, device=device, requires_grad=True)
        weight = torch.ones((1, 1, *kernel), dtype=dtype, device=device)
        out = conv_fn(inp, weight, None, stride, padding, dilation, 1)
        (grad,) = torch.autograd.grad(out.sum(), inp)
    return grad.detach().reshape(spatial).round().to(torch.int64)


def conv_fanout(
    spatial: Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fanout map of a convolution geometry.

    Returns an ``int64`` tensor of shape ``spatial`` on ``device`` (CPU by default):
    entry ``p`` is the number of ``(output position, kernel tap)`` pairs that read
    input position ``p`` (zero-padding taps read nothing). It does not depend on
    channels or groups. ``padding`` may be an int, a per-dim tuple, ``'same'`` or
    ``'valid'``; ``stride``/``dilation``/``kernel`` may be ints or per-dim tuples.
    Computed once per (geometry, device) by autograd and cached; the returned tensor
    is a fresh copy.
    """
    geom = _norm_geometry(spatial, kernel, stride, padding, dilation)
    return _fanout_cached(*geom, _resolve_device(device)).clone()


# --------------------------------------------------------------------------- conv


def channel_nonzero_counts(x: torch.Tensor, nd: int) -> torch.Tensor:
    """Per-position count of non-zero channels of a conv input ``[..., C, *spatial]``: int64 ``[..., *spatial]``."""
    return (x != 0).sum(dim=-(nd + 1), dtype=torch.int64)


def binary_channel_counts(x: torch.Tensor, nd: int) -> torch.Tensor:
    """Like :func:`channel_nonzero_counts` for an input known to hold only 0 and 1 (spikes): the float
    channel sum is then the count, exact while C < 2**24, and much cheaper than a bool reduction."""
    return x.sum(dim=-(nd + 1)).to(torch.int64)


def conv_ops_from_counts(counts: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Exact synaptic ops per row from per-position channel counts ``[..., *spatial]`` (int64).

    ``ops[n] = (C_out / groups) * sum_p counts[n, p] * fanout[p]``; non-'zeros' padding modes pad the
    counts with the layer's own mode (padding commutes with the channel sum: every mode acts per
    channel).
    """
    nd = _conv_nd(conv)
    lead = tuple(counts.shape[:-nd])
    flat = counts.reshape(math.prod(lead), 1, *counts.shape[-nd:])
    padding: Padding = conv.padding
    if conv.padding_mode != "zeros":
        # reflect/replicate are not implemented for integer tensors; float64 is exact here.
        flat = F.pad(flat.double(), conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        flat = flat.round().to(torch.int64)
        padding = 0  # the padding is already in the counts
    spatial = tuple(flat.shape[2:])
    geom = _norm_geometry(spatial, conv.kernel_size, conv.stride, padding, conv.dilation)
    fanout = _fanout_cached(*geom, counts.device)
    per_row = (flat.squeeze(1) * fanout).sum(dim=tuple(range(1, nd + 1)))
    per_row = per_row * (int(conv.out_channels) // int(conv.groups))
    return per_row.reshape(lead)


#: float32 sums of whole numbers are exact below this bound (24-bit significand).
FLOAT32_EXACT = 2**24


@functools.lru_cache(maxsize=256)
def _row_count_weights(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: Padding,
    dilation: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``[2, prod(spatial)]`` matrix for :func:`conv_row_counts`: row 0 the fanout map (flattened), row 1
    ones. Cached per geometry, device and dtype; shared: do not modify. (Rows, not columns: the product
    with one row of counts is then a matrix-vector product in the layout BLAS is fast at, 10x faster on
    the CPU than the column layout for a single row.)"""
    fanout = _fanout_cached(*_norm_geometry(spatial, kernel, stride, padding, dilation), device).reshape(-1)
    return torch.stack([fanout, torch.ones_like(fanout)]).to(dtype)


def conv_row_counts(
    rows: torch.Tensor, conv: nn.Module, max_value: int | None = 1, summed: bool = False
) -> torch.Tensor:
    """Per-row fanout-weighted sums and sums of a conv input of **non-negative whole numbers**.

    ``rows`` is ``[R, C, *spatial]`` for a conv with ``padding_mode='zeros'``, its values whole numbers
    from 0 to ``max_value``: a 0/1 map (spikes), or magnitudes ``abs(x)`` of an integer input
    (``max_value=None``: no bound known); or, with ``summed=True``, per-position sums ``[R, *spatial]``
    already taken over the channels (e.g. counts of non-zero channels, ``max_value`` the channels).
    Returns a float ``[R, 2]`` tensor of whole numbers: column 0 is ``sum_p v(p) * fanout[p]`` with
    ``v(p)`` the channel sum at position ``p`` (times ``C_out / groups``: the exact synaptic ops of
    :func:`conv_ops_from_counts` for a 0/1 map, their value-weighted count for magnitudes), column 1
    the row's sum (its non-zero count for a 0/1 map). One channel reduction, then a small matrix
    product with a cached ``[2, prod(spatial)]`` matrix; float32 while every sum of a 0/1 row stays
    below 2**24 (exact in any summation order), else float64. No sync.
    """
    nd = len(conv.kernel_size)
    spatial = tuple(rows.shape[-nd:])
    channels = 1 if summed else rows.shape[-(nd + 1)]
    bound = None if max_value is None else channels * max_value * math.prod(spatial) * math.prod(conv.kernel_size)
    # Off the CPU a float32 product may run in TF32 (10-bit inputs) when a user enables it: float64 there.
    exact32 = bound is not None and bound < FLOAT32_EXACT and rows.device.type == "cpu"
    dtype = torch.float32 if exact32 else torch.float64
    weights = _row_count_weights(
        spatial, conv.kernel_size, conv.stride, conv.padding, conv.dilation, rows.device, dtype
    )
    per_position = rows.to(dtype) if summed else rows.sum(-(nd + 1), dtype=dtype)
    return F.linear(per_position.reshape(rows.shape[0], -1), weights)


def conv_synaptic_ops(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Exact synaptic operations of each input row of a convolution.

    ``x`` is the input of ``conv`` (an ``nn.Conv1d``/``Conv2d``/``Conv3d`` or any
    subclass), batched ``[N, C, *spatial]``. Returns an ``int64`` tensor of shape
    ``[N]`` on ``x``'s device: operations per row, i.e. the number of
    ``(non-zero input element, weight)`` pairs that meet inside the output map
    (ACs for binary ``x``, effective MACs for real-valued sparse ``x``).

    Extra leading dims are treated as batch dims (``[T, N, C, *spatial]`` gives
    ``[T, N]``, as in multi-step spiking layers); an unbatched ``[C, *spatial]``
    input gives a 0-dim tensor. Padding modes other than ``'zeros'`` count the
    padded copies of real inputs.
    """
    nd = _conv_nd(conv)
    _check_conv_input(x, conv, nd)
    return conv_ops_from_counts(channel_nonzero_counts(x, nd), conv)


def brute_force_synaptic_ops(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Reference (slow) synaptic-operation count, straight from the definition.

    Runs ``F.conv{n}d(indicator(x).double(), ones_like(weight).double())`` with the
    layer's stride, padding, dilation and groups (after ``F.pad`` with the layer's
    mode for non-'zeros' padding modes) and sums each row's output. Same shape and
    units as :func:`conv_synaptic_ops` (``int64`` operations per row). Costs a full
    dense convolution with ``C_out`` channels; use it as a test oracle only.
    """
    nd = _conv_nd(conv)
    _check_conv_input(x, conv, nd)
    lead = tuple(x.shape[: -(nd + 1)])
    ind = (x != 0).double().reshape(math.prod(lead), *x.shape[-(nd + 1) :])
    c_in = ind.shape[1]
    weight = torch.ones(
        (int(conv.out_channels), c_in // int(conv.groups), *conv.kernel_size),
        dtype=torch.float64,
        device=x.device,
    )
    padding: Padding = conv.padding
    if conv.padding_mode != "zeros":
        ind = F.pad(ind, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    out = _CONV_FN[nd](ind, weight, None, conv.stride, padding, conv.dilation, conv.groups)
    per_row = out.sum(dim=tuple(range(1, out.dim())))
    return per_row.round().to(torch.int64).reshape(lead)


def conv_dense_macs_per_row(x_shape: Sequence[int], conv: nn.Module) -> int:
    """Dense MACs of one input row of ``conv`` (python int; shape only).

    ``out_numel_per_row * (C_in / groups) * prod(kernel)`` with
    ``out_numel_per_row = C_out * prod(output spatial)``; the spatial size is read from
    the last dims of ``x_shape`` (``[N, C, *spatial]`` or unbatched ``[C, *spatial]``).
    """
    nd = _conv_nd(conv)
    shape = tuple(operator.index(s) for s in x_shape)
    if len(shape) < nd + 1:
        raise ValueError(f"x_shape {shape} has fewer than {nd + 1} dims")
    geometry = (conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    return conv_dense_macs(shape, *geometry, int(conv.in_channels), int(conv.out_channels), int(conv.groups))


@functools.lru_cache(maxsize=4096)
def conv_dense_macs(shape: tuple, kernel, stride, padding, dilation, c_in: int, c_out: int, groups: int) -> int:
    """Dense MACs of one row ``[C, *spatial]`` (the last dims of ``shape``) of a conv geometry: ``C_out *
    prod(output spatial) * (C_in / groups) * prod(kernel)`` (python int; ``c_in`` 0, an uninitialised
    lazy conv: read from ``shape``). Cached per geometry (all arguments hashable)."""
    nd = len(kernel)
    c_in = c_in or shape[-(nd + 1)]
    out_spatial = conv_output_spatial(shape[-nd:], kernel, stride, padding, dilation)
    return c_out * math.prod(out_spatial) * (c_in // groups) * math.prod(kernel)


# --------------------------------------------------------------------------- linear


def linear_synaptic_ops(x: torch.Tensor, out_features: int) -> torch.Tensor:
    """Exact synaptic operations of each row of a linear layer's input.

    ``x`` is ``[..., in_features]``; returns an ``int64`` tensor of shape
    ``x.shape[:-1]``: ``nnz(row) * out_features`` operations per row.
    """
    out_features = operator.index(out_features)
    if out_features < 0:
        raise ValueError(f"out_features must be >= 0, got {out_features}")
    if x.dim() < 1:
        raise ValueError("linear input must have at least 1 dim ([..., in_features])")
    return (x != 0).sum(dim=-1, dtype=torch.int64) * out_features


def linear_dense_macs_per_row(in_features: int, out_features: int) -> int:
    """Dense MACs of one row of a linear layer: ``in_features * out_features`` (python int)."""
    return operator.index(in_features) * operator.index(out_features)


# --------------------------------------------------------------------------- small reductions


def is_binary(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor on ``x``'s device: every element of ``x`` is 0 or 1.

    True for an empty tensor and for any bool tensor; NaN is not binary. No sync.
    """
    if x.dtype == torch.bool:
        return torch.ones((), dtype=torch.bool, device=x.device)
    return torch.logical_or(x == 0, x == 1).all()


def nonzero_count(x: torch.Tensor, dims: int | Sequence[int] | None = None) -> torch.Tensor:
    """``int64`` count of non-zero elements of ``x`` reduced over ``dims``.

    ``dims`` is an int or a sequence of ints (reduced dims are removed); ``None``
    counts over all dims (0-dim result); an empty sequence reduces nothing (the
    ``int64`` indicator itself).
    """
    ind = x != 0
    if dims is None:
        return ind.sum(dtype=torch.int64)
    if isinstance(dims, Sequence):
        dims_t = tuple(operator.index(d) for d in dims)
        if not dims_t:
            return ind.to(torch.int64)
        return ind.sum(dim=dims_t, dtype=torch.int64)
    return ind.sum(dim=operator.index(dims), dtype=torch.int64)
