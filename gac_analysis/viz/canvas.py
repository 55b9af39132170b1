"""Figures of fixed pixel size, drawn without pyplot and saved atomically (the one way this package saves a PNG).

A :class:`matplotlib.figure.Figure` made directly renders with the Agg canvas on ``savefig`` and is not
registered with pyplot: nothing global is switched (no ``matplotlib.use``), no figure is left open, and a
user's own backend and open figures are untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gac_analysis.fileio import atomic_write

__all__ = ["new_figure", "palette", "save_png"]


def new_figure(size_inches: tuple[float, float], dpi: int, **subplots: Any):
    """``(figure, axes)`` of ``size_inches`` at ``dpi`` with constrained layout; ``subplots`` as in
    :meth:`matplotlib.figure.Figure.subplots`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_inches, dpi=dpi, layout="constrained")
    return fig, fig.subplots(**subplots)


def save_png(fig, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (temporary file beside it, then rename). No
    ``bbox_inches="tight"``: the pixel size stays the figure's size x ``dpi``."""
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def palette(n: int = 10) -> list:
    """seaborn's default categorical palette ("deep"): the colours of every figure of the package."""
    import seaborn as sns

    return list(sns.color_palette("deep", n))
