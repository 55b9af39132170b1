"""The report of one profiling run: pandas tables, energy in both conventions, provenance, JSON.

Units: every count is an integer number of operations or events, **summed over all analysed images
and all T time steps** unless its name says otherwise (``per_image``, ``per_step``); energies are pJ
totals over the images (``*_pj``) or mJ per image (``per_image_mj``). See README, "Report schema".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gac_analysis.energy.conventions import LayerFacts, energy_summary, price_layers, price_neurons
from gac_analysis.energy.network_memory import memory_summary
from gac_analysis.energy.tables import EnergyTable
from gac_analysis.report_model import (
    LAYER_COUNTS,
    Coverage,
    EnergyReport,
    LayerRow,
    LifSiteRow,
    UnsupportedOp,
    json_default,
)
from gac_analysis.report_model import SCHEMA as SCHEMA  # re-exported by gac_analysis.accounting
from gac_analysis.report_model import SCHEMA_VERSION as SCHEMA_VERSION
from gac_analysis.report_model import Accuracy as ReportAccuracy

LAYER_COUNTERS = LAYER_COUNTS  # one home: the report model names the count columns
STEP_COUNTERS = LAYER_COUNTERS + ("spikes", "neuron_steps")


def host_counters_of(sites: list) -> list[dict[str, list[int]]]:
    """Every counter of every site as ``T + 1`` python ints (last slot: time-mixed totals and per-call
    flags); the device tensors of all sites are read in one transfer: the report's one synchronisation."""
    tensors = [(i, k, v) for i, site in enumerate(sites) for k, v in site.tensors.items()]
    out = [{k: list(v) for k, v in site.ints.items()} for site in sites]
    if not tensors:
        return out
    device = tensors[0][2].device
    flat = torch.cat([v.reshape(-1).to(device) for _, _, v in tensors]).cpu().tolist()
    at = 0
    for i, k, v in tensors:  # a counter may be a python int in some calls, a tensor in others
        values, at = flat[at : at + v.numel()], at + v.numel()
        counters = out[i]
        counters[k] = [a + b for a, b in zip(counters[k], values)] if k in counters else values
    return out


def host_counters(site) -> dict[str, list[int]]:
    """:func:`host_counters_of` for one site."""
    return host_counters_of([site])[0]


def _slots(c: dict, key: str, T: int) -> list[int]:
    return c.get(key, [0] * (T + 1))


def _observed_input(c: dict, T: int) -> str | None:
    """``binary``, ``integer`` (whole numbers, not all 0/1), ``real`` or ``mixed`` from the calls with
    non-zero input; ``silent`` when every call's input was all zeros; ``None`` for modules whose input
    kind is not observed."""
    if "binary_calls" not in c:
        return None
    seen = [kind for kind in ("binary", "integer", "real") if _slots(c, f"{kind}_calls", T)[T]]
    if len(seen) > 1:
        return "mixed"
    return seen[0] if seen else "silent"


def _mismatch(declared: str | None, observed: str | None) -> bool:
    """A declared input kind contradicted by the values seen (a silent input fits both kinds; integer
    values are real values)."""
    if declared == "real" and observed == "integer":
        return False
    return bool(declared and observed not in (None, "silent", declared))


def _counter_array(sites: list, host: dict, T: int) -> np.ndarray:
    """``counts[site, counter, slot]``: the :data:`STEP_COUNTERS` of every site (zeros for those it lacks),
    ``T + 1`` slots each, as one int64 array."""
    zeros = [0] * (T + 1)
    slots = itertools.chain.from_iterable(host[s.name].get(key, zeros) for s in sites for key in STEP_COUNTERS)
    shape = (len(sites), len(STEP_COUNTERS), T + 1)
    return np.fromiter(slots, dtype=np.int64, count=math.prod(shape)).reshape(shape)


def _layer_row(site, c: dict, T: int, totals: list[int]) -> dict:
    """One row of the layers table; ``totals``: the site's :data:`LAYER_COUNTERS` summed over all slots."""
    observed = _observed_input(c, T)
    row = {
        "name": site.name,
        "op": site.op,
        "role": site.role,
        "time": site.time,
        "static": site.static,
        "declared_input": site.declared_input,
        "input": observed,
        "input_mismatch": _mismatch(site.declared_input, observed),
        "calls": site.calls,
        "in_shape": list(site.in_shape),
        "out_shape": list(site.out_shape),
        "in_numel": math.prod(site.in_shape),
        "out_numel": math.prod(site.out_shape),
        "rate_source": site.rate_source,
        "output_neurons": site.output_neurons,
    }
    row.update(zip(LAYER_COUNTERS, totals))
    for key in ("c_in", "c_out", "kernel", "stride", "groups", "has_bias"):
        value = site.geometry.get(key)
        row[key] = list(value) if isinstance(value, (list, tuple)) else value
    return row


def _lif_row(site, c: dict, T: int, num_images: int) -> dict:
    spikes = _slots(c, "spikes", T)[:T]
    neurons = math.prod(site.out_shape)
    denom = max(neurons * num_images, 1)
    return {
        "name": site.name,
        "role": site.role,
        "neuron": site.neuron,
        "shape": list(site.out_shape),
        "neurons": neurons,
        "spikes": int(sum(spikes)),
        "neuron_steps": int(sum(_slots(c, "neuron_steps", T))),
        "firing_rate": sum(spikes) / (denom * T),
        "per_step_rate": [s / denom for s in spikes],
        "output": "graded" if _slots(c, "graded_calls", T)[T] else "binary",
    }


def _per_step(sites: list, counts: np.ndarray, T: int) -> pd.DataFrame:
    """The long per-step table from :func:`_counter_array`'s ``counts``: per site, one row per time step
    ``0..T-1`` with that step's counters, then (``step`` -1) its time-mixed work when it has any; a
    time-mixed site has only that last row."""
    by_step = counts.transpose(0, 2, 1)  # [site, slot, counter]
    keep = np.zeros(by_step.shape[:2], dtype=bool)
    keep[:, :T] = np.array([s.time != "mixed" for s in sites], dtype=bool)[:, None]
    keep[:, T] = by_step[:, T].any(axis=1)
    if not keep.any():
        return pd.DataFrame([])
    rows = keep.sum(axis=1).tolist()
    values = by_step[keep]
    return pd.DataFrame(
        {
            "name": [s.name for s, k in zip(sites, rows) for _ in range(k)],
            "kind": ["lif" if s.op == "lif" else "layer" for s, k in zip(sites, rows) for _ in range(k)],
            "role": [s.role for s, k in zip(sites, rows) for _ in range(k)],
            "step": np.broadcast_to(np.r_[np.arange(T), -1], keep.shape)[keep],
            **{key: values[:, j] for j, key in enumerate(STEP_COUNTERS)},
        }
    )


@dataclass
class Report:
    """Counts, rates and energies of one profiling run (see module docstring for units)."""

    T: int
    num_images: int
    layers: pd.DataFrame  # one row per synaptic/elementwise site, execution order, priced
    lif_sites: pd.DataFrame  # one row per LIF call, execution order, priced
    per_step: pd.DataFrame  # long table: site x time step (step -1: time-mixed work)
    energy: dict
    provenance: dict
    checks: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)  # counted_calls / free_calls / unsupported_calls
    unsupported: list = field(default_factory=list)  # {op, module, calls, elements} per op without a rule
    accuracy: dict | None = None  # top-1 and energy per correct prediction; None: no labels (accuracy.py)

    @property
    def mean_firing_rate(self) -> float:
        """Network mean rate: total spikes / total neuron-steps."""
        steps = self.lif_sites["neuron_steps"].sum() if len(self.lif_sites) else 0
        return float(self.lif_sites["spikes"].sum() / steps) if steps else 0.0

    def to_dict(self) -> dict:
        """``report.json`` as a dictionary, written through :class:`gac_analysis.report_model.EnergyReport`."""
        return EnergyReport(
            num_images=self.num_images,
            T=self.T,
            units={
                "counts": "operations or events, totals over all images and time steps",
                "neurons": "per image per time step",
                "energy": "pJ totals over images; mJ per image",
                "firing_rate": "spikes / (neurons x T x images)",
                "shapes": "lists of ints, per image and step",
            },
            mean_firing_rate=self.mean_firing_rate,
            totals=self.totals(),
            lif_sites=[LifSiteRow(**r) for r in _records(self.lif_sites, LifSiteRow)],
            layers=[LayerRow(**r) for r in _records(self.layers, LayerRow)],
            energy=self.energy,
            checks=self.checks,
            provenance=self.provenance,
            accuracy=ReportAccuracy(**self.accuracy) if self.accuracy is not None else None,
            coverage=Coverage(**self.coverage) if self.coverage else None,
            unsupported=[UnsupportedOp(**u) for u in self.unsupported] if self.coverage else None,
        ).to_dict()

    def totals(self) -> dict:
        lay = self.layers
        return {
            "dense_macs": int(lay["dense_macs"].sum()),
            "acs": int(lay["acs"].sum()),
            "effective_macs": int(lay["effective_macs"].sum()),
            "approx_acs": float(lay["approx_acs"].sum()),
            "spikes": int(self.lif_sites["spikes"].sum()) if len(self.lif_sites) else 0,
            "neuron_steps": int(self.lif_sites["neuron_steps"].sum()) if len(self.lif_sites) else 0,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default)

    #: The files of a run folder that :meth:`save` writes.
    FILES = ("report.json", "layers.csv", "lif_sites.csv", "per_step.csv")

    def save(self, folder: str | Path) -> list[Path]:
        """Write :attr:`FILES` into ``folder`` as ``gac-analyze energy --out`` does
        (``fileio.atomic_output_dir``): all or nothing, into a new or empty folder or one of this tool's
        runs, never over a file the tool did not write. Returns the paths written."""
        from gac_analysis.fileio import atomic_output_dir

        with atomic_output_dir(folder, kind="energy") as tmp:
            self.write_files(tmp)
        return [Path(folder) / name for name in self.FILES]

    def write_files(self, folder: Path) -> None:
        """Write :attr:`FILES` into ``folder``, a temporary the caller commits (:meth:`save`, the CLI)."""
        report_json, layers_csv, lif_csv, per_step_csv = (Path(folder) / name for name in self.FILES)
        report_json.write_text(self.to_json() + "\n")
        self.layers.to_csv(layers_csv, index=False)
        lif = self.lif_sites.copy()
        lif["per_step_rate"] = lif["per_step_rate"].map(lambda v: ";".join(f"{x:.6g}" for x in v))
        lif.to_csv(lif_csv, index=False)
        self.per_step.to_csv(per_step_csv, index=False)


def _records(df: pd.DataFrame, row_type) -> list[dict]:
    """The columns of ``df`` that ``row_type`` (a report_model row) names, one dict per row, NaN -> None."""
    present = [f.name for f in dataclasses.fields(row_type) if f.name in df.columns]
    out = []
    for rec in df[present].to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return out


def build_report(
    counter,
    *,
    table: EnergyTable,
    provenance: dict | None = None,
    reuse_static: bool = True,
    fold_bn: bool = False,
    integer_pricing: str = "mac",
) -> Report:
    """Synchronise the counters once and build the priced tables."""
    T, n = counter.T, counter.num_images
    sites = list(counter.sites.values())
    host = {s.name: c for s, c in zip(sites, host_counters_of(sites))}  # the one device sync
    counts = _counter_array(sites, host, T)
    totals = counts[:, : len(LAYER_COUNTERS)].sum(axis=2).tolist()  # per site, over all slots
    lif = [s for s in sites if s.op == "lif"]
    other = [(s, t) for s, t in zip(sites, totals) if s.op != "lif"]
    layers = pd.DataFrame([_layer_row(s, host[s.name], T, t) for s, t in other], columns=None)
    if layers.empty:
        layers = pd.DataFrame(
            columns=["name", "op", "role", "static", "input", "rate_source", "in_numel", *LAYER_COUNTERS]
        )
    lif_df = pd.DataFrame(
        [_lif_row(s, host[s.name], T, n) for s in lif],
        columns=[
            "name",
            "role",
            "neuron",
            "shape",
            "neurons",
            "spikes",
            "neuron_steps",
            "firing_rate",
            "per_step_rate",
            "output",
        ],
    )
    per_step = _per_step(sites, counts, T)
    facts = LayerFacts.of(layers)  # what every pricing below reads of the layer table, extracted once
    pricing = dict(T=T, num_images=n, reuse_static=reuse_static, fold_bn=fold_bn, integer_pricing=integer_pricing)
    layers = price_layers(layers, lif_df, table, **pricing, facts=facts)
    lif_df = price_neurons(lif_df, table)
    energy = energy_summary(layers, lif_df, table, **pricing, facts=facts)
    energy["memory"] = memory_summary(layers, lif_df, table, T=T, num_images=n, reuse_static=reuse_static, facts=facts)
    mismatch = layers["input_mismatch"].to_numpy().astype(bool) if "input_mismatch" in layers else None
    mismatches = (
        layers.loc[mismatch, ["name", "declared_input", "input"]].to_dict(orient="records")
        if mismatch is not None and mismatch.any()
        else []
    )
    checks = {
        "input_kind_mismatches": mismatches,
        "paper_le_complete": energy["complete"]["total_pj"] >= energy["paper"]["total_pj"],
    }
    coverage = counter.coverage() if hasattr(counter, "coverage") else {}
    unsupported = counter.unsupported_rows() if hasattr(counter, "unsupported_rows") else []
    return Report(
        T=T,
        num_images=n,
        layers=layers,
        lif_sites=lif_df,
        per_step=per_step,
        energy=energy,
        provenance=dict(provenance or {}),
        checks=checks,
        coverage=coverage,
        unsupported=unsupported,
    )


def device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
