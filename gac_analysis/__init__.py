"""gac-analysis: exact spike, operation and energy accounting for spiking neural networks.

The top-level names are imported lazily, so that ``import gac_analysis.energy`` (pure pricing of
counts) does not pull in torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _installed_version

#: The installed distribution's version (pyproject.toml is its one home; `pip install -e .` records it).
__version__ = _installed_version("gac-analysis")

_LAZY = {
    "GacError": "gac_analysis.errors",
    "build_model": "gac_analysis.models",
    "load_model": "gac_analysis.models",
    "save_checkpoint": "gac_analysis.models",
    "profile": "gac_analysis.accounting",
    "Report": "gac_analysis.accounting",
    "observe": "gac_analysis.observer",
    "ObserverReport": "gac_analysis.observer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gac_analysis' has no attribute {name!r}")
