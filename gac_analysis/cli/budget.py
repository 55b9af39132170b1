"""``gac-analyze budget``: check an energy report against an energy budget (a CI gate).

Exit codes: 0 every limit holds (one line ``budget: pass (...)``); 1 one or more limits exceeded
(each listed with value, limit and unit); 2 malformed budget file or report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gac_analysis.cli.common import handles_errors


@handles_errors
def budget_cmd(
    report_json: Path = typer.Argument(..., help="report.json of `gac-analyze energy` (or its run folder)."),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help="Budget YAML; default: the bundled budget of the demo (gac_analysis/configs/budget.yaml: "
        "about 50% above the embedded default model; not a target for yours). See docs/budget.md.",
    ),
):
    """Check a report against an energy budget: exit 0 when every limit holds, 1 when one is exceeded,
    2 when the budget or the report is malformed."""
    from dataclasses import asdict

    from gac_analysis.budget import Violation, evaluate_budget, load_budget
    from gac_analysis.report_model import load_energy_report

    budget = load_budget(config)
    report = load_energy_report(report_json)
    checks = evaluate_budget(report, budget)
    failed = [c for c in checks if not c.passed]
    if not failed:
        detail = ", ".join(c.describe() for c in checks) if checks else "no limits set"
        typer.echo(f"budget: pass ({detail})")
        return
    typer.echo(f"budget: FAIL, {len(failed)} of {len(checks)} limits exceeded (budget {budget.source})")
    for c in failed:
        typer.echo(f"  {Violation(**asdict(c)).describe()}")
    raise typer.Exit(code=1)
