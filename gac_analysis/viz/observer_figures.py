"""Figures of the observer model (matplotlib figures drawn without pyplot, saved atomically through
:mod:`gac_analysis.viz.canvas`; every function returns the saved PNG path). Importing this module changes
nothing global (no ``matplotlib.use``).

Sizes are fixed so that pixel sizes are predictable (``dpi = 100``):

- :func:`plot_duration_histograms`: ``DURATIONS_SIZE`` inches -> 1000 x 450 px;
- :func:`plot_fraction_vs_T`: ``FRACTION_SIZE`` inches -> 800 x 500 px;
- :func:`plot_encoding`: ``ENCODING_SIZE`` inches -> 1300 x 900 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from gac_analysis.viz.canvas import new_figure, palette, save_png

__all__ = [
    "DPI",
    "DURATIONS_SIZE",
    "FRACTION_SIZE",
    "ENCODING_SIZE",
    "plot_duration_histograms",
    "plot_fraction_vs_T",
    "plot_encoding",
    "choose_channels",
    "pixel_size",
]

DPI = 100
DURATIONS_SIZE = (10.0, 4.5)
FRACTION_SIZE = (8.0, 5.0)
ENCODING_SIZE = (13.0, 9.0)


def _colors() -> dict:
    """Direct coding, GAC and violations, from seaborn's default palette."""
    deep = palette()
    return {"direct": deep[0], "gac": deep[1], "violation": deep[3]}


def pixel_size(size_inches: tuple[float, float]) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``size_inches`` saved at :data:`DPI`."""
    return int(round(size_inches[0] * DPI)), int(round(size_inches[1] * DPI))


def _save(fig, path: str | Path) -> Path:
    return save_png(fig, path, DPI)


def _model_label(report) -> str:
    p = report.provenance
    data = p.get("data") or {}
    bits = [
        str(p.get("arch")),
        f"T={report.T}",
        f"{report.num_images} images ({data.get('source', '?')})",
        f"{report.num_neurons:,} neurons",
    ]
    if report.seeded_gac:
        bits.append("GAC weights seeded")
    if report.precision != "float32":
        bits.append(report.precision)
    return ", ".join(bits)


# ---- (a) histograms of T_d and T_g ------------------------------------------------------------------


def plot_duration_histograms(report, path: str | Path) -> Path:
    """Histograms of T_d (direct) and T_g (GAC) side by side, shared bins 1..T, log-scaled share of neurons."""
    T = report.T
    durations = np.arange(1, T + 1)
    n = max(1, report.num_neurons)
    fig, axes = new_figure(DURATIONS_SIZE, DPI, ncols=2, sharey=True)
    colors = _colors()
    panels = (
        (axes[0], report.histogram_T_d, report.mean_T_d, "direct coding  $T_d$  (spikes LIF(I))", colors["direct"]),
        (axes[1], report.histogram_T_g, report.mean_T_g, r"GAC  $T_g$  (G$\cdot$LIF(I))", colors["gac"]),
    )
    floor = 0.5 / n * 100
    for ax, hist, mean, title, color in panels:
        share = np.asarray(hist, dtype=float) / n * 100
        ax.bar(durations, np.where(share > 0, share, np.nan), width=0.8, color=color, edgecolor="black", linewidth=0.5)
        for d, s, c in zip(durations, share, hist):
            if c:
                ax.text(d, s * 1.15, f"{s:.3g}%", ha="center", va="bottom", fontsize=8)
        ax.axvline(mean, color="black", linestyle="--", linewidth=1)
        ax.text(mean, 0.97, f" mean {mean:.2f}", transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=9)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("dynamic duration (time steps)")
        ax.set_xticks(durations)
        ax.set_xlim(0.4, T + 0.6)
        ax.set_yscale("log")
        ax.set_ylim(max(floor, 1e-4), 400)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("neurons (% of all, log scale)")
    fig.suptitle(
        f"Dynamic duration per encoder output neuron: {_model_label(report)}\n"
        f"duration = smallest period p in 1..T of o[1..T] (p = T: no repetition in the window); "
        f"values equal within atol={report.atol:g}, zero never equals non-zero\n"
        f"$T_g > T_d$: {report.fraction_gt:.1%} of neurons,  $T_g = T_d$: {report.fraction_eq:.1%},  "
        f"$T_g < T_d$ (violations): {report.fraction_lt:.3%} ({report.num_violations})",
        fontsize=9.5,
    )
    return _save(fig, path)


# ---- (b) fraction with T_g > T_d against T ----------------------------------------------------------


def plot_fraction_vs_T(sweep_or_report, path: str | Path) -> Path:
    """Fraction of neurons with T_g > T_d (and T_g < T_d, violations) against T.

    ``sweep_or_report``: a DataFrame from :func:`gac_analysis.observer.sweep_T`, or one
    :class:`ObserverReport` (a single point at its T). The points whose TA weights come from the checkpoint
    and those with seeded TA weights are different models: each is its own series (own line, own legend
    entry), never joined into one line.
    """
    if isinstance(sweep_or_report, pd.DataFrame):
        df = sweep_or_report.sort_values("T")
        sca = "SCA" if (df.get("sca_source", pd.Series(["checkpoint"])) == "checkpoint").all() else "(SCA seeded)"
        label = (
            f"T sweep from one checkpoint: same Conv-BN, LIF and {sca} at every T"
            if sca == "SCA"
            else "T sweep from one checkpoint: same Conv-BN and LIF at every T; SCA seeded (seed 0)"
        )
    else:
        r = sweep_or_report
        df = pd.DataFrame(
            [
                {
                    "T": r.T,
                    "ta_source": "seeded" if r.seeded_gac else "checkpoint",
                    "fraction_gt": r.fraction_gt,
                    "fraction_lt": r.fraction_lt,
                    "violations": r.num_violations,
                }
            ]
        )
        label = f"single run ({_model_label(r)})"
    fig, ax = new_figure(FRACTION_SIZE, DPI)
    colors = _colors()
    T = df["T"].to_numpy()
    gt = df["fraction_gt"].to_numpy() * 100
    lt = df["fraction_lt"].to_numpy() * 100
    series = (
        (
            "checkpoint",
            dict(color=colors["gac"], markeredgecolor="black"),
            "$T_g > T_d$, TA weights from the checkpoint",
        ),
        (
            "seeded",
            dict(color=colors["gac"], markerfacecolor="white", markeredgewidth=2, linestyle="--"),
            "$T_g > T_d$, TA weights seeded (seed 0): another model",
        ),
    )
    for source, style, name in series:
        mine = (df["ta_source"] == source).to_numpy()
        if mine.any():
            ax.plot(T[mine], gt[mine], marker="o", markersize=8, linewidth=1.5, zorder=3, label=name, **style)
    for t, g in zip(T, gt):
        ax.annotate(f"{g:.1f}%", (t, g), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=9)
    ax.plot(
        T,
        lt,
        color=colors["violation"],
        marker="x",
        markersize=8,
        linewidth=1,
        label="$T_g < T_d$ (violations of Proposition 1)",
    )
    for t, frac, v in zip(T, lt, df["violations"].to_numpy()):
        if v:
            ax.annotate(
                f"{int(v)} violation{'s' if v != 1 else ''}",
                (t, frac),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
                color=colors["violation"],
            )
    ax.set_xlabel("T (time steps)")
    ax.set_ylabel("neurons (% of all)")
    ax.set_xticks(T)
    ax.set_xlim(T.min() - 1, T.max() + 1)
    ax.set_ylim(-5, max(100.0, float(np.nanmax(gt)) + 10) if len(gt) else 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(
        f"Share of neurons where GAC keeps changing longer than direct coding ($T_g > T_d$)\n{label}", fontsize=10
    )
    return _save(fig, path)


# ---- (c) the encoding over time (the paper's Figure 3) ----------------------------------------------


def choose_channels(gac: torch.Tensor, k: int = 2) -> list[int]:
    """The ``k`` channels with the largest mean temporal variance of the GAC output ``[T, C, H, W]``
    (ties: lower index)."""
    score = gac.to(torch.float64).var(dim=0, unbiased=False).mean(dim=(1, 2))
    order = sorted(range(score.numel()), key=lambda c: (-float(score[c]), c))
    return order[:k]


def plot_encoding(
    model,
    image: torch.Tensor,
    raw: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    channels: Sequence[int] | None = None,
    num_channels: int = 2,
    image_name: str = "",
) -> Path:
    """The encoder output per time step for one real image: direct LIF(I) vs GAC G*LIF(I).

    Args:
        model: a GAC model (its stem and ``encoder`` are run in eval mode, without gradients).
        image: the normalised image ``[3, H, W]`` fed to the model.
        raw: the original pixels ``uint8 [3, H, W]`` (shown as is).
        channels: encoder channels to show; default: the ``num_channels`` with the largest mean temporal
            variance of the GAC output on this image (:func:`choose_channels`).
        image_name: shown in the title.

    Rows: channel mean (direct, GAC), then each chosen channel (direct, GAC); columns: the original
    image, then t = 1..T. All panels share one colour scale [0, 1] with one colour bar.
    """
    from gac_analysis.observer.run import encoder_outputs

    enc = getattr(model, "encoder", None)
    if enc is None or not hasattr(enc, "gate_values"):
        from gac_analysis.errors import ConfigError

        raise ConfigError("the encoding figure needs a GAC model (the model has no GAC weights)")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            I = model.stem_output(image.unsqueeze(0).to(torch.float32))
            gac, spikes = encoder_outputs(enc, enc.lif, I)
    finally:
        model.train(was)
    gac, spikes = gac[:, 0].float(), spikes[:, 0].float()  # [T, C, H, W]
    T = gac.shape[0]
    chosen = list(channels) if channels is not None else choose_channels(gac, num_channels)
    rows = [("direct, channel mean", spikes.mean(dim=1)), ("GAC, channel mean", gac.mean(dim=1))]
    for c in chosen:
        rows += [(f"direct, channel {c}", spikes[:, c]), (f"GAC, channel {c}", gac[:, c])]
    fig, axes = new_figure(ENCODING_SIZE, DPI, nrows=len(rows), ncols=T + 1, squeeze=False)
    colors = _colors()
    pixels = np.asarray(raw)
    if pixels.ndim == 3 and pixels.shape[0] == 3:
        pixels = pixels.transpose(1, 2, 0)
    im = None
    for r, (label, seq) in enumerate(rows):
        for col in range(T + 1):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                if r == 0:
                    ax.imshow(pixels, interpolation="nearest")
                    ax.set_title("original image", fontsize=9)
                else:
                    ax.axis("off")
                continue
            im = ax.imshow(seq[col - 1].numpy(), vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
            if r == 0:
                ax.set_title(f"t = {col}", fontsize=10)
            if col == 1:
                ax.set_ylabel(
                    label.replace(", ", "\n"),
                    fontsize=9,
                    fontweight="bold",
                    color=colors["direct"] if label.startswith("direct") else colors["gac"],
                )
    bar = fig.colorbar(im, ax=axes[:, 1:], shrink=0.6, pad=0.01)
    bar.set_label("encoder output (direct: spike 0/1; GAC: gate value G in (0, 1) at spikes, else 0)", fontsize=9)
    H, W = gac.shape[-2:]
    why = (
        "given"
        if channels is not None
        else f"the {len(chosen)} with the largest mean temporal variance of the GAC output on this image"
    )
    fig.suptitle(
        f"Encoder output over time: direct coding LIF(I) vs GAC G$\\cdot$LIF(I) (cf. the paper's Fig. 3)"
        f"{': ' + image_name if image_name else ''}\n"
        f"{getattr(model, 'arch', '')}, T={T}, stem output {H}x{W} pixels, same Conv-BN and LIF; "
        f"one colour scale [0, 1] for all panels\n"
        f"channels shown: {', '.join(map(str, chosen))} ({why})",
        fontsize=10,
    )
    return _save(fig, path)
