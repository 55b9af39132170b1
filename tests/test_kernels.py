"""Tests for gac_analysis.accounting.kernels: exact synaptic-operation counting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from gac_analysis.accounting.kernels import (
    brute_force_synaptic_ops,
    conv_dense_macs_per_row,
    conv_fanout,
    conv_output_spatial,
    conv_synaptic_ops,
    is_binary,
    linear_dense_macs_per_row,
    linear_synaptic_ops,
    nonzero_count,
)

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


# --------------------------------------------------------------------------- independent oracles


def _out_len(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pads(nd, kernel, dilation, padding):
    """(left, right) zero padding per dim, written out from PyTorch's documented rules."""
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out
    return [(p, p) for p in padding]


def _fanout_1d(size, k, s, left, right, d):
    """Per-dim fanout by direct enumeration over output positions and taps."""
    n_out = (size + left + right - d * (k - 1) - 1) // s + 1
    f = [0] * size
    for o in range(max(n_out, 0)):
        for t in range(k):
            i = o * s + t * d - left
            if 0 <= i < size:
                f[i] += 1
    return f


def _separable_fanout(spatial, kernel, stride, padding, dilation):
    nd = len(spatial)
    pads = _pads(nd, kernel, dilation, padding)
    out = torch.ones(spatial, dtype=torch.int64)
    for i in range(nd):
        f = torch.tensor(_fanout_1d(spatial[i], kernel[i], stride[i], *pads[i], dilation[i]), dtype=torch.int64)
        shape = [1] * nd
        shape[i] = spatial[i]
        out = out * f.reshape(shape)
    return out


# --------------------------------------------------------------------------- strategies


@st.composite
def conv_case(draw, nd: int, max_spatial: int):
    groups = draw(st.sampled_from([1, 2, 4]))
    depthwise = draw(st.booleans())
    c_in = groups * (1 if depthwise else draw(st.integers(1, 3)))
    c_out = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    spatial = tuple(draw(st.integers(1, max_spatial)) for _ in range(nd))
    pad_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if pad_kind == "same":
        stride = (1,) * nd
        padding = "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        if pad_kind == "valid":
            padding = "valid"
        elif pad_kind == "int":
            padding = draw(st.integers(0, 3))
        else:
            padding = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    pad_t = (padding,) * nd if isinstance(padding, int) else padding
    if padding != "same":
        p = (0,) * nd if padding == "valid" else pad_t
        assume(all(_out_len(*a) >= 1 for a in zip(spatial, kernel, stride, p, dilation)))
    conv = CONV[nd](c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)
    n = draw(st.integers(1, 3))
    x = _draw_input(draw, (n, c_in, *spatial))
    return conv, x


def _draw_input(draw, shape):
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["zeros", "ones", "binary", "real", "int"]))
    g = torch.Generator().manual_seed(seed)
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "ones":
        return torch.ones(shape)
    density = draw(st.sampled_from([0.05, 0.3, 0.7, 0.95]))
    mask = torch.rand(shape, generator=g) < density
    if kind == "binary":
        return mask.float()
    if kind == "int":
        return mask.to(torch.int64) * torch.randint(-3, 4, shape, generator=g)
    return torch.randn(shape, generator=g) * mask


# --------------------------------------------------------------------------- conv properties


def _check_conv(conv, x):
    nd = len(conv.kernel_size)
    got = conv_synaptic_ops(x, conv)
    ref = brute_force_synaptic_ops(x, conv)
    # The oracle itself, written out again from the definition.
    w = torch.ones_like(conv.weight, dtype=torch.float64)
    lit = FN[nd]((x != 0).double(), w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    lit = lit.sum(dim=tuple(range(1, lit.dim()))).round().long()
    assert got.dtype == torch.int64 and got.shape == (x.shape[0],)
    assert torch.equal(ref, lit)
    assert torch.equal(got, ref)

    y = conv(x.float())
    spatial = tuple(x.shape[2:])
    assert conv_output_spatial(spatial, conv.kernel_size, conv.stride, conv.padding, conv.dilation) == tuple(
        y.shape[2:]
    )
    dense = conv_dense_macs_per_row(x.shape, conv)
    assert dense == y[0].numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
    assert bool((got <= dense).all())
    ones_ops = conv_synaptic_ops(torch.ones_like(x), conv)
    if conv.padding == "valid" or conv.padding == (0,) * nd:
        assert bool((ones_ops == dense).all())

    fan = conv_fanout(spatial, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    pad = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    assert fan.dtype == torch.int64
    assert torch.equal(fan, _separable_fanout(spatial, conv.kernel_size, conv.stride, pad, conv.dilation))


@settings(max_examples=100, **SETTINGS)
@given(conv_case(nd=2, max_spatial=12))
def test_conv2d_matches_brute_force(case):
    _check_conv(*case)


@settings(max_examples=60, **SETTINGS)
@given(conv_case(nd=1, max_spatial=16))
def test_conv1d_matches_brute_force(case):
    _check_conv(*case)


@settings(max_examples=40, **SETTINGS)
@given(conv_case(nd=3, max_spatial=6))
def test_conv3d_matches_brute_force(case):
    _check_conv(*case)


def test_even_kernel_same_padding_is_asymmetric():
    # total = 3, left = 1, right = 2: position i reads inputs i-1 .. i+2.
    assert conv_fanout((5,), 4, 1, "same", 1).tolist() == [2, 3, 4, 4, 3]
    assert conv_fanout((6,), 2, 1, "same", 3).tolist() == _fanout_1d(6, 2, 1, 1, 2, 3)


# --------------------------------------------------------------------------- padding modes


def _fpad_oracle(x, conv):
    """Definition for non-'zeros' modes: pad the indicator with real copies, then count."""
    nd = len(conv.kernel_size)
    ind = F.pad((x != 0).double(), conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
    w = torch.ones_like(conv.weight, dtype=torch.float64)
    out = FN[nd](ind, w, None, conv.stride, 0, conv.dilation, conv.groups)
    return out.sum(dim=tuple(range(1, out.dim()))).round().long()


PAD_CASES = [
    # nd, c_in, c_out, groups, kernel, stride, padding, dilation, spatial
    (2, 4, 6, 2, 3, 1, 1, 1, (7, 5)),
    (2, 3, 3, 3, (3, 2), (2, 1), (2, 1), 1, (8, 6)),
    (2, 2, 4, 1, 4, 1, "same", 1, (6, 7)),  # even kernel: asymmetric copies
    (2, 2, 2, 1, 3, 1, "same", 2, (7, 7)),
    (2, 2, 2, 1, 3, 2, "valid", 1, (5, 6)),
    (1, 2, 4, 2, 3, 2, 2, 1, (9,)),
    (3, 2, 2, 1, 3, 1, 1, 1, (4, 5, 3)),
]


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("case", PAD_CASES)
def test_padding_modes_match_fpad_oracle(mode, case):
    nd, c_in, c_out, groups, kernel, stride, padding, dilation, spatial = case
    conv = CONV[nd](c_in, c_out, kernel, stride, padding, dilation, groups, bias=False, padding_mode=mode)
    g = torch.Generator().manual_seed(7)
    for x in [
        (torch.rand(3, c_in, *spatial, generator=g) < 0.3).float(),
        torch.randn(2, c_in, *spatial, generator=g) * (torch.rand(2, c_in, *spatial, generator=g) < 0.5),
        torch.ones(1, c_in, *spatial),
    ]:
        conv(x)  # the layer itself accepts this geometry
        got = conv_synaptic_ops(x, conv)
        assert torch.equal(got, _fpad_oracle(x, conv))
        assert torch.equal(got, brute_force_synaptic_ops(x, conv))
    if padding not in ("valid", 0):
        # Copies of real inputs are counted: more than with zero padding for an all-ones input.
        zeros = CONV[nd](c_in, c_out, kernel, stride, padding, dilation, groups, bias=False)
        ones = torch.ones(1, c_in, *spatial)
        assert bool((conv_synaptic_ops(ones, conv) > conv_synaptic_ops(ones, zeros)).all())
        assert conv_synaptic_ops(ones, conv).item() == conv_dense_macs_per_row(ones.shape, conv)


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_padding_modes_property(data):
    mode = data.draw(st.sampled_from(["circular", "reflect", "replicate"]))
    conv, x = data.draw(conv_case(nd=2, max_spatial=9))
    pad = conv.padding
    if isinstance(pad, tuple):
        # reflect needs pad < size, circular needs pad <= size (otherwise the layer itself fails).
        limit = [s - 1 if mode == "reflect" else s for s in x.shape[2:]]
        assume(all(p <= lim for p, lim in zip(pad, limit)))
    conv.padding_mode = mode
    try:
        conv(x.float())
    except RuntimeError:
        assume(False)  # geometry the layer itself rejects (e.g. 'same' pad too wide to reflect)
    got = conv_synaptic_ops(x, conv)
    assert torch.equal(got, _fpad_oracle(x, conv))


# --------------------------------------------------------------------------- exactness


def test_count_above_float32_exact_range():
    # 1x1 conv, 4097 output channels over a 17x241 (= 4097 positions) all-ones input:
    # 4097**2 = 16_785_409 > 2**24, and odd, so float32 cannot represent it.
    conv = nn.Conv2d(1, 4097, 1, bias=False)
    x = torch.ones(2, 1, 17, 241)
    expected = 4097 * 4097
    assert expected > 2**24 and float(torch.tensor(expected, dtype=torch.float32)) != expected
    got = conv_synaptic_ops(x, conv)
    assert got.dtype == torch.int64
    assert got.tolist() == [expected, expected]


def test_count_above_int32_range():
    # 3x3 same-padded conv, closed form per dim: interior reads 3, borders 2.
    conv = nn.Conv2d(8, 4096, 3, padding=1, bias=False)
    h, w = 300, 301
    x = torch.ones(1, 8, h, w)
    per_dim = lambda n: 3 * n - 2  # noqa: E731  (sum of fanout over one dim)
    expected = 4096 * 8 * per_dim(h) * per_dim(w)
    assert expected > 2**31
    assert conv_synaptic_ops(x, conv).tolist() == [expected]
    big_out = 2**40 + 1
    assert linear_synaptic_ops(torch.ones(3), big_out).item() == 3 * big_out


# --------------------------------------------------------------------------- linear


@settings(max_examples=80, **SETTINGS)
@given(
    lead=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    in_features=st.integers(1, 20),
    out_features=st.integers(0, 50),
    data=st.data(),
)
def test_linear_matches_brute_force(lead, in_features, out_features, data):
    x = _draw_input(data.draw, (*lead, in_features))
    got = linear_synaptic_ops(x, out_features)
    assert got.dtype == torch.int64 and got.shape == x.shape[:-1]
    ref = (x != 0).sum(-1).long() * out_features
    assert torch.equal(got, ref)
    # The literal definition: a linear layer with all-ones weights on the indicator.
    lit = (x != 0).double() @ torch.ones(in_features, out_features, dtype=torch.float64)
    assert torch.equal(got, lit.sum(-1).round().long())
    assert linear_dense_macs_per_row(in_features, out_features) == in_features * out_features


# --------------------------------------------------------------------------- dense MACs vs fvcore


# fvcore traces with torch.jit, which torch 2.13 reports as deprecated.
fvcore_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _fvcore_total(module, x):
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(module, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return fca.total()


@pytest.mark.parametrize(
    "module,shape",
    [
        (nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2), (3, 4, 9, 7)),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (2, 8, 10, 10)),
        (nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), (2, 2, 6, 6)),
        (nn.Conv1d(4, 6, 5, stride=3, padding=2), (2, 4, 20)),
        (nn.Conv3d(2, 4, (3, 2, 1), stride=(1, 2, 1), padding=(1, 0, 2)), (2, 2, 5, 6, 4)),
    ],
)
@fvcore_warnings
def test_conv_dense_macs_match_fvcore(module, shape):
    x = torch.randn(shape)
    assert conv_dense_macs_per_row(shape, module) * shape[0] == _fvcore_total(module, x)


@pytest.mark.parametrize(
    "module,twin,shape",
    [
        (nn.Conv2d(3, 5, 4, padding="same", dilation=2), nn.Conv2d(3, 5, 4, padding=3, dilation=2), (2, 3, 9, 11)),
        (
            nn.Conv3d(2, 4, (3, 2, 1), stride=(1, 2, 1), padding="valid"),
            nn.Conv3d(2, 4, (3, 2, 1), stride=(1, 2, 1), padding=0),
            (2, 2, 5, 6, 4),
        ),
    ],
)
@fvcore_warnings
def test_conv_dense_macs_string_padding(module, twin, shape):
    # fvcore has no handler for aten::_convolution_mode (string padding) and silently counts 0
    # for it, so compare against an integer-padded twin with the same output size.
    x = torch.randn(shape)
    assert module(x).shape == twin(x).shape
    assert conv_dense_macs_per_row(shape, module) * shape[0] == _fvcore_total(twin, x)


@pytest.mark.parametrize("in_f,out_f,shape", [(5, 7, (2, 5)), (12, 3, (2, 3, 12))])
@fvcore_warnings
def test_linear_dense_macs_match_fvcore(in_f, out_f, shape):
    rows = math.prod(shape[:-1])
    assert linear_dense_macs_per_row(in_f, out_f) * rows == _fvcore_total(nn.Linear(in_f, out_f), torch.randn(shape))


# --------------------------------------------------------------------------- module handling


class _MyConv(nn.Conv2d):
    def forward(self, x):  # a subclass with its own forward is still a Conv2d
        return super().forward(x) * 2


def test_conv_subclass_is_counted():
    conv = _MyConv(3, 4, 3, padding=1)
    x = (torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    got = conv_synaptic_ops(x, conv)
    assert bool((got > 0).all())
    assert torch.equal(got, brute_force_synaptic_ops(x, conv))


def test_non_conv_modules_are_rejected():
    x = torch.ones(1, 2, 4, 4)
    with pytest.raises(TypeError):
        conv_synaptic_ops(x, nn.ConvTranspose2d(2, 2, 3))
    with pytest.raises(TypeError):
        conv_synaptic_ops(x, nn.Linear(4, 4))
    with pytest.raises(ValueError):
        conv_synaptic_ops(torch.ones(1, 3, 4, 4), nn.Conv2d(2, 2, 3))


def test_leading_dims_and_unbatched():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 2, 2, 5, 5, generator=g) < 0.4).float()  # [T, N, C, H, W]
    got = conv_synaptic_ops(x, conv)
    assert got.shape == (3, 2)
    assert torch.equal(got.flatten(), brute_force_synaptic_ops(x.flatten(0, 1), conv))
    assert torch.equal(brute_force_synaptic_ops(x, conv), got)
    one = conv_synaptic_ops(x[0, 0], conv)
    assert one.shape == () and one == got[0, 0]
    assert conv_synaptic_ops(torch.zeros(0, 2, 5, 5), conv).shape == (0,)


def test_works_under_inference_mode_and_no_grad():
    conv = nn.Conv2d(2, 3, (3, 4), padding="same", dilation=(1, 3))
    x = torch.ones(1, 2, 7, 13)  # a geometry no other test uses: the fanout is built here
    with torch.inference_mode():
        a = conv_synaptic_ops(x, conv)
    with torch.no_grad():
        b = conv_synaptic_ops(x, conv)
    assert torch.equal(a, b) and torch.equal(a, brute_force_synaptic_ops(x, conv))


def test_fanout_cache_returns_copies():
    f1 = conv_fanout((4, 4), 3, 1, 1, 1)
    f1.zero_()
    f2 = conv_fanout((4, 4), (3, 3), (1, 1), (1, 1), (1, 1))
    assert f2.sum().item() == 10 * 10  # per dim [2, 3, 3, 2]
    assert f2.device.type == "cpu" and f2.dtype == torch.int64


def test_fanout_empty_output_and_validation():
    assert conv_output_spatial((3,), 5, 1, 0, 1) == (0,)
    assert conv_fanout((3,), 5, 1, 0, 1).tolist() == [0, 0, 0]
    assert conv_output_spatial((9, 9), 3, 1, "same", 2) == (9, 9)
    with pytest.raises(ValueError):
        conv_output_spatial((9,), 3, 2, "same", 1)
    with pytest.raises(ValueError):
        conv_fanout((9,), 3, 1, "full", 1)


# --------------------------------------------------------------------------- small reductions


def test_is_binary():
    for x in [
        torch.tensor([0.0, 1.0, 1.0]),
        torch.tensor([True, False]),
        torch.tensor([0, 1]),
        torch.zeros(3, 3),
        torch.ones(2),
        torch.empty(0),
        torch.tensor([0.0, 1.0], dtype=torch.float16),
    ]:
        r = is_binary(x)
        assert r.dtype == torch.bool and r.shape == () and bool(r), x
    for x in [
        torch.tensor([0.0, 0.5]),
        torch.tensor([-1.0, 1.0]),
        torch.tensor([0, 2]),
        torch.tensor([float("nan"), 1.0]),
        torch.tensor([1.0 + 1e-6]),
    ]:
        r = is_binary(x)
        assert r.shape == () and not bool(r), x


def test_nonzero_count():
    x = torch.tensor([[0.0, 2.0, -1.0], [0.0, 0.0, 0.5]])
    assert nonzero_count(x, 1).tolist() == [2, 1]
    assert nonzero_count(x, (0, 1)).item() == 3
    assert nonzero_count(x, [0]).tolist() == [0, 1, 2]
    assert nonzero_count(x, None).item() == 3
    assert nonzero_count(x, ()).tolist() == [[0, 1, 1], [0, 0, 1]]
    assert nonzero_count(x, 1).dtype == torch.int64


# --------------------------------------------------------------------------- device (skipped without CUDA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_without_sync():
    conv = nn.Conv2d(4, 8, 4, padding="same", groups=2).cuda()
    conv_pm = nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect").cuda()
    x = (torch.rand(3, 4, 11, 9) < 0.3).float()
    xc = x.cuda()
    conv_synaptic_ops(xc, conv)  # warm the fanout cache
    conv_synaptic_ops(xc, conv_pm)
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = conv_synaptic_ops(xc, conv)
        got_pm = conv_synaptic_ops(xc, conv_pm)
        lin = linear_synaptic_ops(xc.flatten(1), 10)
        binary = is_binary(xc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.device == xc.device and got.dtype == torch.int64
    assert torch.equal(got.cpu(), brute_force_synaptic_ops(x, conv.cpu()))
    assert torch.equal(got_pm.cpu(), brute_force_synaptic_ops(x, conv_pm.cpu()))
    assert torch.equal(lin.cpu(), (x.flatten(1) != 0).sum(-1) * 10)
    assert bool(binary)
    assert conv_fanout((5,), 3, 1, 1, 1, device="cuda").device == xc.device
