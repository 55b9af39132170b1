"""``gac-analyze compare``: several energy (and observer) runs side by side, from their own reports."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gac_analysis.cli.common import OUT_HELP, atomic_output_dir, console, handles_errors


@handles_errors
def compare_cmd(
    runs: List[Path] = typer.Argument(
        ...,
        help="Two or more run folders of `gac-analyze energy --out DIR` "
        "(an observer run in DIR/observer.json or DIR/observe/ is read too).",
    ),
    out: Path = typer.Option(Path("reports/compare"), "--out", help=OUT_HELP),
    names: Optional[str] = typer.Option(
        None, "--names", help="Comma-separated display names, one per run (default: the folders' names)."
    ),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also draw the PNG figures."),
):
    """Compare runs: one row per run (model, data, accuracy, energy in every convention, firing rate, energy by
    role, Proposition 1), per-site firing rates on one axis, ratios to the first run; differences in data,
    images or energy table are stated in the header."""
    from gac_analysis.compare import build_comparison, read_runs, write_comparison_files
    from gac_analysis.compare.story import gac_vs_direct_story

    comp = build_comparison(read_runs(runs, names))
    with atomic_output_dir(out, kind="compare") as tmp:  # a run folder may hold its compare/ (demo)
        written = [
            p.relative_to(tmp).as_posix()
            for p in write_comparison_files(comp, tmp, figures=figures, story=gac_vs_direct_story(comp))
        ]
    for d in comp.differences:
        console.print(f"note: {d}", highlight=False, soft_wrap=True)
    for name, why in comp.observer_ignored.items():
        console.print(f"note: run {name}: {why}; no observer verdict for it", highlight=False, soft_wrap=True)
    first = comp.rows[0]
    for row in comp.rows:
        acc = "no labels" if row["top1"] is None else f"top-1 {100 * row['top1']:.2f}%"
        ratio = (
            ""
            if row is first
            else (f" ({row['paper_ratio_to_first']:.3f}x / {row['complete_ratio_to_first']:.3f}x of {first['name']})")
        )
        model = " ".join(str(row[k]) for k in ("coding", "arch") if row.get(k) is not None) or "model"
        console.print(
            f"{row['name']}: {model} T={row['T']}, {acc}, paper "
            f"{row['paper_mj']:.6g} / complete {row['complete_mj']:.6g} mJ/image{ratio}, mean firing rate "
            f"{row['mean_firing_rate']:.4f} spikes/neuron/step, Proposition 1 {row['prop1']}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"wrote {out}: " + ", ".join(written),
        highlight=False,
        soft_wrap=True,
    )
