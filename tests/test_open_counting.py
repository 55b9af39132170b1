"""Open counting (docs/counting_rules.md, "How operations are seen"): a user's subclass whose forward does
more than its base, functional convs and linears, and forwards that raise and are caught. Every count is
checked against brute force, a hand computation from shapes, or the same model written with modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron
from torch import nn

from gac_analysis.accounting import profile
from gac_analysis.accounting.handles import extends_forward
from gac_analysis.accounting.kernels import brute_force_synaptic_ops
from gac_analysis.models.neurons import LIF


def _rows(report):
    return report.layers.set_index("name")


def _images(seed: int, shape=(2, 3, 8, 8), scale: float = 1.0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# --------------------------------------------------------------------------- base calls with other arguments


class StridedByHand(nn.Conv2d):
    """Calls conv2d itself with another stride than its own: not its base call."""

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, 2, self.padding)


class HalfLinear(nn.Linear):
    """Uses half of its weight."""

    def forward(self, x):
        return F.linear(x, self.weight[:4], self.bias[:4])


class WiderPool(nn.MaxPool2d):
    def forward(self, x):
        return F.max_pool2d(x, 4)


class OtherArguments(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.c = StridedByHand(3, 4, 3, padding=1)
        self.l = HalfLinear(3 * 8 * 8, 8)
        self.p = WiderPool(2)

    def forward(self, images):
        spikes = (images > 0.5).float()
        return self.c(spikes).sum() + self.l(spikes.flatten(1)).sum() + self.p(images).sum()


def test_a_call_of_the_types_function_with_other_arguments_is_counted_with_its_own():
    net = OtherArguments()
    images = _images(1)
    report = profile(net, images)
    assert report.unsupported == []
    rows = _rows(report)
    spikes = (images > 0.5).float()
    strided = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    assert rows.loc["c:conv2d", "dense_macs"] == 2 * 4 * 4 * 4 * 27  # stride 2: a 4x4 map
    assert rows.loc["c:conv2d", "acs"] == int(brute_force_synaptic_ops(spikes, strided).sum())
    assert rows.loc["c:conv2d", "bias_adds"] == 2 * 4 * 4 * 4
    assert rows.loc["c:conv2d", "input"] == "binary"
    assert rows.loc["l:linear", "dense_macs"] == 2 * 192 * 4
    assert rows.loc["l:linear", "acs"] == int(spikes.sum()) * 4
    assert rows.loc["p:maxpool", "compares"] == 2 * 3 * 4 * 15  # 4 windows of 16 per plane
    assert not {"c", "l", "p"} & set(rows.index)  # no base call: the module rules count nothing


class Blur(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("k", torch.ones(channels, 1, 3, 3) / 9)
        self.channels = channels

    def forward(self, x):
        return F.conv2d(x, self.k, padding=1, groups=self.channels)


class BlurConv(nn.Conv2d):
    """A plain child module making its own conv2d call inside an open conv."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.blur = Blur(args[0])

    def forward(self, x):
        return super().forward(self.blur(x))


def test_a_childs_own_conv_inside_an_open_conv_is_the_childs():
    net = nn.Sequential(BlurConv(3, 8, 3, stride=2))
    net.T = 1
    report = profile(net, _images(2, (2, 3, 16, 16)))
    assert report.unsupported == []
    rows = _rows(report)
    assert rows.loc["0.blur:conv2d", "dense_macs"] == 2 * 3 * 16 * 16 * 9  # depthwise, 3x3, 'same'
    assert rows.loc["0.blur:conv2d", "bias_adds"] == 0
    assert rows.loc["0", "dense_macs"] == 2 * 8 * 7 * 7 * 27 and rows.loc["0", "bias_adds"] == 2 * 8 * 7 * 7


# --------------------------------------------------------------------------- functional convs and linears


class ModuleNet(nn.Module):
    T = 2

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding="same", dilation=2)
        self.c2 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=3, bias=False)
        self.c3 = nn.Conv1d(6, 4, 3)
        self.fc = nn.Linear(4 * 34, 5)
        self.lif = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, images):
        x = images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1).flatten(0, 1)
        s = self.lif(self.c1(x).unflatten(0, (self.T, -1))).flatten(0, 1)
        y = self.c2(s).flatten(2)
        return self.fc(self.c3(y).flatten(1)).sum()


class FunctionalNet(ModuleNet):
    """The same network with every conv and linear called through torch.nn.functional."""

    def forward(self, images):
        x = images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1).flatten(0, 1)
        c1, c2, c3, fc = self.c1, self.c2, self.c3, self.fc
        h = F.conv2d(x, c1.weight, c1.bias, 1, "same", 2)
        s = self.lif(h.unflatten(0, (self.T, -1))).flatten(0, 1)
        y = F.conv2d(input=s, weight=c2.weight, stride=2, padding=1, groups=3).flatten(2)
        return F.linear(F.conv1d(y, c3.weight, c3.bias).flatten(1), fc.weight, fc.bias).sum()


def test_functional_convs_and_linears_count_as_the_same_modules_do():
    counters = ["dense_macs", "acs", "effective_macs", "bias_adds", "input_nnz", "c_in", "c_out", "kernel", "stride"]
    counters += ["in_numel", "out_shape", "paper_pj", "complete_pj"]  # what the conventions read from a row
    images = _images(3, (2, 3, 12, 12), scale=2)
    modules = ModuleNet()
    functional = FunctionalNet()
    functional.load_state_dict(modules.state_dict())
    a, b = profile(modules, images), profile(functional, images)
    assert a.unsupported == b.unsupported == []
    rows_a, rows_b = _rows(a), _rows(b)
    for module, function in (("c1", "<model>:conv2d"), ("c2", "<model>:conv2d#2"), ("c3", "<model>:conv1d")):
        assert rows_a.loc[module, counters].tolist() == rows_b.loc[function, counters].tolist(), module
        assert rows_a.loc[module, "input"] == rows_b.loc[function, "input"]
    assert rows_a.loc["fc", counters].tolist() == rows_b.loc["<model>:linear", counters].tolist()
    assert rows_b.loc["<model>:conv2d#2", "input"] == "binary" and rows_b.loc["<model>:conv2d#2", "acs"] > 0
    assert a.per_step.set_index(["name", "step"]).loc["c2", "acs"].tolist() == (
        b.per_step.set_index(["name", "step"]).loc["<model>:conv2d#2", "acs"].tolist()
    )
    for convention in ("paper", "complete"):
        assert a.energy[convention]["total_pj"] == b.energy[convention]["total_pj"]
    assert a.energy["memory"]["per_image_pj"] == b.energy["memory"]["per_image_pj"]


class KeywordsOnly(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1)))
        self.v = nn.Parameter(torch.randn(5, 4 * 64, generator=torch.Generator().manual_seed(2)))

    def forward(self, images):
        s = (images > 0.5).float()
        y = (F.conv2d(input=s, weight=self.w, stride=2, padding=1) > 0).float()
        return F.linear(input=y.flatten(1), weight=self.v)


class Positional(KeywordsOnly):
    def forward(self, images):
        s = (images > 0.5).float()
        y = (F.conv2d(s, self.w, None, 2, 1) > 0).float()
        return F.linear(y.flatten(1), self.v)


class PerImage(KeywordsOnly):
    """The conv called on one unbatched image [C, H, W] at a time."""

    def forward(self, images):
        s = (images > 0.5).float()
        y = (torch.stack([F.conv2d(im, self.w, None, 2, 1) for im in s]) > 0).float()
        return F.linear(y.flatten(1), self.v)


def test_keyword_and_unbatched_functional_calls_have_the_shapes_of_positional_batched_ones():
    images = _images(9, (2, 3, 16, 16))
    ref = profile(Positional(), images)
    ref_rows = _rows(ref)
    keywords = profile(KeywordsOnly(), images)
    columns = ["in_numel", "out_shape", "dense_macs", "acs", "input_nnz", "paper_pj", "complete_pj"]
    for name in ("<model>:conv2d", "<model>:linear"):
        assert _rows(keywords).loc[name, columns].tolist() == ref_rows.loc[name, columns].tolist(), name
    assert keywords.energy["paper"]["total_pj"] == ref.energy["paper"]["total_pj"]
    per_image = _rows(profile(PerImage(), images))  # one row per call (one image each): shapes per image
    for name in ("<model>:conv2d", "<model>:conv2d#2"):
        assert per_image.loc[name, ["in_numel", "out_shape"]].tolist() == [768, [4, 8, 8]]
    assert (
        per_image.loc["<model>:conv2d", "acs"] + per_image.loc["<model>:conv2d#2", "acs"]
        == (ref_rows.loc["<model>:conv2d", "acs"])
    )


def test_the_memory_model_reads_conv1d_and_conv3d_as_the_conv2d_they_equal():
    w = torch.randn(8, 3, 3, generator=torch.Generator().manual_seed(3))

    class Conv1d(nn.Module):
        T = 1

        def forward(self, images):
            return F.conv1d((images.flatten(2) > 0.5).float(), w, None, 1, 1)

    class AsConv2d(nn.Module):
        T = 1

        def forward(self, images):
            s = (images.flatten(2) > 0.5).float().unsqueeze(2)
            return F.conv2d(s, w.unsqueeze(2), None, 1, (0, 1))

    class AsConv3d(nn.Module):
        T = 1

        def forward(self, images):
            s = (images.flatten(2) > 0.5).float().unsqueeze(2).unsqueeze(2)
            return F.conv3d(s, w.unsqueeze(2).unsqueeze(2), None, 1, (0, 0, 1))

    images = _images(10)
    memory = [profile(m(), images).energy["memory"]["per_image_pj"] for m in (Conv1d, AsConv2d, AsConv3d)]
    assert memory[0] == memory[1] == memory[2]


class CausalConv(nn.Conv1d):
    """Pads by hand (left only, replicate) and calls its conv with padding 0: its pad is not the module's."""

    def forward(self, x):
        k = self.kernel_size[0]
        return F.conv1d(F.pad(x, (k - 1, 0), mode="replicate"), self.weight, self.bias, self.stride, 0)


class Smooth(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.k = nn.Parameter(torch.randn(channels, channels, 3, 3, generator=torch.Generator().manual_seed(4)))

    def forward(self, x):
        return F.conv2d(x, self.k, None, 1, 1)


class SmoothConv(nn.Conv2d):
    """A child with the same geometry as its open parent: its conv is the child's, not the parent's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.smooth = Smooth(args[0])

    def forward(self, x):
        return super().forward(self.smooth(x))


def test_a_pad_or_a_conv_that_is_not_the_modules_own_is_not_its_base_call():
    images = _images(11)
    spikes = (images.flatten(2) > 0.5).float()
    counts = {}
    for mode in ("zeros", "replicate"):
        net = nn.Sequential(_Spikes(), CausalConv(3, 4, 3, padding=0, padding_mode=mode))
        net.T = 1
        rows = _rows(profile(net, images))
        counts[mode] = rows.loc["1", ["dense_macs", "acs", "input_nnz"]].tolist()
    padded = F.pad(spikes, (2, 0), mode="replicate")
    assert (
        counts["zeros"]
        == counts["replicate"]
        == [
            2 * 4 * 64 * 3 * 3,
            int(brute_force_synaptic_ops(padded, nn.Conv1d(3, 4, 3)).sum()),
            int(padded.count_nonzero()),
        ]
    )
    net = nn.Sequential(SmoothConv(3, 3, 3, padding=1, bias=False))
    net.T = 1
    rows = _rows(profile(net, _images(12)))
    assert list(rows.index) == ["0.smooth:conv2d", "0"] and rows.loc["0", "calls"] == 1


class _Spikes(nn.Module):
    def forward(self, images):
        return (images.flatten(2) > 0.5).float()


def test_a_grad_mode_inside_a_forward_is_free():
    class Net(nn.Module):
        T = 1

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, images):
            with torch.no_grad():
                y = self.conv(images)
            with torch.enable_grad():
                return y * 2

    report = profile(Net(), _images(13), strict=True)
    assert report.unsupported == [] and report.coverage["free_calls"] >= 2


# --------------------------------------------------------------------------- neurons


class LoopIF(neuron.IFNode):
    """A multi-step neuron whose forward runs its single step itself, with a gain."""

    def forward(self, x_seq):
        return torch.stack([self.single_step_forward(x * 1.5) for x in x_seq])


class ScaledLIF(LIF):
    """This project's LIF doubling its spikes in place after its dynamics."""

    def forward(self, x):
        return super().forward(x).mul_(2)


class ExplicitBase(neuron.IFNode):
    """Calls its base class's forward by name (no super())."""

    def forward(self, x):
        return neuron.IFNode.forward(self, x * 1.5) * 2


class Neurons(nn.Module):
    T = 2

    def __init__(self):
        super().__init__()
        self.loop = LoopIF(v_threshold=0.5, step_mode="m")
        self.scaled = ScaledLIF()
        self.explicit = ExplicitBase(v_threshold=0.5, step_mode="m")
        self.fc = nn.Linear(16, 3)

    def forward(self, images):
        x = images[:, 0].flatten(1).unsqueeze(0).repeat(self.T, 1, 1)
        return self.fc(self.loop(x)).sum() + self.fc(self.scaled(x * 3)).sum() + self.fc(self.explicit(x)).sum()


def test_neurons_counted_open_read_their_spikes_when_their_dynamics_return():
    net = Neurons()
    assert all(extends_forward(m) for m in (net.loop, net.scaled, net.explicit))
    images = _images(4, (5, 3, 4, 4))
    report = profile(net, images)
    assert report.unsupported == []
    x = images[:, 0].flatten(1).unsqueeze(0).repeat(2, 1, 1)
    with torch.no_grad():
        loop = neuron.IFNode(v_threshold=0.5, step_mode="m")(x * 1.5)
        scaled = LIF()(x * 3)
        explicit = neuron.IFNode(v_threshold=0.5, step_mode="m")(x * 1.5)
    sites = report.lif_sites.set_index("name")
    assert list(sites.index) == ["loop", "scaled", "explicit"]  # one site each, whatever the loop
    for name, spikes in (("loop", loop), ("scaled", scaled), ("explicit", explicit)):
        assert 0 < spikes.sum() < spikes.numel(), name
        assert sites.loc[name, "spikes"] == int(spikes.sum()), name
        assert sites.loc[name, "neuron_steps"] == 2 * 5 * 16 and sites.loc[name, "output"] == "binary", name
    steps = report.per_step.set_index(["name", "step"])
    assert [steps.loc[("loop", t), "spikes"] for t in range(2)] == [int(loop[t].sum()) for t in range(2)]
    rows = _rows(report)
    assert rows.loc["loop:mul", "muls"] == 2 * 5 * 16  # the gain, once per step
    assert rows.loc["explicit:mul", "muls"] == rows.loc["explicit:mul#2", "muls"] == 2 * 5 * 16
    # the doubled maps (0/2) read by fc are integer inputs; the loop's spikes are binary
    assert rows.loc["fc", "input"] == "binary"
    assert rows.loc["fc#2", "input"] == rows.loc["fc#3", "input"] == "integer"
    assert rows.loc["fc#2", "integer_ops"] == int(scaled.sum()) * 3


class GatedConv(nn.Conv2d):
    """Extra work in an override of _conv_forward, not of forward."""

    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, weight, bias) * torch.sigmoid(x.mean((1, 2, 3), keepdim=True))


def test_extra_work_in_an_override_of_another_forward_method_is_counted():
    net = nn.Sequential(GatedConv(3, 4, 3))
    net.T = 1
    assert extends_forward(net[0])
    report = profile(net, _images(5))
    rows = _rows(report)
    assert rows.loc["0", "dense_macs"] == 2 * 4 * 6 * 6 * 27
    assert rows.loc["0:mean", "adds"] == 2 * (3 * 64 - 1) and rows.loc["0:sigmoid", "sigmoids"] == 2
    assert rows.loc["0:mul", "muls"] == 2 * 4 * 6 * 6


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 0.5


class RecurrentIF(neuron.IFNode):
    """A closed neuron (SpikingJelly's forward) whose dynamics run a child: an open module inside a closed one."""

    def __init__(self, rec: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.rec = rec

    def single_step_forward(self, x):
        return super().single_step_forward(self.rec(x))


def test_an_open_module_inside_a_closed_one_is_counted_closed():
    class Net(nn.Module):
        T = 2

        def __init__(self, rec):
            super().__init__()
            self.sn = RecurrentIF(rec, v_threshold=0.5, step_mode="s")

        def forward(self, images):
            x = images[:, 0].flatten(1)
            return sum(self.sn(x) for _ in range(self.T))

    images = _images(6, (3, 3, 4, 4))
    open_inside = _rows(profile(Net(ScaledLinear(16, 16)), images))
    plain_inside = _rows(profile(Net(nn.Linear(16, 16)), images))
    assert open_inside.loc["sn.rec", "dense_macs"] == plain_inside.loc["sn.rec", "dense_macs"] == 2 * 3 * 16 * 16


# --------------------------------------------------------------------------- forwards that raise, caught


class CheckedConv(nn.Conv2d):
    def forward(self, x):
        y = super().forward(x)
        if y.shape[-1] < 4:
            raise ValueError("too small")
        return y * 1.0


class CatchesErrors(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.checked = CheckedConv(3, 4, 3)
        self.wrong = nn.Conv2d(5, 4, 3)  # raises on 3 channels
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, images):
        try:
            self.checked(images[..., :5, :5])
        except ValueError:
            pass
        try:
            self.wrong(images)
        except RuntimeError:
            pass
        return F.conv2d(images, self.w) * 2


def test_a_forward_that_raises_and_is_caught_leaves_the_counting_as_it_was():
    report = profile(CatchesErrors(), _images(7))
    assert report.unsupported == []
    rows = _rows(report)
    assert rows.loc["checked", "dense_macs"] == 2 * 4 * 3 * 3 * 27  # its base call ran before it raised
    assert rows.loc["<model>:conv2d", "dense_macs"] == 2 * 4 * 6 * 6 * 27  # the interceptor is back on
    assert rows.loc["<model>:mul", "muls"] == 2 * 4 * 6 * 6
    assert "wrong" not in rows.index
    assert not [name for name in rows.index if name.startswith("checked:")]  # the raise: no mul after it
