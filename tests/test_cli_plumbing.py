"""The command line's own plumbing: registration, usage errors by click's exception types, --version."""

import subprocess
import sys
from importlib.metadata import version

import pytest
import typer

from gac_analysis.cli.main import app, run


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from gac_analysis.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_command_is_registered():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"info", "energy", "report", "budget", "observe", "train"} <= names


def test_version_comes_from_the_installed_metadata():
    r = _cli("--version")
    assert r.returncode == 0
    assert r.stdout.split()[:2] == ["gac-analysis", version("gac-analysis")]
    assert f"torch {version('torch')}" in r.stdout and f"spikingjelly {version('spikingjelly')}" in r.stdout
    import gac_analysis

    assert gac_analysis.__version__ == version("gac-analysis")


def test_no_arguments_shows_the_help():
    r = _cli()
    assert r.returncode == 0 and "Usage" in r.stdout and "energy" in r.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["budget", "a.json", "--config"], 2, "Option '--config' requires an argument"),
        (["observe", "--num-images", "x"], 2, "--num-images"),
    ],
)
def test_usage_errors_keep_clicks_exit_code(args, code, message, capsys):
    with pytest.raises(SystemExit) as e:
        run(args)
    assert e.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_usage_errors_are_typer_exceptions():
    """run() relies on click's exceptions deriving from typer's public TyperException (typer vendors click)."""
    with pytest.raises(typer.TyperException) as e:
        app(["nosuch"], standalone_mode=False)
    assert e.value.exit_code == 2


def test_ctrl_c_while_the_command_line_loads_or_runs_is_one_line_exit_130(monkeypatch, capsys):
    import sys
    import types

    import gac_analysis.cli as cli

    class Loading(types.ModuleType):  # Ctrl-C while `from gac_analysis.cli.main import run` imports torch
        def __getattr__(self, name):
            raise KeyboardInterrupt

    for module in (
        Loading("gac_analysis.cli.main"),
        types.SimpleNamespace(run=lambda: (_ for _ in ()).throw(KeyboardInterrupt)),
    ):
        monkeypatch.setitem(sys.modules, "gac_analysis.cli.main", module)
        with pytest.raises(SystemExit) as exit_:
            cli.entry()
        assert exit_.value.code == 130
        err = capsys.readouterr().err
        assert err == "interrupted\n"
