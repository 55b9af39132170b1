"""`gac-analyze budget`: pass / at / over every kind of limit (exit 0/0/1), malformed budgets and reports (exit 2)."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gac_analysis.budget import DEFAULT_BUDGET, Violation, budget_from_dict, check_budget, evaluate_budget, load_budget
from gac_analysis.cli.main import app
from gac_analysis.errors import ConfigError
from reference_fixtures import one_error_line

runner = CliRunner()
N = 3  # images


def _report() -> dict:
    """A small report.json dictionary in the energy-report schema (numbers chosen by hand)."""
    return {
        "schema": "gac-analysis/energy-report",
        "schema_version": 2,
        "num_images": N,
        "T": 4,
        "mean_firing_rate": 0.1234,
        "totals": {"acs": 3000, "approx_acs": 3300.0, "effective_macs": 1200, "dense_macs": 90000},
        "layers": [
            {"name": "stem.conv", "op": "conv2d", "role": "encoder", "paper_pj": 3.0e6, "complete_pj": 2.9e6},
            {"name": "encoder.sca.mlp.0", "op": "conv2d", "role": "attention", "paper_pj": 0.0, "complete_pj": 7.77e6},
            {"name": "layers.0.0.conv1", "op": "conv2d", "role": "backbone", "paper_pj": 9.0e6, "complete_pj": 8.1e6},
        ],
        "lif_sites": [
            {"name": "encoder.lif", "role": "encoder", "firing_rate": 0.3141, "complete_pj": 1.1e6},
            {"name": "layers.0.0.lif1", "role": "backbone", "firing_rate": 0.0812, "complete_pj": 1.2e6},
        ],
        "energy": {
            "paper": {"total_pj": 1.2e7, "per_image_mj": 1.2e7 / N / 1e9},
            "complete": {"total_pj": 2.107e7, "per_image_mj": 2.107e7 / N / 1e9},
        },
        "provenance": {},
    }


REPORT = _report()
#: (budget fragment builder, value read from the report, unit printed)
CASES = {
    "paper": (lambda v: {"limits": {"paper_mj_per_image": v}}, REPORT["energy"]["paper"]["per_image_mj"], "mJ/image"),
    "complete": (
        lambda v: {"limits": {"complete_mj_per_image": v}},
        REPORT["energy"]["complete"]["per_image_mj"],
        "mJ/image",
    ),
    "rate": (lambda v: {"limits": {"mean_firing_rate": v}}, REPORT["mean_firing_rate"], "spikes/neuron/step"),
    "layer energy": (
        lambda v: {"layers": {"encoder.sca.mlp.0": {"complete_mj_per_image": v}}},
        7.77e6 / N / 1e9,
        "mJ/image",
    ),
    "lif energy": (lambda v: {"layers": {"encoder.lif": {"complete_mj_per_image": v}}}, 1.1e6 / N / 1e9, "mJ/image"),
    "lif rate": (lambda v: {"layers": {"layers.0.0.lif1": {"firing_rate": v}}}, 0.0812, "spikes/neuron/step"),
}


@pytest.fixture
def report_path(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(REPORT))
    return path


def _budget(tmp_path, body: dict | str, name="budget.yaml") -> Path:
    path = tmp_path / name
    if isinstance(body, dict):
        body = yaml.safe_dump({"schema": "gac-analysis/budget", "version": 1, **body}, sort_keys=False)
    path.write_text(body)
    return path


def _run(report_path, config=None):
    args = ["budget", str(report_path)] + (["--config", str(config)] if config else [])
    return runner.invoke(app, args)


@pytest.mark.parametrize("case", list(CASES))
def test_within_at_and_over_each_limit(case, report_path, tmp_path):
    build, value, unit = CASES[case]
    for factor, code in ((1.5, 0), (1.0, 0), (0.5, 1)):
        limit = value * factor
        result = _run(report_path, _budget(tmp_path, build(limit)))
        assert result.exit_code == code, (case, factor, result.output)
        lines = result.output.strip().splitlines()
        if code == 0:
            assert len(lines) == 1 and lines[0].startswith("budget: pass (") and unit in lines[0], result.output
            assert ("<=" in lines[0]) and f"{value:.4g}" in lines[0]
        else:
            assert lines[0].startswith("budget: FAIL, 1 of 1 limits exceeded")
            assert f"{value:.4g}" in lines[1] and f"limit {limit:.4g}" in lines[1] and unit in lines[1]


def test_every_exceeded_limit_is_listed(report_path, tmp_path):
    config = _budget(
        tmp_path,
        {
            "limits": {"paper_mj_per_image": 1e-6, "complete_mj_per_image": 1.0, "mean_firing_rate": 0.01},
            "layers": {"encoder.lif": {"firing_rate": 0.2, "complete_mj_per_image": 1.0}},
        },
    )
    result = _run(report_path, config)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("budget: FAIL, 3 of 5 limits exceeded")
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["paper", "mean firing rate", "encoder.lif firing rate"]
    assert "limit 1e-06 mJ/image (paper convention)" in lines[1]
    assert "0.1234 spikes/neuron/step > limit 0.01" in lines[2]


def test_bundled_default_budget(report_path):
    assert (Path(__file__).resolve().parents[1] / "configs" / "budget.yaml").resolve() == DEFAULT_BUDGET.resolve()
    budget = load_budget(None)
    assert budget.limits == {"paper_mj_per_image": 0.15, "complete_mj_per_image": 0.25, "mean_firing_rate": 0.3}
    result = _run(report_path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "budget: pass (paper 0.004 mJ/image <= 0.15, complete 0.007023 mJ/image <= 0.25, "
        "mean firing rate 0.1234 spikes/neuron/step <= 0.3)"
    )


def test_run_folder_accepted_and_empty_budget(report_path, tmp_path):
    result = _run(report_path.parent, _budget(tmp_path, {"limits": None}))
    assert result.exit_code == 0 and result.output.strip() == "budget: pass (no limits set)"


def test_check_budget_is_pure_and_returns_violations():
    budget = budget_from_dict(
        {
            "schema": "gac-analysis/budget",
            "version": 1,
            "limits": {"paper_mj_per_image": 0.001, "mean_firing_rate": None},
            "layers": {"encoder.lif": {"firing_rate": 0.3141}},
        }
    )
    report = _report()
    (v,) = check_budget(report, budget)
    assert isinstance(v, Violation)
    assert (v.metric, v.value, v.limit, v.unit) == ("paper_mj_per_image", 0.004, 0.001, "mJ/image")
    assert len(evaluate_budget(report, budget)) == 2 and report == _report()


@pytest.mark.parametrize(
    "body, message",
    [
        (
            {"limits": {"paper_mj": 0.5}},
            "unknown metric under limits 'paper_mj' (did you mean paper_mj_per_image?); "
            "valid: paper_mj_per_image, complete_mj_per_image, mean_firing_rate",
        ),
        (
            {"limits": {"complete_mj_per_image": -1}},
            "limits.complete_mj_per_image must be a finite number >= 0, got -1",
        ),
        ({"limits": {"mean_firing_rate": "low"}}, "limits.mean_firing_rate must be a number >= 0, got 'low'"),
        ({"limits": {"mean_firing_rate": True}}, "must be a number >= 0, got True"),
        (
            {"limits": {"mean_firing_rate": 2.0}},
            "limits.mean_firing_rate is 2.0, but a firing rate is spikes per neuron",
        ),
        ({"layers": {"encoder.lif": {"firing_rate": 1.5}}}, "layers.encoder.lif.firing_rate is 1.5, but a firing"),
        ({"limits": [0.5]}, "limits must be a mapping"),
        ({"limit": {}}, "unknown key 'limit' (did you mean limits?)"),
        ({"layers": {"encoder.lif": {"rate": 0.1}}}, "unknown metric under layers.encoder.lif 'rate'"),
        ({"layers": {"encoder.lif": 0.1}}, "layers.encoder.lif must be a mapping"),
        (
            {"layers": {"layers.0.0.conv2": {"complete_mj_per_image": 0.1}}},
            "layers.layers.0.0.conv2: no layer or LIF site of that name in the report; nearest: layers.0.0.conv1",
        ),
        ({"layers": {"stem.conv": {"firing_rate": 0.1}}}, "stem.conv is not a LIF site"),
        ("limits: [unclosed\n", "is not valid YAML (line 2"),
        ("schema: gac-analysis/budget\nversion: 2\n", "a budget file starts with `schema: gac-analysis/budget`"),
        ("- 1\n- 2\n", "a budget is a YAML mapping"),
    ],
)
def test_malformed_budget_exit_2(body, message, report_path, tmp_path):
    result = _run(report_path, _budget(tmp_path, body))
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_missing_budget_file(report_path, tmp_path):
    result = _run(report_path, tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "does not exist" in one_error_line(result)
    assert "budget file /dev/null is not a regular file" in one_error_line(_run(report_path, Path("/dev/null")))
    assert f"budget file {tmp_path} is a folder" in one_error_line(_run(report_path, tmp_path))
    with pytest.raises(ConfigError):
        load_budget(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"schema": "gac-analysis/observer"}, "schema 'gac-analysis/observer'"),
        ({"schema_version": 7}, "version 7"),
        ({"energy": {"paper": {"per_image_mj": "x"}}}, "energy.paper.per_image_mj is missing or not a number"),
    ],
)
def test_report_of_another_schema_exit_2(edit, message, report_path):
    report_path.write_text(json.dumps({**REPORT, **edit}))
    result = _run(report_path)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_unreadable_report_exit_2(tmp_path):
    assert "does not exist" in one_error_line(_run(tmp_path / "none.json"))
    (tmp_path / "r.json").write_text("[1, 2")
    result = _run(tmp_path / "r.json")
    assert result.exit_code == 2 and "not valid JSON" in one_error_line(result)
