"""SpikingJelly 2.0's model zoo, counted by ``profile`` and checked against independent counters.

Oracles, per model (seeded weights and inputs on which every neuron layer fires, see zoo_fixtures):

- exact synaptic ops (spike-driven conv / linear / matmul): this project's ``acs`` equal SpikingJelly's
  ``SynOpCounter`` (run under ``no_grad``) to the integer, in total and for every module scope
  (a scope's count includes its submodules', as SpikingJelly records it);
- dense MACs of conv / linear / matmul equal torch's ``FlopCounterMode`` (FLOPs / 2) per module scope;
- conventions converted in the tests: SynOpCounter prices only spike inputs, so an integer-valued input
  (SEW ADD) is 0 SynOps there and this project's ``acs`` 0 too, its pairs going to ``integer_ops``;
  spike x spike products are the pairs of two ones in both (the alternative ``nnz(left) x N`` is
  ``acs_alt``); BN is no SynOp in either (it is ``muls``/``adds`` here).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn

import zoo_fixtures as zf
from gac_analysis.accounting import CounterConfig, OpCounter, count_images, profile

SYNAPTIC_AND_PRODUCTS = ("conv1d", "conv2d", "conv3d", "linear", "matmul")


def _called_scopes(model: nn.Module) -> set[str]:
    """Module paths that run a forward (containers such as ModuleList are never called)."""
    return {name for name, m in model.named_modules() if not isinstance(m, (nn.ModuleList, nn.ModuleDict))}


def _our_scopes(report, column: str, ops=None) -> dict[str, int]:
    per_path: dict[str, int] = defaultdict(int)
    for name, op, value in zip(report.layers["name"], report.layers["op"], report.layers[column]):
        if ops is None or op in ops:
            per_path[zf.site_module(name)] += int(value)
    return zf.scope_totals(per_path)


def _check_against_peers(model, images, report):
    called = _called_scopes(model)
    sites = report.lif_sites
    assert len(sites) == sum(isinstance(m, zf.neuron.BaseNode) for m in model.modules())
    assert (sites["spikes"] > 0).all(), "every neuron layer must fire for the oracles to mean something"
    assert sites["spikes"].sum() < sites["neuron_steps"].sum()
    assert report.coverage["unsupported_calls"] == 0 and report.unsupported == []

    ours = {k: v for k, v in _our_scopes(report, "acs").items() if k in called}
    sj = zf.synop_counts(model, images)
    assert ours[""] == sj[""] > 0
    assert ours == sj

    dense = {k: v for k, v in _our_scopes(report, "dense_macs", SYNAPTIC_AND_PRODUCTS).items() if k in called}
    assert dense == zf.flop_counts(model, images)


@pytest.mark.parametrize("name", list(zf.ZOO))
def test_zoo_model_counts_equal_synop_counter_and_flop_counter(name):
    model, images = zf.build(name)
    report = profile(model, images)
    _check_against_peers(model, images, report)
    assert set(report.lif_sites["neuron"]) <= {"LIFNode", "ParametricLIFNode"}
    steps = report.per_step[report.per_step["step"] >= 0].groupby("name")["acs"].sum()
    totals = report.layers.set_index("name")["acs"]
    assert (
        steps.reindex(totals.index, fill_value=0)
        + report.per_step[report.per_step["step"] < 0].groupby("name")["acs"].sum().reindex(totals.index, fill_value=0)
    ).equals(totals)


def test_transformer_spike_products_are_pairs_of_ones():
    """Spikformer's q @ k^T multiplies two spike tensors: acs = pairs of ones = sum(q @ k^T)."""
    model, images = zf.build("spikformer_ti")
    captured = []

    class Grab(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if getattr(func, "__name__", "") in ("matmul", "__matmul__") and len(captured) < 1:
                captured.append((args[0].clone(), args[1].clone()))
            return out

    zf.functional.reset_net(model)
    with torch.no_grad(), Grab():
        model(images)
    q, kt = captured[0]
    assert ((q == 0) | (q == 1)).all() and ((kt == 0) | (kt == 1)).all()
    report = profile(model, images)
    first = report.layers[report.layers["op"] == "matmul"].iloc[0]
    assert first["acs"] == int((q.double() @ kt.double()).sum())
    assert first["acs_alt"] == int((q != 0).sum()) * kt.shape[-1]  # nnz(left) x N, not priced
    assert first["effective_macs"] == 0 and first["input"] == "binary"


@pytest.mark.parametrize("family", ["sew_resnet18", "spiking_resnet18", "spiking_vgg11_bn"])
def test_torchvision_families_through_a_stand_in(family, monkeypatch):
    """SEW-ResNet / Spiking ResNet / Spiking VGG (they import torchvision, replaced by a stand-in),
    single-step looped over T and multi-step: the same counts, equal to SynOpCounter."""
    import importlib

    zf.install_torchvision_stand_in(monkeypatch)
    module = {"sew_resnet18": "sew_resnet", "spiking_resnet18": "spiking_resnet", "spiking_vgg11_bn": "spiking_vgg"}[
        family
    ]
    factory = getattr(importlib.import_module(f"spikingjelly.activation_based.model.{module}"), family)
    extra = {"cnf": "ADD"} if family.startswith("sew") else {}
    reports = {}
    for mode in ("s", "m"):
        torch.manual_seed(0)
        model = zf.prepare(zf.OverTime(factory(num_classes=10, **extra, **zf.lif_kwargs()), zf.T, mode))
        images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
        reports[mode] = report = profile(model, images)
        _check_against_peers(model, images, report)
    s, m = reports["s"], reports["m"]
    cols = ["name", "op", "input", "dense_macs", "acs", "effective_macs", "integer_ops", "integer_value_ops"]
    assert s.layers[cols].equals(m.layers[cols])
    assert s.lif_sites["spikes"].tolist() == m.lif_sites["spikes"].tolist()
    assert s.lif_sites["per_step_rate"].tolist() == m.lif_sites["per_step_rate"].tolist()
    step_cols = ["name", "step", "acs", "spikes", "dense_macs"]
    assert s.per_step[step_cols].reset_index(drop=True).equals(m.per_step[step_cols].reset_index(drop=True))
    synaptic = s.layers["op"].isin(SYNAPTIC_AND_PRODUCTS)
    assert (s.layers.loc[synaptic, "calls"] == zf.T * m.layers.loc[synaptic, "calls"]).all()  # once per step
    if family.startswith("sew"):
        integer = s.layers[s.layers["input"] == "integer"]
        assert len(integer) > 0 and (integer["acs"] == 0).all() and (integer["integer_ops"] > 0).all()


def test_integer_inputs_value_weighted_count_equals_brute_force(monkeypatch):
    """SEW ADD feeds convs with values in {0, 1, 2}: integer_ops = pairs of non-zero inputs and
    weights; integer_value_ops = the same pairs weighted by the value (k ACs for a value k), both equal
    to a dense convolution of the indicator / of |x| with an all-ones kernel."""
    import importlib

    zf.install_torchvision_stand_in(monkeypatch)
    sew = importlib.import_module("spikingjelly.activation_based.model.sew_resnet")
    torch.manual_seed(0)
    model = zf.prepare(zf.OverTime(sew.sew_resnet18(cnf="ADD", num_classes=10, **zf.lif_kwargs()), zf.T, "m"))
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    inputs = {}

    def keep(name):
        def hook(module, args, output):
            inputs.setdefault(name, args[0].clone())

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    zf.functional.reset_net(model)
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    report = profile(model, images)
    mac = report.energy["options"]
    assert mac["integer_pricing"] == "mac"
    rows = report.layers.set_index("name")
    modules = dict(model.named_modules())
    checked = 0
    for name, x in inputs.items():
        if rows.loc[name, "input"] != "integer":
            continue
        conv = modules[name]
        flat = x.flatten(0, 1).double()
        assert (flat == flat.round()).all() and flat.max() > 1
        ones = torch.ones_like(conv.weight, dtype=torch.float64)
        pairs = torch.nn.functional.conv2d((flat != 0).double(), ones, None, conv.stride, conv.padding)
        weighted = torch.nn.functional.conv2d(flat.abs(), ones, None, conv.stride, conv.padding)
        assert rows.loc[name, "integer_ops"] == int(pairs.sum())
        assert rows.loc[name, "integer_value_ops"] == int(weighted.sum())
        checked += 1
    assert checked >= 5
    k_ac = profile(model, images, integer_pricing="k_ac")
    table = report.energy["table"]
    assert k_ac.energy["options"]["integer_pricing"] == "k_ac"
    assert report.energy["complete"]["integer_inputs_pj"] == pytest.approx(rows["integer_ops"].sum() * table["mac"])
    assert k_ac.energy["complete"]["integer_inputs_pj"] == pytest.approx(rows["integer_value_ops"].sum() * table["ac"])
    assert rows["integer_value_ops"].sum() > rows["integer_ops"].sum()
    assert k_ac.energy["complete"]["breakdown"]["mac_pj"] < report.energy["complete"]["breakdown"]["mac_pj"]


def test_zoo_model_is_left_as_found():
    model, images = zf.build("spikformer_ti")
    model.train()
    zf.functional.reset_net(model)
    nodes = [m for m in model.modules() if isinstance(m, zf.neuron.BaseNode)]
    nodes[0].v = torch.full((3,), 0.25)  # a user's state from an earlier run
    modes = [m.step_mode for m in nodes]
    count_images(model, images)
    assert model.training and [m.step_mode for m in nodes] == modes
    assert torch.equal(nodes[0].v, torch.full((3,), 0.25)) and all(
        m.v == 0.0 for m in nodes[1:] if not isinstance(m.v, torch.Tensor)
    )


def test_batches_reset_neuron_state():
    """Two batches of one image each count exactly as one batch of two (state reset between them)."""
    model, images = zf.build("sdt_8_384")
    two = torch.cat([images, images.flip(-1)])
    one_batch = profile(model, two)
    split = profile(model, [two[:1], two[1:]])
    assert one_batch.lif_sites["spikes"].tolist() == split.lif_sites["spikes"].tolist()
    assert one_batch.layers["acs"].tolist() == split.layers["acs"].tolist()


def test_counter_config_handles_are_per_counter():
    from gac_analysis.accounting.handles import HANDLES, register_handle

    model, images = zf.build("parametric_lif_cifar10net_s")
    before = HANDLES
    table = register_handle(nn.Conv2d, "myconv", lambda m, i, o, cs: {"adds": cs.uniform(o.numel())})
    assert HANDLES is before and table[0][1] == "myconv" and len(table) == len(HANDLES) + 1
    mine = OpCounter(model, CounterConfig(handles=table))
    with mine, torch.inference_mode():
        model(images)
    zf.functional.reset_net(model)
    assert {s.op for s in mine.sites.values()} >= {"myconv"} and "conv2d" not in {s.op for s in mine.sites.values()}
    assert "myconv" not in set(profile(model, images).layers["op"])
