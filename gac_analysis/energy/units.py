"""Units and operation vocabulary shared by everything that prices counts (plain Python, no imports).

The one home of these facts: the accounting engine, the pricing conventions, the memory-aware view, the
report model, the figures and the budget gate all read them from here.
"""

from __future__ import annotations

#: picojoules per millijoule: every ``*_pj`` -> ``*_mj`` conversion.
PJ_PER_MJ = 1e9

#: Op names of synaptic layers (weights meet inputs): priced as MACs or ACs, the layers of the paper convention.
SYNAPTIC_OPS = frozenset({"conv1d", "conv2d", "conv3d", "linear"})
