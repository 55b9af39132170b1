"""Memory-aware energy of a whole report, the equivalent ANN, and lower/upper bounds (pure pandas).

Built on :mod:`gac_analysis.energy.memory` (Lemaire et al., ICONIP 2022, with the corrected
fully connected form). From the exact per-layer counts of a report it derives each synaptic
layer's traffic (input events theta_in, output spikes theta_out, shapes) and prices

- **compute-only** energy: arithmetic + addressing of the Lemaire model;
- **memory-aware** energy: the same plus every memory access, SRAM cost from the table's fit;

for the SNN and for the equivalent ANN (the same layers, dense, run once on real inputs), and
reports the SNN / ANN ratio under both.

Layers with real-valued inputs (the stem, GAC's SCA and TA MLP, membrane shortcuts, the classifier
on pooled spikes) are priced as dense ANN layers inside the SNN; those declared time-invariant run
once, the others once per time step.

Bounds on the complete energy with memory (all pJ, totals over images):

- lower: BN folded into the conv, time-invariant work counted once, weights in on-chip SRAM;
- upper: BN unfolded, every step recomputed (no static reuse), weights fetched from DRAM on every
  access.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gac_analysis.energy.conventions import (
    SYNAPTIC,
    LayerFacts,
    column_sum,
    complete_energy,
    neuron_energy,
    neuron_total,
)
from gac_analysis.energy.memory import LayerTraffic, TrafficColumns, check_traffic_row, estimate_columns
from gac_analysis.energy.tables import EnergyTable
from gac_analysis.energy.units import PJ_PER_MJ

BOUND_ASSUMPTIONS = {
    "lower": [
        "batch norm folded into the conv weights (1 add per element for the folded bias)",
        "time-invariant work (stem on the repeated image, SCA, TA pooling) counted once",
        "weights in on-chip SRAM (cost from the table's SRAM fit)",
    ],
    "upper": [
        "batch norm unfolded (1 multiply + 1 add per element)",
        "every time step recomputed, including time-invariant work",
        "weights fetched from DRAM on every access (table's DRAM cost per access)",
    ],
}


def _as_2d(op: str, c_out: int, out_shape: list[int], kernel, stride) -> tuple[tuple, tuple, tuple]:
    """``(out_shape, kernel, stride)`` of a conv row in the memory model's 2-D form: a conv1d is a conv2d of
    height 1 (kernel ``(1, k)``, output ``(C, 1, L)``: exact); a conv3d folds its depth into the height
    (kernel ``(kd*kh, kw)``, stride ``(sd*sh, sw)``, output ``(C, D*H, W)``: weights, outputs and events are
    exact, and so is the window overlap when the depth and height strides are 1, e.g. GAC's TA MLP, a
    1x1x1 conv over ``[T, 1, 1, 1]``)."""
    nd = {"conv1d": 1, "conv2d": 2, "conv3d": 3}[op]
    k = _dims(kernel, nd)
    s = _dims(stride, nd)
    spatial = out_shape[-nd:] if len(out_shape) > nd else [1] * nd
    if nd == 1:
        return (c_out, 1, spatial[0]), (1, k[0]), (1, s[0])
    if nd == 3:
        return (c_out, spatial[0] * spatial[1], spatial[2]), (k[0] * k[1], k[2]), (s[0] * s[1], s[2])
    return (c_out, *spatial), (k[0], k[1]), (s[0], s[1])


def _dims(value, nd: int) -> list[int]:
    """A report's kernel or stride as ``nd`` ints (missing: 1s; an int: repeated)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return [1] * nd
    dims = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return dims * nd if len(dims) == 1 else dims[-nd:]


def _traffic_rows(layers: pd.DataFrame, lif_sites: pd.DataFrame, *, T: int, num_images: int) -> list[tuple[dict, bool]]:
    """One ``(LayerTraffic keyword arguments, static)`` per synaptic layer of a report, in row order, per image
    (events averaged), each checked as LayerTraffic checks it (:func:`check_traffic_row`)."""
    ops = layers["op"].tolist()
    synaptic = [i for i, op in enumerate(ops) if op in SYNAPTIC]
    if not synaptic:
        return []
    spikes = dict(zip(lif_sites["name"].tolist(), lif_sites["spikes"].tolist())) if len(lif_sites) else {}
    n = max(num_images, 1)
    keys = ("name", "out_shape", "c_in", "c_out", "kernel", "stride", "in_numel", "input_nnz", "has_bias", "input")
    col = {key: layers[key].tolist() for key in (*keys, "static")}
    neurons_of = layers["output_neurons"].tolist() if "output_neurons" in layers.columns else [None] * len(layers)
    out = []
    for i in synaptic:
        op = ops[i]
        linear = op == "linear"
        c_out = int(col["c_out"][i])
        if linear:
            out_shape, kernel, stride = (c_out,), (1, 1), (1, 1)
        else:
            out_shape, kernel, stride = _as_2d(
                op, c_out, [int(v) for v in col["out_shape"][i]], col["kernel"][i], col["stride"][i]
            )
        neurons = neurons_of[i]
        row = {
            "name": col["name"][i],
            "kind": "linear" if linear else "conv",
            "T": T,
            "c_in": int(col["c_in"][i]),
            "c_out": c_out,
            "kernel": kernel,
            "stride": stride,
            "out_shape": out_shape,
            "in_numel": int(col["in_numel"][i]),
            "theta_in": col["input_nnz"][i] / n,
            "theta_out": spikes.get(neurons, 0) / n if isinstance(neurons, str) else 0.0,
            "has_bias": bool(col["has_bias"][i]),
            "spiking": col["input"][i] == "binary",
        }
        out.append((check_traffic_row(row), bool(col["static"][i])))
    return out


def layer_traffic(
    layers: pd.DataFrame, lif_sites: pd.DataFrame, *, T: int, num_images: int
) -> list[tuple[LayerTraffic, bool]]:
    """One ``(LayerTraffic, static)`` per synaptic layer of a report, per image (events averaged)."""
    return [
        (LayerTraffic(**row), static) for row, static in _traffic_rows(layers, lif_sites, T=T, num_images=num_images)
    ]


def _traffic_columns(layers: pd.DataFrame, lif_sites: pd.DataFrame, *, T: int, num_images: int):
    """(:class:`TrafficColumns`, static flags) of the synaptic layers of a report, per image."""
    rows = _traffic_rows(layers, lif_sites, T=T, num_images=num_images)
    return TrafficColumns.of([row for row, _ in rows], T=T), np.array([static for _, static in rows], dtype=bool)


def _price(
    traffic: TrafficColumns, static: np.ndarray, table: EnergyTable, *, placement: str, reuse_static: bool, ann: bool
) -> dict[str, np.ndarray]:
    """Per synaptic layer (pJ per image): ``compute_pj`` (arithmetic + addressing), ``memory_pj``, ``total_pj``
    and ``memory_accesses``, each times the layer's runs per inference: a dense layer inside the SNN runs once
    if time-invariant (``reuse_static``), else once per step; spiking layers and the ANN run once."""
    est = estimate_columns(traffic, table, placement=placement, ann=ann)
    repeat = np.where(ann | traffic.spiking | (static & reuse_static), 1, traffic.T)
    return {
        "compute_pj": (est["arithmetic_pj"] + est["addressing_pj"]) * repeat,
        "memory_pj": est["memory_pj"] * repeat,
        "total_pj": est["total_pj"] * repeat,
        "memory_accesses": est["memory_accesses"] * repeat,
    }


def memory_summary(
    layers: pd.DataFrame,
    lif_sites: pd.DataFrame,
    table: EnergyTable,
    *,
    T: int,
    num_images: int,
    reuse_static: bool = True,
    facts: LayerFacts | None = None,
) -> dict:
    """Compute-only vs memory-aware energy of the SNN and its equivalent ANN (``per_image_pj``: pJ per
    image), their ratios, bounds on (complete + memory) energy per image, and per-layer rows (``layers``:
    pJ totals over the images, like every other per-layer energy of a report). JSON-ready. ``facts``:
    ``LayerFacts.of(layers)`` when the caller has it already."""
    traffic, static = _traffic_columns(layers, lif_sites, T=T, num_images=num_images)
    snn_pricings: dict = {}

    def snn_priced(placement: str, reuse: bool) -> dict:
        """The SNN's layers priced with weights in ``placement`` and static reuse ``reuse``, once per option
        pair (the report's own pricing serves a bound with the same options)."""
        if (placement, reuse) not in snn_pricings:
            snn_pricings[placement, reuse] = _price(
                traffic, static, table, placement=placement, reuse_static=reuse, ann=False
            )
        return snn_pricings[placement, reuse]

    snn = snn_priced("sram", reuse_static)
    ann = _price(traffic, static, table, placement="sram", reuse_static=True, ann=True)
    n = max(num_images, 1)

    def tot(priced, key):
        return float(column_sum(priced[key]))

    res = {
        "model": "Lemaire et al., ICONIP 2022 (arXiv 2210.13107), fully connected form corrected",
        "precision": table.precision,
        "word_bits": table.word_bits,
        "per_image_pj": {
            "snn_compute": tot(snn, "compute_pj"),
            "snn_memory": tot(snn, "memory_pj"),
            "snn_total": tot(snn, "total_pj"),
            "ann_compute": tot(ann, "compute_pj"),
            "ann_memory": tot(ann, "memory_pj"),
            "ann_total": tot(ann, "total_pj"),
        },
    }
    p = res["per_image_pj"]
    res["snn_over_ann"] = {
        "compute_only": p["snn_compute"] / p["ann_compute"] if p["ann_compute"] else None,
        "memory_aware": p["snn_total"] / p["ann_total"] if p["ann_total"] else None,
    }
    # per-layer rows follow the report's convention: pJ totals over the analysed images
    per_layer = zip(
        traffic.names,
        (snn["compute_pj"] * n).tolist(),
        (snn["memory_pj"] * n).tolist(),
        (ann["compute_pj"] * n).tolist(),
        (ann["memory_pj"] * n).tolist(),
    )
    res["layers"] = [
        {"name": name, "compute_pj": c, "memory_pj": m, "ann_compute_pj": ac, "ann_memory_pj": am}
        for name, c, m, ac, am in per_layer
    ]
    facts = facts if facts is not None else LayerFacts.of(layers)
    res["bounds"] = _bounds(facts, lif_sites, table, snn_priced, T=T, num_images=n)
    return res


def _bounds(facts: LayerFacts, lif_sites, table, snn_priced, *, T: int, num_images: int) -> dict:
    """Lower and upper bounds on (complete + memory) energy per image (:data:`BOUND_ASSUMPTIONS`): the complete
    convention (integer inputs priced as MACs) and the SNN's memory traffic under each bound's options
    (``snn_priced(placement, reuse_static)``: the per-layer pricing of :func:`_price`)."""
    neuron_pj = neuron_total(neuron_energy(lif_sites, table)["complete_pj"])
    out = {}
    for name, fold, reuse, placement in (("lower", True, True, "sram"), ("upper", False, False, "dram")):
        layers_pj = complete_energy(facts, table, T=T, reuse_static=reuse, fold_bn=fold, integer_pricing="mac")
        compute = float(column_sum(layers_pj["complete_pj"]) + neuron_pj) / num_images
        memory = float(column_sum(snn_priced(placement, reuse)["memory_pj"]))
        out[name] = {
            "per_image_pj": compute + memory,
            "per_image_mj": (compute + memory) / PJ_PER_MJ,
            "compute_pj": compute,
            "memory_pj": memory,
            "assumptions": BOUND_ASSUMPTIONS[name],
        }
    return out
