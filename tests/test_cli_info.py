"""`gac-analyze --version` and `gac-analyze info`, including one-line errors with exit code 2."""

import torch
from typer.testing import CliRunner

from gac_analysis import __version__
from gac_analysis.cli.main import app
from reference_fixtures import one_error_line, reference_state_dict

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output and "torch" in result.output


def test_info_reports_layout_and_counts(golden_ckpt):
    result = runner.invoke(app, ["info", str(golden_ckpt)])
    assert result.exit_code == 0, result.output
    for expected in ("cifar-reference", "msresnet18-cifar", "12,633,198", "attention", "131,108", "gac"):
        assert expected in result.output


def test_info_errors(tmp_path, golden_ckpt):
    cases = {
        "missing": ([str(tmp_path / "none.pt")], "checkpoint not found"),
        "garbage": ([str(tmp_path / "g.pt")], "not a PyTorch checkpoint"),
        "T": ([str(golden_ckpt), "--T", "4"], "T mismatch"),
        "classes": ([str(golden_ckpt), "--num-classes", "3"], "num_classes mismatch"),
        "layout": ([str(tmp_path / "u.pt")], "unknown checkpoint layout"),
    }
    (tmp_path / "g.pt").write_bytes(b"\x00\x01garbage")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "u.pt")
    for name, (args, message) in cases.items():
        result = runner.invoke(app, ["info", *args])
        assert result.exit_code == 2, (name, result.output)
        assert message in one_error_line(result), name


def test_info_direct_checkpoint_with_T(tmp_path):
    path = tmp_path / "direct.pt"
    torch.save(reference_state_dict("cifar_msresnet18_c10_direct_T6", 3), path)
    assert runner.invoke(app, ["info", str(path)]).exit_code == 2
    result = runner.invoke(app, ["info", str(path), "--T", "6"])
    assert result.exit_code == 0 and "direct" in result.output


def test_console_entry_point_usage_errors_are_one_line():
    """The installed `gac-analyze` (cli.main:run): usage errors are one `error:` line and exit 2."""
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-c", "from gac_analysis.cli.main import run; run()", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    for args, message in [
        (["nosuch"], "No such command"),
        (["info"], "Missing argument"),
        (["energy", "--num-images", "abc"], "--num-images"),
    ]:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    r = cli("--version")
    assert r.returncode == 0 and "gac-analysis" in r.stdout
