"""The :class:`ObserverReport` of one observer run, its verdict and its JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gac_analysis.report_model import OBSERVER_SCHEMA as SCHEMA
from gac_analysis.report_model import OBSERVER_SCHEMA_VERSION as SCHEMA_VERSION

__all__ = ["DEFINITIONS", "ObserverReport", "SCHEMA", "format_verdict"]

JSON_VIOLATIONS = 100

#: The operational definitions every report states (see docs/observer.md).
DEFINITIONS: dict[str, str] = {
    "observer": "one encoder output neuron (image, channel, y, x) seen over the T time steps: the sequence o[1..T]",
    "direct_coding": "o = LIF(I) with I = BN(Conv(x)) the stem output (constant over t for a static image) "
    "and the model's own LIF (fires when u > V_th, strictly; hard reset to 0; membrane "
    "starts at 0)",
    "gac_coding": "o = sigmoid(TA(I) * SCA(I)) * LIF(I): the output of the model's GAC encoder forward, "
    "with the same Conv-BN and the same LIF",
    "value_equality": "two output values a, b are equal when |a - b| <= atol and (a == 0) == (b == 0): real "
    "values within the tolerance, but a zero and a non-zero value are never equal (whether "
    "the neuron emitted anything is an exact event)",
    "dynamic_duration": "the smallest period p in 1..T with o[t + p] == o[t] for every t in 1..T-p; p = T "
    "means no repetition inside the window; unit: time steps. T_d: of direct coding, "
    "T_g: of GAC",
    "distinct_values": "number of distinct values of o over t (sorted values split where neighbours differ by "
    "more than atol; 0 is its own value)",
    "last_change": "max t (1-based) with o[t] != o[t-1]; 0 for a constant sequence; unit: time steps",
    "temporal_variance": "mean over t of (o[t] - mean_t o)^2; unit: squared output units",
    "pattern_entropy": "entropy in bits of the distribution of whole sequences across all observed neurons; "
    "real values quantised as round(o / atol) plus the exact zero/non-zero pattern",
    "closed_form_T_d": "for constant I, decay b, threshold V: I > V -> 1; I / (1 - b) <= V -> 1 (never fires); "
    "else the first k with I (1 - b^k) / (1 - b) > V, giving k if k <= T, else 1 (the "
    "window shows only zeros); computed in float64",
    "near_threshold": "the membrane I (1 - b^j) / (1 - b) comes within near_threshold_tol of V at some step "
    "j <= min(k, T): rounding may decide the spike either way, so these neurons are counted "
    "apart from the closed-form agreement",
    "proposition_1": "T_g >= T_d on every neuron (sigmoid > 0, so GAC is non-zero exactly where the spikes "
    "are and every period of GAC is a period of the spikes); a violation is a neuron with "
    "T_g < T_d",
    "precision": "float32: the stem and encoder as the model runs them; float64: the same weights evaluated "
    "in float64 (the exact-arithmetic statement; float32 sigmoid returns exactly 0 below "
    "about -88.7 and can erase a spike)",
}


def format_verdict(num_neurons: int, violations: list[dict], num_violations: int) -> str:
    """The verdict line of a report."""
    if num_violations == 0:
        return f"Proposition 1 holds (T_g >= T_d on every one of {num_neurons} neurons)"
    v = violations[0]
    return (
        f"Proposition 1 FAILS: {num_violations} violations, first at image {v['image']} channel "
        f"{v['channel']} ({v['y']}, {v['x']}) T_d={v['T_d']} T_g={v['T_g']}"
    )


@dataclass
class ObserverReport:
    """Result of :func:`gac_analysis.observer.observe` (durations in time steps).

    Attributes:
        T: time steps of the window. atol: value tolerance; near_threshold_tol: membrane units.
        precision: "float32" (as the model runs) or "float64".
        num_images, num_neurons: images observed and encoder output neurons (image x C x H x W).
        neurons: one row per neuron (image, channel, y, x, I, T_d, T_g, T_d_closed, first_spike,
            near_threshold, closed_agree, num_spikes, distinct/last_change/variance of both codings,
            support_mismatch) or ``None`` when ``keep_neurons=False``.
        summary: secondary measures per coding (index "direct", "gac").
        histogram_T_d, histogram_T_g: neuron counts for the durations 1..T (list index 0 = duration 1).
        count_gt, count_eq, count_lt: neurons with T_g > T_d, ==, <.
        closed_form: closed-form agreement facts (agree, disagree, checked, near_threshold, ...).
        support_mismatch: neurons whose GAC non-zero pattern differs from their spikes.
        gate_zero_at_spike: (neuron, step) positions with a spike but a GAC output of exactly 0.
        float32_gate_underflow_at_spike: float64 runs only: spike positions whose exact gate is below
            1 / float32 max, where float32 sigmoid returns exactly 0: the spikes the model as run in float32
            silences (``None`` in float32 runs; a few borderline positions may round either way).
        violations: every violating neuron found (up to ``max_violations``), in observation order.
        num_violations: the exact number of violating neurons.
        verdict, holds, diagnosis: the verdict line, ``num_violations == 0`` and the causes found.
        seeded_gac: True when the GAC side used seeded weights (the model had none).
        provenance: versions, model, checkpoint, data, seed. definitions: see :data:`DEFINITIONS`.
        sweep: a T sweep table attached by the caller (optional).
    """

    T: int
    atol: float
    near_threshold_tol: float
    precision: str
    num_images: int
    num_neurons: int
    neurons: pd.DataFrame | None
    summary: pd.DataFrame
    histogram_T_d: list[int]
    histogram_T_g: list[int]
    count_gt: int
    count_eq: int
    count_lt: int
    closed_form: dict[str, Any]
    support_mismatch: int
    gate_zero_at_spike: int
    violations: list[dict]
    num_violations: int
    verdict: str
    holds: bool
    diagnosis: str
    seeded_gac: bool
    provenance: dict[str, Any]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    float32_gate_underflow_at_spike: int | None = None
    sweep: pd.DataFrame | None = None

    # ---- derived numbers -------------------------------------------------------------------------
    def _mean(self, hist: list[int]) -> float:
        n = sum(hist)
        return sum((i + 1) * c for i, c in enumerate(hist)) / n if n else float("nan")

    @property
    def mean_T_d(self) -> float:
        """Mean direct-coding duration over neurons (time steps)."""
        return self._mean(self.histogram_T_d)

    @property
    def mean_T_g(self) -> float:
        """Mean GAC duration over neurons (time steps)."""
        return self._mean(self.histogram_T_g)

    def _frac(self, count: int) -> float:
        return count / self.num_neurons if self.num_neurons else float("nan")

    @property
    def fraction_gt(self) -> float:
        return self._frac(self.count_gt)

    @property
    def fraction_eq(self) -> float:
        return self._frac(self.count_eq)

    @property
    def fraction_lt(self) -> float:
        return self._frac(self.count_lt)

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self, max_violations: int = JSON_VIOLATIONS) -> dict[str, Any]:
        """JSON-safe dictionary (no timestamps: equal inputs give equal output)."""
        summary = {coding: {k: _py(v) for k, v in row.items()} for coding, row in self.summary.iterrows()}
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "holds": self.holds,
            "diagnosis": self.diagnosis,
            "T": self.T,
            "num_images": self.num_images,
            "num_neurons": self.num_neurons,
            "atol": self.atol,
            "near_threshold_tol": self.near_threshold_tol,
            "precision": self.precision,
            "seeded_gac": self.seeded_gac,
            "mean_T_d": self.mean_T_d,
            "mean_T_g": self.mean_T_g,
            "histogram": {
                "durations": list(range(1, self.T + 1)),
                "T_d": list(self.histogram_T_d),
                "T_g": list(self.histogram_T_g),
            },
            "count_gt": self.count_gt,
            "count_eq": self.count_eq,
            "count_lt": self.count_lt,
            "fraction_gt": self.fraction_gt,
            "fraction_eq": self.fraction_eq,
            "fraction_lt": self.fraction_lt,
            "closed_form": self.closed_form,
            "support_mismatch_neurons": self.support_mismatch,
            "gate_zero_at_spike": self.gate_zero_at_spike,
            "float32_gate_underflow_at_spike": self.float32_gate_underflow_at_spike,
            "secondary_measures": summary,
            "num_violations": self.num_violations,
            "violations": [dict(v) for v in self.violations[:max_violations]],
            "violations_listed": min(len(self.violations), max_violations),
            "definitions": dict(self.definitions),
            "provenance": self.provenance,
        }
        if self.sweep is not None:
            out["sweep"] = [{k: _py(v) for k, v in row.items()} for row in self.sweep.to_dict("records")]
        return json.loads(json.dumps(out, default=_py))

    def to_json(self, indent: int = 2) -> str:
        """The report as JSON text (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _py(v):
    """numpy / torch scalars -> plain Python."""
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_py(x) for x in v]
    return v
