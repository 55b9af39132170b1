"""This project's LIF is a SpikingJelly LIFNode for SpikingJelly's neuron-aware counters, with unchanged outputs."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron import LIFNode
from spikingjelly.activation_based.op_counter import DispatchCounterMode, NeuronStateCounter

from gac_analysis.accounting import profile
from gac_analysis.models import build_model
from gac_analysis.models.neurons import LIF, LIF_VARIANTS, lif_reference


def test_lif_is_a_spikingjelly_lif_node_with_the_reference_dynamics():
    for variant in LIF_VARIANTS.values():
        lif = LIF(variant.name)
        assert isinstance(lif, LIFNode) and lif.tau == variant.tau and lif.decay_input is False
        x = torch.randn(6, 3, 50, generator=torch.Generator().manual_seed(0)) * 2
        assert torch.equal(lif(x), lif_reference(x, variant.decay, variant.v_threshold))
        assert lif.v == 0.0 and lif.state_dict() == {}


def test_neuron_state_counter_sees_every_lif_update():
    """SpikingJelly's NeuronStateCounter counts one threshold compare per neuron and step of every LIF
    site of a GAC model: exactly the report's neuron_steps."""
    torch.manual_seed(0)
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=8).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    counter = NeuronStateCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        model(images)
    functional.reset_net(model)
    report = profile(model, images)
    root = type(model).__name__
    comps = {scope.removeprefix(root + "."): rec["state_comps"] for scope, rec in counter.metric_records.items()}
    sites = report.lif_sites
    assert len(sites) == sum(isinstance(m, LIF) for m in model.modules())
    for name, steps in zip(sites["name"], sites["neuron_steps"]):
        assert comps[name] == steps > 0, name
    assert comps["Global"] == sites["neuron_steps"].sum()
