"""Value ranges known by construction (accounting/ranges.py): interval arithmetic is sound, and a conv or
linear reading a map made from spikes (SEW's ADD / AND / IAND, ``1 - s``, in-place sums) counts exactly
what the value-checking host path counts, for every expression and geometry; a write the ranges cannot
follow drops the range, so the values are checked again."""

from __future__ import annotations

import pytest
import torch
from counting_fixtures import FixedInput, recorded_ranges
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import neuron
from torch import nn

from gac_analysis.accounting import profile, ranges
from gac_analysis.accounting.engine import CounterConfig, OpCounter, _storage_ptr
from gac_analysis.accounting.kernels import brute_force_synaptic_ops
from gac_analysis.accounting.report import host_counters

# ----------------------------------------------------------------------------- pure interval arithmetic

_interval = st.tuples(st.integers(-4, 4), st.integers(0, 4)).map(lambda p: (p[0], p[0] + p[1]))


@settings(max_examples=300, deadline=None)
@given(a=_interval, b=_interval, op=st.sampled_from(["add", "sub", "rsub", "mul"]), data=st.data())
def test_combine_bounds_every_result(a, b, op, data):
    u = data.draw(st.integers(*a))
    v = data.draw(st.integers(*b))
    value = {"add": u + v, "sub": u - v, "rsub": v - u, "mul": u * v}[op]
    lo, hi = ranges.combine(op, a, b)
    assert lo <= value <= hi


def test_result_range_of_tensors_scalars_and_alpha():
    a, b = torch.zeros(2), torch.ones(2)
    known = {id(a): (0, 1), id(b): (0, 1)}

    def range_of(t):
        return known.get(id(t))

    assert ranges.result_range("add", (a, b), {}, range_of) == (0, 2)
    assert ranges.result_range("add", (a, b), {"alpha": 2}, range_of) == (0, 3)
    assert ranges.result_range("add", (a,), {"other": b}, range_of) == (0, 2)
    assert ranges.result_range("rsub", (a, 1), {}, range_of) == (0, 1)  # 1 - a
    assert ranges.result_range("sub", (a, b), {}, range_of) == (-1, 1)
    assert ranges.result_range("mul", (a, 3.0), {}, range_of) == (0, 3)
    assert ranges.result_range("mul", (a, 0.5), {}, range_of) is None  # not a whole number
    assert ranges.result_range("add", (a, torch.ones(2)), {}, range_of) is None  # unknown operand
    assert ranges.result_range("add", (a, b), {"alpha": 0.5}, range_of) is None
    assert ranges.result_range("add", (a, float("inf")), {}, range_of) is None


def test_reflected_and_in_place_functions_are_told_apart():
    assert ranges.arithmetic_of(torch.Tensor.__rsub__) == "rsub"  # 1 - x
    assert ranges.arithmetic_of(torch.Tensor.__sub__) == "sub"
    assert ranges.arithmetic_of(torch.Tensor.__radd__) == "add"
    assert ranges.arithmetic_of(torch.Tensor.add_) == "add"
    assert ranges.arithmetic_of(torch.Tensor.__truediv__) is None
    assert ranges.writes_in_place(torch.Tensor.fill_)
    assert ranges.writes_in_place(torch.Tensor.__iadd__)
    assert ranges.writes_in_place(torch.Tensor.__setitem__)
    assert not ranges.writes_in_place(torch.Tensor.__add__)
    assert not ranges.writes_in_place(torch.Tensor.reshape)


def test_representable_bounds_follow_the_dtype():
    assert ranges.representable(torch.float32, (0, 2**24))
    assert not ranges.representable(torch.float32, (0, 2**24 + 1))
    assert ranges.representable(torch.float16, (-2048, 2048))
    assert not ranges.representable(torch.bfloat16, (0, 257))
    assert ranges.representable(torch.bool, (0, 1)) and not ranges.representable(torch.bool, (0, 2))
    assert not ranges.representable(torch.uint8, (-1, 1))
    assert ranges.representable(torch.int8, (-128, 127)) and not ranges.representable(torch.int8, (0, 128))


# ----------------------------------------------------------------------------- counting with known ranges

#: name -> (expression of two spike maps a, b ``[T, B, C, *spatial]``, the range the conv should see)
EXPRESSIONS = {
    "sew_add": (lambda a, b: a + b, (0, 2)),
    "three_maps": (lambda a, b: a + b + a, (0, 3)),
    "sew_and": (lambda a, b: a * b, (0, 1)),
    "sew_iand": (lambda a, b: a * (1 - b), (0, 1)),
    "not": (lambda a, b: 1 - a, (0, 1)),
    "scaled_sum": (lambda a, b: 2 * a + b, (0, 3)),
    "alpha": (lambda a, b: torch.add(a, b, alpha=2), (0, 3)),
    "difference": (lambda a, b: a - b, (-1, 1)),  # negative values: checked by value
    "in_place_sum": (lambda a, b: a.add_(b), (0, 2)),
    "in_place_augmented": (lambda a, b: a.__iadd__(b), (0, 2)),
    "sum_then_copies": (lambda a, b: (a + b).transpose(0, 1).flip(-1).transpose(0, 1).contiguous(), (0, 2)),
    "half_scaled": (lambda a, b: a + 0.5 * b, None),  # real
    "filled": (lambda a, b: a.clone().fill_(2.5), None),  # a write without a range rule
    "copied_into": (lambda a, b: a.clone().copy_(b * 0.25), None),
    "set_item": (lambda a, b: _set_item(a + b), None),
    # a neuron's own map, and writes into it (one that keeps it 0/1, and two that do not)
    "spikes_as_they_are": (lambda a, b: a, (0, 1)),
    "spikes_times_spikes_in_place": (lambda a, b: a.mul_(b), (0, 1)),
    "spikes_one_minus_in_place": (lambda a, b: a.neg_().add_(1), None),
    "spikes_set_item": (lambda a, b: _set_item(a), None),
}


def _set_item(x):
    x[..., 0] = 0.75
    return x


class _TwoNeurons(nn.Module):
    """Two IF neurons (multi-step, threshold 0.5) that fire the spike maps of a test model."""

    def __init__(self, T: int = 2):
        super().__init__()
        self.T = T
        self.na = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.nb = neuron.IFNode(v_threshold=0.5, step_mode="m")


class _SpikeExpression(_TwoNeurons):
    """Two IF neurons fire fixed maps a, b; ``expression(a, b)`` feeds a conv as ``[T*B, C, *spatial]`` rows."""

    def __init__(self, expression, conv, drive_a, drive_b):
        super().__init__(T=drive_a.shape[0])
        self.conv, self.expression = conv, expression
        self.drive_a, self.drive_b = drive_a, drive_b

    def spikes(self):
        return self.na(self.drive_a), self.nb(self.drive_b)

    def forward(self, images):
        a, b = self.spikes()
        return self.conv(self.expression(a, b).flatten(0, 1))


def _conv_counts(model, images) -> dict:
    with OpCounter(model, CounterConfig()) as c, torch.inference_mode():
        model(images)
    (site,) = [s for s in c.sites.values() if s.op.startswith("conv")]
    return {k: v for k, v in host_counters(site).items() if any(v)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EXPRESSIONS)),
    nd=st.sampled_from([1, 2]),
    c_in=st.integers(1, 4),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    size=st.integers(3, 7),
    bias=st.booleans(),
    silent_b=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_known_range_path_counts_what_the_value_check_counts(
    name, nd, c_in, kernel, stride, padding, size, bias, silent_b, seed
):
    expression, expected_range = EXPRESSIONS[name]
    T, B = 2, 2
    g = torch.Generator().manual_seed(seed)
    shape = (T, B, c_in, *([size] * nd))
    drive_a = torch.rand(shape, generator=g)
    drive_b = torch.zeros(shape) if silent_b else torch.rand(shape, generator=g)
    conv = (nn.Conv1d if nd == 1 else nn.Conv2d)(c_in, 3, kernel, stride, padding, bias=bias)
    model = _SpikeExpression(expression, conv, drive_a, drive_b).eval()

    with recorded_ranges() as seen:
        counts = _conv_counts(model, torch.zeros(B, 1))
    conv_inputs = [known for shape, known in seen if len(shape) == nd + 2 and shape[1] == c_in]
    assert conv_inputs[-1] == expected_range

    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with torch.inference_mode():
        x = expression(*model.spikes()).flatten(0, 1).clone()
    checked = _conv_counts(FixedInput(conv, x, T).eval(), torch.zeros(B, 1))
    if expected_range is not None and expected_range[0] >= 0 and expected_range[1] <= 1:
        # a spike map by construction is binary even when silent (the value check calls a silent map no kind)
        assert counts.pop("binary_calls") == [0] * T + [1]
        checked.pop("binary_calls", None)
    assert checked == counts
    values = torch.unique(x)
    if bool(((values == 0) | (values == 1)).all()):
        key = "acs"
    else:
        key = "integer_ops" if bool((values == values.round()).all()) else "effective_macs"
    zeros = [0] * (T + 1)
    assert counts.get(key, zeros)[:T] == brute_force_synaptic_ops(x, conv).reshape(T, -1).sum(1).tolist()


class _SewLinear(_TwoNeurons):
    """SEW ADD of two spike maps into a linear layer (a head reading summed spikes)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 5)

    def forward(self, images):
        drive = images.flatten(1).unsqueeze(0).repeat(2, 1, 1)
        return self.fc(self.na(drive) + self.nb(drive.flip(-1)))


def test_linear_reading_a_sum_of_spikes_is_integer_and_exact():
    torch.manual_seed(0)
    model = _SewLinear().eval()
    images = torch.rand(3, 3, 2, 2)
    report = profile(model, images)
    row = report.layers.set_index("name").loc["fc"]
    assert row["input"] == "integer"
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with torch.no_grad():
        drive = images.flatten(1).unsqueeze(0).repeat(2, 1, 1)
        x = model.na(drive) + model.nb(drive.flip(-1))
    assert int(x.max()) == 2  # really integer
    assert row["integer_ops"] == int((x != 0).sum()) * 5
    assert row["integer_value_ops"] == int(x.abs().sum()) * 5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_range_the_dtype_cannot_hold_exactly_is_dropped(dtype):
    counter = OpCounter(nn.Linear(2, 2), CounterConfig(T=1))
    t = torch.zeros(4, dtype=dtype)
    counter._mark_range(t, (0, 10**6))
    assert counter._range_of(t) is None
    counter._mark_range(t, (0, 3))
    assert counter._range_of(t) == (0, 3)


class _InPlaceModule(_TwoNeurons):
    """A counted module that writes into a map of known range (ReLU(inplace=True) on ``a - b``, range (-1, 1))."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, images):
        drive = images.unsqueeze(0).repeat(2, 1, 1, 1, 1)
        x = self.na(drive) - self.nb(drive.flip(-1))
        return self.conv(self.relu(x).flatten(0, 1))


def test_a_counted_module_writing_in_place_makes_the_range_unknown():
    torch.manual_seed(0)
    model = _InPlaceModule().eval()
    images = torch.rand(2, 3, 5, 5)
    with recorded_ranges() as seen:
        report = profile(model, images)
    assert [known for shape, known in seen if shape == (4, 3, 5, 5)] == [None]  # the conv's input
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with torch.no_grad():
        drive = images.unsqueeze(0).repeat(2, 1, 1, 1, 1)
        x = torch.relu(model.na(drive) - model.nb(drive.flip(-1))).flatten(0, 1)
    row = report.layers.set_index("name").loc["conv"]
    assert row["input"] == "binary"  # checked by value: relu of -1/0/1 is 0/1
    assert row["acs"] == int(brute_force_synaptic_ops(x, model.conv).sum())


class _ViewChain(_TwoNeurons):
    """A spike map reshaped ``n`` times, each view replacing the last (the neuron's own output and every
    intermediate view die), then read by a conv."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, images):
        x = self.na(images.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        for _ in range(self.n):
            x = x.reshape(2, -1).reshape(2, *images.shape)
        return self.conv(x.flatten(0, 1))


@pytest.mark.parametrize("n", [1, 50])
def test_a_chain_of_views_keeps_the_range_and_only_live_references(n):
    """The range survives a chain of views whose earlier tensors die, and the storage's entry drops their dead
    references as it goes (a list that grew with every view made each lookup scan it: quadratic in the chain)."""
    model = _ViewChain(n).eval()
    images = torch.rand(2, 3, 5, 5)
    sizes = []
    original = OpCounter._mark_tensor

    def spy(self, t, r):
        original(self, t, r)
        entry = self._ranges.get(_storage_ptr(t))
        sizes.append(len(entry[1]) if entry else 0)

    with recorded_ranges() as seen, pytest.MonkeyPatch.context() as patch:
        patch.setattr(OpCounter, "_mark_tensor", spy)
        report = profile(model, images)
    assert [known for shape, known in seen if shape == (4, 3, 5, 5)] == [(0, 1)]  # the conv's input: spikes
    assert report.layers.set_index("name").loc["conv", "input"] == "binary"
    # marks: the neuron output, 2 n reshapes, the flatten; each entry holds the map, the last view, the new one
    assert len(sizes) == 2 + 2 * n and max(sizes) <= 3
