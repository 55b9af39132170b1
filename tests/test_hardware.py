"""The memory-aware view of a whole report: traffic derived from exact counts, SNN/ANN ratios, bounds."""

import pytest

from gac_analysis.accounting import profile
from gac_analysis.energy.memory import estimate_layer
from gac_analysis.energy.network_memory import layer_traffic
from gac_analysis.models import load_model


@pytest.fixture(scope="module")
def golden(golden_ckpt, golden_input):
    return profile(load_model(golden_ckpt), golden_input)


def test_traffic_comes_from_exact_counts(golden):
    traffic = {
        lt.name: (lt, static) for lt, static in layer_traffic(golden.layers, golden.lif_sites, T=6, num_images=2)
    }
    lt, static = traffic["layers.0.1.conv1"]
    row = golden.layers.set_index("name").loc["layers.0.1.conv1"]
    spikes = golden.lif_sites.set_index("name")["spikes"]
    assert lt.theta_in == row["input_nnz"] / 2 == spikes["layers.0.1.lif1"] / 2  # its input events are lif1's spikes
    assert lt.theta_out == spikes["layers.0.1.lif2"] / 2  # its neurons are lif2's
    assert (lt.c_in, lt.c_out, lt.kernel, lt.stride, lt.out_shape) == (128, 128, (3, 3), (1, 1), (128, 32, 32))
    assert lt.spiking and not static
    stem, static = traffic["stem.conv"]
    assert not stem.spiking and static and stem.theta_out == spikes["encoder.lif"] / 2
    fc, _ = traffic["head.fc"]
    assert fc.kind == "linear" and fc.theta_out == 0


def test_memory_view_in_every_report(golden):
    mem = golden.energy["memory"]
    per = mem["per_image_pj"]
    for key in ("snn_compute", "snn_memory", "snn_total", "ann_compute", "ann_memory", "ann_total"):
        assert per[key] > 0
    assert per["snn_total"] == pytest.approx(per["snn_compute"] + per["snn_memory"])
    assert mem["snn_over_ann"]["compute_only"] == pytest.approx(per["snn_compute"] / per["ann_compute"])
    assert mem["snn_over_ann"]["memory_aware"] == pytest.approx(per["snn_total"] / per["ann_total"])
    # per-layer rows are totals over the images and add up to the per-image totals
    assert sum(r["memory_pj"] for r in mem["layers"]) / 2 == pytest.approx(per["snn_memory"])
    # a spiking layer's row is the estimator's value for its traffic
    lt = next(
        lt
        for lt, _ in layer_traffic(golden.layers, golden.lif_sites, T=6, num_images=2)
        if lt.name == "layers.1.1.conv2"
    )
    est = estimate_layer(lt, "45nm-fp32")
    row = next(r for r in mem["layers"] if r["name"] == "layers.1.1.conv2")
    assert row["memory_pj"] == pytest.approx(2 * est.memory_pj)


def test_bounds_bracket_and_state_assumptions(golden):
    b = golden.energy["memory"]["bounds"]
    assert 0 < b["lower"]["per_image_pj"] < b["upper"]["per_image_pj"]
    assert b["lower"]["compute_pj"] <= golden.energy["complete"]["per_image_mj"] * 1e9 <= b["upper"]["compute_pj"]
    assert any("DRAM" in a for a in b["upper"]["assumptions"])
    assert any("folded" in a for a in b["lower"]["assumptions"])


def test_precision_presets_flow_through(golden_ckpt, golden_input):
    model = load_model(golden_ckpt)
    fp32 = profile(model, golden_input, energy="45nm-fp32").energy["memory"]
    int8 = profile(model, golden_input, energy="45nm-int8").energy["memory"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["per_image_pj"]["snn_compute"] < fp32["per_image_pj"]["snn_compute"]
    assert int8["per_image_pj"]["snn_memory"] < fp32["per_image_pj"]["snn_memory"]  # 8-bit words: smaller memories
