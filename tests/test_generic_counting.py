"""profile on any nn.Module: functional rules against hand/brute-force counts, coverage, strict, T, layouts."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from gac_analysis.accounting import TimeStepsError, UnsupportedOpsError, UnsupportedOpsWarning, profile
from gac_analysis.accounting.functional import op_name
from gac_analysis.accounting.handles import window_pool_taps


class SpikeAttention(nn.Module):
    """[T, B, N, D] multi-step: q, k, v spikes; residual '+', spike mask '*', q @ k^T, attn @ v, scaling,
    a sum over tokens, softmax, layer norm, GELU, a max pool and an average pool."""

    def __init__(self, T=2, d=8):
        super().__init__()
        self.T = T
        self.proj = layer.Linear(6, d, step_mode="m")
        self.lif_q = neuron.LIFNode(v_threshold=0.1, step_mode="m")
        self.lif_k = neuron.LIFNode(v_threshold=0.1, step_mode="m")
        self.lif_v = neuron.LIFNode(v_threshold=0.1, step_mode="m")
        self.norm = nn.LayerNorm(d)
        self.act = nn.GELU()
        self.pool = nn.MaxPool1d(3, stride=2, padding=1)
        self.avg = nn.AvgPool1d(2, stride=2, ceil_mode=True)

    def forward(self, images):  # images [B, 3, 2, 5]: N = 5 tokens of 6 values
        x = images.flatten(1, 2).transpose(1, 2)
        x = self.proj(x.unsqueeze(0).repeat(self.T, 1, 1, 1))
        q, k, v = self.lif_q(x), self.lif_k(x * 1.5), self.lif_v(x - 0.2)
        attn = (q @ k.transpose(-2, -1)) * 0.125
        y = attn @ v + x
        y = y * q  # spike mask
        z = torch.softmax(y, dim=-1) + self.act(self.norm(y))
        pooled = self.pool(z.flatten(0, 1)) + 0.0
        return self.avg(pooled).sum(-1).unflatten(0, (self.T, -1)).sum(-1) + z.sum(2).mean(-1)


def _spiking_input():
    torch.manual_seed(0)
    return torch.randn(2, 3, 2, 5)


def test_functional_ops_counted_exactly():
    torch.manual_seed(0)
    model = SpikeAttention()
    x = _spiking_input()
    report = profile(model, x)
    assert report.coverage["unsupported_calls"] == 0 and report.unsupported == []
    rows = report.layers.set_index("name")
    T, B, N, D = 2, 2, 5, 8
    # recompute the tensors by hand
    functional.reset_net(model)
    with torch.no_grad():
        h = model.proj(x.flatten(1, 2).transpose(1, 2).unsqueeze(0).repeat(T, 1, 1, 1))
        q, k, v = model.lif_q(h), model.lif_k(h * 1.5), model.lif_v(h - 0.2)
        attn = (q @ k.transpose(-2, -1)) * 0.125
    functional.reset_net(model)
    assert q.sum() > 0 and k.sum() > 0 and v.sum() > 0
    mm1 = rows.loc["<model>:matmul"]
    assert mm1["acs"] == int((q.double() @ k.transpose(-2, -1).double()).sum())  # pairs of two ones
    assert mm1["acs_alt"] == int(q.sum()) * N
    assert mm1["dense_macs"] == T * B * N * D * N and mm1["effective_macs"] == 0
    mm2 = rows.loc["<model>:matmul#2"]  # real attn x spike v: nnz(v) x M
    assert (attn != 0).any() and not ((attn == 0) | (attn == 1)).all()
    assert mm2["acs"] == int(v.sum()) * N and mm2["effective_macs"] == 0
    assert rows.loc["<model>:mul", "muls"] == T * B * N * D  # x * 1.5
    assert rows.loc["<model>:add", "adds"] == T * B * N * D  # x - 0.2
    assert rows.loc["<model>:mul#2", "muls"] == T * B * N * N  # * 0.125
    assert rows.loc["<model>:add#2", "adds"] == T * B * N * D  # + x
    assert rows.loc["<model>:mul#3", "muls"] == T * B * N * D  # * q
    sm = rows.loc["<model>:softmax"]
    assert (sm["activations"], sm["muls"], sm["adds"]) == (T * B * N * D, T * B * N * D, T * B * N * (D - 1))
    ln = rows.loc["norm"]
    assert (ln["adds"], ln["muls"], ln["activations"]) == (4 * T * B * N * D, 3 * T * B * N * D, T * B * N)
    assert rows.loc["act", "activations"] == T * B * N * D
    # MaxPool1d(3, 2, padding 1) over 8 -> 4 outputs reading 2 + 3 + 3 + 3 = 11 inputs: 7 compares per row
    assert rows.loc["pool", "compares"] == T * B * N * (11 - 4)
    # AvgPool1d(2, 2, ceil_mode) over 4 -> 2 outputs reading 4 inputs: 2 adds + 2 divides per row
    assert (rows.loc["avg", "adds"], rows.loc["avg", "muls"]) == (T * B * N * 2, T * B * N * 2)
    assert rows.loc["<model>:sum", "adds"] == T * B * N * (2 - 1)
    assert rows.loc["<model>:sum#2", "adds"] == T * B * (N - 1)
    assert rows.loc["<model>:sum#3", "adds"] == T * B * (N - 1) * D
    mean = rows.loc["<model>:mean"]
    assert (mean["adds"], mean["muls"]) == (T * B * (D - 1), T * B)
    assert set(report.lif_sites["neuron"]) == {"LIFNode"}
    per_step = report.per_step.groupby("name")["acs"].sum()
    assert per_step["<model>:matmul"] == mm1["acs"]


def test_window_pool_taps_equal_brute_force():
    for size, k, s, p, ceil in [(7, 3, 2, 1, True), (8, 2, 2, 0, False), (9, 3, 3, 1, True), (5, 3, 1, 1, False)]:
        ones = torch.ones(1, 1, size, size)
        out = F.avg_pool2d(ones, k, s, p, ceil_mode=ceil, count_include_pad=True, divisor_override=1)
        assert window_pool_taps((size, size), out.shape[-2:], k, s, p) == int(out.sum())


def _adaptive_taps_by_torch(in_size: tuple, out_size: tuple) -> int:
    """Brute force: (output, input) pairs of an adaptive pooling, from torch's own pooling of one one-hot
    map per input position (output o reads position p iff o is non-zero for p's one-hot map)."""
    n = math.prod(in_size)
    one_hot = torch.eye(n).reshape(n, 1, *in_size)
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(in_size)]
    return int(torch.count_nonzero(pool(one_hot, out_size)))


ADAPTIVE_CASES = [
    ((2, 2), (7, 7)),
    ((5, 5), (3, 3)),
    ((16, 16), (5, 5)),
    ((7, 9), (1, 1)),
    ((6,), (4,)),
    ((3, 4, 5), (2, 3, 7)),
]


@pytest.mark.parametrize("in_size, out_size", ADAPTIVE_CASES)
def test_adaptive_pool_counts_equal_brute_force(in_size, out_size):
    """Overlapping windows (5 -> 3), enlarging maps (2 -> 7, where input - output would be negative),
    uneven splits and a global pool: module and functional rules both read every window's taps."""
    from gac_analysis.accounting.handles import adaptive_pool_counts

    nd = len(in_size)
    taps, outputs = _adaptive_taps_by_torch(in_size, out_size), math.prod(out_size)
    planes = 2 * 3  # batch 2, 3 channels
    x_shape, out_shape = (2, 3, *in_size), (2, 3, *out_size)
    assert adaptive_pool_counts("maxpool", x_shape, out_shape, nd) == {"compares": planes * (taps - outputs)}
    assert adaptive_pool_counts("avgpool", x_shape, out_shape, nd) == {
        "adds": planes * (taps - outputs),
        "muls": planes * outputs,
    }
    suffix = f"{nd}d"
    for module_type, functional_pool, counter in [
        (getattr(nn, f"AdaptiveAvgPool{suffix}"), getattr(F, f"adaptive_avg_pool{suffix}"), "adds"),
        (getattr(nn, f"AdaptiveMaxPool{suffix}"), getattr(F, f"adaptive_max_pool{suffix}"), "compares"),
    ]:
        pool = module_type(out_size)

        class Both(nn.Module):
            T = 1

            def __init__(self, pool=pool):
                super().__init__()
                self.pool = pool

            def forward(self, images, fn=functional_pool):  # images [B, 3, 1, H*W...]: the pooled map, flat
                x = images.reshape(x_shape)
                return self.pool(x).sum() + fn(x, out_size).sum()

        rows = profile(Both(), torch.rand(2, 3, 1, math.prod(in_size))).layers.set_index("name")
        assert rows.loc["pool", counter] == planes * (taps - outputs) >= 0
        assert rows.loc["<model>:" + ("avgpool" if counter == "adds" else "maxpool"), counter] == planes * (
            taps - outputs
        )


class Unknown(nn.Module):
    T = 1

    def forward(self, x):
        return torch.cumsum(x, dim=-1).sum() + torch.erfinv(x.clamp(-0.5, 0.5)).sum()


def test_unsupported_ops_are_listed_and_warned_once():
    x = torch.rand(2, 3, 4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = profile(Unknown(), x)
    ours = [w for w in caught if issubclass(w.category, UnsupportedOpsWarning)]
    assert len(ours) == 1 and "cumsum" in str(ours[0].message) and "erfinv" in str(ours[0].message)
    rows = {(r["op"], r["module"]): r for r in report.unsupported}
    assert rows[("cumsum", "<model>")] == {"op": "cumsum", "module": "<model>", "calls": 1, "elements": x.numel()}
    assert rows[("erfinv", "<model>")]["elements"] == x.numel()
    assert report.coverage["unsupported_calls"] == 2
    assert report.to_dict()["unsupported"] == report.unsupported
    assert report.to_dict()["coverage"]["counted_calls"] >= 3  # two sums, one clamp, one add


def test_strict_makes_unsupported_ops_an_error():
    with pytest.raises(UnsupportedOpsError, match=r"no counting rule for 2 operation\(s\): cumsum, erfinv"):
        profile(Unknown(), torch.rand(1, 3, 4, 4), strict=True)


def test_strict_cli_exit_code_is_that_of_a_gac_error():
    from gac_analysis.errors import GacError

    assert issubclass(UnsupportedOpsError, GacError) and UnsupportedOpsError.exit_code == 2


def test_T_from_model_or_argument():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), neuron.IFNode(step_mode="s"))
    with pytest.raises(TimeStepsError, match="Sequential has no attribute T and no T was given"):
        profile(net, torch.rand(1, 3, 5, 5))
    assert profile(net, torch.rand(1, 3, 5, 5), T=1).T == 1
    net.T = 1
    with pytest.raises(TimeStepsError, match="T=4 was given but Sequential.T is 1"):
        profile(net, torch.rand(1, 3, 5, 5), T=4)


class SingleStepLoop(nn.Module):
    """Single-step SpikingJelly layers; the forward loops over T steps itself."""

    def __init__(self, T=3):
        super().__init__()
        self.T = T
        self.conv = layer.Conv2d(3, 4, 3, padding=1, bias=False)
        self.lif = neuron.LIFNode(v_threshold=0.2)
        self.fc = layer.Linear(4 * 16, 5)

    def forward(self, x):
        out = 0
        for _ in range(self.T):
            s = self.lif(self.conv(x))
            out = out + self.fc(s.flatten(1))
        return out / self.T


def test_single_step_loop_counted_once_per_step():
    torch.manual_seed(0)
    net = SingleStepLoop()
    x = torch.rand(2, 3, 4, 4) * 2
    report = profile(net, x)
    rows = report.layers.set_index("name")
    assert list(report.lif_sites["name"]) == ["lif"] and report.lif_sites.loc[0, "neurons"] == 4 * 16
    assert rows.loc["conv", "calls"] == 3 and rows.loc["conv", "dense_macs"] == 3 * 2 * 4 * 16 * 27
    # hand count of the spikes per step
    functional.reset_net(net)
    with torch.no_grad():
        spikes = [net.lif(net.conv(x)) for _ in range(3)]
    functional.reset_net(net)
    steps = report.per_step[report.per_step["name"] == "lif"].set_index("step")["spikes"]
    assert [steps[t] for t in range(3)] == [int(s.sum()) for s in spikes]
    fc_steps = report.per_step[report.per_step["name"] == "fc"].set_index("step")["acs"]
    assert [fc_steps[t] for t in range(3)] == [int(s.sum()) * 5 for s in spikes]
    assert report.lif_sites.loc[0, "per_step_rate"] == [int(s.sum()) / (64 * 2) for s in spikes]


def test_op_names():
    assert op_name(torch.Tensor.__radd__) == "add" and op_name(torch.Tensor.mul_) == "mul"
    assert op_name(torch.Tensor.__rmatmul__) == "matmul" and op_name(F.max_pool2d) == "max_pool2d"
    assert op_name(torch.Tensor.__truediv__) == "div" and op_name(torch.Tensor.__getitem__) == "getitem"


def test_importing_gac_analysis_leaves_loggers_alone():
    import importlib
    import logging
    import subprocess
    import sys

    code = (
        "import logging; import gac_analysis.models.neurons, gac_analysis.accounting; "
        "print(logging.getLogger('torch._inductor').level, logging.getLogger('spikingjelly').level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"]
    from gac_analysis.models.neurons import LIF

    before = [logging.getLogger(n).level for n in ("torch._inductor", "spikingjelly")]
    LIF()(torch.rand(2, 3))
    assert [logging.getLogger(n).level for n in ("torch._inductor", "spikingjelly")] == before
    importlib.import_module("gac_analysis.models.neurons")


class EinsumAndHardswish(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.act = nn.Hardswish()

    def forward(self, images):  # [B, 3, 4, 4]
        a = (images > 0.5).float().flatten(2)  # spikes [B, 3, 16]
        b = (images < 0.3).float().flatten(2).transpose(1, 2)
        return torch.einsum("bik,bkj->bij", a, b) + self.act(a @ b)


def test_einsum_counts_like_matmul_and_docs_rule_example():
    from gac_analysis.accounting import register_handle

    def hardswish_rule(module, inputs, out, cs):
        n = cs.uniform(out.numel())
        return {"compares": n, "adds": n, "muls": n}

    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UnsupportedOpsWarning, match="hardswish"):
        plain = profile(EinsumAndHardswish(), x)
    assert [r["op"] for r in plain.unsupported] == ["hardswish"]
    report = profile(EinsumAndHardswish(), x, handles=register_handle(nn.Hardswish, "hardswish", hardswish_rule))
    assert report.unsupported == [] and report.coverage["unsupported_calls"] == 0
    rows = report.layers.set_index("name")
    a = (x > 0.5).float().flatten(2)
    b = (x < 0.3).float().flatten(2).transpose(1, 2)
    pairs = int((a.double() @ b.double()).sum())
    assert rows.loc["<model>:matmul", "acs"] == rows.loc["<model>:matmul#2", "acs"] == pairs
    assert rows.loc["<model>:matmul", "dense_macs"] == rows.loc["<model>:matmul#2", "dense_macs"] == 2 * 3 * 16 * 3
    assert rows.loc["<model>:matmul", "acs_alt"] == int(a.sum()) * 3
    assert rows.loc["act", "muls"] == 2 * 3 * 3


class EinsumForms(nn.Module):
    """One-operand einsums (a permutation, a sum over dropped indices), a broadcast two-operand einsum
    (a key of batch size 1 against every query), a diagonal (no rule) and labelled compares."""

    T = 2

    def forward(self, images):  # [B, 3, 4, 4]
        s = (images > 0.5).float()
        perm = torch.einsum("nchw->nhwc", s)
        pooled = torch.einsum("nchw->nc", s)
        q = s.flatten(2)  # [B, 3, 16]
        key = (images[:1] < 0.3).float().flatten(2)  # [1, 3, 16], broadcast over the batch
        scores = torch.einsum("bnc,bmc->bnm", q, key)
        diag = torch.einsum("nkii->nki", images[:, :, :3, :3])
        gate = torch.where(images > 0.5, images, images * 0)
        return perm.sum() + pooled.sum() + scores.sum() + diag.sum() + gate.clamp(0, 1).sum()


def test_einsum_one_operand_broadcast_and_op_labels():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UnsupportedOpsWarning, match="einsum"):
        report = profile(EinsumForms(), x)
    assert [(r["op"], r["calls"]) for r in report.unsupported] == [("einsum", 1)]  # the diagonal
    rows = report.layers.set_index("name")
    assert rows.loc["<model>:einsum", "adds"] == 0  # a permutation
    assert rows.loc["<model>:einsum#2", "adds"] == x.numel() - 2 * 3  # a sum over h and w
    q = (x > 0.5).float().flatten(2)
    key = (x[:1] < 0.3).float().flatten(2).expand(2, 3, 16)
    assert rows.loc["<model>:matmul", "dense_macs"] == 2 * 3 * 3 * 16  # the key's batch of 1 broadcast
    assert rows.loc["<model>:matmul", "acs"] == int((q.double() @ key.double().transpose(1, 2)).sum())
    assert rows.loc["<model>:matmul", "acs_alt"] == int(q.sum()) * 3  # nnz(q) x the keys (m = 3)
    ops = set(report.layers["op"])
    assert {"gt", "lt", "where", "clamp", "einsum", "matmul"} <= ops and "maximum" not in ops


class KeywordCalls(nn.Module):
    """Counted modules called with keywords only (``conv(input=x)``), and a module with a user's rule
    called with a list, which that rule cannot read."""

    T = 1

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lif = neuron.IFNode(v_threshold=0.2, step_mode="s")
        self.fc = nn.Linear(4 * 16, 5)
        self.pair = PairSum()

    def forward(self, images):  # [B, 3, 4, 4]
        s = self.lif(x=self.conv(input=images))
        return self.fc(input=s.flatten(1)) + self.pair([s, s]).mean()


class PairSum(nn.Module):
    def forward(self, parts):
        return parts[0] * 0 + parts[1]


def test_keyword_calls_are_counted_and_an_unreadable_call_is_listed():
    from gac_analysis.accounting import register_handle

    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    net = KeywordCalls()
    with torch.no_grad():
        functional.reset_net(net)
        s = net.lif(net.conv(x))
    handles = register_handle(PairSum, "pairsum", lambda m, inputs, out, cs: {"adds": cs.uniform(out.numel())})
    with pytest.warns(UnsupportedOpsWarning, match="pairsum"):
        report = profile(net, x, handles=handles)
    rows = report.layers.set_index("name")
    assert rows.loc["conv", "dense_macs"] == 2 * 16 * 4 * 3 * 9  # the keyword-called conv, counted
    assert rows.loc["fc", "acs"] == int(s.sum()) * 5  # the keyword-called linear, counted
    assert report.lif_sites.set_index("name").loc["lif", "spikes"] == int(s.sum())
    assert report.unsupported == [
        {"op": "pairsum (input list, output Tensor)", "module": "pair", "calls": 1, "elements": s.numel()}
    ]


def test_a_forward_error_is_one_line_and_a_rule_error_keeps_its_traceback(monkeypatch):
    from gac_analysis.accounting import functional as fn_rules
    from gac_analysis.accounting.engine import is_internal
    from gac_analysis.errors import ModelForwardError

    net = nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode(step_mode="s"))
    with pytest.raises(ModelForwardError) as e:
        profile(net, torch.rand(2, 3, 8, 8), T=1)
    message = str(e.value)
    assert message.startswith("batch 0: Sequential's forward raised RuntimeError on images of shape [2, 3, 8, 8] (T=1)")
    assert "channels" in message and "\n" not in message

    def broken_rule(args, kwargs, out, cs):
        raise ZeroDivisionError("a bug in a rule")

    class Adds(nn.Module):
        T = 1

        def forward(self, x):
            return x + 1

    rules = {**fn_rules.FUNCTION_RULES, "add": broken_rule}
    monkeypatch.setattr(fn_rules, "FUNCTION_RULES", rules)
    with pytest.raises(ZeroDivisionError) as e:
        profile(Adds(), torch.rand(1, 3, 2, 2))
    assert is_internal(e.value) and any("a bug of gac-analysis" in n for n in e.value.__notes__)


@pytest.mark.parametrize(
    "T, message", [("x", "whole number"), (2.5, "whole number"), (0, ">= 1"), (True, "whole number")]
)
def test_T_must_be_a_whole_number_of_steps(T, message):
    net = nn.Sequential(nn.Conv2d(3, 2, 3), neuron.IFNode(step_mode="s"))
    with pytest.raises(TimeStepsError, match=message):
        profile(net, torch.rand(1, 3, 4, 4), T=T)
    net.T = T
    with pytest.raises(TimeStepsError, match=f"Sequential.T must be .*{message}"):
        profile(net, torch.rand(1, 3, 4, 4))


class OwnLoop(nn.Module):
    """Single-step: the model's own forward loops over T with two adds and a mul per step, between
    modules; a block called once per step adds inside its forward."""

    def __init__(self, T=3):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lif = neuron.IFNode(v_threshold=0.3, step_mode="s")
        self.block = PlusOne()

    def forward(self, images):
        outs = []
        for _ in range(self.T):
            s = self.lif(self.conv(images))
            r = s + s
            r = r + self.block(s) * 0.5
            outs.append(r.flatten(1))
        return torch.stack(outs).mean(0)


class PlusOne(nn.Module):
    def forward(self, x):
        return x + 1


def test_a_single_step_models_own_loop_gives_its_operations_time_steps():
    T, B = 3, 2
    x = torch.rand(B, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    report = profile(OwnLoop(T), x)
    rows = report.layers.set_index("name")
    n = B * 4 * 16  # elements of one step's map
    # one site per position in a step, T calls each; no per-call sites
    assert rows.loc["<model>:add", "adds"] == rows.loc["<model>:add#2", "adds"] == T * n
    assert rows.loc["<model>:mul", "muls"] == rows.loc["block:add", "adds"] == T * n
    assert not any(name.startswith("<model>:add#3") for name in rows.index)
    per_step = report.per_step.set_index(["name", "step"])
    for name, counter in (
        ("<model>:add", "adds"),
        ("<model>:add#2", "adds"),
        ("<model>:mul", "muls"),
        ("block:add", "adds"),
    ):
        assert [per_step.loc[(name, t), counter] for t in range(T)] == [n] * T, name
        assert (name, -1) not in per_step.index or per_step.loc[(name, -1), counter] == 0


class ScaledConv(nn.Conv2d):
    """A user's conv subclass whose forward does more than the conv (the extra work must be counted)."""

    def forward(self, x):
        y = super().forward(x)
        return torch.sigmoid(y) * y + y.mean()


class DoubledPool(nn.MaxPool2d):
    def forward(self, x):
        return super().forward(x) * 2


class Subclasses(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.conv = ScaledConv(3, 4, 3, padding=1, padding_mode="circular")
        self.pool = DoubledPool(2)
        self.plain = layer.Conv2d(4, 2, 1, step_mode="s")  # SpikingJelly's wrapper: its forward adds nothing

    def forward(self, images):
        return self.plain(self.pool(self.conv(images))).sum()


def test_the_extra_work_of_a_subclassed_module_is_counted_and_its_own_op_once():
    from gac_analysis.accounting.handles import extends_forward

    net = Subclasses()
    assert extends_forward(net.conv) and extends_forward(net.pool) and not extends_forward(net.plain)
    assert not extends_forward(nn.Conv2d(1, 1, 1)) and not extends_forward(neuron.LIFNode())
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    report = profile(net, x)
    assert report.unsupported == []  # the conv's own pad and conv2d are its rule's, not listed
    rows = report.layers.set_index("name")
    n = 2 * 4 * 4 * 4  # the conv's output elements
    assert rows.loc["conv", "dense_macs"] == n * 3 * 9
    assert rows.loc["conv:sigmoid", "sigmoids"] == rows.loc["conv:mul", "muls"] == rows.loc["conv:add", "adds"] == n
    assert (rows.loc["conv:mean", "adds"], rows.loc["conv:mean", "muls"]) == (n - 1, 1)
    assert rows.loc["pool", "compares"] == 2 * 4 * (16 - 4) and rows.loc["pool:mul", "muls"] == 2 * 4 * 4
    assert rows.loc["plain", "dense_macs"] == 2 * 2 * 2 * 2 * 4
    assert not [name for name in rows.index if name.startswith("plain:")]


class CroppedConv(nn.Conv2d):
    """Its base call reads a crop of its input, and its output is reduced over the channels."""

    def forward(self, x):
        return super().forward(x[..., 1:-1, 1:-1]).sum(1, keepdim=True)


class TwiceConv(nn.Conv2d):
    """Two base calls in one forward (its own conv2d twice)."""

    def forward(self, x):
        return super().forward(x) + super().forward(x.flip(-1))


class PaddedByHand(nn.Conv2d):
    """A 'zeros' conv whose subclass pads its input itself: the pad is the subclass's (free), and the
    conv reads the padded map."""

    def forward(self, x):
        return super().forward(F.pad(x, (2, 2, 2, 2)))


class ChannelMaxPool(nn.MaxPool2d):
    def forward(self, x):
        return super().forward(x).amax(1)


class OpenAroundTheirBaseCalls(nn.Module):
    T = 1

    def __init__(self):
        super().__init__()
        self.lif = neuron.IFNode(v_threshold=0.5)
        self.crop = CroppedConv(3, 4, 3, padding=1)
        self.twice = TwiceConv(1, 2, 3)
        self.padded = PaddedByHand(2, 3, 3)
        self.pool = ChannelMaxPool(2)

    def forward(self, images):
        y = self.twice(self.crop(self.lif(images)))
        return self.pool(self.padded(y))


def test_an_open_module_is_counted_from_its_base_calls_inputs_and_outputs():
    """The rule of a subclass counted open reads what each base call received and returned: a crop before
    it and a reduction after it change its counts, a second base call is a second row, a pad the subclass
    makes itself is free work whose output the conv reads. Exact against brute force and shapes."""
    from gac_analysis.accounting.kernels import brute_force_synaptic_ops

    net = OpenAroundTheirBaseCalls()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    report = profile(net, images)
    assert report.unsupported == []
    rows = report.layers.set_index("name")
    with torch.no_grad():
        spikes = (images >= 0.5).float()  # an IF node's first step: v = x, spike where v >= 0.5
        cropped = spikes[..., 1:-1, 1:-1]
        assert rows.loc["crop", "acs"] == int(brute_force_synaptic_ops(cropped, net.crop).sum()) > 0
    assert rows.loc["crop", "input"] == "binary"
    assert rows.loc["crop", "dense_macs"] == 2 * 4 * 6 * 6 * 3 * 9  # the crop's 6x6 output, not 8x8
    assert rows.loc["crop", "bias_adds"] == 2 * 4 * 6 * 6  # the base output (4 channels), not the sum's 1
    assert rows.loc["crop:sum", "adds"] == 2 * 3 * 6 * 6
    # twice: a 6x6 map, 3x3 kernel without padding -> 4x4; both base calls counted (one time step: one row)
    assert rows.loc["twice", "dense_macs"] == 2 * (2 * 2 * 4 * 4 * 9) and rows.loc["twice", "calls"] == 2
    assert rows.loc["twice:add", "adds"] == 2 * 2 * 4 * 4
    # padded: 4x4 + 2 on each side = 8x8, 3x3 kernel -> 6x6
    assert rows.loc["padded", "dense_macs"] == 2 * 3 * 6 * 6 * 2 * 9
    assert report.coverage["free_calls"] >= 2  # the pad and the flip
    # pool: 6x6 -> 3x3 per channel (3 compares per window), then the max over the 3 channels
    assert rows.loc["pool", "compares"] == 2 * 3 * 9 * 3
    assert rows.loc["pool:amax", "compares"] == 2 * 9 * 2
    assert not [name for name in rows.index if name.endswith(("conv2d", "max_pool2d"))]


class GainLIF(neuron.LIFNode):
    """Work around its dynamics: a gain before, a doubling after (its spikes are its dynamics' output)."""

    def forward(self, x):
        return super().forward(x * 1.5) * 2


class NormedIF(neuron.IFNode):
    """A child module run by its own forward, before its dynamics."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = nn.BatchNorm1d(16)

    def forward(self, x_seq):
        return self.multi_step_forward(self.norm(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2]))


class HandWrittenNeuron(neuron.BaseNode):
    """A neuron whose forward is its whole update (no base dynamics called): the neuron's own work."""

    def forward(self, x):
        self.v = self.v * 0.5 + x
        spike = (self.v >= 1.0).float()
        self.v = self.v * (1.0 - spike)
        return spike


class NeuronsWithWorkAround(nn.Module):
    T = 2

    def __init__(self):
        super().__init__()
        self.gain = GainLIF(step_mode="m")
        self.normed = NormedIF(step_mode="m")
        self.fc = layer.Linear(16, 3, step_mode="m")

    def forward(self, images):  # [B, 3, 4, 4] -> [T, B, 16] from channel 0
        x = images[:, 0].flatten(1).unsqueeze(0).repeat(self.T, 1, 1)
        return self.fc(self.gain(x)).mean(0) + self.fc(self.normed(x)).mean(0)


def test_the_work_a_neuron_subclass_does_around_its_dynamics_is_counted_and_its_spikes_are_its_dynamics():
    from gac_analysis.accounting.handles import extends_forward

    net = NeuronsWithWorkAround().eval()
    assert extends_forward(net.gain) and extends_forward(net.normed)
    assert not extends_forward(HandWrittenNeuron()) and not extends_forward(neuron.LIFNode())
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(9)) * 2
    report = profile(net, images)
    assert report.unsupported == []
    x = images[:, 0].flatten(1).unsqueeze(0).repeat(2, 1, 1)
    with torch.no_grad():  # the same dynamics, run by hand on what the subclasses give them
        plain_lif, plain_if = neuron.LIFNode(step_mode="m"), neuron.IFNode(step_mode="m")
        gain_spikes = plain_lif(x * 1.5)
        normed_spikes = plain_if(net.normed.norm(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
    assert 0 < gain_spikes.sum() < gain_spikes.numel() and 0 < normed_spikes.sum() < normed_spikes.numel()
    sites = report.lif_sites.set_index("name")
    assert sites.loc["gain", "spikes"] == int(gain_spikes.sum()) and sites.loc["gain", "output"] == "binary"
    assert sites.loc["normed", "spikes"] == int(normed_spikes.sum())
    assert sites.loc["gain", "neuron_steps"] == sites.loc["normed", "neuron_steps"] == 2 * 3 * 16
    rows = report.layers.set_index("name")
    assert rows.loc["gain:mul", "muls"] == rows.loc["gain:mul#2", "muls"] == 2 * 3 * 16  # the gain, the doubling
    assert rows.loc["normed.norm", "op"] == "batchnorm" and rows.loc["normed.norm", "muls"] > 0
    assert rows.loc["fc", "input"] == "integer"  # the doubled spikes (0/2): not spikes any more
    assert rows.loc["fc#2", "input"] == "binary"
    for m in (net.gain, net.normed):  # the model as it was: no wrapper left on the instances
        assert "single_step_forward" not in vars(m) and "multi_step_forward" not in vars(m)


class GradedNeurons(nn.Module):
    """A LIF node whose surrogate does not spike (spiking=False: real outputs) and an ordinary one."""

    T = 2

    def __init__(self):
        super().__init__()
        from spikingjelly.activation_based import surrogate

        self.graded = neuron.LIFNode(surrogate_function=surrogate.ATan(spiking=False), step_mode="m")
        self.spiking = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.fc = layer.Linear(16, 3, step_mode="m")

    def forward(self, images):  # [B, 3, 4, 4] -> [T, B, 16] from channel 0
        x = images[:, 0].flatten(1).unsqueeze(0).repeat(self.T, 1, 1)
        return self.fc(self.graded(x)).mean(0) + self.fc(self.spiking(x)).mean(0)


def test_a_neuron_with_graded_outputs_is_said_to_be_one():
    from gac_analysis.report_model import graded_neurons_note

    report = profile(GradedNeurons(), torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(6)))
    sites = report.lif_sites.set_index("name")
    assert sites.loc["graded", "output"] == "graded" and sites.loc["spiking", "output"] == "binary"
    rows = report.layers.set_index("name")
    assert rows.loc["fc", "input"] == "real" and rows.loc["fc#2", "input"] == "binary"
    note = graded_neurons_note(zip(report.lif_sites["name"], report.lif_sites["output"]))
    assert note.startswith("1 neuron layer(s) output values other than 0 and 1 (graded)")
    assert graded_neurons_note([("a", "binary"), ("b", None)]) is None
    assert [s["output"] for s in report.to_dict()["lif_sites"]] == ["graded", "binary"]
