"""Figures of ``gac-analyze compare``: firing rate per LIF site of every run on one axis (the form of the
GAC paper's Figure 5) and energy per run by role in both conventions. PNG, Agg renderer, fixed sizes."""

from __future__ import annotations

from pathlib import Path

from gac_analysis.fileio import atomic_write

__all__ = ["COMPARE_FIGURES", "plot_energy_by_role", "plot_firing_rates", "write_compare_figures"]

DPI = 100
#: File name -> size in inches.
COMPARE_FIGURES = {"compare_firing_rates.png": (12.0, 6.5), "compare_energy_by_role.png": (13.0, 6.0)}
_MARKERS = "osD^vP*X"


def _figure(name: str, **subplots):
    from matplotlib.figure import Figure

    fig = Figure(figsize=COMPARE_FIGURES[name], dpi=DPI, layout="constrained")
    return fig, fig.subplots(**subplots)


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))


def plot_firing_rates(comp, path: Path) -> Path:
    """Firing rate (spikes / neuron / time step) per LIF site, every run on one axis, sites matched by name."""
    fig, ax = _figure("compare_firing_rates.png")
    sites = [s["site"] for s in comp.sites]
    x = list(range(len(sites)))
    for i, name in enumerate(comp.names):
        pts = [(xi, s["rates"][name]) for xi, s in zip(x, comp.sites) if s["rates"][name] is not None]
        mean = next(r["mean_firing_rate"] for r in comp.rows if r["name"] == name)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker=_MARKERS[i % len(_MARKERS)],
            linewidth=1.5,
            label=f"{name} (network mean {mean:.4f})",
        )
    ax.set_xticks(x)
    ax.set_xticklabels(sites, rotation=75, ha="right", fontsize=8 if len(sites) <= 40 else 6)
    ax.set_xlabel("LIF site (network order; a run without the site has no point there)")
    ax.set_ylabel("firing rate (spikes / neuron / time step)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title("Firing rate per LIF site, runs matched by site name (mean over images and time steps)", fontsize=11)
    return _save(fig, path)


def plot_energy_by_role(comp, path: Path) -> Path:
    """Energy per run by role, paper (left) and complete (right) convention, mJ per image; bar labels give the
    ratio of each run's total to the first run's."""
    import numpy as np

    fig, axes = _figure("compare_energy_by_role.png", ncols=2)
    first = comp.names[0]
    for ax, conv in zip(axes, ("paper", "complete")):
        t = comp.roles[conv]
        roles = t["roles"]
        x = np.arange(len(comp.names))
        bottom = np.zeros(len(comp.names))
        for role in roles:
            v = np.array([t["mj"][n][role] for n in comp.names])
            ax.bar(x, v, 0.6, bottom=bottom, label=role)
            bottom += v
        for xi, name in zip(x, comp.names):
            ratio = t["ratio_to_first"][name]["total"]
            label = f"{t['total_mj'][name]:.4g} mJ" + ("" if name == first or ratio is None else f"\n{ratio:.3f}x")
            ax.text(xi, t["total_mj"][name], label, ha="center", va="bottom", fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(comp.names, fontsize=10)
        ax.set_ylabel("energy (mJ / image)")
        ax.set_ylim(0, max(bottom.max(initial=0), 1e-12) * 1.2)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="role", fontsize=8)
        ax.set_title(f"{conv} convention (ratio: total / {first})", fontsize=11)
    fig.suptitle("Energy per image by role", fontsize=12)
    return _save(fig, path)


def write_compare_figures(comp, folder: Path) -> list[Path]:
    """Both figures into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        plot_firing_rates(comp, folder / "compare_firing_rates.png"),
        plot_energy_by_role(comp, folder / "compare_energy_by_role.png"),
    ]
