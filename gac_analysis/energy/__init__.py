"""energy: price operation and memory-access counts in picojoules.

Plain python, numpy, pandas and yaml only -- this package knows nothing of torch modules.

* :mod:`gac_analysis.energy.tables` -- cost tables (pJ per op / per access), bundled 45 nm
  Horowitz presets (``45nm-fp32``, ``45nm-fp16``, ``45nm-int8``, ``45nm-int32``) or YAML files.
* :mod:`gac_analysis.energy.memory` -- the memory-aware layer model of Lemaire et al.
  (ICONIP 2022).
"""

from __future__ import annotations

from gac_analysis.energy.memory import (
    LayerMemoryEnergy,
    LayerTraffic,
    ann_equivalent,
    estimate_layer,
    estimate_network,
    totals,
)
from gac_analysis.energy.tables import (
    DEFAULT_TABLE,
    EnergyTable,
    available_tables,
    load_energy_table,
)

__all__ = [
    "DEFAULT_TABLE",
    "EnergyTable",
    "LayerMemoryEnergy",
    "LayerTraffic",
    "ann_equivalent",
    "available_tables",
    "estimate_layer",
    "estimate_network",
    "load_energy_table",
    "totals",
]
