"""The report is priced with column operations; here it is held to the plain per-row pandas formulation
(the code it replaced, kept below as the reference), bit for bit: exact equality and identical JSON text,
never approx. Models: the golden GAC network (stem, attention, time-invariant work, head) and a small
SEW-style network (spike maps added before a conv: integer-valued inputs; a conv called on the image and on
spikes: a ``mixed`` input), over every energy table and pricing option."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gac_analysis.accounting import count_images
from gac_analysis.accounting.report import STEP_COUNTERS, build_report
from gac_analysis.energy.conventions import (
    DIFFERENCE_GROUPS,
    OP_CATEGORIES,
    SYNAPTIC,
    column_sum,
    energy_summary,
    paper_mac_layers,
    price_layers,
    price_neurons,
    with_columns,
)
from gac_analysis.energy.memory import (
    LayerTraffic,
    TrafficColumns,
    ann_equivalent,
    check_traffic_row,
    estimate_columns,
    estimate_layer,
)
from gac_analysis.energy.network_memory import layer_traffic, memory_summary
from gac_analysis.energy.tables import load_energy_table
from gac_analysis.energy.units import PJ_PER_MJ
from gac_analysis.errors import EnergyTableError
from gac_analysis.models import load_model

TABLES = {name: load_energy_table(name) for name in ("45nm-fp32", "45nm-fp16", "45nm-int8", "45nm-int32")}
OPTIONS = list(itertools.product(TABLES, (False, True), (True, False), ("mac", "k_ac")))


# --------------------------------------------------------------------------- the reference: per-row pandas


def ref_category(row) -> str:
    if row["op"] in SYNAPTIC:
        return "synaptic"
    return OP_CATEGORIES.get(row["op"], "other")  # the mapping is a fact; the row-wise form is the reference


def ref_difference_group(row) -> str:
    if row["role"] == "attention":
        return "attention"
    if row["op"] in SYNAPTIC:
        if row["role"] == "encoder":
            return "stem"
        return {"binary": "exact_acs", "integer": "integer_inputs"}.get(row["input"], "real_inputs")
    return {"batchnorm": "batchnorm", "add": "residual", "avgpool": "pooling", "maxpool": "pooling"}.get(
        row["op"], "other"
    )


def ref_price_layers(layers, lif_sites, table, *, T, num_images, reuse_static, fold_bn, integer_pricing):
    df = layers.copy()
    scale = pd.Series(np.where(df["static"].astype(bool), 1.0 / T, 1.0) if reuse_static else 1.0, index=df.index)
    by_name = dict(zip(lif_sites["name"], lif_sites["firing_rate"]))
    observed = df["input_nnz"] / (df["in_numel"].clip(lower=1) * T * max(num_images, 1))
    declared = df["rate_source"].map(lambda s: by_name.get(s, np.nan) if isinstance(s, str) else np.nan)
    df["fr_in"] = declared.fillna(observed).astype(float)
    synaptic = df["op"].isin(SYNAPTIC)
    undeclared_real = df["declared_input"].isna() & (df["input"] == "real") & df["role"].isin(["backbone", "head"])
    as_mac = synaptic & ((df["role"] == "encoder") | undeclared_real)
    stem = as_mac & (df["role"] == "encoder")
    spiking = synaptic & df["role"].isin(["backbone", "head"]) & ~as_mac
    df["approx_acs"] = np.where(spiking, df["fr_in"] * df["dense_macs"], 0.0)
    df["paper_pj"] = (
        np.where(stem, df["dense_macs"] / T * table.mac, 0.0)
        + np.where(as_mac & ~stem, df["dense_macs"] * table.mac, 0.0)
        + np.where(spiking, df["approx_acs"] * table.ac, 0.0)
    )
    as_macs = integer_pricing == "mac"
    df["integer_pj"] = (df["integer_ops"] * table.mac if as_macs else df["integer_value_ops"] * table.ac) * scale
    df["mac_pj"] = df["effective_macs"] * table.mac * scale + (df["integer_pj"] if as_macs else 0.0)
    df["ac_pj"] = df["acs"] * table.ac * scale + (0.0 if as_macs else df["integer_pj"])
    df["bias_pj"] = df["bias_adds"] * table.add * scale
    is_bn = df["op"] == "batchnorm"
    bn_full = df["muls"] * table.mul + df["adds"] * table.add
    df["bn_pj"] = np.where(is_bn, (df["adds"] * table.add) if fold_bn else bn_full, 0.0) * scale
    is_pool = df["op"].isin(["avgpool", "maxpool"])
    ew = (
        df["muls"] * table.mul
        + df["adds"] * table.add
        + df["compares"] * table.compare
        + (df["sigmoids"] + df["activations"]) * (table.mul + table.add + table.compare)
    )
    df["pooling_pj"] = np.where(is_pool, ew, 0.0) * scale
    df["elementwise_pj"] = np.where(~is_pool & ~is_bn & ~synaptic, ew, 0.0) * scale
    df["complete_pj"] = df[["mac_pj", "ac_pj", "bias_pj", "bn_pj", "pooling_pj", "elementwise_pj"]].sum(axis=1)
    df["category"] = df.apply(ref_category, axis=1)
    df["difference_group"] = df.apply(ref_difference_group, axis=1)
    return df


def ref_price_neurons(lif_sites, table):
    df = lif_sites.copy()
    df["update_pj"] = df["neuron_steps"] * (table.mul + table.add + table.compare)
    df["reset_pj"] = df["spikes"] * table.add
    df["complete_pj"] = df["update_pj"] + df["reset_pj"]
    df["paper_pj"] = 0.0
    return df


def ref_complete_total(lp, npd) -> float:
    return float(lp["complete_pj"].sum() + (float(npd["complete_pj"].sum()) if len(npd) else 0.0))


def ref_energy_parts(lp, npd, num_images) -> dict:
    """The sums of energy_summary: both conventions, by class, by role, the difference's components."""
    neuron_pj = float(npd["complete_pj"].sum()) if len(npd) else 0.0
    stem = paper_mac_layers(lp)
    by_role = lp.groupby("role")["complete_pj"].sum().to_dict()
    for role, e in (npd.groupby("role")["complete_pj"].sum().to_dict() if len(npd) else {}).items():
        by_role[role] = by_role.get(role, 0.0) + e
    diff = (lp["complete_pj"] - lp["paper_pj"]).groupby(lp["difference_group"]).sum().to_dict()
    diff["neurons"] = diff.get("neurons", 0.0) + neuron_pj
    return {
        "paper": float(lp["paper_pj"].sum()),
        "stem_mac_pj": float(lp.loc[stem, "paper_pj"].sum()),
        "spiking_ac_pj": float(lp.loc[~stem, "paper_pj"].sum()),
        "complete": float(lp["complete_pj"].sum() + neuron_pj),
        "by_class": [float(lp[c].sum()) for c in ("mac_pj", "ac_pj", "bias_pj", "bn_pj", "elementwise_pj")],
        "pooling_pj": float(lp["pooling_pj"].sum()),
        "neuron_pj": neuron_pj,
        "by_role": {k: float(v) for k, v in by_role.items()},
        "integer_inputs_pj": float(lp["integer_pj"].sum()),
        "components": {DIFFERENCE_GROUPS[k]: float(v) for k, v in diff.items() if k in DIFFERENCE_GROUPS},
        "per_image_mj": float(lp["complete_pj"].sum() + neuron_pj) / max(num_images, 1) / PJ_PER_MJ,
    }


def ref_memory(layers, lif_sites, table, *, T, num_images, reuse_static) -> dict:
    traffic = layer_traffic(layers, lif_sites, T=T, num_images=num_images)

    def priced(placement, reuse, ann):
        rows = []
        for lt, static in traffic:
            layer = ann_equivalent(lt) if ann else lt
            est = estimate_layer(layer, table, placement=placement)
            repeat = 1 if (ann or layer.spiking or (static and reuse)) else T
            rows.append(
                {
                    "name": lt.name,
                    "compute_pj": (est.arithmetic_pj + est.addressing_pj) * repeat,
                    "memory_pj": est.memory_pj * repeat,
                    "total_pj": est.total_pj * repeat,
                }
            )
        return pd.DataFrame(rows, columns=["name", "compute_pj", "memory_pj", "total_pj"])

    snn, ann = priced("sram", reuse_static, False), priced("sram", True, True)
    n = max(num_images, 1)
    bounds = {}
    for name, fold, reuse, placement in (("lower", True, True, "sram"), ("upper", False, False, "dram")):
        lp = ref_price_layers(
            layers, lif_sites, table, T=T, num_images=n, reuse_static=reuse, fold_bn=fold, integer_pricing="mac"
        )
        compute = ref_complete_total(lp, ref_price_neurons(lif_sites, table)) / n
        memory = float(priced(placement, reuse, False)["memory_pj"].sum())
        bounds[name] = [compute + memory, (compute + memory) / PJ_PER_MJ, compute, memory]
    return {
        "per_image_pj": [float(df[c].sum()) for df in (snn, ann) for c in ("compute_pj", "memory_pj", "total_pj")],
        "layers": [
            [r["name"], r["compute_pj"] * n, r["memory_pj"] * n, a["compute_pj"] * n, a["memory_pj"] * n]
            for (_, r), (_, a) in zip(snn.iterrows(), ann.iterrows())
        ],
        "bounds": bounds,
    }


def ref_per_step(counter, T) -> pd.DataFrame:
    from gac_analysis.accounting.report import host_counters

    rows = []
    for site in counter.sites.values():
        c = host_counters(site)
        slots = {k: c.get(k, [0] * (T + 1)) for k in STEP_COUNTERS}
        kind = "lif" if site.op == "lif" else "layer"
        for t in [T] if site.time == "mixed" else range(T + 1):
            values = {k: int(v[t]) for k, v in slots.items()}
            if t == T and not any(values.values()):
                continue
            rows.append({"name": site.name, "kind": kind, "role": site.role, "step": t if t < T else -1, **values})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- models


class SewBlock(nn.Module):
    """conv -> LIF twice, the two spike maps added (values 0, 1, 2) into a conv; the first conv is called
    again on spikes (observed input ``mixed``); a linear head on the spikes."""

    def __init__(self):
        from spikingjelly.activation_based import neuron

        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.lif1, self.lif2, self.lif3 = (neuron.LIFNode(v_threshold=v) for v in (0.2, 0.2, 0.01))
        self.bn = nn.BatchNorm2d(3)
        self.mix = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        a = self.lif1(self.conv(x))
        b = self.lif2(self.bn(self.conv(a)))
        s = self.lif3(self.pool(self.mix(a + b)))
        return self.fc(s.flatten(1))


@pytest.fixture(scope="module")
def counters(golden_ckpt, golden_input):
    torch.manual_seed(0)
    sew = SewBlock().eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2
    return {
        "golden": count_images(load_model(golden_ckpt), golden_input),
        "sew": count_images(sew, images, T=3),
    }


# --------------------------------------------------------------------------- the tests


def unpriced_tables(report):
    """The report's layer and LIF tables as counted, before pricing added its columns."""
    layers = report.layers.iloc[:, : list(report.layers.columns).index("fr_in")]
    return layers, report.lif_sites.drop(columns=["update_pj", "reset_pj", "complete_pj", "paper_pj"])


@pytest.mark.parametrize("model", ["golden", "sew"])
def test_report_equals_the_per_row_formulation(counters, model):
    counter = counters[model]
    T, n = counter.T, counter.num_images
    inputs = set(build_report(counter, table=TABLES["45nm-fp32"]).layers["input"].dropna())
    if model == "sew":
        assert {"integer", "mixed", "binary"} <= inputs  # the kinds this model is here for
    per_step = build_report(counter, table=TABLES["45nm-fp32"]).per_step
    pd.testing.assert_frame_equal(per_step, ref_per_step(counter, T), check_exact=True)
    for name, fold, reuse, pricing in OPTIONS:
        table = TABLES[name]
        report = build_report(counter, table=table, fold_bn=fold, reuse_static=reuse, integer_pricing=pricing)
        unpriced, lif = unpriced_tables(report)
        lp = ref_price_layers(
            unpriced, lif, table, T=T, num_images=n, reuse_static=reuse, fold_bn=fold, integer_pricing=pricing
        )
        npd = ref_price_neurons(lif, table)
        pd.testing.assert_frame_equal(report.layers, lp, check_exact=True)
        pd.testing.assert_frame_equal(report.lif_sites, npd, check_exact=True)
        e, ref = report.energy, ref_energy_parts(lp, npd, n)
        got = {
            "paper": e["paper"]["total_pj"],
            "stem_mac_pj": e["paper"]["breakdown"]["stem_mac_pj"],
            "spiking_ac_pj": e["paper"]["breakdown"]["spiking_ac_pj"],
            "complete": e["complete"]["total_pj"],
            "by_class": [e["complete"]["breakdown"][k] for k in ("mac_pj", "ac_pj", "bias_pj", "batchnorm_pj")]
            + [e["complete"]["breakdown"]["elementwise_pj"]],
            "pooling_pj": e["complete"]["breakdown"]["pooling_pj"],
            "neuron_pj": e["complete"]["breakdown"]["neuron_pj"],
            "by_role": e["complete"]["by_role_pj"],
            "integer_inputs_pj": e["complete"]["integer_inputs_pj"],
            "components": e["difference"]["components_pj"],
            "per_image_mj": e["complete"]["per_image_mj"],
        }
        assert json.dumps(got) == json.dumps(ref)  # same keys in the same order, same digits
        m = e["memory"]
        got_memory = {
            "per_image_pj": list(m["per_image_pj"].values()),
            "layers": [list(r.values()) for r in m["layers"]],
            "bounds": {
                k: [b["per_image_pj"], b["per_image_mj"], b["compute_pj"], b["memory_pj"]]
                for k, b in m["bounds"].items()
            },
        }
        ref_mem = ref_memory(unpriced, lif, table, T=T, num_images=n, reuse_static=reuse)
        assert json.dumps(got_memory) == json.dumps(ref_mem)


def test_public_pricing_functions_keep_their_frames(counters):
    """price_layers / price_neurons / energy_summary / memory_summary called on their own (no shared facts)
    give what the report holds."""
    counter = counters["golden"]
    report = build_report(counter, table=TABLES["45nm-int8"], fold_bn=True)
    layers, lif = unpriced_tables(report)
    kw = {"T": counter.T, "num_images": counter.num_images}
    lp = price_layers(layers, lif, TABLES["45nm-int8"], fold_bn=True, **kw)
    npd = price_neurons(lif, TABLES["45nm-int8"])
    pd.testing.assert_frame_equal(lp, report.layers, check_exact=True)
    pd.testing.assert_frame_equal(npd, report.lif_sites, check_exact=True)
    summary = energy_summary(lp, npd, TABLES["45nm-int8"], fold_bn=True, **kw)
    summary["memory"] = memory_summary(lp, npd, TABLES["45nm-int8"], **kw)
    assert json.dumps(summary) == json.dumps(report.energy)
    # pricing an already priced table replaces its columns in place, as assigning them does
    again = price_layers(lp, lif, TABLES["45nm-fp32"], **kw)
    assert list(again.columns) == list(lp.columns)
    pd.testing.assert_frame_equal(again, price_layers(layers, lif, TABLES["45nm-fp32"], **kw), check_exact=True)


def random_traffic(rng, T: int) -> dict:
    """LayerTraffic keyword arguments of one random conv or linear layer (normalised form)."""
    c_in, c_out = int(rng.integers(1, 300)), int(rng.integers(1, 300))
    if rng.random() < 0.3:
        kind, kernel, stride, out_shape = "linear", (1, 1), (1, 1), (c_out,)
    else:
        kernel = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        kind, out_shape = "conv", (c_out, int(rng.integers(1, 64)), int(rng.integers(1, 64)))
    in_numel = c_in * int(rng.integers(1, 4096))
    return {
        "name": "layer",
        "kind": kind,
        "T": T,
        "c_in": c_in,
        "c_out": c_out,
        "kernel": kernel,
        "stride": stride,
        "out_shape": out_shape,
        "in_numel": in_numel,
        "theta_in": float(rng.integers(0, in_numel * T + 1)) / int(rng.integers(1, 9)),
        "theta_out": float(rng.integers(0, math.prod(out_shape) * T + 1)) / int(rng.integers(1, 9)),
        "has_bias": bool(rng.random() < 0.5),
        "spiking": bool(rng.random() < 0.7),
    }


@pytest.mark.parametrize("placement", ["sram", "dram"])
@pytest.mark.parametrize("ann", [False, True])
def test_estimate_columns_is_estimate_layer_of_each_layer(placement, ann):
    rng = np.random.default_rng(7)
    rows = [check_traffic_row(random_traffic(rng, T=4)) for _ in range(300)]
    for table in TABLES.values():
        columns = estimate_columns(TrafficColumns.of(rows, T=4), table, placement=placement, ann=ann)
        for i, row in enumerate(rows):
            lt = LayerTraffic(**row)
            est = estimate_layer(ann_equivalent(lt) if ann else lt, table, placement=placement).to_dict()
            for key, values in columns.items():
                assert values[i] == est[key], (key, row)


@pytest.mark.parametrize(
    "change", [{"c_in": 0}, {"in_numel": -3}, {"theta_in": -1.0}, {"theta_out": math.nan}, {"T": 0}]
)
def test_check_traffic_row_raises_the_layer_traffic_error(change):
    row = {**random_traffic(np.random.default_rng(1), T=2), **change}
    with pytest.raises(EnergyTableError) as expected:
        LayerTraffic(**row)
    with pytest.raises(EnergyTableError) as got:
        check_traffic_row(row)
    assert str(got.value) == str(expected.value)


def test_column_sum_is_series_sum():
    rng = np.random.default_rng(3)
    for _ in range(500):
        values = rng.random(int(rng.integers(0, 400))) * 10.0 ** rng.integers(-3, 12)
        values[rng.random(len(values)) < 0.1] = np.nan
        got, want = column_sum(values), pd.Series(values).sum()
        assert got == want and type(got) is type(want)
    assert column_sum(np.array([], dtype=object)) == pd.Series([], dtype=object).sum()


def test_with_columns_is_assignment():
    df = pd.DataFrame({"a": [1, 2, 3], "s": ["x", None, "z"]})
    columns = {"f": np.array([0.5, 1.5, 2.5]), "g": np.arange(3.0), "t": ["p", "q", "r"], "h": np.zeros(3)}
    want = df.copy()
    for name, values in columns.items():
        want[name] = values
    pd.testing.assert_frame_equal(with_columns(df, columns), want, check_exact=True)
    assert list(df.columns) == ["a", "s"]  # unchanged
