"""Energy budgets: check an energy report against limits, for CI (``gac-analyze budget``).

A budget is a small YAML file (the bundled default is ``gac_analysis/configs/budget.yaml``; the
repository root has ``configs/budget.yaml``, a symlink to it)::

    schema: gac-analysis/budget
    version: 1
    limits:                         # each optional; null or absent = no limit
      paper_mj_per_image: 0.5       # mJ/image, paper convention
      complete_mj_per_image: 1.0    # mJ/image, complete convention
      mean_firing_rate: 0.5         # spikes / neuron / time step, all LIF sites
    layers:                         # optional, by report layer / LIF site name
      encoder.sca.mlp.0: {complete_mj_per_image: 0.05}
      encoder.lif: {firing_rate: 0.4}     # firing_rate: LIF sites only

A limit holds when ``value <= limit`` (a value exactly at its limit passes). :func:`check_budget` is
pure: it reads the report (an :class:`~gac_analysis.report_model.EnergyReport`, or a ``report.json``
dictionary checked through it) and returns the exceeded limits. Malformed budgets raise
:class:`ConfigError` with a one-line message (exit 2 in the CLI). This module imports neither torch nor
matplotlib: a CI gate reading a report stays light.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gac_analysis.energy.yaml_config import parse_yaml
from gac_analysis.errors import ConfigError, ReportError
from gac_analysis.report_model import EnergyReport, mj_per_image

__all__ = [
    "BUDGET_SCHEMA",
    "BUDGET_VERSION",
    "Budget",
    "Check",
    "DEFAULT_BUDGET",
    "LAYER_METRICS",
    "METRICS",
    "Violation",
    "budget_from_dict",
    "check_budget",
    "evaluate_budget",
    "format_value",
    "load_budget",
]

BUDGET_SCHEMA = "gac-analysis/budget"
BUDGET_VERSION = 1
#: The bundled budget (generous limits; users set their own).
DEFAULT_BUDGET = Path(__file__).resolve().parent / "configs" / "budget.yaml"

#: Network limits: name -> (short label, unit, convention / definition).
METRICS: dict[str, tuple[str, str, str]] = {
    "paper_mj_per_image": ("paper", "mJ/image", "paper convention"),
    "complete_mj_per_image": ("complete", "mJ/image", "complete convention"),
    "mean_firing_rate": ("mean firing rate", "spikes/neuron/step", "all LIF sites"),
}
#: Per-layer limits: name -> (short label, unit, convention / definition).
LAYER_METRICS: dict[str, tuple[str, str, str]] = {
    "complete_mj_per_image": ("complete", "mJ/image", "complete convention"),
    "firing_rate": ("firing rate", "spikes/neuron/step", "LIF site"),
}
_TOP_KEYS = ("schema", "version", "limits", "layers")


@dataclass(frozen=True)
class Budget:
    """Limits of a budget file: ``limits`` metric -> limit; ``layers`` name -> {metric: limit}."""

    limits: dict[str, float] = field(default_factory=dict)
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = "<dict>"


@dataclass(frozen=True)
class Check:
    """One limit applied to one report value. ``metric``: ``paper_mj_per_image``, ...,
    or ``layers.<name>.<metric>`` for a per-layer limit."""

    metric: str
    value: float
    limit: float
    unit: str
    label: str = ""
    convention: str = ""

    @property
    def passed(self) -> bool:
        return self.value <= self.limit

    def describe(self) -> str:
        """``paper 0.0123 mJ/image <= 0.5`` (or ``>`` when exceeded)."""
        v, lim = format_value(self.value, self.limit)
        return f"{self.label or self.metric} {v} {self.unit} {'<=' if self.passed else '>'} {lim}"


@dataclass(frozen=True)
class Violation(Check):
    """An exceeded limit: ``value > limit`` (both in ``unit``)."""

    def describe(self) -> str:
        v, lim = format_value(self.value, self.limit)
        return f"{self.label or self.metric}: {v} {self.unit} > limit {lim} {self.unit}" + (
            f" ({self.convention})" if self.convention else ""
        )


def format_value(value: float, limit: float) -> tuple[str, str]:
    """Both numbers with 4 significant digits, or more until unequal values print differently."""
    for digits in (4, 6, 8, 10, 12, 17):
        v, lim = f"{value:.{digits}g}", f"{limit:.{digits}g}"
        if (v == lim) == (value == limit):
            break
    return v, lim


# ---- reading a budget -------------------------------------------------------------------------------


def _nearest(name: str, options, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(options), n=n, cutoff=0.4)


def _limit(where: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    if key.endswith("firing_rate") and value > 1:
        raise ConfigError(
            f"{where}: {key} is {value!r}, but a firing rate is spikes per neuron per time step, from 0 to 1; "
            "give a limit in that range"
        )
    return float(value)


def _unknown(where: str, kind: str, key: Any, valid) -> ConfigError:
    near = _nearest(str(key), valid, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return ConfigError(f"{where}: unknown {kind} {key!r}{hint}; valid: {', '.join(valid)}")


def budget_from_dict(data: Any, source: str = "<dict>") -> Budget:
    """Validate a parsed budget file (see module docstring); :class:`ConfigError` on any problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a budget is a YAML mapping with keys {', '.join(_TOP_KEYS)}; got {type(data).__name__}"
        )
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown(source, "key", key, _TOP_KEYS)
    if data.get("schema") != BUDGET_SCHEMA or data.get("version") != BUDGET_VERSION:
        raise ConfigError(
            f"{source}: schema {data.get('schema')!r} version {data.get('version')!r}; a budget "
            f"file starts with `schema: {BUDGET_SCHEMA}` and `version: {BUDGET_VERSION}`"
        )
    raw = {} if data.get("limits") is None else data["limits"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: limits must be a mapping of {', '.join(METRICS)} to numbers")
    limits: dict[str, float] = {}
    for key, value in raw.items():
        if key not in METRICS:
            raise _unknown(source, "metric under limits", key, METRICS)
        if (v := _limit(source, f"limits.{key}", value)) is not None:
            limits[key] = v
    raw_layers = {} if data.get("layers") is None else data["layers"]
    if not isinstance(raw_layers, dict):
        raise ConfigError(
            f"{source}: layers must be a mapping of layer name to {{"
            f"{', '.join(f'{m}: number' for m in LAYER_METRICS)}}}"
        )
    layers: dict[str, dict[str, float]] = {}
    for name, spec in raw_layers.items():
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{source}: layers.{name} must be a mapping like {{complete_mj_per_image: 0.05}}, got {spec!r}"
            )
        limits_of: dict[str, float] = {}
        for key, value in spec.items():
            if key not in LAYER_METRICS:
                raise _unknown(source, f"metric under layers.{name}", key, LAYER_METRICS)
            if (v := _limit(source, f"layers.{name}.{key}", value)) is not None:
                limits_of[key] = v
        if limits_of:
            layers[str(name)] = limits_of
    return Budget(limits=limits, layers=layers, source=source)


def load_budget(path: str | Path | None = None) -> Budget:
    """Read and validate a budget file (``None``: the bundled generous default)."""
    path = Path(path) if path is not None else DEFAULT_BUDGET
    if not path.is_file():
        what = "does not exist" if not path.exists() else ("is a folder" if path.is_dir() else "is not a regular file")
        raise ConfigError(f"budget file {path} {what}; pass --config PATH to a YAML budget (see docs/budget.md)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read budget file {path}: {getattr(e, 'strerror', None) or e}") from None
    data = parse_yaml(text, f"budget file {path}", ConfigError)
    return budget_from_dict(data, source=str(path))


# ---- checking a report ------------------------------------------------------------------------------


def _network_value(report: EnergyReport, metric: str) -> float:
    return {
        "paper_mj_per_image": report.paper_mj_per_image,
        "complete_mj_per_image": report.complete_mj_per_image,
        "mean_firing_rate": report.mean_firing_rate,
    }[metric]


def evaluate_budget(report: EnergyReport | dict, budget: Budget) -> list[Check]:
    """Every limit of ``budget`` applied to ``report``, in file order (a ``report.json`` dictionary is
    checked through :class:`EnergyReport` first; :class:`ReportError` when malformed).

    Raises :class:`ConfigError` for a per-layer limit naming no layer of the report (with the
    nearest names) or a ``firing_rate`` limit on a layer that is not a LIF site.
    """
    if not isinstance(report, EnergyReport):
        report = EnergyReport.from_dict(report)
    checks: list[Check] = []
    for metric, limit in budget.limits.items():
        label, unit, conv = METRICS[metric]
        checks.append(Check(metric, _network_value(report, metric), limit, unit, label, conv))
    if not budget.layers:
        return checks
    layers = {r.name: r for r in report.layers}
    lif = {r.name: r for r in report.lif_sites}
    names = [*layers, *(k for k in lif if k not in layers)]
    for name, limits in budget.layers.items():
        if name not in layers and name not in lif:
            near = _nearest(name, names)
            raise ConfigError(
                f"{budget.source}: layers.{name}: no layer or LIF site of that name in the report; "
                + (f"nearest: {', '.join(near)}" if near else "see the names in layers.csv and lif_sites.csv")
            )
        for metric, limit in limits.items():
            label, unit, conv = LAYER_METRICS[metric]
            if metric == "firing_rate":
                if name not in lif:
                    near = _nearest(name, lif)
                    raise ConfigError(
                        f"{budget.source}: layers.{name}.firing_rate: {name} is not a LIF site; "
                        "firing_rate limits apply to LIF sites" + (f" (nearest: {', '.join(near)})" if near else "")
                    )
                value = lif[name].firing_rate
            else:
                pj = (layers.get(name) or lif[name]).complete_pj
                value = None if pj is None else mj_per_image(pj, report.num_images)
            if value is None:
                raise ReportError(f"the report has no numeric {metric.replace('_mj_per_image', '_pj')} for {name}")
            checks.append(Check(f"layers.{name}.{metric}", float(value), limit, unit, f"{name} {label}", conv))
    return checks


def check_budget(report: EnergyReport | dict, budget: Budget) -> list[Violation]:
    """The limits of ``budget`` that ``report`` exceeds (``value > limit``); empty when it passes."""
    return [Violation(**asdict(c)) for c in evaluate_budget(report, budget) if not c.passed]
