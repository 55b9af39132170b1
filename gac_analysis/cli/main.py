"""``gac-analyze``: the command line of gac-analysis."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from gac_analysis import __version__
from gac_analysis.cli.budget import budget_cmd
from gac_analysis.cli.common import MODEL_HELP, MODEL_KWARGS_HELP, console, err_console, handles_errors, open_model
from gac_analysis.cli.compare import compare_cmd
from gac_analysis.cli.energy import energy_cmd
from gac_analysis.cli.observe import observe_cmd
from gac_analysis.cli.report import report_cmd
from gac_analysis.cli.train import train_cmd
from gac_analysis.errors import ConfigError


class _OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors (an option out of its declared range, a wrong type) as one ``error:`` line with exit 2,
    also where the app is called directly (``CliRunner``), as :func:`run` does for the console script."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        import sys

        from typer._click.exceptions import UsageError

        from gac_analysis.cli.common import err_console

        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `gac-analyze`: the help, as click shows it
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else "gac-analyze"
            err_console.print(
                f"error: {e.format_message()} (see '{where} --help')", markup=False, highlight=False, soft_wrap=True
            )
            sys.exit(2)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="gac-analyze",
    help="Exact spike, operation and energy analysis of spiking neural networks (GAC-MS-ResNet first).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _version_callback(value: bool):
    """``--version``: this package's and its two pinned libraries' versions, from the installed metadata."""
    if value:
        from importlib.metadata import version

        console.print(
            f"gac-analysis {__version__} (torch {version('torch')}, spikingjelly {version('spikingjelly')})",
            highlight=False,
        )
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
):
    """gac-analyze: exact spike, operation and energy analysis of SNNs."""


@app.command()
@handles_errors
def info(
    ckpt: Optional[Path] = typer.Argument(
        None,
        help="Checkpoint file (reference CIFAR/ImageNet layout or this project's); with --model, a state_dict for it.",
    ),
    T: Optional[int] = typer.Option(None, "--T", min=1, help="Time steps (needed for direct-coding checkpoints)."),
    arch: Optional[str] = typer.Option(None, help="Architecture name, if it must be forced."),
    num_classes: Optional[int] = typer.Option(None, min=1, help="Class count, if it must be checked."),
    model_spec: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help=MODEL_KWARGS_HELP),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also print the checkpoint's stored metadata (training command, provenance)."
    ),
):
    """Describe a model: checkpoint layout, arch, T, classes, coding, parameters, neurons, roles of its modules."""
    from gac_analysis.models import count_parameters, load_model

    if model_spec is None and model_kwargs is not None:
        raise ConfigError("--model-kwargs needs --model SPEC (the builder they are passed to); add --model")
    if model_spec is None and ckpt is None:
        raise ConfigError(
            "Missing argument 'CKPT': name a checkpoint, or a model with --model SPEC (default, "
            "default-direct, spikingjelly:NAME, PACKAGE.MODULE:FACTORY, path/to/file.py:FACTORY)"
        )
    if model_spec is not None:
        built, path = open_model(ckpt, T=T, model=model_spec, model_kwargs=model_kwargs)
        if path is None or model_spec not in (None, "default", "default-direct"):
            if arch is not None or num_classes is not None:
                raise ConfigError(
                    "--arch / --num-classes check checkpoints of this project's formats; with "
                    "--model pass the builder's arguments in --model-kwargs"
                )
            return _describe_built(built)
        ckpt = path
    model = load_model(ckpt, T=T, arch=arch, num_classes=num_classes)
    ci = model.checkpoint_info
    table = Table(title=f"checkpoint {ckpt}", show_header=False)
    rows = [
        (
            "layout detected",
            ci.layout
            + (f" (wrapped under '{ci.wrapper}')" if ci.wrapper else "")
            + (" (module. prefix)" if ci.module_prefix else ""),
        ),
        ("arch", ci.arch),
        ("T (time steps)", str(ci.T)),
        ("classes", str(ci.num_classes)),
        ("coding", ci.coding),
        ("stem width (channels)", str(ci.width)),
        ("parameters (distinct elements)", f"{count_parameters(model):,}"),
        ("keys in file / distinct tensors", f"{ci.num_keys} / {ci.num_tensors}"),
        ("sha256", ci.sha256),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print(_roles_table(model))
    if ci.metadata and not verbose:
        console.print(
            f"metadata: {len(ci.metadata)} entries (training command, provenance); --verbose prints them",
            highlight=False,
        )
    if ci.metadata and verbose:
        console.print("metadata: " + ", ".join(f"{k}={v}" for k, v in ci.metadata.items()), highlight=False)


def _describe_built(model) -> None:
    """``info`` of a model built from a ``--model`` spec: builder, T, parameters, neuron layers, roles."""
    import json

    from gac_analysis.models import count_parameters

    meta = model.gac_model_spec
    ckpt = meta.get("checkpoint")
    table = Table(title=f"model {meta['spec']}", show_header=False)
    table.add_column("quantity", no_wrap=True)
    table.add_column("value", overflow="fold")
    T = getattr(model, "T", None)
    rows = [
        ("builder", meta["builder"]),
        ("keyword arguments", json.dumps(meta["kwargs"])),
        ("class", f"{type(model).__module__}.{type(model).__qualname__}"),
        ("T (time steps)", str(T) if T is not None else "not set by the model: pass --T"),
        ("parameters (distinct elements)", f"{count_parameters(model):,}"),
        (
            "weights",
            f"{ckpt['path']} (sha256 {ckpt['sha256']}, {ckpt['tensors']} tensors)"
            if ckpt
            else f"initial weights, seeded with {meta['init_seed']}",
        ),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print(_neurons_table(model))
    if any(getattr(m, "gac_role", None) for m in model.modules()):
        console.print(_roles_table(model))


def _neurons_table(model) -> Table:
    """Spiking neuron layers per class and step mode (SpikingJelly neurons and this project's LIF)."""
    from spikingjelly.activation_based.neuron import BaseNode, SimpleBaseNode

    layers = Counter()
    for _, m in model.named_modules():
        if isinstance(m, (BaseNode, SimpleBaseNode)):
            layers[(type(m).__name__, str(getattr(m, "step_mode", "-")))] += 1
    t = Table(title="spiking neuron layers")
    for col in ("class", "step mode", "layers"):
        t.add_column(col, justify="right" if col == "layers" else "left")
    for (name, mode), n in sorted(layers.items()):
        t.add_row(name, mode, str(n))
    if not layers:
        t.add_row("none found", "-", "0")
    return t


def _roles_table(model) -> Table:
    """Modules and parameters per declared role."""
    mods, params = Counter(), Counter()
    for _, m in model.named_modules():
        role = getattr(m, "gac_role", None)
        if role is None:
            continue
        mods[role] += 1
        params[role] += sum(p.numel() for p in m.parameters(recurse=False))
    t = Table(title="roles (declared by the model)")
    t.add_column("role")
    t.add_column("modules", justify="right")
    t.add_column("parameters", justify="right")
    for role in ("encoder", "attention", "backbone", "head"):
        t.add_row(role, str(mods[role]), f"{params[role]:,}")
    return t


# ---- sub-commands defined in their own modules ----------------------------------------------------
# <register-commands>
app.command("energy", help="Exact operation/spike counts and energy (paper and complete conventions).")(energy_cmd)
app.command("compare", help="Compare runs of energy (and observe): one table, per-site firing rates, energy by role.")(
    compare_cmd
)
app.command("report", help="Write report.md with figures for a run folder.")(report_cmd)
app.command("budget", help="Check a report against an energy budget (exit 1 when exceeded).")(budget_cmd)
app.command("observe", help="Measure encoding dynamics (GAC vs direct) and test Proposition 1 (T_g >= T_d).")(
    observe_cmd
)
app.command("train", help="Train a GAC-MS-ResNet (or direct-coding) model; writes a checkpoint in the project format.")(
    train_cmd
)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: like ``app()``, but an error of the command line itself (unknown command or
    option, a value of the wrong type or out of range) is one ``error:`` line with click's exit code (2 for
    usage errors), as every other bad input. No arguments at all: the help, exit 0."""
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        args = ["--help"]
    try:
        result = app(args, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # click's exceptions (UsageError, BadParameter, ...) derive from it
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "gac-analyze"
        err_console.print(
            f"error: {e.format_message()} (see '{where} --help')", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(e.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt
        err_console.print("aborted", highlight=False)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
