"""``report.md``: a Markdown report of one energy run folder, with its figures.

The report renders on GitHub as is: figures are linked by relative paths (``figures/NAME.png``),
so the run folder can be committed or uploaded as an artifact. Every number states its unit and
its convention (paper or complete; see :mod:`gac_analysis.energy.conventions`). The file is
written atomically (temporary file in the run folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gac_analysis.errors import ReportError
from gac_analysis.report_model import (
    PJ_PER_MJ,
    ObserverSummary,
    dotted_get,
    find_observer,
    load_observer_report,
    mj_per_image,
    observer_mismatch,
    silent_neurons_note,
)
from gac_analysis.viz.energy_figures import FIGURE_FILES, RunData, draw_energy_figures, load_run

__all__ = ["FIGURE_CAPTIONS", "read_observer", "render_report_md", "write_report_md"]

TOP_LAYERS = 10

#: Heading and caption of every figure (by figure name), in report order.
FIGURE_CAPTIONS: dict[str, tuple[str, str]] = {
    "firing_rate_per_site": (
        "Firing rate per LIF site",
        "Spikes / neuron / time step of every LIF site in network order (mean over images and time steps), "
        "coloured by role; dashed line: the network mean.",
    ),
    "firing_rate_heatmap": (
        "Firing rate per LIF site and time step",
        "Spikes / neuron at each time step t = 1..T, averaged over images.",
    ),
    "energy_per_layer": (
        "Energy per layer by op class",
        "µJ or mJ per image (axis label), paper convention (left) and complete convention (right) on one "
        "scale; batch norm is drawn with the conv it follows; LIF neuron updates are in the role and "
        "cumulative figures.",
    ),
    "energy_by_role": (
        "Energy by role",
        "Per image, paper vs complete; the complete bar splits layer operations from LIF neuron updates.",
    ),
    "energy_cumulative": (
        "Cumulative energy with depth",
        "Per image, summed over layers and LIF sites in execution order; both conventions.",
    ),
    "energy_memory": (
        "Memory-aware estimate: compute vs memory",
        "Per image, from the report's energy.memory entry (memory-aware convention).",
    ),
}

_PAPER = "paper convention: E_MAC x stem MACs + E_AC x fr x T x dense MACs of the spiking conv/linear layers"
_COMPLETE = "complete convention: every operation, exact counts"


# ---- formatting ---------------------------------------------------------------------------------


def _num(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        if v == 0:
            return "0"
        if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 1e4):
            return f"{int(v):,}"
        return f"{v:.{digits}g}"
    return str(v)


def _cell(v: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    text = v if isinstance(v, str) else _num(v)
    return " ".join(text.split()).replace("|", "\\|") or "-"


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


_mj = mj_per_image


# ---- observer ---------------------------------------------------------------------------------------


def read_observer(run_dir: str | Path, report: dict | None = None) -> ObserverSummary | str | None:
    """``observer.json`` of a run folder (``report_model.find_observer``: beside report.json or in its
    ``observe/`` sub-folder, where ``make demo`` puts the observer run): ``None`` when absent; the line the
    report shows instead of its verdict when it is unusable, or describes another model than ``report``
    (the energy report's JSON dictionary: ``report_model.observer_mismatch``)."""
    path = find_observer(run_dir)
    if path is None:
        return None
    try:
        observer = load_observer_report(path)
    except ReportError as e:
        return f"observer.json present but unreadable ({e})"
    mismatch = observer_mismatch(report, observer.data) if report is not None else None
    if mismatch is not None:
        return f"not shown: {mismatch}; run `gac-analyze observe` on this run's model"
    return observer


def _observer_section(obs: ObserverSummary | str | None) -> list[str]:
    if obs is None:
        return []
    lines = ["## Observer (Proposition 1: T_g >= T_d)", ""]
    if isinstance(obs, str):
        return lines + [f"_{obs}_", ""]
    lines += [f"**Verdict** ({'holds' if obs.holds else 'FAILS'}): {obs.verdict}", ""]
    rows: list[list[Any]] = [["T (time steps)", obs.T, "time steps"]]
    for key, unit in (
        ("num_images", "images"),
        ("num_neurons", "encoder output neurons observed"),
        ("mean_T_d", "time steps (direct coding)"),
        ("mean_T_g", "time steps (GAC coding)"),
        ("num_violations", "neurons with T_g < T_d"),
    ):
        if getattr(obs, key) is not None:
            rows.append([key, getattr(obs, key), unit])
    for key, name in (
        ("fraction_gt", "fraction T_g > T_d"),
        ("fraction_eq", "fraction T_g = T_d"),
        ("fraction_lt", "fraction T_g < T_d"),
    ):
        if getattr(obs, key) is not None:
            rows.append([name, getattr(obs, key), "of observed neurons (0..1)"])
    return lines + _table(["quantity", "value", "unit"], rows, "lrl") + [""]


# ---- sections ---------------------------------------------------------------------------------------


def _summary_section(run: RunData) -> list[str]:
    r = run.report
    e = r.energy
    n = run.num_images
    tot = r.totals
    ratio = dotted_get(e, "difference.ratio_complete_to_paper")
    diff = dotted_get(e, "difference.per_image_mj")
    if not isinstance(diff, (int, float)):
        diff = r.complete_mj_per_image - r.paper_mj_per_image
    acs, approx = tot.get("acs"), tot.get("approx_acs")

    def count(v: float) -> str:
        return f"{v:,.0f}"

    rows: list[list[Any]] = [
        ["energy, paper convention", _num(r.paper_mj_per_image, 6), "mJ/image", _PAPER],
        [
            "energy, complete convention",
            _num(r.complete_mj_per_image, 6),
            "mJ/image",
            _COMPLETE + " (incl. attention, batch norm, neuron updates)",
        ],
        ["difference (complete - paper)", _num(diff, 6), "mJ/image", "complete minus paper"],
        [
            "ratio (complete / paper)",
            _num(ratio, 4) if isinstance(ratio, (int, float)) else "-",
            "dimensionless",
            "complete / paper",
        ],
    ]
    if isinstance(acs, (int, float)):
        rows.append(["exact ACs", count(acs / n), "ACs/image", "complete convention: counted, binary-input layers"])
    if isinstance(approx, (int, float)):
        rows.append(
            [
                "fr x T x dense approximation",
                count(approx / n),
                "ACs/image",
                "paper convention: firing rate x T x dense MACs of the spiking layers",
            ]
        )
    if isinstance(acs, (int, float)) and isinstance(approx, (int, float)) and approx:
        rows.append(["exact ACs / approximation", _num(acs / approx, 4), "dimensionless", "complete / paper AC count"])
    if isinstance(tot.get("effective_macs"), (int, float)):
        rows.append(
            [
                "effective MACs",
                count(tot["effective_macs"] / n),
                "MACs/image",
                "complete convention: real-valued inputs, non-zero operands",
            ]
        )
    if isinstance(tot.get("dense_macs"), (int, float)):
        rows.append(
            [
                "dense MACs",
                count(tot["dense_macs"] / n),
                "MACs/image",
                "every synaptic layer run densely at every time step",
            ]
        )
    rows.append(
        [
            "mean firing rate",
            _num(r.mean_firing_rate, 4),
            "spikes / neuron / time step",
            "all LIF sites: total spikes / total neuron-steps",
        ]
    )
    rows += _accuracy_rows(r)
    if run.memory:
        m = run.memory
        rows.append(
            [
                "memory-aware energy",
                _num(_mj(m.compute_pj + m.memory_pj, n), 6),
                "mJ/image",
                f"memory-aware convention: compute {_num(_mj(m.compute_pj, n))} + memory "
                f"{_num(_mj(m.memory_pj, n))} mJ/image",
            ]
        )
    return ["## Summary", "", *_table(["quantity", "value", "unit", "convention / definition"], rows, "lrll"), ""]


def _accuracy_rows(r) -> list[list[Any]]:
    """Top-1 accuracy and energy per correct prediction (report key ``accuracy``), or "no labels"."""
    acc = r.accuracy
    if acc is None:
        why = r.provenance.get("accuracy_unavailable")
        return [["top-1 accuracy", "-", "-", why or "no labels: the data carries no class labels"]]
    rows = [
        [
            "top-1 accuracy",
            _num(100 * acc.top1, 4),
            "%",
            f"{acc.correct} correct of {acc.labelled} labelled images (arg-max of the time-averaged output)",
        ]
    ]
    for conv in ("paper", "complete"):
        v = acc.energy_per_correct_mj.get(conv)
        rows.append(
            [
                f"energy per correct prediction, {conv} convention",
                _num(v, 6),
                "mJ / correct prediction",
                "energy of the labelled images / correct predictions" if v is not None else "no correct prediction",
            ]
        )
    return rows


def _difference_section(run: RunData) -> list[str]:
    e = run.report.energy
    comps = dotted_get(e, "difference.components_pj") or {}
    n = run.num_images
    diff_mj = dotted_get(e, "difference.per_image_mj")
    lines = [
        "## What makes up the difference (complete - paper)",
        "",
        "Each component is its complete-convention energy minus its paper-convention energy, in mJ/image; "
        "negative: the paper convention counts more there (e.g. fr x T x dense above the exact ACs).",
        "",
    ]
    items = [(k, v) for k, v in comps.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not items:
        return lines + ["_no difference components in report.json_", ""]
    items.sort(key=lambda kv: -abs(kv[1]))
    total = sum(v for _, v in items)
    rows = [[k, _num(_mj(v, n), 4), f"{100 * v / total:.1f}%" if total else "-"] for k, v in items]
    rows.append(
        [
            "**total**",
            _num(diff_mj if isinstance(diff_mj, (int, float)) else _mj(total, n), 4),
            "100.0%" if total else "-",
        ]
    )
    return lines + _table(["component", "mJ/image (complete - paper)", "share of the difference"], rows, "lrr") + [""]


def _hardware_section(run: RunData) -> list[str]:
    """Compute-only vs memory-aware energy, SNN vs the equivalent ANN, and the bounds (energy.memory)."""
    mem = dotted_get(run.report.energy, "memory")
    per = mem.get("per_image_pj") if isinstance(mem, dict) else None
    if not isinstance(per, dict):
        return []
    ratio = mem.get("snn_over_ann") or {}
    mj = {k: v / PJ_PER_MJ for k, v in per.items() if isinstance(v, (int, float))}
    lines = [
        "## Hardware view: memory-aware energy and the equivalent ANN",
        "",
        f"{mem.get('model', 'memory-aware model')}; precision {mem.get('precision', '?')}, "
        f"{mem.get('word_bits', '?')}-bit words, SRAM cost from the table's fit. The ANN is the same layers, "
        "dense, run once on real-valued inputs.",
        "",
    ]
    lines += _table(
        ["accounting", "SNN (mJ/image)", "ANN (mJ/image)", "SNN / ANN"],
        [
            [
                "compute-only (arithmetic + addressing)",
                _num(mj.get("snn_compute")),
                _num(mj.get("ann_compute")),
                _num(ratio.get("compute_only")),
            ],
            [
                "memory-aware (compute + memory accesses)",
                _num(mj.get("snn_total")),
                _num(mj.get("ann_total")),
                _num(ratio.get("memory_aware")),
            ],
        ],
        "lrrr",
    )
    bounds = mem.get("bounds") or {}
    if bounds:
        lines += ["", "Bounds on the complete energy with memory (mJ/image):", ""]
        rows = [
            [name, _num(b.get("per_image_mj")), "; ".join(b.get("assumptions", []))]
            for name, b in bounds.items()
            if isinstance(b, dict)
        ]
        lines += _table(["bound", "mJ/image", "assumptions"], rows, "lrl")
    return lines + [""]


def _figures_section(run: RunData, figures: list[Path]) -> list[str]:
    lines = ["## Figures", ""]
    names = {p.name: p for p in figures}
    for name, (heading, caption) in FIGURE_CAPTIONS.items():
        file = FIGURE_FILES[name]
        if file not in names:
            continue
        lines += [f"### {heading}", "", f"![{heading}](figures/{file})", "", f"_{caption}_", ""]
    if not figures:
        lines += ["_figures not written (`--no-figures`)_", ""]
    for note in run.notes:
        lines += [f"> note: {note}", ""]
    return lines


def _consumers_section(run: RunData) -> list[str]:
    n = run.num_images
    lay = run.layers
    if not len(lay):
        return []
    total_c = float(run.report.energy["complete"]["total_pj"]) or 1.0
    total_p = float(run.report.energy["paper"]["total_pj"]) or 1.0
    top = lay.nlargest(TOP_LAYERS, "complete_pj")
    rows = []
    for i, (_, r) in enumerate(top.iterrows(), 1):
        rows.append(
            [
                i,
                f"`{r['name']}`",
                r["op"],
                r["role"],
                r.get("input") or "-",
                _num(_mj(r["complete_pj"], n), 4),
                f"{100 * r['complete_pj'] / total_c:.1f}%",
                _num(_mj(r["paper_pj"], n), 4),
                f"{100 * r['paper_pj'] / total_p:.1f}%",
            ]
        )
    head = [
        "#",
        "layer",
        "op",
        "role",
        "input",
        "complete mJ/image",
        "share of complete",
        "paper mJ/image",
        "share of paper",
    ]
    return [
        f"## Largest consumers (top {len(rows)} layers, complete convention)",
        "",
        *_table(head, rows, "rlllrrrrr"),
        "",
        "LIF neuron updates are priced per site (complete convention only): "
        f"{_num(_mj(float(run.lif['complete_pj'].sum()) if len(run.lif) else 0.0, n), 4)} mJ/image "
        f"over {len(run.lif)} LIF sites.",
        "",
    ]


def _provenance_section(run: RunData) -> list[str]:
    r = run.report
    prov = r.provenance
    model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
    ckpt = model.get("checkpoint") if isinstance(model.get("checkpoint"), dict) else {}
    data = prov.get("data") if isinstance(prov.get("data"), dict) else {}
    table = r.energy.get("table") or {}
    opts = r.energy.get("options") or {}
    rows: list[list[Any]] = []

    def add(k: str, v: Any) -> None:
        if v is not None and v != "" and v != {}:
            rows.append([k, v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else v])

    for key in ("package", "python", "torch", "spikingjelly", "device"):
        add(key, prov.get(key))
    for key in ("arch", "T", "coding", "num_classes", "width", "parameters", "lif_variant", "firing_rule"):
        add(f"model {key}", model.get(key))
    add("checkpoint", ckpt.get("path") if ckpt else "none (in-memory model)")
    add("checkpoint sha256", f"`{ckpt['sha256']}`" if ckpt.get("sha256") else None)
    add("checkpoint layout", ckpt.get("layout"))
    add("data source", data.get("source"))
    add("images analysed", r.num_images)
    for key in ("split", "seed", "image_size", "normalization", "distribution", "labels_known"):
        add(f"data {key}", data.get(key))
    add("energy table", table.get("name"))
    add("energy table precision", table.get("precision"))
    costs = ", ".join(f"{k} {table[k]} pJ" for k in ("mac", "ac", "add", "mul", "compare") if k in table)
    add("energy costs", costs or None)
    add("energy table source", table.get("source"))
    add("energy table file", table.get("path"))
    add("reuse static work (count time-invariant modules once)", opts.get("reuse_static"))
    add("batch norm folded", opts.get("fold_bn"))
    add("sigmoid pricing", opts.get("sigmoid_pricing"))
    checks = r.checks
    if "paper_le_complete" in checks:
        add("check: paper <= complete", checks["paper_le_complete"])
    mism = checks.get("input_kind_mismatches")
    if isinstance(mism, list):
        add(
            "check: declared/observed input-kind mismatches",
            ", ".join(
                f"{m.get('name')} ({m.get('declared_input')} declared, {m.get('input')} seen)"
                for m in mism
                if isinstance(m, dict)
            )
            or "none",
        )
    add(
        "check: neuron layers that never fired",
        silent_neurons_note(((s.name, s.spikes) for s in r.lif_sites), all_fired="none"),
    )
    return ["## Provenance", "", *_table(["item", "value"], rows), ""]


def _gac_vs_direct_section(run_dir: Path) -> list[str]:
    """The "GAC vs direct coding on the same task" section when RUN_DIR/compare/ holds one (``make demo``)."""
    from gac_analysis.compare.story import read_story

    return read_story(run_dir) or []


def render_report_md(run: RunData, figures: list[Path], observer: ObserverSummary | str | None = None) -> str:
    """The Markdown text of a run folder's report (figures: the PNGs written, linked relatively)."""
    r = run.report
    model = r.provenance.get("model") or {}
    arch = model.get("arch", "model") if isinstance(model, dict) else "model"
    coding = model.get("coding") if isinstance(model, dict) else None
    lines = [
        f"# Energy report: {arch}" + (f" ({coding} coding)" if coding else "") + f", T={r.T}",
        "",
        f"{r.num_images} images analysed; energy table `{r.table_name or '?'}`; "
        f"written by {r.provenance.get('package', 'gac-analysis')}. "
        "Energies are per image (mJ/image unless stated), in two conventions: the **paper** convention "
        "(E_MAC x stem MACs + E_AC x fr x T x dense MACs over the spiking conv/linear layers, as GAC, "
        "Spikformer and MS-ResNet report it; GAC attention, batch norm, neurons and residual adds are not "
        "counted) and the **complete** convention (every operation of the inference, exact counts).",
        "",
    ]
    lines += _summary_section(run)
    lines += _difference_section(run)
    lines += _hardware_section(run)
    lines += _observer_section(observer)
    lines += _gac_vs_direct_section(run.run_dir)
    lines += _figures_section(run, figures)
    lines += _consumers_section(run)
    lines += _provenance_section(run)
    return "\n".join(lines).rstrip() + "\n"


def write_report_md(run_dir: str | Path, *, figures: bool = True) -> tuple[Path, list[Path]]:
    """Write ``run_dir/report.md`` and, with ``figures``, ``run_dir/figures/*.png``, all or nothing.

    They are drawn into a temporary and committed together (``fileio.atomic_output_dir``, kind
    ``report``): an interrupted run changes nothing; this tool's earlier report and figures are
    replaced (a figure the new report does not draw is removed); a file of anyone else's named like
    one of them is an error, never overwritten. Returns (report.md path, figure paths). Raises
    :class:`ReportError` for an unusable run folder.
    """
    from gac_analysis.fileio import atomic_output_dir, read_snapshot
    from gac_analysis.report_model import OBSERVER_PLACES

    folder = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    expect = read_snapshot(folder, ["report.json", *OBSERVER_PLACES])  # before reading: a run written meanwhile
    run = load_run(run_dir)
    with atomic_output_dir(run.run_dir, kind="report", expect=expect) as tmp:
        drawn = draw_energy_figures(run, tmp / "figures") if figures else []
        pngs = [run.run_dir / "figures" / p.name for p in drawn]
        (tmp / "report.md").write_text(
            render_report_md(run, pngs, read_observer(run.run_dir, run.report.to_dict())), encoding="utf-8"
        )
    return run.run_dir / "report.md", pngs
