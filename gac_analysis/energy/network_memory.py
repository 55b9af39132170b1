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

import pandas as pd

from gac_analysis.energy.conventions import SYNAPTIC, energy_summary, price_layers, price_neurons
from gac_analysis.energy.memory import LayerTraffic, ann_equivalent, estimate_layer
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


def _pair(value, default=(1, 1)) -> tuple[int, int]:
    """A (height, width) pair from a report's kernel/stride: an int (square), a list of ints (the last two)
    or missing (``default``)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return default
    dims = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return (dims[-2], dims[-1]) if len(dims) >= 2 else (dims[0], dims[0])


def layer_traffic(
    layers: pd.DataFrame, lif_sites: pd.DataFrame, *, T: int, num_images: int
) -> list[tuple[LayerTraffic, bool]]:
    """One ``(LayerTraffic, static)`` per synaptic layer of a report, per image (events averaged)."""
    spikes = dict(zip(lif_sites["name"], lif_sites["spikes"])) if len(lif_sites) else {}
    n = max(num_images, 1)
    out = []
    for _, r in layers[layers["op"].isin(SYNAPTIC)].iterrows():
        linear = r["op"] == "linear"
        out_shape = tuple(int(v) for v in r["out_shape"])
        c_out = int(r["c_out"])
        if not linear:
            out_shape = (c_out, *(out_shape[-2:] if len(out_shape) >= 3 else (1, 1)))
            if r["op"] == "conv3d":  # TA MLP: a 1x1x1 conv over a [T, 1, 1, 1] vector
                out_shape = (c_out, 1, 1)
        else:
            out_shape = (c_out,)
        neurons = r.get("output_neurons")
        theta_out = spikes.get(neurons, 0) / n if isinstance(neurons, str) else 0.0
        lt = LayerTraffic(
            name=r["name"],
            kind="linear" if linear else "conv",
            T=T,
            c_in=int(r["c_in"]),
            c_out=c_out,
            kernel=(1, 1) if linear else _pair(r["kernel"]),
            stride=(1, 1) if linear else _pair(r["stride"]),
            out_shape=out_shape,
            in_numel=int(r["in_numel"]),
            theta_in=r["input_nnz"] / n,
            theta_out=theta_out,
            has_bias=bool(r["has_bias"]),
            spiking=r["input"] == "binary",
        )
        out.append((lt, bool(r["static"])))
    return out


def _price(traffic, table: EnergyTable, *, placement: str, reuse_static: bool, ann: bool, T: int) -> pd.DataFrame:
    rows = []
    for lt, static in traffic:
        layer = ann_equivalent(lt) if ann else lt
        est = estimate_layer(layer, table, placement=placement)
        # a dense layer inside the SNN runs once if time-invariant, else once per step; the ANN runs once
        repeat = 1 if (ann or layer.spiking or (static and reuse_static)) else T
        rows.append(
            {
                "name": lt.name,
                "spiking": layer.spiking,
                "repeat": repeat,
                "compute_pj": (est.arithmetic_pj + est.addressing_pj) * repeat,
                "memory_pj": est.memory_pj * repeat,
                "total_pj": est.total_pj * repeat,
                "memory_accesses": est.memory_accesses * repeat,
            }
        )
    return pd.DataFrame(
        rows, columns=["name", "spiking", "repeat", "compute_pj", "memory_pj", "total_pj", "memory_accesses"]
    )


def memory_summary(
    layers: pd.DataFrame,
    lif_sites: pd.DataFrame,
    table: EnergyTable,
    *,
    T: int,
    num_images: int,
    reuse_static: bool = True,
) -> dict:
    """Compute-only vs memory-aware energy of the SNN and its equivalent ANN (``per_image_pj``: pJ per
    image), their ratios, bounds on (complete + memory) energy per image, and per-layer rows (``layers``:
    pJ totals over the images, like every other per-layer energy of a report). JSON-ready."""
    traffic = layer_traffic(layers, lif_sites, T=T, num_images=num_images)
    snn = _price(traffic, table, placement="sram", reuse_static=reuse_static, ann=False, T=T)
    ann = _price(traffic, table, placement="sram", reuse_static=True, ann=True, T=T)
    n = max(num_images, 1)

    def tot(df, col):
        return float(df[col].sum())

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
    res["layers"] = [
        {
            "name": r["name"],
            "compute_pj": r["compute_pj"] * n,
            "memory_pj": r["memory_pj"] * n,
            "ann_compute_pj": a["compute_pj"] * n,
            "ann_memory_pj": a["memory_pj"] * n,
        }
        for (_, r), (_, a) in zip(snn.iterrows(), ann.iterrows())
    ]
    res["bounds"] = _bounds(layers, lif_sites, table, traffic, T=T, num_images=n)
    return res


def _bounds(layers, lif_sites, table, traffic, *, T: int, num_images: int) -> dict:
    out = {}
    for name, fold, reuse, placement in (("lower", True, True, "sram"), ("upper", False, False, "dram")):
        priced = price_layers(layers, lif_sites, table, T=T, num_images=num_images, reuse_static=reuse, fold_bn=fold)
        neurons = price_neurons(lif_sites, table)
        compute = (
            energy_summary(priced, neurons, table, T=T, num_images=num_images, reuse_static=reuse, fold_bn=fold)[
                "complete"
            ]["total_pj"]
            / num_images
        )
        memory = float(
            _price(traffic, table, placement=placement, reuse_static=reuse, ann=False, T=T)["memory_pj"].sum()
        )
        out[name] = {
            "per_image_pj": compute + memory,
            "per_image_mj": (compute + memory) / PJ_PER_MJ,
            "compute_pj": compute,
            "memory_pj": memory,
            "assumptions": BOUND_ASSUMPTIONS[name],
        }
    return out
