"""gac-analysis: exact spike, operation and energy accounting for spiking neural networks."""

from __future__ import annotations

__version__ = "0.1.0"

from gac_analysis.errors import GacError  # noqa: E402
from gac_analysis.models import build_model, load_model, save_checkpoint  # noqa: E402

__all__ = ["__version__", "GacError", "build_model", "load_model", "save_checkpoint"]
