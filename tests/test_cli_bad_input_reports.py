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
    profile(build_model("msresnet18-cifar", num_classes=10, T=2, width=8).eval(), torch.randn(1, 3, 32, 32)).save(folder)
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
