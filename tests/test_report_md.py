"""`gac-analyze report RUN_DIR`: report.md with relative figure links, provenance, observer verdict, errors."""

import json
import re
import shutil

import pytest
import torch
from typer.testing import CliRunner

from gac_analysis.cli.main import app
from reference_fixtures import one_error_line

runner = CliRunner()
SHA = "ab12" * 16


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gac_analysis.accounting import profile
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    m = build_model("msresnet18-cifar", num_classes=10, T=4, width=8)
    report = profile(m.eval(), torch.randn(2, 3, 32, 32))
    report.provenance["model"]["checkpoint"] = {"path": "small.pt", "sha256": SHA, "layout": "project"}
    folder = tmp_path_factory.mktemp("run")
    report.save(folder)
    return folder


@pytest.fixture
def copy(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("figures", "report.md", "observer.json"))
    return folder


def test_report_md_with_figures(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    md = (run_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 6  # five energy figures + the memory-aware estimate
    for link in links:
        assert link.startswith("figures/") and link.endswith(".png")  # relative: renders on GitHub
        assert (run_dir / link).is_file()
    report = json.loads((run_dir / "report.json").read_text())
    e = report["energy"]
    for expected in (
        "paper convention",
        "complete convention",
        "mJ/image",
        "ACs/image",
        "MACs/image",
        "spikes / neuron / time step",
        "complete - paper",
        SHA,
        "msresnet18-cifar",
        "45nm-fp32",
        "Horowitz",
        "Largest consumers",
        "Provenance",
        f"{e['paper']['per_image_mj']:.6g}",
        f"{e['complete']['per_image_mj']:.6g}",
        "torch",
    ):
        assert expected in md, expected
    for component in e["difference"]["components_pj"]:
        assert component in md
    assert "Observer" not in md  # no observer.json in this folder
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".partial")]  # atomic write


def test_observer_verdict_shown(copy):
    verdict = "Proposition 1 holds (T_g >= T_d on every one of 4096 neurons)"
    (copy / "observer.json").write_text(
        json.dumps(
            {
                "schema": "gac-analysis/observer",
                "schema_version": 1,
                "verdict": verdict,
                "holds": True,
                "T": 4,
                "num_images": 4,
                "num_neurons": 4096,
                "mean_T_d": 1.0,
                "mean_T_g": 1.5,
                "num_violations": 0,
                "fraction_gt": 0.25,
                "fraction_eq": 0.75,
                "fraction_lt": 0.0,
            }
        )
    )
    result = runner.invoke(app, ["report", str(copy), "--no-figures"])
    assert result.exit_code == 0, result.output
    md = (copy / "report.md").read_text()
    assert verdict in md and "fraction T_g > T_d" in md and "0.75" in md and "| T (time steps) | 4 |" in md
    assert "](figures/" not in md  # --no-figures: nothing linked


def test_observer_minimal_and_unreadable(copy):
    # the smallest observer.json this version reads: no means where no neuron was observed (NaN)
    (copy / "observer.json").write_text(
        json.dumps(
            {
                "schema": "gac-analysis/observer",
                "schema_version": 1,
                "verdict": "Proposition 1 FAILS: 3 violations",
                "holds": False,
                "T": 4,
                "num_images": 1,
                "num_neurons": 30,
                "mean_T_d": float("nan"),
                "mean_T_g": None,
                "num_violations": 3,
                "fraction_gt": 0.1,
                "fraction_eq": 0.8,
                "fraction_lt": 0.1,
            }
        )
    )
    assert runner.invoke(app, ["report", str(copy), "--no-figures"]).exit_code == 0
    md = (copy / "report.md").read_text()
    assert "Proposition 1 FAILS: 3 violations" in md and "fraction T_g < T_d" in md
    (copy / "observer.json").write_text("{not json")
    result = runner.invoke(app, ["report", str(copy), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "observer.json present but unreadable" in (copy / "report.md").read_text()


def test_report_accepts_the_report_json_path(copy):
    result = runner.invoke(app, ["report", str(copy / "report.json"), "--no-figures"])
    assert result.exit_code == 0 and (copy / "report.md").is_file()


def test_report_errors(copy, tmp_path):
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    shutil.copytree(copy, bad)
    (bad / "report.json").write_text('{"schema": "gac-analysis/energy-report", ')
    report = json.loads((copy / "report.json").read_text())
    cases = {
        "missing folder": (tmp_path / "nowhere", "does not exist"),
        "no report.json": (tmp_path / "empty", "has no report.json"),
        "bad JSON": (bad, "not valid JSON"),
    }
    for name, edit, message in (
        ("version", {"schema_version": 1}, "version 1"),
        ("schema", {"schema": "gac-analysis/observer"}, "gac-analysis/observer"),
        ("no energy", {"energy": {}}, "energy.paper.per_image_mj"),
    ):
        folder = tmp_path / name.replace(" ", "_")
        shutil.copytree(copy, folder)
        (folder / "report.json").write_text(json.dumps({**report, **edit}))
        cases[name] = (folder, message)
    for name, (folder, message) in cases.items():
        result = runner.invoke(app, ["report", str(folder)])
        assert result.exit_code == 2, (name, result.output)
        assert message in one_error_line(result), name
        assert not (folder / "report.md").exists()


def test_report_md_names_the_neuron_layers_that_never_fired(copy):
    """The provenance's check row: the layers with 0 spikes in report.json, or 'none' when every layer fired."""
    report = json.loads((copy / "report.json").read_text())
    fired = [s["name"] for s in report["lif_sites"] if s["spikes"] > 0]
    silent = [s["name"] for s in report["lif_sites"] if s["spikes"] == 0]
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    row = [ln for ln in (copy / "report.md").read_text().splitlines() if "check: neuron layers that never fired" in ln]
    assert len(row) == 1
    if silent:
        assert f"{len(silent)} of {len(report['lif_sites'])} neuron layers never fired" in row[0]
    else:
        assert row[0].rstrip(" |").endswith("none")
    for site in report["lif_sites"]:  # now silence every layer
        site["spikes"] = 0
    (copy / "report.json").write_text(json.dumps(report))
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    md = (copy / "report.md").read_text()
    assert f"no neuron layer fired on this data (0 spikes in all {len(fired) + len(silent)})" in md
    for site in report["lif_sites"]:  # an older report without spike counts: no claim either way
        del site["spikes"]
    (copy / "report.json").write_text(json.dumps(report))
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "check: neuron layers that never fired" not in (copy / "report.md").read_text()
