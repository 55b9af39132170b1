"""`gac-analyze energy`: end to end, outputs, and one-line errors that leave no partial output."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from gac_analysis.accounting import Report
from gac_analysis.cli.main import app
from gac_analysis.fileio import MANIFEST

runner = CliRunner()


def _error_line(result) -> str:
    text = result.output.strip()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("using the embedded")]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(golden_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("energy") / "run"
    result = runner.invoke(
        app,
        ["energy", str(golden_ckpt), "--data", "random", "--num-images", "3", "--batch-size", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_energy_writes_outputs_and_summary(run_dir, golden_ckpt):
    out, output = run_dir
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *Report.FILES])
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == 3 and report["T"] == 6
    assert report["provenance"]["data"]["source"] == "random"
    assert len(report["lif_sites"]) == 18
    for text in ("paper convention", "complete convention", "mJ/image", "mean firing rate", "largest consumers"):
        assert text in output
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "mnist"], "unknown data source 'mnist'"),
        (["--data", "cifar10:/definitely/not/here"], "not/here"),
        (["--data", "folder:EMPTY"], "no images"),
        (["--energy-table", "45nm-fp64"], "45nm-fp64"),
        (["--energy-table", "BADTABLE"], "negative"),
        (["--num-images", "0"], "--num-images"),  # a declared range (min=1): the usage error names the option
        (["--device", "cuda:7"], "CUDA is not available"),
    ],
)
def test_energy_errors_one_line_no_output(golden_ckpt, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.yaml"
    table = yaml.safe_load(
        open(__import__("gac_analysis.energy.tables", fromlist=["x"]).bundled_tables_dir() / "45nm-fp32.yaml")
    )
    table["costs"]["ac"] = -0.9
    bad.write_text(yaml.safe_dump(table))
    args = [a.replace("EMPTY", str(empty)).replace("BADTABLE", str(bad)) for a in args]
    if args[0] == "--device":
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    out = tmp_path / "out"
    result = runner.invoke(app, ["energy", str(golden_ckpt), "--num-images", "1", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_energy_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["energy", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "checkpoint not found" in _error_line(result)
    assert not (tmp_path / "o").exists()


# ---- neuron layers that never fired: a note in the summary ---------------------------------------------------


def test_silent_neurons_note_names_what_never_fired():
    from gac_analysis.report_model import silent_neurons_note

    def sites(spikes):
        return [(f"n{i}", k) for i, k in enumerate(spikes)]

    assert silent_neurons_note(sites([3, 1, 7])) is None
    assert silent_neurons_note(sites([3, 1, 7]), all_fired="none") == "none"
    assert silent_neurons_note(sites([]), all_fired="none") is None  # no neurons: no claim
    assert silent_neurons_note(sites([])) is None
    assert silent_neurons_note(sites([0, None])) is None  # a count unknown (an older report): no claim
    note = silent_neurons_note(sites([0, 0]))
    assert note.startswith("no neuron layer fired on this data (0 spikes in all 2): every spike-driven count is 0")
    assert silent_neurons_note(sites([0, 5, 0])).startswith("2 of 3 neuron layers never fired on this data (n0, n2):")
    assert "(n0, n1, n2, n3, n4, ...):" in silent_neurons_note(sites([0] * 6 + [1]))


_SILENT_MODEL = """
import torch
from spikingjelly.activation_based import layer, neuron


class Net(torch.nn.Sequential):
    def __init__(self, threshold):
        super().__init__(
            layer.Conv2d(3, 4, 3, padding=1, step_mode="m"),
            neuron.IFNode(v_threshold=threshold, step_mode="m"),
            layer.Flatten(step_mode="m"),
            layer.Linear(4 * 8 * 8, 2, step_mode="m"),
            neuron.IFNode(v_threshold=1e9, step_mode="m"),
        )
        self.T = 2

    def forward(self, x):
        return super().forward(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).mean(0)


def build(threshold=1e9):
    return Net(threshold)
"""


@pytest.mark.parametrize("threshold, expected", [(1e9, "no neuron layer fired"), (0.01, "1 of 2 neuron layers")])
def test_energy_summary_notes_neuron_layers_that_never_fired(tmp_path, threshold, expected):
    (tmp_path / "silent_net.py").write_text(_SILENT_MODEL)
    model = ["--model", f"{tmp_path / 'silent_net.py'}:build", "--model-kwargs", f'{{"threshold": {threshold}}}']
    args = ["energy", *model]
    data = ["--data", "random", "--image-size", "8", "--num-images", "2"]
    result = runner.invoke(app, [*args, *data, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.output.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {expected}"), result.output


def test_more_images_asked_than_the_data_holds_is_said(tmp_path):
    result = runner.invoke(
        app, ["energy", "--data", "photos", "--num-images", "5", "--image-size", "32", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "note: --num-images 5, but photos holds 2 images: analysing all 2" in " ".join(result.output.split())
