"""The outputs of ``gac-analyze compare``: comparison.csv, comparison.json, comparison.md and figures.

``comparison.md`` states every difference between the runs (data, images, energy table, options, T)
in its header before any number; every number carries its unit and convention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gac_analysis.compare.table import CONVENTIONS, Comparison
from gac_analysis.fileio import atomic_write_text

__all__ = ["CSV_COLUMNS", "render_markdown", "write_comparison", "write_comparison_files"]

#: Columns of comparison.csv before the per-role energies (then ``paper_<role>_mj``, ``complete_<role>_mj``)
CSV_COLUMNS = (
    "name",
    "arch",
    "coding",
    "T",
    "parameters",
    "data",
    "images",
    "energy_table",
    "labelled",
    "correct",
    "top1",
    "paper_mj",
    "complete_mj",
    "memory_aware_mj",
    "paper_ratio_to_first",
    "complete_ratio_to_first",
    "energy_per_correct_paper_mj",
    "energy_per_correct_complete_mj",
    "mean_firing_rate",
    "mean_firing_rate_ratio_to_first",
)
#: Columns after the per-role energies.
CSV_TAIL = ("prop1", "t_g_gt_t_d_share", "mean_T_d", "mean_T_g", "observer_images", "observer_gac_weights", "path")

_PAPER = "paper convention (E_MAC x stem MACs + E_AC x fr x T x dense MACs of the spiking layers)"
_COMPLETE = "complete convention (every operation, exact counts)"


def csv_columns(comp: Comparison) -> list[str]:
    roles = [f"{conv}_{role}_mj" for conv in CONVENTIONS for role in comp.roles[conv]["roles"]]
    return [*CSV_COLUMNS, *roles, *CSV_TAIL]


def _csv_text(comp: Comparison) -> str:
    import pandas as pd

    cols = csv_columns(comp)
    return pd.DataFrame([{c: row.get(c) for c in cols} for row in comp.rows], columns=cols).to_csv(index=False)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and math.isfinite(v):
        return "0" if v == 0 else f"{v:.{digits}g}"
    return str(v)


def _pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def _cell(v: Any) -> str:
    text = v if isinstance(v, str) else _num(v)
    return " ".join(text.split()).replace("|", "\\|") or "-"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    return out + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _summary_rows(comp: Comparison) -> list[list[Any]]:
    rows = comp.rows
    first = comp.names[0]

    def line(label: str, key: str, fmt=_num, unit: str = "") -> list[Any]:
        return [label, *[fmt(r.get(key)) for r in rows], unit]

    def acc(r: dict) -> str:
        return "no labels" if r["top1"] is None else f"{100 * r['top1']:.2f}% ({r['correct']}/{r['labelled']})"

    return [
        line("architecture", "arch"),
        line("coding", "coding"),
        line("T", "T", unit="time steps"),
        line("parameters", "parameters"),
        line("data", "data"),
        line("images analysed", "images", unit="images"),
        line("energy table", "energy_table"),
        ["top-1 accuracy", *[acc(r) for r in rows], "correct / labelled images"],
        line("energy, paper convention", "paper_mj", unit="mJ/image; " + _PAPER),
        line("energy, complete convention", "complete_mj", unit="mJ/image; " + _COMPLETE),
        line(
            "energy, memory-aware",
            "memory_aware_mj",
            unit="mJ/image; memory-aware convention (Lemaire et al. 2022: compute + memory accesses)",
        ),
        line("paper energy / first run", "paper_ratio_to_first", unit=f"ratio to {first}"),
        line("complete energy / first run", "complete_ratio_to_first", unit=f"ratio to {first}"),
        line(
            "energy per correct prediction, paper",
            "energy_per_correct_paper_mj",
            unit="mJ / correct prediction, paper convention",
        ),
        line(
            "energy per correct prediction, complete",
            "energy_per_correct_complete_mj",
            unit="mJ / correct prediction, complete convention",
        ),
        line("mean firing rate", "mean_firing_rate", unit="spikes / neuron / time step (all LIF sites)"),
        line("mean firing rate / first run", "mean_firing_rate_ratio_to_first", unit=f"ratio to {first}"),
        line("Proposition 1 (T_g >= T_d)", "prop1", unit="observer verdict on the encoder neurons"),
        ["share with T_g > T_d", *[_pct(r["t_g_gt_t_d_share"]) for r in rows], "of observed encoder neurons"],
        line("mean T_d", "mean_T_d", unit="time steps: dynamic duration of direct coding's encoder spikes"),
        line("mean T_g", "mean_T_g", unit="time steps: dynamic duration of the GAC encoder output"),
        line(
            "observer: GAC weights",
            "observer_gac_weights",
            unit="model: the run's own GAC encoder; seeded: a GAC encoder of seeded weights on the run's stem",
        ),
    ]


def _roles_section(comp: Comparison) -> list[str]:
    first = comp.names[0]
    lines = [
        "## Energy by role",
        "",
        f"mJ per image; in brackets: this run / {first}. Complete convention: layer operations plus the LIF "
        "neuron updates of the role; paper convention: the paper's formula restricted to the role's layers.",
        "",
    ]
    for conv, definition in (("paper", _PAPER), ("complete", _COMPLETE)):
        t = comp.roles[conv]
        body = []
        for role in [*t["roles"], "total"]:
            cells = []
            for name in comp.names:
                v = t["total_mj"][name] if role == "total" else t["mj"][name][role]
                ratio = t["ratio_to_first"][name][role]
                cells.append(f"{_num(v)} ({_num(ratio, 3)})" if name != first else _num(v))
            body.append([f"**{role}**" if role == "total" else role, *cells])
        lines += [f"### {definition}", "", *_table(["role", *comp.names], body), ""]
    return lines


def _sites_section(comp: Comparison) -> list[str]:
    lines = [
        "## Firing rate per LIF site (matched by site name)",
        "",
        "Spikes / neuron / time step (mean over images and time steps), in network order; '-': the run has no "
        "LIF site of that name (e.g. direct coding has no encoder LIF).",
        "",
    ]
    body = [[f"`{s['site']}`", s["role"], *[_num(s["rates"][n]) for n in comp.names]] for s in comp.sites]
    lower = _lower_counts(comp)
    lines += _table(["LIF site", "role", *comp.names], body) + [""]
    if lower:
        lines += [lower, ""]
    return lines


def _lower_counts(comp: Comparison) -> str:
    """For two runs: on how many of the shared sites the second fires less than the first."""
    if len(comp.names) != 2:
        return ""
    a, b = comp.names
    shared = [s for s in comp.sites if s["rates"][a] is not None and s["rates"][b] is not None]
    lower = sum(s["rates"][b] < s["rates"][a] for s in shared)
    higher = sum(s["rates"][b] > s["rates"][a] for s in shared)
    return (
        f"Of the {len(shared)} sites both runs have, {b} fires less than {a} on {lower}, more on {higher} and "
        f"equally on {len(shared) - lower - higher}."
    )


def render_markdown(comp: Comparison, figures: list[Path], story: list[str] | None = None) -> str:
    """The text of comparison.md."""
    lines = [f"# Comparison of {len(comp.runs)} runs: " + ", ".join(comp.names), ""]
    for name, why in comp.observer_ignored.items():
        lines += [f"**Run {name}: no observer verdict**: {why}.", ""]
    if comp.differences:
        lines += ["**The runs differ in what they were measured on; they are compared anyway:**", ""]
        lines += [f"- {d}" for d in comp.differences] + [""]
    else:
        r = comp.rows[0]
        lines += [
            f"All runs share the data ({r['data']}), the images analysed ({r['images']}), the energy table "
            f"({r['energy_table']}), its options and T.",
            "",
        ]
    lines += [
        f"Ratios are to the first run, {comp.names[0]}. Runs: "
        + "; ".join(f"{r['name']} = `{r['path']}`" for r in comp.rows)
        + ".",
        "",
    ]
    if story:
        lines += story
    lines += [
        "## Summary (one column per run)",
        "",
        *_table(["quantity", *comp.names, "unit / convention"], _summary_rows(comp)),
        "",
    ]
    lines += _roles_section(comp)
    lines += _sites_section(comp)
    if figures:
        lines += ["## Figures", ""]
        for p in figures:
            lines += [f"![{p.stem}](figures/{p.name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(
    comp: Comparison, folder: str | Path, *, figures: bool = True, story: list[str] | None = None
) -> list[Path]:
    """Write comparison.csv, comparison.json, comparison.md (and figures/compare_*.png) into ``folder`` as
    ``gac-analyze compare --out`` does (``fileio.atomic_output_dir``): all or nothing, into a new or empty
    folder or a run of this tool, never over a file the tool did not write. Returns the paths written."""
    from gac_analysis.fileio import atomic_output_dir

    with atomic_output_dir(folder, kind="compare") as tmp:
        written = write_comparison_files(comp, tmp, figures=figures, story=story)
    return [Path(folder) / p.relative_to(tmp) for p in written]


def write_comparison_files(
    comp: Comparison, folder: str | Path, *, figures: bool = True, story: list[str] | None = None
) -> list[Path]:
    """Write the comparison's files into ``folder``, a temporary the caller commits (:func:`write_comparison`,
    the CLI)."""
    folder = Path(folder)
    pngs: list[Path] = []
    if figures:
        from gac_analysis.viz.compare_figures import write_compare_figures

        pngs = write_compare_figures(comp, folder / "figures")
    paths = [folder / "comparison.csv", folder / "comparison.json", folder / "comparison.md"]
    data = comp.to_dict()
    if story:
        data["story"] = story
    atomic_write_text(paths[0], _csv_text(comp))
    atomic_write_text(paths[1], json.dumps(data, indent=2) + "\n")
    atomic_write_text(paths[2], render_markdown(comp, pngs, story))
    return paths + pngs
