"""The observer model: encoding dynamics of GAC vs direct coding, and Proposition 1 (T_g >= T_d).

- :mod:`~gac_analysis.observer.dynamics`: per-neuron measures of sequences ``o[T, N]``;
- :mod:`~gac_analysis.observer.closed_form`: the exact direct-coding duration for constant input;
- :mod:`~gac_analysis.observer.run`: :func:`observe` a model on images -> :class:`ObserverReport`;
- :mod:`~gac_analysis.observer.sweep`: :func:`sweep_T`, the measures against T from one checkpoint.

See docs/observer.md for the operational definitions.
"""

from gac_analysis.observer.closed_form import ClosedForm, closed_form_duration, direct_closed_form
from gac_analysis.observer.dynamics import (
    distinct_values,
    dynamic_duration,
    last_change,
    pattern_entropy,
    temporal_variance,
)
from gac_analysis.observer.report import DEFINITIONS, ObserverReport
from gac_analysis.observer.run import observe
from gac_analysis.observer.sweep import sweep_T

__all__ = [
    "ClosedForm",
    "DEFINITIONS",
    "ObserverReport",
    "closed_form_duration",
    "direct_closed_form",
    "distinct_values",
    "dynamic_duration",
    "last_change",
    "observe",
    "pattern_entropy",
    "sweep_T",
    "temporal_variance",
]
