"""Figures of one energy run folder (the ``--out`` folder of ``gac-analyze energy``).

Every figure is a PNG of a fixed size (``FIGURE_SIZES`` inches x ``DPI``), so its pixel size is
predictable, drawn with matplotlib's Agg renderer (no display needed). Every energy axis says its
unit (per image, auto-scaled to mJ / µJ / nJ / pJ) and its convention:

* **paper**: E_MAC x stem MACs (counted once) + E_AC x fr_in x T x dense MACs of the spiking
  conv/linear layers; GAC attention, batch norm, neurons, residual adds are not counted;
* **complete**: every operation with exact counts (see :mod:`gac_analysis.energy.conventions`),
  including the neuron updates of every LIF site (``lif_sites[].complete_pj``).

The run folder is read from ``report.json`` (schema ``gac-analysis/energy-report`` version 1),
``layers.csv`` (the complete energy by op class; derived from ``report.json`` when the CSV is
absent) and ``per_step.csv`` (execution order of layers and LIF sites, for the cumulative plot).
An optional ``energy.memory`` entry of a memory-aware estimate adds one figure.

Heavy imports (pandas, matplotlib, seaborn) happen inside the functions, so importing this module
is cheap (``gac-analyze budget`` uses :func:`read_report`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gac_analysis.fileio import atomic_write
from gac_analysis.errors import ReportError

__all__ = [
    "CLASS_COLUMNS", "DPI", "FIGURE_FILES", "FIGURE_SIZES", "REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "RunData",
    "energy_unit", "load_run", "plot_cumulative_energy", "plot_energy_by_role", "plot_energy_per_layer",
    "plot_firing_rate_heatmap", "plot_firing_rates", "plot_memory_energy", "read_report", "write_energy_figures",
]

#: The report schema this module reads (mirrors ``gac_analysis.accounting.report``; kept here so that
#: reading a report does not import torch).
REPORT_SCHEMA = "gac-analysis/energy-report"
REPORT_SCHEMA_VERSION = 1

#: Resolution of every figure (dots per inch); pixel size = FIGURE_SIZES[name] x DPI.
DPI = 100
#: Figure sizes in inches (width, height), by figure name.
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "firing_rate_per_site": (10.0, 8.0),
    "firing_rate_heatmap": (10.0, 8.0),
    "energy_per_layer": (14.0, 13.0),
    "energy_by_role": (11.0, 6.5),
    "energy_cumulative": (13.0, 7.0),
    "energy_memory": (12.0, 9.0),
}
#: File name of every figure inside ``RUN_DIR/figures/``.
FIGURE_FILES: dict[str, str] = {name: f"{name}.png" for name in FIGURE_SIZES}

#: The complete energy of a layer by op class: (layers.csv column, legend label).
CLASS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mac_pj", "MAC (real-valued inputs)"),
    ("ac_pj", "AC (binary spike inputs)"),
    ("bias_pj", "bias adds"),
    ("bn_pj", "batch norm"),
    ("elementwise_pj", "elementwise (add, mul, sigmoid, ReLU)"),
    ("pooling_pj", "pooling"),
)
_CLASS_COLORS = {"mac_pj": "#4C72B0", "ac_pj": "#55A868", "bias_pj": "#8172B3", "bn_pj": "#CCB974",
                 "elementwise_pj": "#DD8452", "pooling_pj": "#64B5CD"}
_NEURON_COLOR = "#937860"
_ROLE_ORDER = ("encoder", "attention", "backbone", "head")
_ROLE_COLORS = {"encoder": "#4C72B0", "attention": "#DD8452", "backbone": "#55A868", "head": "#C44E52"}
_PAPER_COLOR = "#7F7F7F"
_SYNAPTIC = ("conv1d", "conv2d", "conv3d", "linear")
_POOLING = ("avgpool", "maxpool")
#: More rows than this in a per-layer figure: rows are summed per block (name without its last part).
MAX_ROWS = 80
_PAPER_DEF = "E_MAC x stem MACs + E_AC x fr x T x dense MACs; attention, BN, neurons not counted"
_COMPLETE_DEF = "every operation, exact counts"


# ---- reading a run folder -------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get(d: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _report_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path} does not exist; pass a run folder written by `gac-analyze energy --out DIR` "
                          "or its report.json")
    if path.is_dir():
        path = path / "report.json"
        if not path.is_file():
            raise ReportError(f"{path.parent} has no report.json; pass the --out folder of `gac-analyze energy`")
    return path


def read_report(path: str | Path) -> dict:
    """Read and check an energy report: ``path`` is a run folder or its ``report.json``.

    Raises :class:`ReportError` (one line) when the file is missing or unreadable, is not JSON,
    is another schema or schema version, or lacks the numbers every consumer needs.
    """
    path = _report_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path} holds a JSON {type(report).__name__}, not an energy report object")
    schema, version = report.get("schema"), report.get("schema_version")
    if schema != REPORT_SCHEMA or version != REPORT_SCHEMA_VERSION:
        raise ReportError(f"{path} is schema {schema!r} version {version!r}; this version reads "
                          f"{REPORT_SCHEMA!r} version {REPORT_SCHEMA_VERSION}: re-run `gac-analyze energy`")
    for key in ("num_images", "T", "mean_firing_rate", "energy.paper.per_image_mj", "energy.paper.total_pj",
                "energy.complete.per_image_mj", "energy.complete.total_pj"):
        if not _is_number(_get(report, key)):
            raise ReportError(f"{path}: {key} is missing or not a number; re-run `gac-analyze energy`")
    for key in ("layers", "lif_sites"):
        rows = report.get(key)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                                 for r in rows):
            raise ReportError(f"{path}: {key} is missing or is not a list of named rows; re-run `gac-analyze energy`")
    return report


@dataclass
class RunData:
    """One run folder, ready to plot. Energies in pJ totals over the images (as the report)."""

    run_dir: Path
    report: dict
    layers: Any                 # DataFrame: name, op, role, paper_pj, paper_mac_pj, paper_ac_pj, complete_pj,
                                # and the CLASS_COLUMNS (complete energy by op class)
    lif: Any                    # DataFrame: name, role, firing_rate, per_step_rate (list), complete_pj
    order: list[tuple[str, str]]  # execution order: ("layer" | "lif", name)
    order_source: str           # "per_step.csv" or "approximate (per_step.csv absent)"
    class_source: str           # "layers.csv" or "derived from report.json"
    memory: dict | None = None  # parsed energy.memory (see _parse_memory) or None
    notes: list[str] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return max(int(self.report["num_images"]), 1)

    @property
    def T(self) -> int:
        return int(self.report["T"])

    @property
    def title(self) -> str:
        model = _get(self.report, "provenance.model") or {}
        arch = model.get("arch", "model") if isinstance(model, dict) else "model"
        coding = model.get("coding") if isinstance(model, dict) else None
        table = _get(self.report, "energy.table.name") or "?"
        return (f"{arch}{f' ({coding})' if coding else ''}, T={self.T}, {self.report['num_images']} images, "
                f"table {table}")


def _layers_frame(report: dict, run_dir: Path):
    """Report layers with the complete energy by op class: from layers.csv, else derived exactly."""
    import pandas as pd

    rows = report["layers"]
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(["name", "op", "role", "input", "static", "effective_macs",
                                                         "acs", "bias_adds", "paper_pj", "complete_pj"]
                                                        + [k for r in rows[:1] for k in r])))
    for col in ("paper_pj", "complete_pj", "effective_macs", "acs", "bias_adds"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0.0).astype(float)
    df["op"] = df["op"].fillna("?").astype(str)
    df["role"] = df["role"].fillna("other").astype(str)
    source = "derived from report.json"
    csv = run_dir / "layers.csv"
    if csv.is_file() and len(df):
        try:
            lc = pd.read_csv(csv)
            cols = [c for c, _ in CLASS_COLUMNS]
            if set(cols) <= set(lc.columns) and list(lc["name"].astype(str)) == list(df["name"]):
                for c in cols:
                    df[c] = pd.to_numeric(lc[c], errors="coerce").fillna(0.0).astype(float).to_numpy()
                source = "layers.csv"
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            pass
    if source != "layers.csv":
        _derive_classes(df, report)
    stem = df["op"].isin(_SYNAPTIC) & (df["role"] == "encoder")
    df["paper_mac_pj"] = df["paper_pj"].where(stem, 0.0)
    df["paper_ac_pj"] = df["paper_pj"].where(~stem, 0.0)
    return df, source


def _derive_classes(df, report: dict) -> None:
    """Split each layer's complete_pj by op class from its counts and the table's prices.

    Exact: every part of one layer carries the same static scale, so the shares of the priced
    counts are the shares of ``complete_pj``.
    """
    table = _get(report, "energy.table") or {}
    price = {k: float(table.get(k, 0.0) or 0.0) for k in ("mac", "ac", "add")}
    for c, _ in CLASS_COLUMNS:
        df[c] = 0.0
    for i, r in df.iterrows():
        total = float(r["complete_pj"])
        if r["op"] in _SYNAPTIC:
            parts = {"mac_pj": r["effective_macs"] * price["mac"], "ac_pj": r["acs"] * price["ac"],
                     "bias_pj": r["bias_adds"] * price["add"]}
            s = sum(parts.values())
            for c, v in parts.items():
                df.at[i, c] = total * v / s if s else (total if c == "mac_pj" else 0.0)
        elif r["op"] == "batchnorm":
            df.at[i, "bn_pj"] = total
        elif r["op"] in _POOLING:
            df.at[i, "pooling_pj"] = total
        else:
            df.at[i, "elementwise_pj"] = total


def _lif_frame(report: dict):
    import pandas as pd

    df = pd.DataFrame(report["lif_sites"], columns=list(dict.fromkeys(
        ["name", "role", "firing_rate", "per_step_rate", "complete_pj"]
        + [k for r in report["lif_sites"][:1] for k in r])))
    df["role"] = df["role"].fillna("other").astype(str)
    for col in ("firing_rate", "complete_pj"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0.0).astype(float)
    df["per_step_rate"] = df["per_step_rate"].map(
        lambda v: [float(x) if _is_number(x) else float("nan") for x in v] if isinstance(v, list) else [])
    return df


def _execution_order(run_dir: Path, layers, lif) -> tuple[list[tuple[str, str]], str]:
    """Layers and LIF sites in execution order (per_step.csv lists every site in that order)."""
    import pandas as pd

    known = {("layer", n) for n in layers["name"]} | {("lif", n) for n in lif["name"]}
    path = run_dir / "per_step.csv"
    if path.is_file():
        try:
            ps = pd.read_csv(path, usecols=["name", "kind"])
            order = list(dict.fromkeys(zip(ps["kind"].astype(str), ps["name"].astype(str))))
            if set(order) == known:
                return order, "per_step.csv"
        except (OSError, ValueError, pd.errors.ParserError):
            pass
    # Fallback: each LIF site just before the first layer of its block (else at the end).
    order: list[tuple[str, str]] = [("layer", n) for n in layers["name"]]
    for name in lif["name"]:
        block = name.rsplit(".", 1)[0]
        at = next((i for i, (_, n) in enumerate(order) if n.rsplit(".", 1)[0] == block), len(order))
        order.insert(at, ("lif", name))
    return order, "approximate (per_step.csv absent)"


def _parse_memory(report: dict) -> dict | None:
    """``energy.memory`` of a memory-aware estimate, read defensively.

    Returns ``{"per_layer": [(name, compute_pj, memory_pj), ...] | None, "compute_pj", "memory_pj"}`` in
    pJ totals over the images (the report's convention), or ``None`` when absent or unusable.
    """
    mem = _get(report, "energy.memory")
    if not isinstance(mem, dict):
        return None

    def split(d: Any) -> tuple[float, float] | None:
        if not isinstance(d, dict):
            return None
        memory = d.get("memory_pj")
        compute = d.get("compute_pj")
        if compute is None and any(_is_number(d.get(k)) for k in ("arithmetic_pj", "addressing_pj")):
            compute = sum(float(d.get(k) or 0.0) for k in ("arithmetic_pj", "addressing_pj"))
        if compute is None and _is_number(d.get("total_pj")) and _is_number(memory):
            compute = float(d["total_pj"]) - float(memory)
        return (float(compute), float(memory)) if _is_number(compute) and _is_number(memory) else None

    per_layer = None
    rows = next((mem[k] for k in ("layers", "per_layer") if k in mem), None)
    if isinstance(rows, dict):
        rows = [dict(v, name=k) for k, v in rows.items() if isinstance(v, dict)]
    if isinstance(rows, list):
        parsed = [(str(r.get("name", f"#{i}")), *s) for i, r in enumerate(rows)
                  if isinstance(r, dict) and (s := split(r)) is not None]
        per_layer = parsed or None
    totals = split(mem.get("totals")) or split(mem.get("total")) or split(mem)
    if totals is None and per_layer:
        totals = (sum(r[1] for r in per_layer), sum(r[2] for r in per_layer))
    if totals is None:
        return None
    return {"per_layer": per_layer, "compute_pj": totals[0], "memory_pj": totals[1]}


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (or its report.json) into plot-ready tables; :class:`ReportError` if unusable."""
    report = read_report(run_dir)
    run_dir = _report_path(run_dir).parent
    layers, class_source = _layers_frame(report, run_dir)
    lif = _lif_frame(report)
    order, order_source = _execution_order(run_dir, layers, lif)
    run = RunData(run_dir=run_dir, report=report, layers=layers, lif=lif, order=order, order_source=order_source,
                  class_source=class_source, memory=_parse_memory(report))
    if class_source != "layers.csv":
        run.notes.append("energy by op class derived from report.json counts and the energy table "
                         "(layers.csv absent or not matching)")
    if order_source != "per_step.csv":
        run.notes.append("execution order of LIF sites approximated (per_step.csv absent or not matching)")
    return run


# ---- drawing helpers ------------------------------------------------------------------------------

_UNITS = ((1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ"))


def energy_unit(max_pj: float) -> tuple[float, str]:
    """(pJ per unit, unit name) that shows ``max_pj`` with 1 to 3 integer digits (mJ at most)."""
    for scale, name in _UNITS:
        if max_pj >= scale:
            return scale, name
    return 1.0, "pJ"


def _figure(name: str, **subplots):
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZES[name], dpi=DPI, layout="constrained")
    axes = fig.subplots(**subplots)
    return fig, axes


def _save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file in the same folder, then rename)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))


def _label_size(n: int) -> float:
    return 10 if n <= 20 else 9 if n <= 35 else 8 if n <= 50 else 7 if n <= 70 else 6


def _thin_labels(ax, labels: list[str], axis: str = "y", max_labels: int = 90) -> None:
    step = max(1, math.ceil(len(labels) / max_labels))
    ticks = list(range(0, len(labels), step))
    getattr(ax, f"set_{axis}ticks")(ticks)
    getattr(ax, f"set_{axis}ticklabels")([labels[i] for i in ticks], fontsize=_label_size(len(ticks)))


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _role_handles(roles) -> list:
    from matplotlib.patches import Patch

    return [Patch(color=_ROLE_COLORS.get(r, "#999999"), label=r) for r in roles]


def _ordered_roles(*frames) -> list[str]:
    present = {r for f in frames for r in f["role"]}
    return [r for r in _ROLE_ORDER if r in present] + sorted(present - set(_ROLE_ORDER))


def _block(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _merge_batchnorm(df, value_cols: list[str]):
    """Each batch norm that directly follows a conv/linear of its block joins that layer's row
    (label ``layers.0.0.conv1 + bn1``): the usual conv+BN unit, and half as many rows to read."""
    import pandas as pd

    rows: list[dict] = []
    for rec in df.to_dict(orient="records"):
        prev = rows[-1] if rows else None
        if (rec.get("op") == "batchnorm" and prev is not None and prev.get("op") in _SYNAPTIC
                and not prev["_merged"] and _block(prev["name"]) == _block(rec["name"])):
            for c in value_cols:
                prev[c] = float(prev[c]) + float(rec[c])
            prev["label"] = f"{prev['label']} + {rec['name'][len(_block(rec['name'])) + 1:]}"
            prev["_merged"] = True
            continue
        rows.append({**rec, "label": rec["name"], "_merged": False})
    return pd.DataFrame(rows).drop(columns="_merged")


def _aggregate_rows(df, value_cols: list[str], max_rows: int = MAX_ROWS):
    """At most ``max_rows`` rows: sum by block (name without its last part), then by stage, keeping order."""
    if len(df) <= max_rows:
        return df.assign(label=df["label"] if "label" in df else df["name"]), "one row per layer"
    import pandas as pd

    for level, what in ((1, "block"), (None, "stage")):
        keys = df["name"].map(lambda n: n.rsplit(".", level)[0] if level else ".".join(n.split(".")[:2]))
        if keys.nunique() <= max_rows or level is None:
            break
    grouped = df.assign(_key=keys).groupby("_key", sort=False)
    out = grouped[value_cols].sum()
    out["ops"] = grouped.size()
    out = out.reset_index().rename(columns={"_key": "name"})
    out["label"] = [f"{n}.* ({k})" for n, k in zip(out["name"], out["ops"])]
    return pd.DataFrame(out), f"rows summed per {what} ({len(df)} layers)"


# ---- the figures ----------------------------------------------------------------------------------

def plot_firing_rates(run: RunData, path: Path) -> Path:
    """(a) Firing rate of every LIF site in network order, coloured by role, with the network mean."""
    fig, ax = _figure("firing_rate_per_site")
    lif = run.lif
    fig.suptitle(f"Firing rate per LIF site (network order) -- {run.title}", fontsize=12)
    if not len(lif):
        _empty(ax, "no LIF sites in this run")
        return _save(fig, path)
    n = len(lif)
    y = list(range(n))
    ax.barh(y, lif["firing_rate"], color=[_ROLE_COLORS.get(r, "#999999") for r in lif["role"]], height=0.75)
    _thin_labels(ax, list(lif["name"]))
    ax.set_ylim(n - 0.5, -0.5)
    mean = float(run.report["mean_firing_rate"])
    ax.axvline(mean, color="black", linestyle="--", linewidth=1)
    top = max(float(lif["firing_rate"].max()), mean, 1e-3)
    ax.set_xlim(0, top * 1.18)
    if n <= 40:
        for yi, v in zip(y, lif["firing_rate"]):
            ax.text(v + top * 0.01, yi, f"{v:.3f}", va="center", fontsize=_label_size(n) - 1)
    from matplotlib.lines import Line2D

    handles = _role_handles(_ordered_roles(lif)) + [
        Line2D([], [], color="black", linestyle="--", label=f"network mean {mean:.3f}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    ax.set_xlabel(f"firing rate (spikes / neuron / time step; mean over {run.report['num_images']} images "
                  f"and T={run.T} steps)")
    ax.set_ylabel("LIF site (network order, first at top)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_firing_rate_heatmap(run: RunData, path: Path) -> Path:
    """(b) Firing rate of every LIF site at every time step (rows: sites in network order)."""
    import numpy as np

    fig, ax = _figure("firing_rate_heatmap")
    fig.suptitle(f"Firing rate per LIF site and time step -- {run.title}", fontsize=12)
    lif = run.lif
    width = max((len(v) for v in lif["per_step_rate"]), default=0) if len(lif) else 0
    if not len(lif) or width == 0:
        _empty(ax, "no per-step firing rates in this run")
        return _save(fig, path)
    import seaborn as sns

    grid = np.full((len(lif), width), np.nan)
    for i, v in enumerate(lif["per_step_rate"]):
        grid[i, :len(v)] = v
    annotate = grid.size <= 400 and width <= 16
    sns.heatmap(grid, ax=ax, cmap="viridis", vmin=0.0, vmax=max(float(np.nanmax(grid)), 1e-3), annot=annotate,
                fmt=".2f", annot_kws={"fontsize": 8}, linewidths=0.4 if annotate else 0, linecolor="white",
                cbar_kws={"label": "firing rate (spikes / neuron / time step; mean over images)"})
    names = list(lif["name"])
    step = max(1, math.ceil(len(names) / 90))
    ax.set_yticks([i + 0.5 for i in range(0, len(names), step)])
    ax.set_yticklabels(names[::step], rotation=0, fontsize=_label_size(len(names[::step])))
    step = max(1, math.ceil(width / 30))
    ax.set_xticks([t + 0.5 for t in range(0, width, step)])
    ax.set_xticklabels([str(t + 1) for t in range(0, width, step)], rotation=0)
    ax.set_xlabel(f"time step t (1..T, T={run.T})")
    ax.set_ylabel("LIF site (network order, first at top)")
    return _save(fig, path)


def plot_energy_per_layer(run: RunData, path: Path) -> Path:
    """(c) Energy per layer, stacked by op class: paper (left) and complete (right) on one shared scale."""
    import numpy as np

    fig, axes = _figure("energy_per_layer", ncols=2, sharey=True, sharex=True)
    n_img = run.num_images
    neuron_pj = float(run.lif["complete_pj"].sum()) if len(run.lif) else 0.0
    lay = run.layers
    if not len(lay):
        for ax in axes:
            _empty(ax, "no layers in this run")
        fig.suptitle(f"Energy per layer -- {run.title}")
        return _save(fig, path)
    cols = [c for c, _ in CLASS_COLUMNS]
    values = cols + ["paper_mac_pj", "paper_ac_pj", "paper_pj", "complete_pj"]
    merged = _merge_batchnorm(lay, values)
    df, how = _aggregate_rows(merged, values)
    if how == "one row per layer":
        how = "one row per layer, batch norm with its conv"
    else:
        df, how = _aggregate_rows(lay, values)
    scale, unit = energy_unit(max(df["complete_pj"].max(), df["paper_pj"].max()) / n_img)
    y = np.arange(len(df))
    panels = (
        (axes[0], [("paper_mac_pj", "mac_pj"), ("paper_ac_pj", "ac_pj")],
         f"paper convention: {run.report['energy']['paper']['per_image_mj']:.4g} mJ/image\n({_PAPER_DEF})"),
        (axes[1], [(c, c) for c in cols],
         f"complete convention: {run.report['energy']['complete']['per_image_mj']:.4g} mJ/image\n"
         f"({_COMPLETE_DEF}; neuron updates, {neuron_pj / n_img / scale:.3g} {unit}/image, not in these bars)"),
    )
    labels = dict(CLASS_COLUMNS)
    for ax, parts, title in panels:
        left = np.zeros(len(df))
        for col, cls in parts:
            vals = df[col].to_numpy(dtype=float) / n_img / scale
            ax.barh(y, vals, left=left, color=_CLASS_COLORS[cls], height=0.8, label=labels[cls])
            left += vals
        ax.set_title(title, fontsize=10)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"energy ({unit} / image)")
        ax.grid(axis="x", alpha=0.3)
    _thin_labels(axes[0], list(df["label"]))
    axes[0].set_ylim(len(df) - 0.5, -0.5)
    axes[0].set_ylabel(f"layer (network order, first at top; {how})")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=_CLASS_COLORS[c], label=lab) for c, lab in CLASS_COLUMNS],
               loc="outside lower center", ncol=6, fontsize=9, title="complete energy by op class (paper: MAC = stem, "
               "AC = fr x T x dense of the spiking layers)", title_fontsize=9)
    fig.suptitle(f"Energy per layer by op class -- {run.title}", fontsize=12)
    return _save(fig, path)


def plot_energy_by_role(run: RunData, path: Path) -> Path:
    """(d) Energy per role, paper beside complete; complete = layer operations + LIF neuron updates."""
    import numpy as np

    fig, ax = _figure("energy_by_role")
    n_img = run.num_images
    lay, lif = run.layers, run.lif
    roles = _ordered_roles(lay, lif) if len(lay) or len(lif) else list(_ROLE_ORDER)
    paper = lay.groupby("role")["paper_pj"].sum() if len(lay) else {}
    ops = lay.groupby("role")["complete_pj"].sum() if len(lay) else {}
    neurons = lif.groupby("role")["complete_pj"].sum() if len(lif) else {}
    p = np.array([float(paper.get(r, 0.0)) for r in roles]) / n_img
    o = np.array([float(ops.get(r, 0.0)) for r in roles]) / n_img
    nu = np.array([float(neurons.get(r, 0.0)) for r in roles]) / n_img
    scale, unit = energy_unit(float(max(p.max(initial=0), (o + nu).max(initial=0))))
    p, o, nu = p / scale, o / scale, nu / scale
    x = np.arange(len(roles))
    w = 0.38
    ax.bar(x - w / 2, p, w, color=_PAPER_COLOR, label=f"paper convention ({_PAPER_DEF})")
    ax.bar(x + w / 2, o, w, color="#4C72B0", label="complete convention: layer operations (exact counts)")
    ax.bar(x + w / 2, nu, w, bottom=o, color=_NEURON_COLOR, hatch="//", edgecolor="white",
           label="complete convention: LIF neuron updates (leak, integrate, compare, reset)")
    tot_p, tot_c = p.sum() or 1.0, (o + nu).sum() or 1.0
    top = max(float(p.max(initial=0)), float((o + nu).max(initial=0)), 1e-12)
    for xi, v, share in [(xi - w / 2, v, v / tot_p) for xi, v in zip(x, p)] + \
                        [(xi + w / 2, v, v / tot_c) for xi, v in zip(x, o + nu)]:
        ax.text(xi, v + top * 0.01, f"{v:.3g}\n({100 * share:.1f}%)", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(x)
    ax.set_xticklabels(roles, fontsize=11)
    ax.set_xlabel("role (declared by the model)")
    ax.set_ylabel(f"energy ({unit} / image)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Energy by role, paper vs complete (labels: {unit}/image and share of that convention's total)"
                 f"\n{run.title}", fontsize=11)
    return _save(fig, path)


def _stage(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


def plot_cumulative_energy(run: RunData, path: Path) -> Path:
    """(e) Cumulative energy over layers and LIF sites in execution order, both conventions."""
    import numpy as np

    fig, ax = _figure("energy_cumulative")
    n_img = run.num_images
    paper = dict(zip(run.layers["name"], run.layers["paper_pj"]))
    comp = dict(zip(run.layers["name"], run.layers["complete_pj"]))
    neur = dict(zip(run.lif["name"], run.lif["complete_pj"]))
    order = run.order
    if not order:
        _empty(ax, "no layers in this run")
        return _save(fig, path)
    pv = np.array([paper.get(n, 0.0) if k == "layer" else 0.0 for k, n in order]) / n_img
    cv = np.array([comp.get(n, 0.0) if k == "layer" else neur.get(n, 0.0) for k, n in order]) / n_img
    cp, cc = np.concatenate([[0.0], np.cumsum(pv)]), np.concatenate([[0.0], np.cumsum(cv)])
    scale, unit = energy_unit(float(max(cp[-1], cc[-1])))
    x = np.arange(len(order) + 1)
    ax.plot(x, cc / scale, drawstyle="steps-post", color="#C44E52", linewidth=2,
            label=f"complete convention, incl. LIF neuron updates ({_COMPLETE_DEF}): "
                  f"{cc[-1] / scale:.4g} {unit}/image")
    ax.plot(x, cp / scale, drawstyle="steps-post", color=_PAPER_COLOR, linewidth=2,
            label=f"paper convention ({_PAPER_DEF}): {cp[-1] / scale:.4g} {unit}/image")
    # stage boundaries (stem, encoder, layers.0, ..., head)
    stages: list[tuple[str, int, int]] = []
    for i, (_, name) in enumerate(order):
        s = _stage(name)
        if stages and stages[-1][0] == s:
            stages[-1] = (s, stages[-1][1], i + 1)
        else:
            stages.append((s, i, i + 1))
    for k, (s, a, b) in enumerate(stages):
        if k:
            ax.axvline(a, color="#BBBBBB", linewidth=0.8, linestyle=":")
        if k % 2:
            ax.axvspan(a, b, color="#F2F2F2", zorder=0)
    ax.set_xticks([(a + b) / 2 for _, a, b in stages])
    ax.set_xticklabels([s for s, _, _ in stages], rotation=30 if len(stages) > 8 else 0, ha="right"
                       if len(stages) > 8 else "center", fontsize=9)
    ax.set_xlim(0, len(order))
    ax.set_ylim(0, max(cc[-1], cp[-1]) / scale * 1.08 or 1.0)
    ax.set_xlabel(f"depth: {len(order)} layers and LIF sites in execution order, grouped by stage")
    ax.set_ylabel(f"cumulative energy ({unit} / image)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(f"Cumulative energy with depth -- {run.title}", fontsize=12)
    return _save(fig, path)


def plot_memory_energy(run: RunData, path: Path) -> Path | None:
    """(f, optional) Memory-aware estimate: compute vs memory-access energy, per layer when given."""
    mem = run.memory
    if not mem:
        return None
    import numpy as np
    import pandas as pd

    fig, ax = _figure("energy_memory")
    n_img = run.num_images
    if mem["per_layer"]:
        df = pd.DataFrame(mem["per_layer"], columns=["name", "compute_pj", "memory_pj"])
        df, how = _aggregate_rows(df, ["compute_pj", "memory_pj"])
    else:
        df = pd.DataFrame([("network total", mem["compute_pj"], mem["memory_pj"])],
                          columns=["name", "compute_pj", "memory_pj"]).assign(label="network total")
        how = "network total"
    scale, unit = energy_unit(float((df["compute_pj"] + df["memory_pj"]).max()) / n_img)
    y = np.arange(len(df))
    c = df["compute_pj"].to_numpy(dtype=float) / n_img / scale
    m = df["memory_pj"].to_numpy(dtype=float) / n_img / scale
    ax.barh(y, c, color="#4C72B0", height=0.8, label="compute (arithmetic + addressing)")
    ax.barh(y, m, left=c, color="#DD8452", height=0.8, label="memory accesses")
    _thin_labels(ax, list(df["label"]))
    ax.set_ylim(len(df) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"energy ({unit} / image, memory-aware convention)")
    ax.set_ylabel(f"layer (network order; {how})")
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    total = (mem["compute_pj"] + mem["memory_pj"]) / n_img / 1e9
    ax.set_title(f"Memory-aware energy: compute vs memory ({total:.4g} mJ/image in all) -- {run.title}",
                 fontsize=11)
    return _save(fig, path)


def write_energy_figures(run_dir: str | Path | RunData) -> list[Path]:
    """Write every figure of a run folder into ``run_dir/figures/``; returns the PNG paths written.

    Five figures always (firing rates, firing-rate heatmap, energy per layer, energy by role,
    cumulative energy), plus the memory figure when the report has ``energy.memory``.
    ``run_dir`` may also be a :class:`RunData` already loaded.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    out = run.run_dir / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create {out}: {e.strerror}") from None
    plots = (("firing_rate_per_site", plot_firing_rates), ("firing_rate_heatmap", plot_firing_rate_heatmap),
             ("energy_per_layer", plot_energy_per_layer), ("energy_by_role", plot_energy_by_role),
             ("energy_cumulative", plot_cumulative_energy), ("energy_memory", plot_memory_energy))
    written = []
    stale = out / FIGURE_FILES["energy_memory"]
    if run.memory is None and stale.exists():  # a memory figure of an earlier report must not linger
        stale.unlink(missing_ok=True)
    try:
        for name, fn in plots:
            p = fn(run, out / FIGURE_FILES[name])
            if p is not None:
                written.append(p)
    except OSError as e:
        raise ReportError(f"cannot write figures into {out}: {e.strerror or e}") from None
    return written
