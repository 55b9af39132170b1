"""The observer model: sequence measures, the closed form, observe() and Proposition 1, the T sweep."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gac_analysis.data import open_source
from gac_analysis.errors import ConfigError, DataError, GacError
from gac_analysis.models import LIF, LIF_VARIANTS, build_model, load_model
from gac_analysis.observer import (
    ObserverReport,
    direct_closed_form,
    distinct_values,
    dynamic_duration,
    last_change,
    observe,
    pattern_entropy,
    sweep_T,
    temporal_variance,
)
from gac_analysis.observer.closed_form import simulated_direct_duration


def seq(*values):
    return torch.tensor(values, dtype=torch.float64).unsqueeze(1)  # [T, 1]


def fresh(arch, T, seed=0, width=8):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, num_classes=10, T=T, coding="gac", width=width).eval()


# ---- sequence measures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, expected",
    [
        ((1, 1, 1, 1), 1),
        ((0, 0, 0, 0), 1),
        ((0, 1, 0, 1), 2),
        ((0, 0, 1, 0, 0, 1), 3),
        ((1, 0, 0, 0), 4),
        ((0, 0, 0, 1), 4),
        ((0, 1, 0), 2),
        ((0.3, 0.5, 0.3, 0.5, 0.3), 2),
        ((0.3, 0.5, 0.3, 0.6), 4),
        ((1,), 1),
        ((0.5, 0.5 + 1e-7, 0.5), 1),
        ((0.5, 0.5 + 1e-5, 0.5), 2),
    ],
)
def test_dynamic_duration_hand_written(values, expected):
    assert dynamic_duration(seq(*values), 1e-6).item() == expected


def test_exact_zero_rule_keeps_tiny_values_apart_from_silence():
    o = seq(0.0, 1e-7, 0.0, 1e-7)
    assert dynamic_duration(o, 1e-6).item() == 2
    assert dynamic_duration(o, 1e-6, exact_zero=False).item() == 1
    assert distinct_values(o, 1e-6).item() == 2
    assert distinct_values(o, 1e-6, exact_zero=False).item() == 1


def test_secondary_measures_hand_written():
    o = torch.tensor(
        [[0, 1, 1, 0.3], [1, 1, 0.3, 0.3 + 1e-7], [0, 1, 0.6, 0.3], [1, 1, 0.0, 0.9]], dtype=torch.float64
    )  # [T=4, N=4], one neuron per column
    assert distinct_values(o, 1e-6).tolist() == [2, 1, 4, 2]
    assert last_change(o, 1e-6).tolist() == [4, 0, 4, 4]
    assert last_change(seq(0, 1, 0, 0), 0.0).item() == 3
    assert temporal_variance(seq(0, 1, 0, 1)).item() == pytest.approx(0.25)
    assert dynamic_duration(o, 1e-6).tolist() == [2, 1, 4, 4]
    # vectorised over any trailing shape
    assert dynamic_duration(o.reshape(4, 2, 2), 1e-6).shape == (2, 2)


def test_pattern_entropy():
    same = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    two = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    four = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=torch.float32)
    assert pattern_entropy(same) == 0.0
    assert pattern_entropy(two) == pytest.approx(1.0)
    assert pattern_entropy(four) == pytest.approx(2.0)
    # quantised at atol: values within a grid cell are one pattern, but a tiny value is not silence
    close = torch.tensor([[0.5, 0.5 + 1e-9], [0.2, 0.2]])
    assert pattern_entropy(close, 1e-6) == 0.0
    tiny = torch.tensor([[0.0, 1e-9]])
    assert pattern_entropy(tiny, 1e-6) == pytest.approx(1.0)


def _brute_period(values, atol):
    T = len(values)

    def eq(a, b):
        return abs(a - b) <= atol and (a == 0) == (b == 0)

    for p in range(1, T + 1):
        if all(eq(values[t + p], values[t]) for t in range(T - p)):
            return p


def _primitive(block):
    p = len(block)
    return not any(p % d == 0 and block == block[:d] * (p // d) for d in range(1, p))


@settings(max_examples=150, deadline=None)
@given(
    block=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=6),
    T=st.integers(min_value=1, max_value=16),
)
def test_periodic_sequences_hypothesis(block, T):
    values = (block * (T // len(block) + 1))[:T]
    measured = dynamic_duration(seq(*values), 1e-6).item()
    assert measured == _brute_period(values, 1e-6)
    assert measured <= max(1, min(len(block), T))
    if 2 * len(block) <= T and _primitive(block):
        assert measured == len(block)  # Fine and Wilf: the window shows the block's minimal period


# ---- the closed form ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_closed_form_special_cases(variant):
    c = LIF_VARIANTS[variant]
    b, V = c.decay, c.v_threshold
    I = torch.tensor([V + 0.1, V * (1 - b), 0.0, -1.0, V * (1 - b) * 1.2, 2 * V])
    cf = direct_closed_form(I, 8, b, V)
    assert cf.duration[0] == 1 and cf.first_spike[0] == 1  # I > V: every step
    assert cf.duration[1] == 1 and cf.first_spike[1] == 0  # I / (1 - b) == V: never fires
    assert cf.duration[2] == 1 and cf.duration[3] == 1  # silent
    k = int(cf.first_spike[4])
    assert k > 1 and cf.duration[4] == (k if k <= 8 else 1)
    assert direct_closed_form(I[4:5], k - 1, b, V).duration.item() == 1  # window too short to see a spike
    assert direct_closed_form(torch.tensor([V]), 4, b, V).near_threshold.item()  # u_1 == V exactly


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-2.0, max_value=3.0, allow_nan=False, width=32), min_size=1, max_size=64),
    T=st.integers(min_value=1, max_value=10),
)
def test_closed_form_equals_simulated_lif_hypothesis(variant, values, T):
    c = LIF_VARIANTS[variant]
    I = torch.tensor(values, dtype=torch.float32)
    cf = direct_closed_form(I, T, c.decay, c.v_threshold)
    measured = simulated_direct_duration(LIF(variant), I, T)
    far = ~cf.near_threshold
    assert torch.equal(measured[far], cf.duration[far])


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_closed_form_equals_simulated_lif_dense(variant):
    c = LIF_VARIANTS[variant]
    I = torch.linspace(-1, 4 * c.v_threshold, 10001)
    for T in (2, 4, 6, 8):
        cf = direct_closed_form(I, T, c.decay, c.v_threshold)
        measured = simulated_direct_duration(LIF(variant), I, T)
        far = ~cf.near_threshold
        assert torch.equal(measured[far], cf.duration[far])
        assert int(cf.near_threshold.sum()) < 25


# ---- observe() on real and random inputs ---------------------------------------------------------------


def _check_closed_form(report: ObserverReport):
    cf = report.closed_form
    assert cf["disagree"] == 0, cf["first_disagreements"][:3]
    assert cf["agree"] == cf["checked"] == report.num_neurons - cf["near_threshold"]
    assert cf["near_threshold"] <= 0.01 * report.num_neurons
    data = json.loads(report.to_json())
    assert data["closed_form"]["near_threshold"] == cf["near_threshold"]
    assert report.neurons["closed_agree"][~report.neurons["near_threshold"]].all()
    assert int(report.neurons["near_threshold"].sum()) == cf["near_threshold"]


@pytest.fixture(scope="module")
def photos():
    return open_source("photos", image_size=48)


@pytest.fixture(scope="module")
def small_models():
    return {"cifar": fresh("msresnet18-cifar", T=6), "imagenet": fresh("msresnet18-imagenet", T=4)}


@pytest.mark.parametrize("family", ["cifar", "imagenet"])
def test_closed_form_on_every_neuron_random_and_real(small_models, photos, family):
    model = small_models[family]
    sources = {
        "random": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2,
        "digits": open_source("digits", num_images=4),
        "photos": photos,
    }
    for name, images in sources.items():
        report = observe(model, images, batch_size=3)
        _check_closed_form(report)
        assert report.holds, (family, name, report.verdict)
        assert report.provenance["lif_variant"] == family
        print(
            f"{family} {name}: {report.num_neurons} neurons, near-threshold {report.closed_form['near_threshold']}, "
            f"T_g>T_d {report.fraction_gt:.3f}"
        )


def test_fresh_imagenet_model_holds_and_gac_lasts_longer(small_models):
    report = observe(small_models["imagenet"], torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    print(
        "fresh ImageNet-layout T=4:",
        report.verdict,
        f"gt={report.fraction_gt:.4f} eq={report.fraction_eq:.4f}",
        report.closed_form["near_threshold"],
    )
    assert report.holds and report.count_lt == 0 and report.support_mismatch == 0
    assert report.fraction_gt > 0.05
    assert report.neurons.shape[0] == report.num_neurons == 2 * 8 * 32 * 32
    assert (report.neurons["T_g"] >= report.neurons["T_d"]).all()


def test_golden_checkpoint(golden_ckpt, golden_input):
    model = load_model(golden_ckpt)
    r32 = observe(model, golden_input, precision="float32")
    r64 = observe(model, golden_input, precision="float64")
    for r in (r32, r64):
        print(
            f"golden {r.precision}: {r.verdict}; gt={r.fraction_gt:.4f} eq={r.fraction_eq:.4f} "
            f"lt={r.fraction_lt:.6f} closed-form {r.closed_form['agree']}/{r.closed_form['checked']} "
            f"near={r.closed_form['near_threshold']} support-mismatch={r.support_mismatch}"
        )
        _check_closed_form(r)
        assert r.fraction_gt > 0.3
        assert r.provenance["checkpoint"]["sha256"] == model.checkpoint_info.sha256
    # exact arithmetic: Proposition 1 holds on every neuron
    assert r64.holds and r64.num_violations == 0 and r64.support_mismatch == 0
    assert r64.verdict == f"Proposition 1 holds (T_g >= T_d on every one of {r64.num_neurons} neurons)"
    # float32, as the model runs: every violation is a gate that underflowed to exactly 0 at a spike
    assert r32.num_violations == len(r32.violations) == r32.count_lt
    assert all(v["cause"] == "gate exactly 0 at a spike" for v in r32.violations)
    for v in r32.violations:
        assert any(s == 1.0 and g == 0.0 for s, g in zip(v["spikes"], v["gac"]))
        assert v["T_g"] < v["T_d"]
    if not r32.holds:
        assert "sigmoid underflow" in r32.diagnosis and "float64" in r32.diagnosis


def test_constant_gate_gives_equal_durations(small_models, monkeypatch):
    model = small_models["cifar"]
    monkeypatch.setattr(model.encoder, "gate_values", lambda i_seq: torch.full_like(i_seq, 0.5))
    report = observe(model, torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    assert report.count_eq == report.num_neurons and report.holds


def test_broken_encoder_is_caught(small_models, monkeypatch):
    model = small_models["cifar"]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2
    # the broken gate is patched onto the model as it runs: observe it in its own precision (float32)
    honest = observe(model, x, precision="float32")
    original = model.encoder.gate_values

    def broken(i_seq):  # a gate of exactly 0 on channel 3: spikes there vanish
        g = original(i_seq).clone()
        g[:, :, 3] = 0.0
        return g

    monkeypatch.setattr(model.encoder, "gate_values", broken)
    report = observe(model, x, precision="float32")
    n = honest.neurons
    expected = n[(n["channel"] == 3) & (n["T_d"] > 1)]
    assert len(expected) > 0
    assert not report.holds and report.num_violations == len(expected)
    got = {(v["image"], v["channel"], v["y"], v["x"]) for v in report.violations}
    assert got == set(map(tuple, expected[["image", "channel", "y", "x"]].itertuples(index=False)))
    v = report.violations[0]
    assert report.verdict == (
        f"Proposition 1 FAILS: {len(expected)} violations, first at image {v['image']} "
        f"channel 3 ({v['y']}, {v['x']}) T_d={v['T_d']} T_g={v['T_g']}"
    )
    assert v["T_g"] == 1 and v["cause"] == "gate exactly 0 at a spike"
    data = json.loads(report.to_json())
    assert data["holds"] is False and data["num_violations"] == len(expected)
    assert len(data["violations"]) == min(100, len(expected))


def test_report_json_schema_and_determinism(small_models):
    model = small_models["cifar"]
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    a = observe(model, x, batch_size=2, seed=4).to_json()
    b = observe(
        model,
        [x[:1], (x[1:], torch.zeros(2))],
        batch_size=2,
        seed=4,
        data_description={"source": "tensor", "num_images": 3},
    ).to_json()
    assert a == b
    data = json.loads(a)
    for key in (
        "T",
        "num_images",
        "num_neurons",
        "atol",
        "mean_T_d",
        "mean_T_g",
        "histogram",
        "fraction_gt",
        "fraction_eq",
        "fraction_lt",
        "closed_form",
        "violations",
        "verdict",
        "definitions",
        "provenance",
    ):
        assert key in data
    assert data["num_images"] == 3 and data["num_neurons"] == 3 * 8 * 16 * 16
    assert sum(data["histogram"]["T_d"]) == sum(data["histogram"]["T_g"]) == data["num_neurons"]
    assert len(data["histogram"]["T_g"]) == data["T"] == 6
    prov = data["provenance"]
    assert {"package", "torch", "spikingjelly", "arch", "T", "coding", "data", "seed", "checkpoint"} <= set(prov)
    assert "dynamic_duration" in data["definitions"]
    assert not any(k in json.dumps(data) for k in ("utc", "timestamp", "date"))
    assert set(data["secondary_measures"]) == {"direct", "gac"}


def test_direct_model_needs_gac_weights_or_seeded_flag():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("msresnet18-cifar", num_classes=10, T=4, coding="direct", width=8).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="no GAC weights"):
        observe(model, x)
    r1, r2 = observe(model, x, seeded_gac=True), observe(model, x, seeded_gac=True)
    assert r1.seeded_gac and r1.holds and r1.to_json() == r2.to_json()
    assert json.loads(r1.to_json())["seeded_gac"] is True


def test_bad_inputs_are_gac_errors(small_models):
    model = small_models["cifar"]
    for bad in (torch.zeros(3, 16, 16), torch.zeros(1, 1, 16, 16), [], torch.full((1, 3, 8, 8), float("nan"))):
        with pytest.raises(DataError):
            observe(model, bad)
    with pytest.raises(GacError):
        observe(model, torch.zeros(1, 3, 8, 8), precision="float16")
    with pytest.raises(GacError):
        observe(model, torch.zeros(1, 3, 8, 8), atol=-1)


# ---- the T sweep ------------------------------------------------------------------------------------------


def test_sweep_on_golden_checkpoint(golden_ckpt, golden_input):
    x = golden_input[:1, :, :16, :16]  # a crop: the sweep only needs some neurons
    df, reports = sweep_T(golden_ckpt, [2, 4, 6], x, return_reports=True)
    print(df.to_string())
    assert df["T"].tolist() == [2, 4, 6] and [r.T for r in reports] == [2, 4, 6]
    assert df["ta_source"].tolist() == ["seeded", "seeded", "checkpoint"]
    assert (df["sca_source"] == "checkpoint").all()
    assert (df["closed_form_agree"] == df["closed_form_checked"]).all()
    assert (df["fraction_gt"] > 0.1).all()
    assert (df["holds"] == (df["violations"] == 0)).all()
    assert all(v["cause"] == "gate exactly 0 at a spike" for r in reports for v in r.violations)
    # the checkpoint's own T gives exactly what observing the loaded model gives
    r = observe(load_model(golden_ckpt), x, keep_neurons=False)
    row = df.iloc[2]
    assert (row["fraction_gt"], row["violations"], row["mean_T_g"]) == (r.fraction_gt, r.num_violations, r.mean_T_g)
    with pytest.raises(ConfigError):
        sweep_T(golden_ckpt, [1], x)


def test_float64_run_counts_what_float32_silences(golden_ckpt, golden_input):
    """The default (float64) run says how many spikes the float32 model loses to sigmoid underflow, and the
    float32 run finds exactly those positions as gates of exactly 0."""
    model = load_model(golden_ckpt)
    r64 = observe(model, golden_input)
    r32 = observe(model, golden_input, precision="float32")
    assert r64.precision == "float64" and r64.holds
    assert r64.float32_gate_underflow_at_spike == r32.gate_zero_at_spike > 0
    assert r32.float32_gate_underflow_at_spike is None
    assert f"{r64.float32_gate_underflow_at_spike} (neuron, step) positions" in r64.diagnosis
    assert json.loads(r64.to_json())["float32_gate_underflow_at_spike"] == r64.float32_gate_underflow_at_spike
