"""`gac-analyze energy`: end to end, outputs, and one-line errors that leave no partial output."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from gac_analysis.cli.main import app

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
    assert sorted(p.name for p in out.iterdir()) == ["layers.csv", "lif_sites.csv", "per_step.csv", "report.json"]
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
