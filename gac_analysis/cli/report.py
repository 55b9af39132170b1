"""``gac-analyze report``: report.md with figures for a run folder of ``gac-analyze energy``."""

from __future__ import annotations

from pathlib import Path

import typer

from gac_analysis.cli.common import console, handles_errors


@handles_errors
def report_cmd(
    run_dir: Path = typer.Argument(
        ..., help="Run folder written by `gac-analyze energy --out DIR` (or its report.json)."
    ),
    figures: bool = typer.Option(
        True, "--figures/--no-figures", help="Also draw the PNG figures into RUN_DIR/figures/."
    ),
):
    """Write RUN_DIR/report.md (summary in both conventions, difference breakdown, largest consumers,
    provenance, observer verdict when observer.json is present) and the figures it links."""
    from gac_analysis.fileio import probe_writable
    from gac_analysis.viz.report_md import write_report_md

    folder = run_dir if run_dir.is_dir() else run_dir.parent
    if folder.is_dir():  # report.md and figures/ go there: fail before drawing when it is read-only
        probe_writable(folder, "run folder", "make it writable, or copy the run to a folder you can write")
    path, pngs = write_report_md(run_dir, figures=figures)
    extra = f" and {len(pngs)} figures in {path.parent / 'figures'}" if pngs else ""
    console.print(f"wrote {path}{extra}", highlight=False, soft_wrap=True)
