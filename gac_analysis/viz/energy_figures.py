"""Figures of one energy run folder (the ``--out`` folder of ``gac-analyze energy``).

Every figure is a PNG of a fixed size (``FIGURE_SIZES`` inches x ``DPI``), so its pixel size is
predictable, drawn with matplotlib's Agg renderer (no display needed). Every energy axis says its
unit (per image, auto-scaled to mJ / µJ / nJ / pJ) and its convention:

* **paper**: E_MAC x stem MACs (counted once) + E_AC x fr_in x T x dense MACs of the spiking
  conv/linear layers; GAC attention, batch norm, neurons, residual adds are not counted;
* **complete**: every operation with exact counts (see :mod:`gac_analysis.energy.conventions`),
  including the neuron updates of every LIF site (``lif_sites[].complete_pj``).

The run folder is read through :func:`gac_analysis.report_model.load_energy_report` (``report.json``;
each layer row carries its complete energy by op class) and ``per_step.csv`` (execution order of layers
and LIF sites, for the cumulative plot). The report's ``energy.memory`` estimate adds one figure.

Heavy imports (pandas, matplotlib, seaborn) happen inside the functions, so importing this module
is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gac_analysis.errors import ReportError
from gac_analysis.report_model import (
    CLASS_ENERGIES,
    PJ_PER_MJ,
    EnergyReport,
    MemorySplit,
    load_energy_report,
    report_json_path,
)
from gac_analysis.viz.canvas import new_figure, palette, save_png

__all__ = [
    "CLASS_COLUMNS",
    "DPI",
    "FIGURE_FILES",
    "FIGURE_SIZES",
    "RunData",
    "energy_unit",
    "load_run",
    "plot_cumulative_energy",
    "plot_energy_by_role",
    "plot_energy_per_layer",
    "plot_firing_rate_heatmap",
    "plot_firing_rates",
    "plot_memory_energy",
    "write_energy_figures",
]

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

#: The complete energy of a layer by op class: (report column, legend label), in the report's order.
CLASS_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    zip(
        CLASS_ENERGIES,
        (
            "MAC (real-valued inputs)",
            "AC (binary spike inputs)",
            "bias adds",
            "batch norm",
            "elementwise (add, mul, sigmoid, ReLU)",
            "pooling",
        ),
    )
)
_ROLE_ORDER = ("encoder", "attention", "backbone", "head")
#: More rows than this in a per-layer figure: rows are summed per block (name without its last part).
MAX_ROWS = 80
_PAPER_DEF = "E_MAC x stem MACs + E_AC x fr x T x dense MACs; attention, BN, neurons not counted"
_COMPLETE_DEF = "every operation, exact counts"


def _palette() -> dict[str, Any]:
    """Colours of op classes, roles and conventions, from seaborn's default ("deep") palette."""
    deep = palette()
    classes = dict(zip(CLASS_ENERGIES, (deep[0], deep[2], deep[4], deep[8], deep[1], deep[9])))
    roles = dict(zip(_ROLE_ORDER, (deep[0], deep[1], deep[2], deep[3])))
    return {
        "class": classes,
        "role": roles,
        "neuron": deep[5],
        "paper": deep[7],
        "complete": deep[3],
        "compute": deep[0],
        "memory": deep[1],
        "other": deep[7],
    }


# ---- reading a run folder -------------------------------------------------------------------------


@dataclass
class RunData:
    """One run folder, ready to plot. Energies in pJ totals over the images (as the report)."""

    run_dir: Path
    report: EnergyReport
    layers: Any  # DataFrame: name, op, role, input, paper_pj, paper_mac_pj, paper_ac_pj,
    # complete_pj and the CLASS_COLUMNS (complete energy by op class)
    lif: Any  # DataFrame: name, role, firing_rate, per_step_rate (list), complete_pj
    order: list[tuple[str, str]]  # execution order: ("layer" | "lif", name)
    order_source: str  # "per_step.csv" or "approximate (per_step.csv absent)"
    notes: list[str] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return self.report.num_images

    @property
    def T(self) -> int:
        return self.report.T

    @property
    def memory(self) -> MemorySplit | None:
        return self.report.memory

    @property
    def model_title(self) -> str:
        """``arch (coding), T=.., N images``: the run, without its energy table (for spike figures)."""
        model = self.report.provenance.get("model")
        arch = model.get("arch", "model") if isinstance(model, dict) else "model"
        coding = model.get("coding") if isinstance(model, dict) else None
        return f"{arch}{f' ({coding})' if coding else ''}, T={self.T}, {self.num_images} images"

    @property
    def title(self) -> str:
        """:attr:`model_title` and the energy table (for energy figures)."""
        return f"{self.model_title}, table {self.report.table_name or '?'}"


def _layers_frame(report: EnergyReport):
    """Report layers with the complete energy by op class and the paper energy split into stem MACs / ACs."""
    import pandas as pd

    from gac_analysis.energy.units import SYNAPTIC_OPS

    cols = [c for c, _ in CLASS_COLUMNS]
    for i, row in enumerate(report.layers):
        if any(getattr(row, c) is None for c in cols):
            raise ReportError(
                f"{report.source}: layers[{i}] ({row.name}) has no complete energy by op class "
                f"({', '.join(cols)}); re-run `gac-analyze energy`"
            )
    df = pd.DataFrame([r.to_dict() for r in report.layers])
    for col in ("paper_pj", "complete_pj", *cols):
        df[col] = df[col].fillna(0.0).astype(float)
    df["op"] = df["op"].fillna("?").astype(str)
    df["role"] = df["role"].fillna("other").astype(str)
    stem = df["op"].isin(SYNAPTIC_OPS) & (df["role"] == "encoder")
    df["paper_mac_pj"] = df["paper_pj"].where(stem, 0.0)
    df["paper_ac_pj"] = df["paper_pj"].where(~stem, 0.0)
    return df


def _lif_frame(report: EnergyReport):
    import pandas as pd

    df = pd.DataFrame(
        [r.to_dict() for r in report.lif_sites], columns=["name", "role", "firing_rate", "per_step_rate", "complete_pj"]
    )
    df["role"] = df["role"].fillna("other").astype(str)
    for col in ("firing_rate", "complete_pj"):
        df[col] = df[col].fillna(0.0).astype(float)
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


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (or its report.json) into plot-ready tables; :class:`ReportError` if unusable."""
    report = load_energy_report(run_dir)
    run_dir = report_json_path(run_dir).parent
    layers = _layers_frame(report)
    lif = _lif_frame(report)
    order, order_source = _execution_order(run_dir, layers, lif)
    run = RunData(run_dir=run_dir, report=report, layers=layers, lif=lif, order=order, order_source=order_source)
    if order_source != "per_step.csv":
        run.notes.append("execution order of LIF sites approximated (per_step.csv absent or not matching)")
    return run


# ---- drawing helpers ------------------------------------------------------------------------------

_UNITS = ((PJ_PER_MJ, "mJ"), (PJ_PER_MJ / 1e3, "µJ"), (PJ_PER_MJ / 1e6, "nJ"), (1.0, "pJ"))


def energy_unit(max_pj: float) -> tuple[float, str]:
    """(pJ per unit, unit name) that shows ``max_pj`` with 1 to 3 integer digits (mJ at most)."""
    for scale, name in _UNITS:
        if max_pj >= scale:
            return scale, name
    return 1.0, "pJ"


def _figure(name: str, **subplots):
    return new_figure(FIGURE_SIZES[name], DPI, **subplots)


def _save(fig, path: Path) -> Path:
    return save_png(fig, path, DPI)


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

    colors = _palette()
    return [Patch(color=colors["role"].get(r, colors["other"]), label=r) for r in roles]


def _ordered_roles(*frames) -> list[str]:
    present = {r for f in frames for r in f["role"]}
    return [r for r in _ROLE_ORDER if r in present] + sorted(present - set(_ROLE_ORDER))


def _block(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _merge_batchnorm(df, value_cols: list[str]):
    """Each batch norm that directly follows a conv/linear of its block joins that layer's row
    (label ``layers.0.0.conv1 + bn1``): the usual conv+BN unit, and half as many rows to read."""
    import pandas as pd

    from gac_analysis.energy.units import SYNAPTIC_OPS

    rows: list[dict] = []
    for rec in df.to_dict(orient="records"):
        prev = rows[-1] if rows else None
        if (
            rec.get("op") == "batchnorm"
            and prev is not None
            and prev.get("op") in SYNAPTIC_OPS
            and not prev["_merged"]
            and _block(prev["name"]) == _block(rec["name"])
        ):
            for c in value_cols:
                prev[c] = float(prev[c]) + float(rec[c])
            prev["label"] = f"{prev['label']} + {rec['name'][len(_block(rec['name'])) + 1 :]}"
            prev["_merged"] = True
            continue
        rows.append({**rec, "label": rec["name"], "_merged": False})
    return pd.DataFrame(rows).drop(columns="_merged")


def _aggregate_rows(df, value_cols: list[str], max_rows: int = MAX_ROWS):
    """At most ``max_rows`` rows: sum by block (name without its last part), then by stage, keeping order."""
    if len(df) <= max_rows:
        return df.assign(label=df["label"] if "label" in df else df["name"]), "one row per layer"
    import pandas as pd

    what, keys = "block", df["name"].map(lambda n: n.rsplit(".", 1)[0])
    if keys.nunique() > max_rows:
        what, keys = "stage", df["name"].map(lambda n: ".".join(n.split(".")[:2]))
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
    fig.suptitle(f"Firing rate per LIF site (network order) -- {run.model_title}", fontsize=12)
    if not len(lif):
        _empty(ax, "no LIF sites in this run")
        return _save(fig, path)
    n = len(lif)
    y = list(range(n))
    colors = _palette()
    ax.barh(y, lif["firing_rate"], color=[colors["role"].get(r, colors["other"]) for r in lif["role"]], height=0.75)
    _thin_labels(ax, list(lif["name"]))
    ax.set_ylim(n - 0.5, -0.5)
    mean = run.report.mean_firing_rate
    ax.axvline(mean, color="black", linestyle="--", linewidth=1)
    top = max(float(lif["firing_rate"].max()), mean, 1e-3)
    ax.set_xlim(0, top * 1.18)
    if n <= 40:
        for yi, v in zip(y, lif["firing_rate"]):
            ax.text(v + top * 0.01, yi, f"{v:.3f}", va="center", fontsize=_label_size(n) - 1)
    from matplotlib.lines import Line2D

    handles = _role_handles(_ordered_roles(lif)) + [
        Line2D([], [], color="black", linestyle="--", label=f"network mean {mean:.3f}")
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    ax.set_xlabel(f"firing rate (spikes / neuron / time step; mean over {run.num_images} images and T={run.T} steps)")
    ax.set_ylabel("LIF site (network order, first at top)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_firing_rate_heatmap(run: RunData, path: Path) -> Path:
    """(b) Firing rate of every LIF site at every time step (rows: sites in network order)."""
    import numpy as np

    fig, ax = _figure("firing_rate_heatmap")
    fig.suptitle(f"Firing rate per LIF site and time step -- {run.model_title}", fontsize=12)
    lif = run.lif
    width = max((len(v) for v in lif["per_step_rate"]), default=0) if len(lif) else 0
    if not len(lif) or width == 0:
        _empty(ax, "no per-step firing rates in this run")
        return _save(fig, path)
    import seaborn as sns

    grid = np.full((len(lif), width), np.nan)
    for i, v in enumerate(lif["per_step_rate"]):
        grid[i, : len(v)] = v
    annotate = grid.size <= 400 and width <= 16
    sns.heatmap(
        grid,
        ax=ax,
        cmap="viridis",
        vmin=0.0,
        vmax=max(float(np.nanmax(grid)), 1e-3),
        annot=annotate,
        fmt=".2f",
        annot_kws={"fontsize": 8},
        linewidths=0.4 if annotate else 0,
        linecolor="white",
        cbar_kws={"label": "firing rate (spikes / neuron / time step; mean over images)"},
    )
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
    colors = _palette()
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
        (
            axes[0],
            [("paper_mac_pj", "mac_pj"), ("paper_ac_pj", "ac_pj")],
            f"paper convention: {run.report.paper_mj_per_image:.4g} mJ/image\n({_PAPER_DEF})",
        ),
        (
            axes[1],
            [(c, c) for c in cols],
            f"complete convention: {run.report.complete_mj_per_image:.4g} mJ/image\n"
            f"({_COMPLETE_DEF}; neuron updates, {neuron_pj / n_img / scale:.3g} {unit}/image, not in these bars)",
        ),
    )
    labels = dict(CLASS_COLUMNS)
    longest = 0.0
    for ax, parts, title in panels:
        left = np.zeros(len(df))
        for col, cls in parts:
            vals = df[col].to_numpy(dtype=float) / n_img / scale
            ax.barh(y, vals, left=left, color=colors["class"][cls], height=0.8, label=labels[cls])
            left += vals
        longest = max(longest, float(left.max(initial=0.0)))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"energy ({unit} / image)")
        ax.grid(axis="x", alpha=0.3)
    # one scale for both panels, set once after every bar is drawn: the longest bar of either panel fits
    axes[0].set_xlim(0, longest * 1.04 or 1.0)
    _thin_labels(axes[0], list(df["label"]))
    axes[0].set_ylim(len(df) - 0.5, -0.5)
    axes[0].set_ylabel(f"layer (network order, first at top; {how})")
    from matplotlib.patches import Patch

    fig.legend(
        handles=[Patch(color=colors["class"][c], label=lab) for c, lab in CLASS_COLUMNS],
        loc="outside lower center",
        ncol=6,
        fontsize=9,
        title="complete energy by op class (paper: MAC = stem, AC = fr x T x dense of the spiking layers)",
        title_fontsize=9,
    )
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
    colors = _palette()
    ax.bar(x - w / 2, p, w, color=colors["paper"], label=f"paper convention ({_PAPER_DEF})")
    ax.bar(x + w / 2, o, w, color=colors["compute"], label="complete convention: layer operations (exact counts)")
    ax.bar(
        x + w / 2,
        nu,
        w,
        bottom=o,
        color=colors["neuron"],
        hatch="//",
        edgecolor="white",
        label="complete convention: LIF neuron updates (leak, integrate, compare, reset)",
    )
    tot_p, tot_c = p.sum() or 1.0, (o + nu).sum() or 1.0
    top = max(float(p.max(initial=0)), float((o + nu).max(initial=0)), 1e-12)
    for xi, v, share in [(xi - w / 2, v, v / tot_p) for xi, v in zip(x, p)] + [
        (xi + w / 2, v, v / tot_c) for xi, v in zip(x, o + nu)
    ]:
        ax.text(xi, v + top * 0.01, f"{v:.3g}\n({100 * share:.1f}%)", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(x)
    ax.set_xticklabels(roles, fontsize=11)
    ax.set_xlabel("role (declared by the model)")
    ax.set_ylabel(f"energy ({unit} / image)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        f"Energy by role, paper vs complete (labels: {unit}/image and share of that convention's total)\n{run.title}",
        fontsize=11,
    )
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
    colors = _palette()
    ax.plot(
        x,
        cc / scale,
        drawstyle="steps-post",
        color=colors["complete"],
        linewidth=2,
        label=f"complete convention, incl. LIF neuron updates ({_COMPLETE_DEF}): {cc[-1] / scale:.4g} {unit}/image",
    )
    ax.plot(
        x,
        cp / scale,
        drawstyle="steps-post",
        color=colors["paper"],
        linewidth=2,
        label=f"paper convention ({_PAPER_DEF}): {cp[-1] / scale:.4g} {unit}/image",
    )
    # stage boundaries (stem, encoder, layers.0, ..., head)
    stages: list[tuple[str, int, int]] = []
    for i, (_, name) in enumerate(order):
        s = _stage(name)
        if stages and stages[-1][0] == s:
            stages[-1] = (s, stages[-1][1], i + 1)
        else:
            stages.append((s, i, i + 1))
    for k, (_, a, b) in enumerate(stages):
        if k:
            ax.axvline(a, color="#BBBBBB", linewidth=0.8, linestyle=":")
        if k % 2:
            ax.axvspan(a, b, color="#F2F2F2", zorder=0)
    ax.set_xticks([(a + b) / 2 for _, a, b in stages])
    ax.set_xticklabels(
        [s for s, _, _ in stages],
        rotation=30 if len(stages) > 8 else 0,
        ha="right" if len(stages) > 8 else "center",
        fontsize=9,
    )
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
    df = pd.DataFrame(mem.per_layer, columns=["name", "compute_pj", "memory_pj"])
    df, how = _aggregate_rows(df, ["compute_pj", "memory_pj"])
    scale, unit = energy_unit(float((df["compute_pj"] + df["memory_pj"]).max()) / n_img)
    y = np.arange(len(df))
    c = df["compute_pj"].to_numpy(dtype=float) / n_img / scale
    m = df["memory_pj"].to_numpy(dtype=float) / n_img / scale
    colors = _palette()
    ax.barh(y, c, color=colors["compute"], height=0.8, label="compute (arithmetic + addressing)")
    ax.barh(y, m, left=c, color=colors["memory"], height=0.8, label="memory accesses")
    _thin_labels(ax, list(df["label"]))
    ax.set_ylim(len(df) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"energy ({unit} / image, memory-aware convention)")
    ax.set_ylabel(f"layer (network order; {how})")
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    total = (mem.compute_pj + mem.memory_pj) / n_img / PJ_PER_MJ
    ax.set_title(f"Memory-aware energy: compute vs memory ({total:.4g} mJ/image in all) -- {run.title}", fontsize=11)
    return _save(fig, path)


def write_energy_figures(run_dir: str | Path | RunData) -> list[Path]:
    """Write every figure of a run folder into ``run_dir/figures/``; returns the PNG paths written.

    Five figures always (firing rates, firing-rate heatmap, energy per layer, energy by role,
    cumulative energy), plus the memory figure when the report has ``energy.memory``.
    ``run_dir`` may also be a :class:`RunData` already loaded. The figures are drawn into a temporary
    and committed together (``fileio.atomic_output_dir``): a figure of this tool's from an earlier
    report is replaced or removed, a file of anyone else's in ``figures/`` is never touched (one in the
    way is an error).
    """
    from gac_analysis.fileio import atomic_output_dir, read_snapshot

    if isinstance(run_dir, RunData):
        run, expect = run_dir, None
    else:
        folder = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
        expect = read_snapshot(folder, ["report.json"])  # before reading it: a run written meanwhile
        run = load_run(run_dir)
    with atomic_output_dir(run.run_dir, kind="report", partial=True, expect=expect) as tmp:
        drawn = draw_energy_figures(run, tmp / "figures")
    return [run.run_dir / "figures" / p.name for p in drawn]


def draw_energy_figures(run: RunData, folder: Path) -> list[Path]:
    """Draw the figures of :func:`write_energy_figures` into ``folder`` (created; a temporary of the
    caller's); returns the PNG paths."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create {folder}: {e.strerror}") from None
    plots = (
        ("firing_rate_per_site", plot_firing_rates),
        ("firing_rate_heatmap", plot_firing_rate_heatmap),
        ("energy_per_layer", plot_energy_per_layer),
        ("energy_by_role", plot_energy_by_role),
        ("energy_cumulative", plot_cumulative_energy),
        ("energy_memory", plot_memory_energy),
    )
    written = []
    try:
        for name, fn in plots:
            p = fn(run, folder / FIGURE_FILES[name])
            if p is not None:
                written.append(p)
    except OSError as e:
        raise ReportError(f"cannot write figures into {folder}: {e.strerror or e}") from None
    return written
