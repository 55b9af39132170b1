"""The report model: one torch-free home of report.json / observer.json, typed, round-tripping, refusing
malformed files with one line."""

import json
import subprocess
import sys

import pytest
import torch

from gac_analysis.errors import ReportError
from gac_analysis.report_model import (
    SCHEMA,
    SCHEMA_VERSION,
    EnergyReport,
    LayerRow,
    load_energy_report,
    load_observer_report,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A report.json written by a real profiling run."""
    from gac_analysis.accounting import profile
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=8).eval()
    profile(model, torch.randn(1, 3, 32, 32)).save(folder)
    return folder / "report.json"


def test_written_report_round_trips_exactly(written):
    data = json.loads(written.read_text())
    report = load_energy_report(written)
    assert report.to_dict() == data
    assert (data["schema"], data["schema_version"]) == (SCHEMA, SCHEMA_VERSION) == ("gac-analysis/energy-report", 2)


def test_shapes_are_lists_of_ints(written):
    report = load_energy_report(written.parent)
    stem = next(r for r in report.layers if r.name == "stem.conv")
    assert stem.in_shape == [3, 32, 32] and stem.out_shape == [8, 32, 32]
    assert all(isinstance(r.shape, list) and all(isinstance(d, int) for d in r.shape) for r in report.lif_sites)
    # the layers.csv kernel column holds the structured value too (no "3x3" string to parse back)
    import pandas as pd

    kernels = pd.read_csv(written.parent / "layers.csv")["kernel"].dropna()
    assert not kernels.astype(str).str.contains("x").any()


def test_class_energies_add_up_to_complete(written):
    for row in load_energy_report(written).layers:
        parts = sum(getattr(row, c) for c in ("mac_pj", "ac_pj", "bias_pj", "bn_pj", "elementwise_pj", "pooling_pj"))
        assert parts == pytest.approx(row.complete_pj, rel=1e-12, abs=1e-9), row.name


def test_optional_keys_of_other_helpers_are_accepted(written):
    data = json.loads(written.read_text())
    data["accuracy"] = {
        "labelled": 10,
        "correct": 7,
        "top1": 0.7,
        "energy_per_correct_mj": {"paper": 0.01, "complete": 0.02},
    }
    data["coverage"] = {"counted_calls": 50, "free_calls": 3, "unsupported_calls": 1}
    data["unsupported"] = [{"op": "GELU", "module": "blk.act", "calls": 1, "elements": 64}]
    data["layers"][0]["input"] = "integer"
    data["lif_sites"][0]["neuron"] = "LIFNode"
    data["future_key"] = {"kept": True}
    report = EnergyReport.from_dict(data)
    assert report.accuracy.top1 == 0.7 and report.coverage.unsupported_calls == 1
    assert report.unsupported[0].op == "GELU" and report.layers[0].input == "integer"
    assert report.lif_sites[0].neuron == "LIFNode"
    assert report.to_dict() == data
    assert EnergyReport.from_dict(json.loads(written.read_text())).accuracy is None


def _bad(data: dict, **edit) -> dict:
    return {**data, **edit}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema_version=1), "version 1; this version reads 'gac-analysis/energy-report' version 2"),
        (lambda d: d.update(num_images=0), "num_images is 0: the report covers no images"),
        (lambda d: d.update(num_images="2"), "num_images is missing or not an integer"),
        (lambda d: d.update(layers=[]), "layers is empty"),
        (lambda d: d.update(layers={"a": 1}), "layers is missing or is not a list of named rows"),
        (lambda d: d["energy"]["complete"].update(total_pj=-5.0), "energy.complete.total_pj is -5, a negative energy"),
        (lambda d: d["layers"][1].update(complete_pj=-1.0), "layers[1].complete_pj is -1, a negative energy"),
        (lambda d: d["layers"][0].update(in_shape="3x32x32"), "layers[0].in_shape is '3x32x32', not a list of ints"),
        (lambda d: d["lif_sites"][0].update(shape="8x32x32"), "lif_sites[0].shape is '8x32x32', not a list of ints"),
        (lambda d: d["layers"][0].update(input="ternary"), "layers[0].input is 'ternary'; expected one of"),
        (lambda d: d.update(mean_firing_rate=float("nan")), "mean_firing_rate is nan, not a finite number"),
        (lambda d: d.update(accuracy={"labelled": 2, "correct": 3, "top1": 1.5}), "accuracy.correct (3) exceeds"),
    ],
)
def test_malformed_report_is_one_line(written, tmp_path, edit, message):
    data = json.loads(written.read_text())
    edit(data)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError) as e:
        load_energy_report(path)
    text = str(e.value)
    assert message in text and "\n" not in text and text.startswith(str(path)), text


def test_layer_row_keeps_unknown_keys():
    row = {"name": "x", "op": "conv2d", "new_count": 5}
    from gac_analysis.report_model import _Reader

    parsed = LayerRow.from_dict(row, "layers[0]", _Reader("r.json"))
    assert parsed.extra == {"new_count": 5} and parsed.to_dict()["new_count"] == 5


def test_observer_report_loads(tmp_path):
    (tmp_path / "observer.json").write_text(json.dumps({"schema": "gac-analysis/observer", "schema_version": 7}))
    with pytest.raises(ReportError, match="version 7; this version reads 'gac-analysis/observer' version 1"):
        load_observer_report(tmp_path)
    with pytest.raises(ReportError, match="has no observer.json"):
        load_observer_report(tmp_path / "..")


@pytest.mark.parametrize("module", ["gac_analysis.budget", "gac_analysis.cli.budget", "gac_analysis.report_model"])
def test_budget_gate_imports_neither_torch_nor_matplotlib(module, written):
    code = (
        f"import sys, {module}\n"
        "from gac_analysis.budget import evaluate_budget, load_budget\n"
        "from gac_analysis.report_model import load_energy_report\n"
        f"evaluate_budget(load_energy_report({str(written)!r}), load_budget(None))\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'seaborn') if m in sys.modules)\n"
        "print(','.join(heavy) or 'light')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "light", out.stdout + out.stderr
