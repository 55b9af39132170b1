"""Energy conventions: price operation counts, in the paper's convention and a complete one.

Pure pandas: the inputs are the count tables of a report (see ``gac_analysis.accounting.report``),
never torch modules. All energies are in pJ, totals over the analysed images, unless a name says
``per_image`` (then mJ per image).

**paper** (GAC and its peers: Spikformer, Spike-driven Transformer, MS-ResNet, syops users)::

    E = E_MAC * MAC(stem conv, counted once) + E_AC * sum_l fr_in(l) * T * denseMAC(l)

over the spiking conv/linear layers (roles backbone and head), where ``fr_in(l)`` is the firing
rate of the LIF feeding layer ``l`` (its ``rate_source``; where none is declared, the observed
fraction of non-zero inputs). GAC's attention (TA, SCA, sigmoid, gating) is not counted. On a model
that declares no input kinds (any network but this project's), a conv/linear whose input was observed
real-valued (the first layer on the image, linears on pooled values) is priced as the papers price
their first layer: ``E_MAC`` x its dense MACs (:func:`paper_mac_layers`).

**complete**: every operation of the inference:

- synaptic layers: exact ACs (binary input) x E_AC + exact effective MACs (real input) x E_MAC +
  bias adds x E_add;
- batch norm: 1 multiply + 1 add per element (``fold_bn=True``: folded into the conv weights, leaving
  1 add per element for the folded bias);
- LIF: per neuron and step a leak multiply, an input add and a threshold compare, plus one add-priced
  reset write per spike;
- residual and attention adds x E_add, gating multiplies x E_mul, ReLU compares x E_compare,
  sigmoid x (E_mul + E_add + E_compare) (a piecewise-linear hardware sigmoid; stated in reports),
  pooling adds/multiplies/compares;
- ``reuse_static=True`` (default): modules declared time-invariant (the stem on the repeated image,
  and GAC's SCA and TA pooling, which read the stem output) are counted once instead of T times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gac_analysis.energy.tables import EnergyTable
from gac_analysis.energy.units import PJ_PER_MJ
from gac_analysis.energy.units import SYNAPTIC_OPS as SYNAPTIC

SIGMOID_PRICING = "1 multiply + 1 add + 1 compare per evaluation (piecewise-linear hardware sigmoid)"
ACTIVATION_PRICING = (
    "GELU, tanh, exp (softmax), rsqrt (norms): 1 multiply + 1 add + 1 compare per evaluation "
    "(piecewise-linear hardware approximation, as the sigmoid)"
)

#: Pricing rules of synaptic ops on integer-valued, non-binary inputs (SEW ADD of two spike maps, spike sums):
#: ``mac``: one MAC per (non-zero input, weight) pair (syops' choice; an upper bound);
#: ``k_ac``: k ACs for an input of value k (the input decomposed into k spikes; a lower bound).
INTEGER_PRICING = {
    "mac": "integer-valued inputs: 1 MAC per (non-zero input, weight) pair",
    "k_ac": "integer-valued inputs: k ACs per (input of value k, weight) pair",
}


def check_integer_pricing(rule: str) -> str:
    """``rule`` when it is a known integer-input pricing rule, else a one-line error."""
    if rule not in INTEGER_PRICING:
        from gac_analysis.errors import GacError

        raise GacError(f"unknown integer pricing {rule!r}; use one of {', '.join(INTEGER_PRICING)}")
    return rule


#: Human-readable labels of the parts that make up (complete - paper).
DIFFERENCE_GROUPS = {
    "attention": "GAC attention (TA, SCA, sigmoid, gating)",
    "exact_acs": "exact ACs instead of fr x T x dense (binary-input layers)",
    "integer_inputs": "integer-valued inputs (e.g. SEW ADD) priced by the integer rule",
    "real_inputs": "real-valued inputs priced as MACs (membrane shortcuts, classifier)",
    "stem": "stem conv",
    "batchnorm": "batch norm",
    "neurons": "neuron updates (leak, integrate, compare, reset)",
    "residual": "residual adds",
    "pooling": "pooling",
    "other": "other elementwise",
}


def _static_scale(layers: pd.DataFrame, T: int, reuse_static: bool) -> pd.Series:
    if not reuse_static:
        return pd.Series(1.0, index=layers.index)
    return pd.Series(np.where(layers["static"].astype(bool), 1.0 / T, 1.0), index=layers.index)


def input_rates(layers: pd.DataFrame, lif_sites: pd.DataFrame, T: int, num_images: int) -> pd.Series:
    """fr_in of every layer: the declared feeding LIF's firing rate, else the observed non-zero input
    fraction ``input_nnz / (in_numel * T * images)`` (dimensionless, 0..1)."""
    by_name = dict(zip(lif_sites["name"], lif_sites["firing_rate"])) if len(lif_sites) else {}
    observed = layers["input_nnz"] / (layers["in_numel"].clip(lower=1) * T * max(num_images, 1))
    declared = layers["rate_source"].map(lambda s: by_name.get(s, np.nan) if isinstance(s, str) else np.nan)
    return declared.fillna(observed).astype(float)


def _category(row) -> str:
    op = row["op"]
    if op in SYNAPTIC:
        return "synaptic"
    return {
        "batchnorm": "batchnorm",
        "add": "add",
        "mul": "mul",
        "sigmoid": "sigmoid",
        "relu": "activation",
        "avgpool": "pooling",
        "maxpool": "pooling",
        "matmul": "matmul",
        "layernorm": "norm",
        "gelu": "activation",
        "tanh": "activation",
        "softmax": "activation",
    }.get(op, "other")


def _difference_group(row) -> str:
    if row["role"] == "attention":
        return "attention"
    op = row["op"]
    if op in SYNAPTIC:
        if row["role"] == "encoder":
            return "stem"
        return {"binary": "exact_acs", "integer": "integer_inputs"}.get(row["input"], "real_inputs")
    return {"batchnorm": "batchnorm", "add": "residual", "avgpool": "pooling", "maxpool": "pooling"}.get(op, "other")


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A count column, zeros where the table has none (reports written before the column existed)."""
    return df[name] if name in df.columns else pd.Series(0, index=df.index)


def paper_mac_layers(df: pd.DataFrame) -> pd.Series:
    """The conv/linear rows the paper convention prices as MACs: the declared stem (role ``encoder``),
    and, where a layer declares no input kind, every non-attention layer whose observed input was
    real-valued (the papers' first layer on the image; a model without declarations names no stem)."""
    synaptic = df["op"].isin(SYNAPTIC)
    declared = df["declared_input"] if "declared_input" in df.columns else pd.Series(None, index=df.index)
    observed = df["input"] if "input" in df.columns else pd.Series(None, index=df.index)
    undeclared_real = declared.isna() & (observed == "real") & df["role"].isin(["backbone", "head"])
    return synaptic & ((df["role"] == "encoder") | undeclared_real)


def price_layers(
    layers: pd.DataFrame,
    lif_sites: pd.DataFrame,
    table: EnergyTable,
    *,
    T: int,
    num_images: int,
    reuse_static: bool = True,
    fold_bn: bool = False,
    integer_pricing: str = "mac",
) -> pd.DataFrame:
    """Per-layer energies (pJ, totals over images) under both conventions.

    Returns ``layers`` with added columns: ``fr_in``, ``approx_acs`` (fr x T x dense, the paper's
    approximation of the AC count), ``paper_pj``, ``complete_pj`` and the complete energy by op class
    (``mac_pj``, ``ac_pj``, ``bias_pj``, ``bn_pj``, ``elementwise_pj``, ``pooling_pj``), ``category`` and
    ``difference_group``. Integer-input synaptic ops are priced by ``integer_pricing``
    (:data:`INTEGER_PRICING`): as MACs (in ``mac_pj``) or as k ACs (in ``ac_pj``); ``integer_pj`` is
    that part on its own.
    """
    df = layers.copy()
    scale = _static_scale(df, T, reuse_static)
    df["fr_in"] = input_rates(df, lif_sites, T, num_images)
    synaptic = df["op"].isin(SYNAPTIC)
    as_mac = paper_mac_layers(df)
    stem = as_mac & (df["role"] == "encoder")  # declared time-invariant: its dense MACs counted once
    spiking = synaptic & df["role"].isin(["backbone", "head"]) & ~as_mac
    df["approx_acs"] = np.where(spiking, df["fr_in"] * df["dense_macs"], 0.0)
    df["paper_pj"] = (
        np.where(stem, df["dense_macs"] / T * table.mac, 0.0)
        + np.where(as_mac & ~stem, df["dense_macs"] * table.mac, 0.0)
        + np.where(spiking, df["approx_acs"] * table.ac, 0.0)
    )
    check_integer_pricing(integer_pricing)
    as_macs = integer_pricing == "mac"
    df["integer_pj"] = (
        _col(df, "integer_ops") * table.mac if as_macs else _col(df, "integer_value_ops") * table.ac
    ) * scale
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
        + (df["sigmoids"] + _col(df, "activations")) * (table.mul + table.add + table.compare)
    )
    df["pooling_pj"] = np.where(is_pool, ew, 0.0) * scale
    df["elementwise_pj"] = np.where(~is_pool & ~is_bn & ~synaptic, ew, 0.0) * scale
    df["complete_pj"] = df[["mac_pj", "ac_pj", "bias_pj", "bn_pj", "pooling_pj", "elementwise_pj"]].sum(axis=1)
    df["category"] = df.apply(_category, axis=1) if len(df) else []
    df["difference_group"] = df.apply(_difference_group, axis=1) if len(df) else []
    return df


def price_neurons(lif_sites: pd.DataFrame, table: EnergyTable) -> pd.DataFrame:
    """Per-LIF-site complete energy (pJ): neuron steps x (mul + add + compare) + spikes x add (reset)."""
    df = lif_sites.copy()
    df["update_pj"] = df["neuron_steps"] * (table.mul + table.add + table.compare)
    df["reset_pj"] = df["spikes"] * table.add
    df["complete_pj"] = df["update_pj"] + df["reset_pj"]
    df["paper_pj"] = 0.0
    return df


def _summary(total_pj: float, num_images: int, breakdown: dict) -> dict:
    return {
        "total_pj": float(total_pj),
        "per_image_mj": float(total_pj) / max(num_images, 1) / PJ_PER_MJ,
        "breakdown": {k: float(v) for k, v in breakdown.items()},
    }


def energy_summary(
    layers_priced: pd.DataFrame,
    neurons_priced: pd.DataFrame,
    table: EnergyTable,
    *,
    T: int,
    num_images: int,
    reuse_static: bool = True,
    fold_bn: bool = False,
    integer_pricing: str = "mac",
) -> dict:
    """Both conventions, their difference and what makes it up (JSON-ready dict; pJ totals over images)."""
    lp, npd = layers_priced, neurons_priced
    neuron_pj = float(npd["complete_pj"].sum()) if len(npd) else 0.0
    stem = paper_mac_layers(lp)  # the stem, or a model's real-input layers: priced as MACs
    paper = _summary(
        lp["paper_pj"].sum(),
        num_images,
        {
            "stem_mac_pj": lp.loc[stem, "paper_pj"].sum(),
            "spiking_ac_pj": lp.loc[~stem, "paper_pj"].sum(),
        },
    )
    by_class = {
        "mac_pj": lp["mac_pj"].sum(),
        "ac_pj": lp["ac_pj"].sum(),
        "bias_pj": lp["bias_pj"].sum(),
        "batchnorm_pj": lp["bn_pj"].sum(),
        "neuron_pj": neuron_pj,
        "elementwise_pj": lp["elementwise_pj"].sum(),
        "pooling_pj": lp["pooling_pj"].sum(),
    }
    complete = _summary(lp["complete_pj"].sum() + neuron_pj, num_images, by_class)
    by_role = lp.groupby("role")["complete_pj"].sum().to_dict()
    for role, e in (npd.groupby("role")["complete_pj"].sum().to_dict() if len(npd) else {}).items():
        by_role[role] = by_role.get(role, 0.0) + e
    complete["by_role_pj"] = {k: float(v) for k, v in by_role.items()}
    if "integer_pj" in lp.columns:  # part of mac_pj or ac_pj, by the integer pricing rule
        complete["integer_inputs_pj"] = float(lp["integer_pj"].sum())
    diff = (lp["complete_pj"] - lp["paper_pj"]).groupby(lp["difference_group"]).sum().to_dict()
    diff["neurons"] = diff.get("neurons", 0.0) + neuron_pj
    components = {DIFFERENCE_GROUPS[k]: float(v) for k, v in diff.items() if k in DIFFERENCE_GROUPS}
    difference_pj = complete["total_pj"] - paper["total_pj"]
    return {
        "paper": paper,
        "complete": complete,
        "difference": {
            "total_pj": difference_pj,
            "per_image_mj": difference_pj / max(num_images, 1) / PJ_PER_MJ,
            "ratio_complete_to_paper": complete["total_pj"] / paper["total_pj"] if paper["total_pj"] else None,
            "components_pj": components,
        },
        "options": {
            "reuse_static": reuse_static,
            "fold_bn": fold_bn,
            "sigmoid_pricing": SIGMOID_PRICING,
            "activation_pricing": ACTIVATION_PRICING,
            "integer_pricing": integer_pricing,
            "integer_pricing_rule": INTEGER_PRICING[integer_pricing],
            "spike_spike_products": "priced: pairs of two non-zeros (acs); reported, not priced: "
            "nnz(left) x right's free length (acs_alt)",
        },
        "table": table.to_dict(),
    }
