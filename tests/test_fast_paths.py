"""The fast counting paths (host-known input kinds, per-row counts summed once per forward) give exactly
the counts of the general path (every count computed on the device, kinds as 0-dim flags) and of brute
force, for every input kind, geometry and product layout; spike provenance survives copies and max
pooling and is dropped by in-place writes; the sentinel finiteness watch still names the first module."""

from __future__ import annotations

import pytest
import torch
from counting_fixtures import FixedInput, recorded_ranges
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import neuron
from torch import nn

from gac_analysis.accounting import count_images, profile
from gac_analysis.accounting.engine import CounterConfig, OpCounter
from gac_analysis.accounting.functional import FUNCTION_RULES, _product_counts, matmul_counts
from gac_analysis.accounting.handles import (
    HANDLES,
    CallShape,
    Rows,
    _conv_counts_on_device,
    conv_handle,
    register_handle,
)
from gac_analysis.accounting.kernels import brute_force_synaptic_ops
from gac_analysis.accounting.report import host_counters

KINDS = ("binary", "integer", "real", "silent")


def _input(kind: str, shape, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(shape, generator=g, dtype=torch.float64)
    if kind == "binary":
        x = (r > 0.6).double()
    elif kind == "integer":
        x = torch.floor(r * 4) - (r > 0.9).double() * 3  # whole numbers in -3..3, many zeros
    elif kind == "real":
        x = torch.where(r > 0.5, torch.randn(shape, generator=g, dtype=torch.float64), torch.zeros(()))
    else:
        x = torch.zeros(shape, dtype=torch.float64)
    return x.to(dtype)


def _device_path_conv(m, inputs, out, cs):
    """The conv rule with the general (device, flag) path forced: the reference for the fast paths."""
    x = inputs[0]
    nd = len(m.kernel_size)
    rows = x.reshape(-1, *x.shape[x.dim() - nd - 1 :])
    result = {k: v for k, v in conv_handle(m, inputs, out, cs).items() if k in ("dense_macs", "bias_adds")}
    return {**result, **_conv_counts_on_device(m, rows, CallShape(cs.T, cs.layout, False))}


def _site_counts(module, x, T, handles=HANDLES) -> dict:
    model = FixedInput(module, x, T).eval()
    with OpCounter(model, CounterConfig(T=T, handles=handles)) as c, torch.inference_mode():
        model(torch.zeros(x.shape[0] // T, 3, 1, 1))
    (site,) = c.sites.values()
    counts = host_counters(site)
    return {k: v for k, v in counts.items() if any(v)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    nd=st.sampled_from([1, 2]),
    c_in=st.integers(1, 5),
    groups=st.sampled_from([1, 2]),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.sampled_from([0, 1, 2, "same", "valid"]),
    dilation=st.integers(1, 2),
    size=st.integers(4, 9),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 10_000),
)
def test_conv_fast_path_equals_device_path_and_brute_force(
    kind, nd, c_in, groups, kernel, stride, padding, dilation, size, bias, dtype, seed
):
    if padding == "same":
        stride = 1
    pad = {"same": kernel, "valid": 0}.get(padding, padding)
    assume(dilation * (kernel - 1) + 1 <= size + 2 * pad)  # a geometry PyTorch accepts
    c_in, c_out, T = c_in * groups, 3 * groups, 2
    conv_t = nn.Conv1d if nd == 1 else nn.Conv2d
    conv = conv_t(c_in, c_out, kernel, stride, padding, dilation, groups, bias).to(dtype)
    x = _input(kind, (T * 2, c_in, *([size] * nd)), dtype, seed)
    fast = _site_counts(conv, x, T)
    slow = _site_counts(conv, x, T, handles=register_handle(conv_t, f"conv{nd}d", _device_path_conv))
    assert fast == slow
    ops = brute_force_synaptic_ops(x, conv).reshape(T, -1).sum(1).tolist()
    key = {"binary": "acs", "integer": "integer_ops", "real": "effective_macs"}.get(kind)
    if key is not None:
        zeros = [0] * (T + 1)  # counters that stayed 0 are left out of the site's counts
        assert fast.get(key, zeros)[:T] == ops
        assert fast.get("input_nnz", zeros)[:T] == (x != 0).reshape(T, -1).sum(1).tolist()
    if kind == "integer":  # every (input, weight) pair weighted by abs(value): conv of |x| with ones
        weight = torch.ones_like(conv.weight, dtype=torch.float64)
        conv_fn = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
        out = conv_fn(x.abs().double(), weight, None, conv.stride, conv.padding, conv.dilation, groups)
        assert fast.get("integer_value_ops", [0] * (T + 1))[:T] == out.reshape(T, -1).sum(1).round().long().tolist()


def _spike(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) > 0.5).float()


@pytest.mark.parametrize("kind_a,kind_b", [(a, b) for a in KINDS[:3] for b in KINDS[:3]])
@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (2, 3, 5, 6)), ((2, 1, 4, 5), (3, 5, 2)), ((4, 5), (5, 3))])
def test_matmul_fast_path_equals_general_path(kind_a, kind_b, shapes):
    a = _input(kind_a, shapes[0], torch.float32, 1)
    b = _input(kind_b, shapes[1], torch.float32, 2)
    cs = CallShape(2 if a.dim() > 2 else 1, "TB", (False, False))
    fast = FUNCTION_RULES["matmul"]((a, b), {}, a @ b, cs)
    general = _product_counts(matmul_counts(a, b), cs)

    def total(v):
        if isinstance(v, int):
            return v
        if isinstance(v, Rows):
            return int(v.values.double().sum().item()) * v.scale
        return int(v.sum().item())

    for key in ("acs", "effective_macs", "acs_alt", "spike_spike_calls", "binary_calls", "real_calls"):
        assert total(fast[key]) == total(general[key]), key
    assert fast["dense_macs"] == general["dense_macs"]


class _LifPoolConv(nn.Module):
    """LIF -> max pool -> conv (spikes through a pool), and LIF -> contiguous copy -> conv."""

    def __init__(self, write_in_place=False):
        super().__init__()
        self.T = 2
        self.lif = neuron.LIFNode(v_threshold=0.2, step_mode="m")
        self.pool = nn.MaxPool2d(2)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1)
        self.write_in_place = write_in_place

    def forward(self, images):
        s = self.lif(images.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        a = self.conv_a(self.pool(s.flatten(0, 1)))
        copy = s.flatten(0, 1).transpose(-1, -2).contiguous()
        if self.write_in_place:
            copy[..., 0, 0] = 0.5
        return a.sum() + self.conv_b(copy).sum()


@pytest.mark.parametrize("write_in_place", [False, True])
def test_spike_provenance_through_pool_and_copies(write_in_place):
    model = _LifPoolConv(write_in_place)
    x = torch.rand(2, 3, 8, 8)
    with recorded_ranges() as seen:
        report = profile(model, x)
    rows = report.layers.set_index("name")
    conv_inputs = [known for shape, known in seen if len(shape) == 4 and shape[1] == 3]
    assert conv_inputs[0] == (0, 1)  # the pooled spikes
    assert conv_inputs[-1] == (None if write_in_place else (0, 1))  # a copy of spikes, unless written in place
    assert rows.loc["conv_a", "input"] == "binary"
    assert rows.loc["conv_b", "input"] == ("real" if write_in_place else "binary")
    # exact either way
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with torch.no_grad():
        s = model.lif(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).flatten(0, 1)
    pooled = model.pool(s)
    assert rows.loc["conv_a", "acs"] == int(brute_force_synaptic_ops(pooled, model.conv_a).sum())
    copy = s.transpose(-1, -2).contiguous()
    if write_in_place:
        copy[..., 0, 0] = 0.5
        assert rows.loc["conv_b", "effective_macs"] == int(brute_force_synaptic_ops(copy, model.conv_b).sum())
    else:
        assert rows.loc["conv_b", "acs"] == int(brute_force_synaptic_ops(copy, model.conv_b).sum())


class _SpikesWrittenIntoPartOfRealRows(nn.Module):
    """``torch.mul(s, s, out=big[:B])``: spikes written over the first rows of a real-valued buffer; the
    conv reads the whole buffer, which is not a spike map."""

    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m", v_threshold=0.2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, images):
        real = images.unsqueeze(0).repeat(2, 1, 1, 1, 1) * 0.7
        s = self.lif(real)
        big = real.flatten(0, 1) * 1.5  # real values
        first = big[: images.shape[0]]  # a view that stays alive while the conv runs
        torch.mul(s[0], s[0], out=first)
        return self.conv(big).sum()


def test_spikes_written_into_part_of_a_real_buffer_leave_it_real():
    from spikingjelly.activation_based import functional

    model = _SpikesWrittenIntoPartOfRealRows()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    rows = profile(model, x, T=2).layers.set_index("name")
    functional.reset_net(model)
    with torch.no_grad():
        real = x.unsqueeze(0).repeat(2, 1, 1, 1, 1) * 0.7
        s = model.lif(real)
        big = real.flatten(0, 1) * 1.5
        big[:2] = s[0] * s[0]
    assert rows.loc["conv", "input"] == "real" and rows.loc["conv", "acs"] == 0
    assert rows.loc["conv", "effective_macs"] == int(brute_force_synaptic_ops(big, model.conv).sum())


class _NanBetween(nn.Module):
    """A NaN made by a functional op between modules (no module's output holds it): the neuron's input does."""

    def __init__(self):
        super().__init__()
        self.T = 1
        self.conv = nn.Conv2d(3, 4, 3)
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, images):
        y = self.conv(images)
        return self.lif((y / torch.zeros_like(y) * 0).unsqueeze(0))


def test_sentinel_finds_nan_made_between_modules_and_names_the_neuron():
    from gac_analysis.accounting.finite import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"the input of module 'lif' \(LIFNode\) holds NaN"):
        count_images(_NanBetween(), torch.rand(1, 3, 6, 6))


_STICKY_CASES = [
    (cls, v_reset, decay_input, detach)
    for cls in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode)
    for v_reset in (0.0, None, -0.5)
    for decay_input in ((True,) if cls is neuron.IFNode else (True, False))
    for detach in (False, True)
]


def _sticky_neuron(case, step_mode: str) -> nn.Module:
    cls, v_reset, decay_input, detach = case
    kwargs = {"v_reset": v_reset, "detach_reset": detach, "step_mode": step_mode}
    if cls is not neuron.IFNode:
        kwargs["decay_input"] = decay_input
    return cls(**kwargs).eval()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    case=st.sampled_from(_STICKY_CASES),
    step_mode=st.sampled_from(["m", "s"]),
    value=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    T=st.integers(1, 5),
    data=st.data(),
)
def test_membrane_keeps_a_nonfinite_input_until_reset(case, step_mode, value, T, data):
    """The claim the sentinel's membrane watch rests on (finite._sticky_membrane_types): a NaN or inf in any
    input of IF/LIF/PLIF, at any step, leaves that neuron's membrane non-finite at the end of the forward,
    whatever the other steps hold (finite inputs, the opposite infinity); finite inputs leave it finite."""
    from spikingjelly.activation_based import functional

    m = _sticky_neuron(case, step_mode)
    seed = data.draw(st.integers(0, 2**16))
    x = torch.randn(T, 3, 4, generator=torch.Generator().manual_seed(seed)) * 2
    clean = x.clone()
    t, i, j = data.draw(st.integers(0, T - 1)), data.draw(st.integers(0, 2)), data.draw(st.integers(0, 3))
    x[t, i, j] = value
    later = [s for s in range(T) if s != t]
    if later and data.draw(st.booleans()):
        x[data.draw(st.sampled_from(later)), i, j] = -value if value == value else 50.0
    for inputs, finite in ((x, False), (clean, True)):
        functional.reset_net(m)
        with torch.inference_mode():
            for step in [inputs] if step_mode == "m" else inputs:
                m(step)
        assert isinstance(m.v, torch.Tensor)
        assert bool(torch.isfinite(m.v[i, j])) is finite
        assert bool(torch.isfinite(m.v).all()) is finite


class _NanAtBatch(nn.Module):
    """NaN made between modules (invisible to every module's output) in the batch whose first pixel is
    negative; two SpikingJelly neurons (multi-step and single-step) and this project's LIF, which keeps no
    membrane after its call."""

    def __init__(self, project_lif: bool = False):
        from gac_analysis.models.neurons import LIF

        super().__init__()
        self.T = 2
        self.conv = nn.Conv2d(3, 4, 3)
        self.first = neuron.LIFNode(step_mode="m")
        self.second = LIF() if project_lif else neuron.IFNode(step_mode="m")

    def forward(self, images):
        y = self.first(self.conv(images).unsqueeze(0).repeat(2, 1, 1, 1, 1))
        poison = torch.where(images[0, 0, 0, 0] < 0, torch.tensor(float("nan")), torch.tensor(0.0))
        return self.second(y * 3 + poison).mean(0).flatten(1)


@pytest.mark.parametrize("project_lif", [False, True])
def test_sentinel_reads_membranes_after_the_first_forward_and_still_finds_a_later_nan(project_lif):
    """After one forward the sentinel watches SpikingJelly's IF/LIF nodes through their membrane v (no hook per
    call); this project's LIF resets v inside its call, so it stays watched by input. A NaN that first appears
    in the third batch is still found, and count_images names the neuron whose input held it."""
    from spikingjelly.activation_based import functional

    from gac_analysis.accounting.finite import FiniteWatch, NonFiniteError

    model = _NanAtBatch(project_lif).eval()
    good = torch.rand(2, 3, 6, 6)
    bad = good.clone()
    bad[0, 0, 0, 0] = -1.0
    with FiniteWatch(model, sentinel=True) as watch:
        verdicts = []
        for batch in (good, good, bad, good):
            functional.reset_net(model)
            with torch.inference_mode():
                model(batch)
            verdicts.append(watch.forward_finite())
            if len(verdicts) == 1:
                by_membrane = [type(m).__name__ for m in watch._by_membrane]
                probed = [type(m).__name__ for m in watch._probes]
    assert verdicts == [True, True, False, True]
    assert by_membrane == (["LIFNode"] if project_lif else ["LIFNode", "IFNode"])
    assert probed == []  # the project's LIF is not a sticky type: it keeps its ordinary input hook
    with pytest.raises(NonFiniteError, match=r"the input of module 'second' \((LIF|IFNode)\) holds NaN"):
        count_images(model, [good, good, bad])


class _HiddenOverflow(nn.Module):
    """A hand-written neuron between modules: exp overflows to inf, and the comparison that fires turns
    it into a finite 0/1 map; nothing after it is NaN or inf."""

    def __init__(self):
        super().__init__()
        self.T = 1
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, images):
        v = torch.exp(self.conv(images) * 1e4)  # inf where the conv output is positive
        spikes = (v >= 1.0).float()
        return self.fc(spikes.flatten(1))


def test_nan_or_inf_hidden_by_a_comparison_between_modules_is_an_error():
    from gac_analysis.accounting.finite import NonFiniteError

    with pytest.raises(
        NonFiniteError, match=r"batch 0: an input of '<model>:ge' \(an operation in the model's forward"
    ):
        count_images(_HiddenOverflow(), torch.rand(1, 3, 6, 6))
    finite = _HiddenOverflow()
    finite.conv.weight.data.zero_()
    finite.conv.bias.data.fill_(-1.0)  # exp of a large negative number: 0, finite
    count_images(finite, torch.rand(1, 3, 6, 6))


class _HiddenByMinimum(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = 1
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images):
        y = self.conv(images)
        return torch.minimum(y + float("inf"), y).sum()  # the inf never reaches the output


def test_inf_hidden_by_an_elementwise_minimum_is_an_error():
    from gac_analysis.accounting.finite import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"an input of '<model>:minimum'"):
        count_images(_HiddenByMinimum(), torch.rand(1, 3, 6, 6))
