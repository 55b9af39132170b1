"""Bad input to the report readers and config files, command by command: one line, exit 2, nothing written.

Table-driven: every row is (case, command, how the input is spoiled, words the one error line must hold).
"""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from gac_analysis.cli.main import app
from reference_fixtures import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gac_analysis.accounting import profile
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=8).eval()
    profile(model, torch.randn(1, 3, 32, 32)).save(folder)
    return folder


def _zero_images(r):
    r["num_images"] = 0


def _no_layers(r):
    r["layers"] = []


def _negative_total(r):
    r["energy"]["paper"]["total_pj"] = -1.0


def _negative_per_image(r):
    r["energy"]["complete"]["per_image_mj"] = -0.5


def _negative_layer(r):
    r["layers"][2]["complete_pj"] = -3.0


def _negative_lif(r):
    r["lif_sites"][0]["complete_pj"] = -3.0


REPORT_CASES = [
    ("num_images 0", _zero_images, "num_images is 0: the report covers no images"),
    ("no layers", _no_layers, "layers is empty: the report priced no layer"),
    ("negative total", _negative_total, "energy.paper.total_pj is -1, a negative energy"),
    ("negative per image", _negative_per_image, "energy.complete.per_image_mj is -0.5, a negative energy"),
    ("negative layer", _negative_layer, "layers[2].complete_pj is -3, a negative energy"),
    ("negative LIF site", _negative_lif, "lif_sites[0].complete_pj is -3, a negative energy"),
]


@pytest.mark.parametrize("command", ["report", "budget"])
@pytest.mark.parametrize("case, spoil, message", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_spoiled_report_refused(command, case, spoil, message, run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    report = json.loads((folder / "report.json").read_text())
    spoil(report)
    (folder / "report.json").write_text(json.dumps(report))
    before = sorted(p.name for p in folder.iterdir())
    result = runner.invoke(app, [command, str(folder)])
    assert result.exit_code == 2, (case, result.output)
    line = one_error_line(result)
    assert message in line and "re-run `gac-analyze energy`" in line, line
    assert sorted(p.name for p in folder.iterdir()) == before  # no report.md, no figures


def test_unspoiled_copy_passes(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    assert runner.invoke(app, ["budget", str(folder)]).exit_code == 0
    assert runner.invoke(app, ["report", str(folder), "--no-figures"]).exit_code == 0


# ---- YAML files with a key written twice (energy tables, budgets) -----------------------------------


def _table_text() -> str:
    from gac_analysis.energy.tables import _resolve

    return _resolve("45nm-fp32").read_text()


def _budget_text() -> str:
    from gac_analysis.budget import DEFAULT_BUDGET

    return DEFAULT_BUDGET.read_text()


YAML_CASES = [
    # (case, command builder, file text, the key named)
    ("table: a cost twice", "energy", lambda: _table_text().replace("  mac:", "  mac: 0.1\n  mac:", 1), "'mac'"),
    ("table: a top-level key twice", "energy", lambda: _table_text() + "\nprecision: fp16\n", "'precision'"),
    (
        "budget: a limit twice",
        "budget",
        lambda: _budget_text().replace("  mean_firing_rate: 0.3", "  mean_firing_rate: 0.3\n  mean_firing_rate: 9"),
        "'mean_firing_rate'",
    ),
    ("budget: limits twice", "budget", lambda: _budget_text() + "\nlimits: {}\n", "'limits'"),
    (
        "budget: a layer twice",
        "budget",
        lambda: _budget_text().replace(
            "layers: {}", "layers:\n  stem.conv: {complete_mj_per_image: 1}\n  stem.conv: {complete_mj_per_image: 2}"
        ),
        "'stem.conv'",
    ),
]


@pytest.mark.parametrize("case, command, text, key", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_key_written_twice_is_named(case, command, text, key, run_dir, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(text())
    out = tmp_path / "out"
    if command == "energy":
        args = ["energy", "--energy-table", str(path), "--data", "random", "--num-images", "1", "--out", str(out)]
    else:
        args = ["budget", str(run_dir), "--config", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (case, result.output)
    line = one_error_line(result)
    assert f"key {key} appears twice in one mapping (lines " in line and str(path) in line, line
    assert not out.exists()


def test_yaml_key_written_once_still_loads(tmp_path):
    from gac_analysis.budget import load_budget
    from gac_analysis.energy.tables import load_energy_table

    (tmp_path / "t.yaml").write_text(_table_text())
    (tmp_path / "b.yaml").write_text(_budget_text())
    assert load_energy_table(tmp_path / "t.yaml").mac == load_energy_table("45nm-fp32").mac
    assert load_budget(tmp_path / "b.yaml").limits["mean_firing_rate"] == 0.3


# ---- observe: the encoding figures come from the data given -----------------------------------------

OBSERVE_CASES = [
    # (data, files expected, words of the line that says which images were drawn and why)
    ("digits", ["encoding_image0.png", "encoding_image1.png"], "the first 2 images of --data digits"),
    ("random", ["encoding_photo0.png", "encoding_photo1.png"], "the bundled photographs, since random images"),
]


@pytest.mark.parametrize("data, files, why", OBSERVE_CASES, ids=[c[0] for c in OBSERVE_CASES])
def test_observe_encoding_figures_follow_the_data(data, files, why, tmp_path):
    out = tmp_path / "obs"
    result = runner.invoke(app, ["observe", "--data", data, "--num-images", "2", "--out", str(out)])
    assert result.exit_code in (0, 1), result.output
    assert why in " ".join(result.output.split())
    assert sorted(p.name for p in out.glob("encoding_*.png")) == files
