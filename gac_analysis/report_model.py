"""The files a run writes, as typed models: ``report.json`` (energy report) and ``observer.json``.

This module is the one home of both schemas. :mod:`gac_analysis.accounting.report` writes
``report.json`` through :class:`EnergyReport`; the figures, ``report.md``, the budget gate and every
other reader load it with :func:`load_energy_report` (and ``observer.json`` with
:func:`load_observer_report`). It imports neither torch, numpy, pandas nor matplotlib, so a CI gate that
only reads a report stays light.

Units (see README, "Report schema"): counts are integer operations or events summed over all analysed
images and all T time steps; ``*_pj`` energies are pJ totals over the images; ``per_image_mj`` is mJ per
image. Shapes are lists of ints, per image and time step (e.g. ``[64, 32, 32]``).

Schema version 2 (this version) differs from version 1 in: shapes are lists of ints instead of strings
like ``"64x32x32"``; layer rows carry ``in_shape``/``out_shape`` and the complete energy by op class
(``mac_pj``, ``ac_pj``, ``bias_pj``, ``bn_pj``, ``elementwise_pj``, ``pooling_pj``); the optional keys
``accuracy``, ``coverage``, ``unsupported``, a layer input kind ``integer`` and a LIF ``neuron`` class.
A reader of this version refuses other versions with one line (re-run ``gac-analyze energy``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gac_analysis.energy.units import PJ_PER_MJ
from gac_analysis.errors import ReportError

__all__ = [
    "Accuracy",
    "Coverage",
    "EnergyReport",
    "INPUT_KINDS",
    "LayerRow",
    "LifSiteRow",
    "MemorySplit",
    "COMPARISON_SCHEMA",
    "COMPARISON_SCHEMA_VERSION",
    "OBSERVER_SCHEMA",
    "OBSERVER_SCHEMA_VERSION",
    "ObserverSummary",
    "PJ_PER_MJ",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UnsupportedOp",
    "OBSERVER_PLACES",
    "dotted_get",
    "find_observer",
    "graded_neurons_note",
    "load_energy_report",
    "load_observer_report",
    "mj_per_image",
    "observer_mismatch",
    "report_json_path",
    "silent_neurons_note",
]

SCHEMA = "gac-analysis/energy-report"
SCHEMA_VERSION = 2
OBSERVER_SCHEMA = "gac-analysis/observer"
OBSERVER_SCHEMA_VERSION = 1
COMPARISON_SCHEMA = "gac-analysis/comparison"
COMPARISON_SCHEMA_VERSION = 1
#: Input kinds a layer row may carry (``None``: not observed for that module).
INPUT_KINDS = ("binary", "real", "mixed", "silent", "integer")
_RERUN = "re-run `gac-analyze energy`"


def mj_per_image(total_pj: float, num_images: int) -> float:
    """mJ per image of an energy given in pJ summed over ``num_images`` images."""
    return float(total_pj) / max(int(num_images), 1) / PJ_PER_MJ


def silent_neurons_note(sites, *, all_fired: str | None = None) -> str | None:
    """A note on neuron layers that never fired on the analysed data (``sites``: ``(name, spikes)`` per neuron
    layer, as in ``lif_sites``): all of them (every spike-driven count is then 0, and the energy is that of
    the real-valued layers alone) or some of them (named, the first five); ``all_fired`` when every layer
    fired; None when the model has no neurons or a count is unknown (an older report: no claim either way)."""
    sites = list(sites)
    if not sites or any(spikes is None for _, spikes in sites):
        return None
    silent = [name for name, spikes in sites if spikes == 0]
    n = len(sites)
    if not silent:
        return all_fired
    if len(silent) == n:
        return (
            f"no neuron layer fired on this data (0 spikes in all {n}): every spike-driven count is 0 and the "
            "energy is that of the real-valued layers alone; an untrained network, or inputs that never reach "
            "the threshold: profile trained weights on real data"
        )
    shown = ", ".join(silent[:5]) + (", ..." if len(silent) > 5 else "")
    return (
        f"{len(silent)} of {n} neuron layers never fired on this data ({shown}): the layers that read their "
        "output count no synaptic operations from it"
    )


def graded_neurons_note(sites) -> str | None:
    """A note on neuron layers whose outputs were not all 0 and 1 (``sites``: ``(name, output)`` per neuron
    layer, ``output`` as in ``lif_sites``): their "spikes" count non-zero outputs, so their firing rates are
    rates of non-zero values, and the layers reading them are priced by what they read. None when none."""
    graded = [name for name, output in sites if output == "graded"]
    if not graded:
        return None
    shown = ", ".join(graded[:5]) + (", ..." if len(graded) > 5 else "")
    return (
        f"{len(graded)} neuron layer(s) output values other than 0 and 1 ({shown}): their 'spikes' are non-zero "
        "outputs and their firing rates rates of non-zero values (a graded neuron, or a surrogate with "
        "spiking=False); the layers reading them are counted by the values they read"
    )


def dotted_get(d: Any, dotted: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``dotted="a.b"``; ``default`` where a level is missing or not a mapping."""
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


# ---- value checks (one line each, naming the key) ----------------------------------------------------


def _plain(v: Any) -> Any:
    """numpy / pandas scalars -> plain Python (the writer hands over DataFrame records)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)) else v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Reader:
    """Checks values of one file, raising :class:`ReportError` with the file and key in one line."""

    def __init__(self, source: str, rerun: str = _RERUN):
        self.source, self.rerun = source, rerun

    def fail(self, what: str) -> ReportError:
        return ReportError(f"{self.source}: {what}; {self.rerun}")

    def number(self, v: Any, key: str, *, optional: bool = False, nonnegative: bool = False) -> float | None:
        v = _plain(v)
        if v is None and optional:
            return None
        if not _is_number(v) or not math.isfinite(v):
            raise self.fail(
                f"{key} is missing or not a number"
                if v is None or not _is_number(v)
                else f"{key} is {v}, not a finite number"
            )
        if nonnegative and v < 0:
            raise self.fail(f"{key} is {v:g}, a negative energy")
        return v

    def integer(self, v: Any, key: str, *, optional: bool = False, minimum: int | None = None) -> int | None:
        v = _plain(v)
        if v is None and optional:
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"{key} is missing or not an integer")
        if minimum is not None and v < minimum:
            raise self.fail(f"{key} is {v}, expected >= {minimum}")
        return v

    def text(self, v: Any, key: str, *, optional: bool = False) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.fail(f"{key} is missing or not a string")
        return v

    def flag(self, v: Any, key: str, *, optional: bool = False) -> bool | None:
        v = _plain(v)
        if v is None and optional:
            return None
        if not isinstance(v, bool):
            raise self.fail(f"{key} is not true/false")
        return v

    def shape(self, v: Any, key: str) -> list[int] | None:
        if v is None:
            return None
        if not isinstance(v, (list, tuple)):
            raise self.fail(f"{key} is {v!r}, not a list of ints (schema {SCHEMA_VERSION} stores shapes as lists)")
        return [self.integer(x, f"{key}[{i}]", minimum=0) for i, x in enumerate(v)]

    def mapping(self, v: Any, key: str, *, optional: bool = False) -> dict:
        if v is None and optional:
            return {}
        if not isinstance(v, dict):
            raise self.fail(f"{key} is missing or not an object")
        return v

    def rows(self, v: Any, key: str) -> list[dict]:
        if not isinstance(v, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in v):
            raise self.fail(f"{key} is missing or is not a list of named rows")
        return v


def _split_known(cls, data: dict) -> tuple[dict, dict]:
    """(keys the dataclass names, the rest) of one JSON object."""
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


def _as_dict(obj, optional: tuple[str, ...] = ()) -> dict:
    """A dataclass row as JSON: its fields in declaration order (the ``optional`` ones only where set), then
    the keys it did not know."""
    out = {
        f.name: getattr(obj, f.name)
        for f in fields(obj)
        if f.name != "extra" and not (f.name in optional and getattr(obj, f.name) is None)
    }
    out.update(obj.extra)
    return out


# ---- rows -----------------------------------------------------------------------------------------

#: Count columns of a layer row (integers, totals over images and time steps). The last four are written by
#: the any-network counting (integer-valued inputs, activation functions, the ACs under the other integer rule).
LAYER_COUNTS = (
    "dense_macs",
    "acs",
    "effective_macs",
    "bias_adds",
    "muls",
    "adds",
    "compares",
    "sigmoids",
    "input_nnz",
    "integer_ops",
    "integer_value_ops",
    "activations",
    "acs_alt",
)
#: The complete energy of a layer by op class (pJ totals over the images); they add up to ``complete_pj``.
CLASS_ENERGIES = ("mac_pj", "ac_pj", "bias_pj", "bn_pj", "elementwise_pj", "pooling_pj")


@dataclass
class LayerRow:
    """One synaptic / elementwise site of the network (report ``layers[]``), in execution order.

    ``input``: the observed input kind (:data:`INPUT_KINDS`) or ``None`` where not observed. Counts: see
    :data:`LAYER_COUNTS`; ``approx_acs``: the paper's fr x T x dense approximation (may be fractional);
    ``fr_in``: input firing rate (0..1); energies in pJ totals over the images.
    """

    name: str
    op: str | None = None
    role: str | None = None
    input: str | None = None
    declared_input: str | None = None
    static: bool | None = None
    in_shape: list[int] | None = None
    out_shape: list[int] | None = None
    dense_macs: int | None = None
    acs: int | None = None
    effective_macs: int | None = None
    approx_acs: float | None = None
    bias_adds: int | None = None
    muls: int | None = None
    adds: int | None = None
    compares: int | None = None
    sigmoids: int | None = None
    input_nnz: int | None = None
    integer_ops: int | None = None
    integer_value_ops: int | None = None
    activations: int | None = None
    acs_alt: int | None = None
    fr_in: float | None = None
    paper_pj: float | None = None
    complete_pj: float | None = None
    mac_pj: float | None = None
    ac_pj: float | None = None
    bias_pj: float | None = None
    bn_pj: float | None = None
    elementwise_pj: float | None = None
    pooling_pj: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str, read: _Reader) -> LayerRow:
        known, extra = _split_known(cls, data)
        row = cls(name=read.text(known.get("name"), f"{where}.name"), extra=extra)
        row.op = read.text(known.get("op"), f"{where}.op", optional=True)
        row.role = read.text(known.get("role"), f"{where}.role", optional=True)
        for key in ("input", "declared_input"):
            kind = read.text(known.get(key), f"{where}.{key}", optional=True)
            if kind is not None and kind not in INPUT_KINDS:
                raise read.fail(f"{where}.{key} is {kind!r}; expected one of {', '.join(INPUT_KINDS)}")
            setattr(row, key, kind)
        row.static = read.flag(known.get("static"), f"{where}.static", optional=True)
        row.in_shape = read.shape(known.get("in_shape"), f"{where}.in_shape")
        row.out_shape = read.shape(known.get("out_shape"), f"{where}.out_shape")
        for key in LAYER_COUNTS:
            setattr(row, key, read.integer(known.get(key), f"{where}.{key}", optional=True, minimum=0))
        row.approx_acs = read.number(known.get("approx_acs"), f"{where}.approx_acs", optional=True)
        row.fr_in = read.number(known.get("fr_in"), f"{where}.fr_in", optional=True)
        for key in ("paper_pj", "complete_pj", *CLASS_ENERGIES):
            setattr(row, key, read.number(known.get(key), f"{where}.{key}", optional=True, nonnegative=True))
        return row

    def to_dict(self) -> dict:
        return _as_dict(self, optional=LAYER_COUNTS[-4:])  # counts of the any-network counting, where made


@dataclass
class LifSiteRow:
    """One LIF call site (report ``lif_sites[]``): ``shape`` per image and time step, ``neurons`` its
    product, ``spikes`` over images and steps, ``firing_rate`` spikes / (neurons x T x images),
    ``per_step_rate`` the same per time step, ``complete_pj`` its neuron updates (pJ totals over images),
    ``neuron`` the neuron class name where known."""

    name: str
    role: str | None = None
    shape: list[int] | None = None
    spikes: int | None = None
    neurons: int | None = None
    firing_rate: float | None = None
    per_step_rate: list[float] = field(default_factory=list)
    complete_pj: float | None = None
    neuron: str | None = None
    output: str | None = None  # "binary" (0/1 spikes) or "graded" (other values: spikes are non-zero outputs)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str, read: _Reader) -> LifSiteRow:
        known, extra = _split_known(cls, data)
        row = cls(name=read.text(known.get("name"), f"{where}.name"), extra=extra)
        row.role = read.text(known.get("role"), f"{where}.role", optional=True)
        row.shape = read.shape(known.get("shape"), f"{where}.shape")
        row.spikes = read.integer(known.get("spikes"), f"{where}.spikes", optional=True, minimum=0)
        row.neurons = read.integer(known.get("neurons"), f"{where}.neurons", optional=True, minimum=0)
        row.firing_rate = read.number(known.get("firing_rate"), f"{where}.firing_rate", optional=True)
        rates = known.get("per_step_rate") or []
        if not isinstance(rates, (list, tuple)):
            raise read.fail(f"{where}.per_step_rate is not a list of numbers")
        row.per_step_rate = [read.number(r, f"{where}.per_step_rate[{t}]") for t, r in enumerate(rates)]
        row.complete_pj = read.number(known.get("complete_pj"), f"{where}.complete_pj", optional=True, nonnegative=True)
        row.neuron = read.text(known.get("neuron"), f"{where}.neuron", optional=True)
        row.output = read.text(known.get("output"), f"{where}.output", optional=True)
        return row

    def to_dict(self) -> dict:
        return _as_dict(self, optional=("neuron", "output"))  # written where known


@dataclass
class Accuracy:
    """Top-1 accuracy of the analysed images that carried labels; ``top1`` a fraction 0..1;
    ``energy_per_correct_mj``: mJ per correctly classified image, ``{"paper": .., "complete": ..}``."""

    labelled: int
    correct: int
    top1: float
    energy_per_correct_mj: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, read: _Reader) -> Accuracy:
        data = read.mapping(data, "accuracy")
        labelled = read.integer(data.get("labelled"), "accuracy.labelled", minimum=0)
        correct = read.integer(data.get("correct"), "accuracy.correct", minimum=0)
        if correct > labelled:
            raise read.fail(f"accuracy.correct ({correct}) exceeds accuracy.labelled ({labelled})")
        per = read.mapping(data.get("energy_per_correct_mj"), "accuracy.energy_per_correct_mj", optional=True)
        return cls(
            labelled=labelled,
            correct=correct,
            top1=read.number(data.get("top1"), "accuracy.top1"),
            energy_per_correct_mj={
                str(k): read.number(v, f"accuracy.energy_per_correct_mj.{k}", optional=True, nonnegative=True)
                for k, v in per.items()
            },
        )

    def to_dict(self) -> dict:
        return {
            "labelled": self.labelled,
            "correct": self.correct,
            "top1": self.top1,
            "energy_per_correct_mj": dict(self.energy_per_correct_mj),
        }


@dataclass
class Coverage:
    """Module calls seen while counting: priced (``counted``), free by rule (``free``), no rule
    (``unsupported``; listed in :attr:`EnergyReport.unsupported`)."""

    counted_calls: int
    free_calls: int
    unsupported_calls: int

    @classmethod
    def from_dict(cls, data: Any, read: _Reader) -> Coverage:
        data = read.mapping(data, "coverage")
        return cls(
            **{
                k: read.integer(data.get(k), f"coverage.{k}", minimum=0)
                for k in ("counted_calls", "free_calls", "unsupported_calls")
            }
        )

    def to_dict(self) -> dict:
        return {
            "counted_calls": self.counted_calls,
            "free_calls": self.free_calls,
            "unsupported_calls": self.unsupported_calls,
        }


@dataclass
class UnsupportedOp:
    """An operation the counter has no rule for: ``calls`` and the ``elements`` of its outputs."""

    op: str
    module: str
    calls: int
    elements: int

    @classmethod
    def from_dict(cls, data: Any, where: str, read: _Reader) -> UnsupportedOp:
        data = read.mapping(data, where)
        return cls(
            op=read.text(data.get("op"), f"{where}.op"),
            module=read.text(data.get("module"), f"{where}.module"),
            calls=read.integer(data.get("calls"), f"{where}.calls", minimum=0),
            elements=read.integer(data.get("elements"), f"{where}.elements", minimum=0),
        )

    def to_dict(self) -> dict:
        return {"op": self.op, "module": self.module, "calls": self.calls, "elements": self.elements}


@dataclass(frozen=True)
class MemorySplit:
    """The memory-aware estimate split into compute and memory energy (pJ totals over the images):
    per layer (``per_layer``: ``(name, compute_pj, memory_pj)``) and in all."""

    per_layer: list[tuple[str, float, float]]
    compute_pj: float
    memory_pj: float


# ---- the energy report ----------------------------------------------------------------------------

#: Numbers every consumer of a report needs (dotted keys), checked on load.
REQUIRED_NUMBERS = (
    "mean_firing_rate",
    "energy.paper.per_image_mj",
    "energy.paper.total_pj",
    "energy.complete.per_image_mj",
    "energy.complete.total_pj",
)
#: Energies that cannot be negative (checked on load).
NONNEGATIVE_ENERGIES = REQUIRED_NUMBERS[1:]


@dataclass
class EnergyReport:
    """``report.json`` of one profiling run (schema :data:`SCHEMA` version :data:`SCHEMA_VERSION`).

    ``energy``: both conventions (``paper``, ``complete``: ``total_pj``, ``per_image_mj``, ``breakdown``),
    their ``difference``, ``options``, the ``table`` used and the memory-aware estimate ``memory``.
    ``accuracy``: ``None`` when the data had no labels. ``extra``: top-level keys this version does not name
    (kept on a round trip).
    """

    num_images: int
    T: int
    mean_firing_rate: float
    layers: list[LayerRow]
    lif_sites: list[LifSiteRow]
    energy: dict
    units: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    accuracy: Accuracy | None = None
    coverage: Coverage | None = None
    unsupported: list[UnsupportedOp] | None = None
    extra: dict = field(default_factory=dict)
    source: str = "<dict>"

    # ---- typed views -----------------------------------------------------------------------------
    @property
    def paper_mj_per_image(self) -> float:
        """Paper-convention energy, mJ per image."""
        return float(self.energy["paper"]["per_image_mj"])

    @property
    def complete_mj_per_image(self) -> float:
        """Complete-convention energy, mJ per image."""
        return float(self.energy["complete"]["per_image_mj"])

    @property
    def table_name(self) -> str | None:
        """Name of the energy table that priced the counts (with the file it came from when it is not the
        bundled table of that name: ``energy.tables.table_label``); None when the report names none."""
        from gac_analysis.energy.tables import table_label

        table = dotted_get(self.energy, "table")
        return table_label(table) if isinstance(table, dict) and table.get("name") else None

    @property
    def memory(self) -> MemorySplit | None:
        """The memory-aware estimate split per layer (``energy.memory.layers``), or ``None`` when the report
        has none or it holds no usable rows."""
        rows = dotted_get(self.energy, "memory.layers")
        if not isinstance(rows, list):
            return None
        per_layer = [
            (str(r["name"]), float(r["compute_pj"]), float(r["memory_pj"]))
            for r in rows
            if isinstance(r, dict)
            and isinstance(r.get("name"), str)
            and _is_number(r.get("compute_pj"))
            and _is_number(r.get("memory_pj"))
        ]
        if not per_layer:
            return None
        return MemorySplit(per_layer, sum(r[1] for r in per_layer), sum(r[2] for r in per_layer))

    # ---- JSON ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> EnergyReport:
        """Check and type a parsed ``report.json``; :class:`ReportError` (one line) on any problem,
        including another schema or version, ``num_images`` < 1, no layers and negative energies."""
        read = _Reader(source)
        if not isinstance(data, dict):
            raise ReportError(f"{source} holds a JSON {type(data).__name__}, not an energy report object")
        schema, version = data.get("schema"), data.get("schema_version")
        if schema != SCHEMA or version != SCHEMA_VERSION:
            raise ReportError(
                f"{source} is schema {schema!r} version {version!r}; this version reads "
                f"{SCHEMA!r} version {SCHEMA_VERSION}: {_RERUN}"
            )
        num_images = read.integer(data.get("num_images"), "num_images")
        if num_images < 1:
            raise read.fail(f"num_images is {num_images}: the report covers no images and prices nothing")
        T = read.integer(data.get("T"), "T", minimum=1)
        for key in REQUIRED_NUMBERS:
            read.number(dotted_get(data, key), key, nonnegative=key in NONNEGATIVE_ENERGIES)
        layers = read.rows(data.get("layers"), "layers")
        if not layers:
            raise read.fail("layers is empty: the report priced no layer")
        lif = read.rows(data.get("lif_sites"), "lif_sites")
        known = {
            "schema",
            "schema_version",
            "num_images",
            "T",
            "mean_firing_rate",
            "layers",
            "lif_sites",
            "energy",
            "units",
            "totals",
            "checks",
            "provenance",
            "accuracy",
            "coverage",
            "unsupported",
        }
        unsupported = data.get("unsupported")
        if unsupported is not None and not isinstance(unsupported, list):
            raise read.fail("unsupported is not a list")
        return cls(
            num_images=num_images,
            T=T,
            mean_firing_rate=float(data["mean_firing_rate"]),
            layers=[LayerRow.from_dict(r, f"layers[{i}]", read) for i, r in enumerate(layers)],
            lif_sites=[LifSiteRow.from_dict(r, f"lif_sites[{i}]", read) for i, r in enumerate(lif)],
            energy=data["energy"],
            units=read.mapping(data.get("units"), "units", optional=True),
            totals=read.mapping(data.get("totals"), "totals", optional=True),
            checks=read.mapping(data.get("checks"), "checks", optional=True),
            provenance=read.mapping(data.get("provenance"), "provenance", optional=True),
            accuracy=None if data.get("accuracy") is None else Accuracy.from_dict(data["accuracy"], read),
            coverage=Coverage.from_dict(data["coverage"], read) if data.get("coverage") else None,
            unsupported=None
            if unsupported is None
            else [UnsupportedOp.from_dict(u, f"unsupported[{i}]", read) for i, u in enumerate(unsupported)],
            extra={k: v for k, v in data.items() if k not in known},
            source=source,
        )

    def to_dict(self) -> dict:
        """The JSON object of ``report.json`` (key order fixed; optional keys only when set)."""
        out = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "num_images": self.num_images,
            "T": self.T,
            "units": self.units,
            "mean_firing_rate": self.mean_firing_rate,
            "totals": self.totals,
            "lif_sites": [r.to_dict() for r in self.lif_sites],
            "layers": [r.to_dict() for r in self.layers],
            "energy": self.energy,
            "checks": self.checks,
            "provenance": self.provenance,
            "accuracy": self.accuracy.to_dict() if self.accuracy is not None else None,
        }
        if self.coverage is not None:
            out["coverage"] = self.coverage.to_dict()
        if self.unsupported is not None:
            out["unsupported"] = [u.to_dict() for u in self.unsupported]
        out.update(self.extra)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default)


def json_default(o):
    """``json.dumps`` fallback for the values a report holds: numpy and torch scalars and arrays, else ``str``."""
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def report_json_path(path: str | Path, name: str = "report.json", *, writer: str = "gac-analyze energy") -> Path:
    """``path`` itself when it is a file, else ``path/name``; :class:`ReportError` when missing."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path} does not exist; pass a run folder written by `{writer} --out DIR` or its {name}")
    if path.is_dir():
        path = path / name
        if not path.is_file():
            raise ReportError(f"{path.parent} has no {name}; pass the --out folder of `{writer}`")
    return path


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ReportError(f"{path} nests its JSON too deeply to be a file of this tool's") from None


def load_energy_report(path: str | Path) -> EnergyReport:
    """Read ``report.json`` (``path``: the file or its run folder) into an :class:`EnergyReport`.

    :class:`ReportError` (one line, exit 2 in the CLI) when the file is missing, unreadable, not JSON, of
    another schema or version, covers no images, has no layers, or holds a malformed or negative value.
    """
    path = report_json_path(path)
    return EnergyReport.from_dict(_read_json(path), source=str(path))


# ---- the observer report --------------------------------------------------------------------------


@dataclass
class ObserverSummary:
    """The headline of ``observer.json`` (Proposition 1: T_g >= T_d). Durations in time steps; fractions of
    the observed encoder output neurons (0..1). ``data``: the whole JSON object."""

    verdict: str
    holds: bool
    T: int
    num_images: int
    num_neurons: int
    mean_T_d: float | None
    mean_T_g: float | None
    num_violations: int
    fraction_gt: float | None
    fraction_eq: float | None
    fraction_lt: float | None
    data: dict = field(default_factory=dict)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ObserverSummary:
        read = _Reader(source, rerun="re-run `gac-analyze observe`")
        if not isinstance(data, dict):
            raise ReportError(f"{source} holds a JSON {type(data).__name__}, not an observer report object")
        schema, version = data.get("schema"), data.get("schema_version")
        if schema != OBSERVER_SCHEMA or version != OBSERVER_SCHEMA_VERSION:
            raise ReportError(
                f"{source} is schema {schema!r} version {version!r}; this version reads "
                f"{OBSERVER_SCHEMA!r} version {OBSERVER_SCHEMA_VERSION}: re-run `gac-analyze observe`"
            )

        def rate(key: str) -> float | None:  # NaN (nothing observed) reads as None
            v = data.get(key)
            return None if isinstance(v, float) and math.isnan(v) else read.number(v, key, optional=True)

        return cls(
            verdict=read.text(data.get("verdict"), "verdict"),
            holds=read.flag(data.get("holds"), "holds"),
            T=read.integer(data.get("T"), "T", minimum=1),
            num_images=read.integer(data.get("num_images"), "num_images", minimum=0),
            num_neurons=read.integer(data.get("num_neurons"), "num_neurons", minimum=0),
            mean_T_d=rate("mean_T_d"),
            mean_T_g=rate("mean_T_g"),
            num_violations=read.integer(data.get("num_violations"), "num_violations", minimum=0),
            fraction_gt=rate("fraction_gt"),
            fraction_eq=rate("fraction_eq"),
            fraction_lt=rate("fraction_lt"),
            data=data,
            source=source,
        )


def load_observer_report(path: str | Path) -> ObserverSummary:
    """Read ``observer.json`` (``path``: the file or its run folder); :class:`ReportError` (one line) when
    missing, unreadable, not JSON, of another schema or version, or lacking its headline numbers."""
    path = report_json_path(path, "observer.json", writer="gac-analyze observe")
    return ObserverSummary.from_dict(_read_json(path), source=str(path))


#: Where a run folder keeps its observer run: beside report.json, or in ``observe/`` (``make demo``).
OBSERVER_PLACES = ("observer.json", "observe/observer.json")


def find_observer(run_dir: str | Path) -> Path | None:
    """The ``observer.json`` of a run folder (:data:`OBSERVER_PLACES`, first found), or None."""
    return next((Path(run_dir) / p for p in OBSERVER_PLACES if (Path(run_dir) / p).is_file()), None)


def observer_mismatch(report: dict, observer: dict) -> str | None:
    """Why an observer report does not describe the model of an energy report (its checkpoint's sha256,
    architecture or coding differ, where both say), or None. Both are the reports' JSON dictionaries."""
    model = dotted_get(report, "provenance.model") or {}
    seen = observer.get("provenance") or {}
    diffs = []
    ours, theirs = dotted_get(model, "checkpoint.sha256"), dotted_get(seen, "checkpoint.sha256")
    if ours and theirs and ours != theirs:
        diffs.append(f"checkpoint sha256 {theirs[:12]}... there, {ours[:12]}... here")
    for key in ("arch", "coding"):
        if model.get(key) is not None and seen.get(key) is not None and model[key] != seen[key]:
            diffs.append(f"{key} {seen[key]} there, {model[key]} here")
    if not diffs:
        return None
    return "its observer.json describes another model than its report.json (" + "; ".join(diffs) + ")"
