"""The model layer: reference semantics (golden logits and spikes), neurons, parameter counts, roles."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gac_analysis.models import LIF, LIF_VARIANTS, build_model, count_parameters, lif_reference, load_model
from reference_fixtures import LAYOUT_NAMES, arch_of, golden, layouts


def _lif_calls(model):
    calls = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: calls.append((list(o.shape), int(o.sum()), o.numel())))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    return calls, hooks


def test_golden_logits_and_every_lif_call(golden_ckpt, golden_input):
    g = golden()
    model = load_model(golden_ckpt)
    calls, _ = _lif_calls(model)
    with torch.no_grad():
        logits = model(golden_input)
    ref = torch.tensor(g["logits"]).transpose(0, 1)  # golden is batch-major [B, T, classes]
    assert logits.shape == ref.shape == (6, 2, 10)
    assert (logits - ref).abs().max().item() <= 1e-4
    assert len(calls) == len(g["lif_sites"]) == 18
    for (shape, spikes, numel), site in zip(calls, g["lif_sites"]):
        b, t, *rest = site["shape"]
        assert shape == [t, b, *rest]
        assert numel == site["numel"]
        assert spikes == site["spikes"]


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_parameter_counts_match_reference(name):
    entry = layouts()[name]
    model = build_model(
        arch_of(name), num_classes=entry["num_classes"], T=entry["T"], coding="gac" if entry["using_gac"] else "direct"
    )
    assert count_parameters(model) == entry["params"]


def test_gac_module_parameter_count():
    model = build_model("msresnet18-cifar", num_classes=10, T=6, coding="gac")
    assert sum(p.numel() for p in model.encoder.parameters()) == 131_108


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_lif_matches_plain_reference(variant, data):
    T = data.draw(st.integers(1, 8))
    n = data.draw(st.integers(1, 20))
    seed = data.draw(st.integers(0, 10_000))
    x = torch.randn(T, n, generator=torch.Generator().manual_seed(seed)) * 1.5
    v = LIF_VARIANTS[variant]
    lif = LIF(variant)
    assert torch.equal(lif(x), lif_reference(x, v.decay, v.v_threshold))
    assert torch.equal(lif(x), lif(x)), "the neuron must be stateless between calls"


def test_lif_fires_strictly_above_threshold():
    lif = LIF("cifar")
    x = torch.tensor([[1.0], [1.0 + 1e-6]])  # u[0] == V_th exactly: no spike; u[1] = 0.5 + 1 + 1e-6 > 1
    assert lif(x).flatten().tolist() == [0.0, 1.0]
    assert lif(torch.tensor([[0.5], [0.0]])).flatten().tolist() == [0.0, 0.0]


def test_lif_surrogates():
    for variant, expect in [("cifar", 1.0), ("imagenet", 1.0)]:
        v = LIF_VARIANTS[variant]
        x = torch.full((1, 1), v.v_threshold, requires_grad=True)  # u - V_th = 0: triangle peak 1/g^2 = 1
        LIF(variant)(x).sum().backward()
        assert x.grad.item() == pytest.approx(expect)
    x = torch.full((1, 1), 2.5, requires_grad=True)  # far from threshold: zero surrogate in both
    LIF("cifar")(x).sum().backward()
    assert x.grad.item() == 0.0


def test_time_major_forward_shapes_and_roles():
    model = build_model("msresnet18-cifar", num_classes=7, T=3, coding="gac", width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (3, 2, 7)
    roles = {getattr(m, "gac_role", None) for m in model.modules()} - {None}
    assert roles == {"encoder", "attention", "backbone", "head"}
    assert model.layers[0][0].conv1.gac_input == "binary"
    assert model.layers[0][0].shortcut.conv.gac_input == "real"
    assert model.stem.conv.gac_static and model.stem.conv.gac_input == "real"


def test_imagenet_shapes_and_init():
    model = build_model("msresnet18-imagenet", num_classes=5, T=2, coding="gac", width=8).eval()
    sizes = []
    for stage in model.layers:
        stage.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (2, 1, 5)
    assert sizes == [16, 8, 4, 2]  # 64 -> stem 32 -> each stage halves
    assert torch.all(model.layers[0][0].bn1.weight == 0.5) and torch.all(model.layers[0][0].bn2.weight == 0)


def test_gac_output_nonzero_exactly_where_spikes():
    model = build_model("msresnet18-cifar", num_classes=10, T=4, coding="gac", width=8).eval()
    with torch.no_grad():
        i_seq = model.stem_output(torch.randn(2, 3, 32, 32))
        spikes = model.encoder.lif(i_seq)
        y = model.encoder(i_seq)
    assert torch.equal(y != 0, spikes != 0)
    assert y.min() >= 0 and y.max() < 1


def test_direct_coding_passes_stem_output():
    model = build_model("msresnet18-cifar", num_classes=10, T=2, coding="direct", width=8).eval()
    with torch.no_grad():
        i_seq = model.stem_output(torch.randn(1, 3, 32, 32))
        assert torch.equal(model.encoder(i_seq), i_seq)


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet50", num_classes=10, T=4)
    with pytest.raises(ValueError, match="coding"):
        build_model("msresnet18-cifar", num_classes=10, T=4, coding="rate")
    with pytest.raises(ValueError, match="T >= 2"):
        build_model("msresnet18-cifar", num_classes=10, T=1, coding="gac")
