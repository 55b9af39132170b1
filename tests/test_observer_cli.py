"""`gac-analyze observe`: files, exit codes (0 holds, 1 violated, 2 bad input), atomic output."""

import json

import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gac_analysis.cli.main import app
from gac_analysis.models import build_model, save_checkpoint
from gac_analysis.models.gac import GACEncoder
from gac_analysis.viz.observer_figures import DURATIONS_SIZE, ENCODING_SIZE, FRACTION_SIZE, pixel_size
from reference_fixtures import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    """A freshly built, seeded CIFAR-layout GAC model of width 8 in this project's format."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("msresnet18-cifar", num_classes=10, T=4, coding="gac", width=8)
    return save_checkpoint(model, tmp_path_factory.mktemp("small") / "small_gac_T4.pt")


def test_golden_float64_holds_writes_files_and_figures(golden_ckpt, tmp_path):
    out = tmp_path / "obs"
    result = runner.invoke(
        app,
        [
            "observe",
            str(golden_ckpt),
            "--data",
            "random",
            "--num-images",
            "2",
            "--precision",
            "float64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Proposition 1 holds" in result.output
    data = json.loads((out / "observer.json").read_text())
    assert data["holds"] is True and data["num_images"] == 2 and data["num_neurons"] == 2 * 64 * 32 * 32
    assert data["provenance"]["checkpoint"]["sha256"] and data["provenance"]["data"]["source"] == "random"
    neurons = pd.read_csv(out / "neurons.csv")
    assert len(neurons) == data["num_neurons"]
    assert {"image", "channel", "y", "x", "T_d", "T_g", "T_d_closed", "near_threshold"} <= set(neurons.columns)
    expected = {
        "durations.png": DURATIONS_SIZE,
        "fraction_vs_T.png": FRACTION_SIZE,
        "encoding_photo0.png": ENCODING_SIZE,
        "encoding_photo1.png": ENCODING_SIZE,
    }
    for name, size in expected.items():
        path = out / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as im:
            assert im.size == pixel_size(size), name
    assert not (out / "sweep.csv").exists()
    assert not list(tmp_path.glob(".obs*"))  # no temporary folder left beside it


def test_golden_float32_exit_code_follows_the_verdict_and_is_deterministic(golden_ckpt, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = runner.invoke(
            app,
            ["observe", str(golden_ckpt), "--data", "random", "--num-images", "1", "--no-figures", "--out", str(out)],
        )
        data = json.loads((out / "observer.json").read_text())
        assert result.exit_code == (0 if data["holds"] else 1), result.output
        runs.append((out / "observer.json").read_text())
        assert not list(out.glob("*.png"))
    assert runs[0] == runs[1]
    data = json.loads(runs[0])
    print("golden float32, random image 0:", data["verdict"], "gt", data["fraction_gt"])
    assert data["fraction_gt"] > 0.3 and data["closed_form"]["disagree"] == 0
    assert all(v["cause"] == "gate exactly 0 at a spike" for v in data["violations"])


def test_broken_encoder_exit_1_and_sweep(small_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "ok"
    result = runner.invoke(
        app, ["observe", str(small_ckpt), "--num-images", "2", "--T", "2,4", "--no-figures", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    sweep = pd.read_csv(out / "sweep.csv")
    assert sweep["T"].tolist() == [2, 4] and sweep["ta_source"].tolist() == ["seeded", "checkpoint"]
    assert len(json.loads((out / "observer.json").read_text())["sweep"]) == 2

    original = GACEncoder.gate_values

    def broken(self, i_seq):  # the gate vanishes on channel 1
        g = original(self, i_seq).clone()
        g[:, :, 1] = 0.0
        return g

    monkeypatch.setattr(GACEncoder, "gate_values", broken)
    out = tmp_path / "broken"
    result = runner.invoke(app, ["observe", str(small_ckpt), "--num-images", "2", "--no-figures", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Proposition 1 FAILS" in result.output and "channel 1 (" in result.output
    data = json.loads((out / "observer.json").read_text())
    assert data["holds"] is False and data["violations"][0]["channel"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--T", "abc"], "--T must be a comma-separated list"),
        (["--T", "1,2"], "--T must be a comma-separated list"),
        (["--num-images", "0"], "--num-images"),
        (["--data", "nosuch"], "unknown data source"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(golden_ckpt, tmp_path, args, message):
    out = tmp_path / "obs"
    result = runner.invoke(app, ["observe", str(golden_ckpt), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_checkpoint_exit_2(tmp_path):
    result = runner.invoke(app, ["observe", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "checkpoint not found" in one_error_line(result)
    assert not (tmp_path / "o").exists()


def test_failure_inside_the_run_leaves_no_output_folder(small_ckpt, tmp_path, monkeypatch):
    import gac_analysis.viz.observer_figures as figs
    from gac_analysis.errors import GacError

    def fail(*_a, **_k):
        raise GacError("figure failed on purpose")

    monkeypatch.setattr(figs, "plot_fraction_vs_T", fail)
    out = tmp_path / "obs"
    result = runner.invoke(app, ["observe", str(small_ckpt), "--num-images", "1", "--out", str(out)])
    assert result.exit_code == 2 and "figure failed on purpose" in one_error_line(result)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_direct_twin_is_observed_through_model_spec_only_with_seeded_gac(tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["observe", "--model", "default-direct", "--num-images", "2", "--out", str(out)])
    error = res.output.strip().splitlines()[-1]  # after the line naming the embedded model
    assert res.exit_code == 2 and error.startswith("error:") and "no GAC encoder" in error and "--seeded-gac" in error
    assert not out.exists()
    res = runner.invoke(
        app,
        [
            "observe",
            "--model",
            "default-direct",
            "--num-images",
            "2",
            "--seeded-gac",
            "--no-figures",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "observer.json").read_text())
    assert data["holds"] is True and data["seeded_gac"] is True
