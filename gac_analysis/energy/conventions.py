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

from dataclasses import dataclass

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


#: Op class (the ``category`` column) of the non-synaptic ops that have one; any other op: ``other``.
OP_CATEGORIES = {
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
}
#: Difference group (:data:`DIFFERENCE_GROUPS`) of the non-synaptic ops that have one; any other op: ``other``.
_OP_DIFFERENCE_GROUPS = {"batchnorm": "batchnorm", "add": "residual", "avgpool": "pooling", "maxpool": "pooling"}
#: Difference group of a (non-stem, non-attention) synaptic layer by its observed input kind; others: ``real_inputs``.
_INPUT_DIFFERENCE_GROUPS = {"binary": "exact_acs", "integer": "integer_inputs"}
POOLING_OPS = frozenset({"avgpool", "maxpool"})
#: Roles of the spiking conv/linear layers that the paper convention prices (fr x T x dense ACs).
SPIKING_ROLES = frozenset({"backbone", "head"})


def _category(op) -> str:
    """The op class of one layer (the ``category`` column)."""
    return "synaptic" if op in SYNAPTIC else OP_CATEGORIES.get(op, "other")


def _difference_group(role, op, observed) -> str:
    """The part of (complete - paper) that one layer's energy belongs to (a key of :data:`DIFFERENCE_GROUPS`),
    from its role, op and observed input kind."""
    if role == "attention":
        return "attention"
    if op in SYNAPTIC:
        return "stem" if role == "encoder" else _INPUT_DIFFERENCE_GROUPS.get(observed, "real_inputs")
    return _OP_DIFFERENCE_GROUPS.get(op, "other")


def _array(df: pd.DataFrame, name: str, default=0) -> np.ndarray:
    """Column ``name`` of ``df`` as a numpy array; ``default`` in every row where the table has no such column
    (count columns of reports written before the column existed)."""
    return df[name].to_numpy() if name in df.columns else np.full(len(df), default)


def _flags(values: list, members) -> np.ndarray:
    """Which of ``values`` are in ``members`` (a bool array; a missing value is in none)."""
    return np.array([v in members for v in values], dtype=bool)


def _input_rate_array(layers: pd.DataFrame, lif_sites: pd.DataFrame, T: int, num_images: int) -> np.ndarray:
    """:func:`input_rates` as a float64 array."""
    by_name = dict(zip(lif_sites["name"].tolist(), lif_sites["firing_rate"].tolist())) if len(lif_sites) else {}
    nnz, numel = layers["input_nnz"].to_numpy(), layers["in_numel"].to_numpy()
    observed = nnz / (np.maximum(numel, 1) * T * max(num_images, 1))
    declared = np.array(
        [by_name.get(s, np.nan) if isinstance(s, str) else np.nan for s in layers["rate_source"].tolist()],
        dtype=float,
    )
    return np.where(np.isnan(declared), observed, declared).astype(float)


def input_rates(layers: pd.DataFrame, lif_sites: pd.DataFrame, T: int, num_images: int) -> pd.Series:
    """fr_in of every layer: the declared feeding LIF's firing rate, else the observed non-zero input
    fraction ``input_nnz / (in_numel * T * images)`` (dimensionless, 0..1)."""
    return pd.Series(_input_rate_array(layers, lif_sites, T, num_images), index=layers.index)


@dataclass(frozen=True, eq=False)
class LayerFacts:
    """What pricing reads from a layers table, as numpy arrays (one entry per row): the row classes and the
    count columns (operations or events, totals over images and steps). Pure facts of the table: no energy
    table and no pricing option enters them, so one :class:`LayerFacts` serves every pricing of a table."""

    ops: list
    roles: list
    observed: list  # observed input kind per row (``input``; NaN or None where not observed)
    static: np.ndarray  # declared time-invariant
    synaptic: np.ndarray  # conv/linear
    paper_mac: np.ndarray  # priced as MACs by the paper convention (:func:`paper_mac_layers`)
    stem: np.ndarray  # the declared stem (role ``encoder``) among those: its dense MACs counted once
    spiking: np.ndarray  # priced as fr x T x dense ACs by the paper convention
    batchnorm: np.ndarray
    pooling: np.ndarray
    counts: dict  # count column name -> array; zeros for the columns a table lacks

    #: The count columns that pricing reads.
    COUNTS = (
        "dense_macs",
        "effective_macs",
        "acs",
        "bias_adds",
        "muls",
        "adds",
        "compares",
        "sigmoids",
        "activations",
        "integer_ops",
        "integer_value_ops",
    )

    @classmethod
    def of(cls, df: pd.DataFrame) -> LayerFacts:
        """The facts of a layers table (see ``gac_analysis.accounting.report``)."""
        ops, roles = df["op"].tolist(), df["role"].tolist()
        observed = df["input"].tolist() if "input" in df.columns else [None] * len(df)
        synaptic = _flags(ops, SYNAPTIC)
        paper_mac = _paper_mac(df, synaptic, roles, observed)
        encoder = _flags(roles, ("encoder",))
        stem = paper_mac & encoder
        return cls(
            ops=ops,
            roles=roles,
            observed=observed,
            static=_array(df, "static").astype(bool),
            synaptic=synaptic,
            paper_mac=paper_mac,
            stem=stem,
            spiking=synaptic & _flags(roles, SPIKING_ROLES) & ~paper_mac,
            batchnorm=_flags(ops, ("batchnorm",)),
            pooling=_flags(ops, POOLING_OPS),
            counts={name: _array(df, name) for name in cls.COUNTS},
        )


def _paper_mac(df: pd.DataFrame, synaptic: np.ndarray, roles: list, observed: list) -> np.ndarray:
    """:func:`paper_mac_layers` as a bool array, from the table's synaptic flags, roles and observed kinds."""
    undeclared = pd.isna(df["declared_input"].to_numpy()) if "declared_input" in df.columns else True
    real = np.array([o == "real" for o in observed], dtype=bool)
    return synaptic & (_flags(roles, ("encoder",)) | (undeclared & real & _flags(roles, SPIKING_ROLES)))


def paper_mac_layers(df: pd.DataFrame) -> pd.Series:
    """The conv/linear rows the paper convention prices as MACs: the declared stem (role ``encoder``),
    and, where a layer declares no input kind, every non-attention layer whose observed input was
    real-valued (the papers' first layer on the image; a model without declarations names no stem)."""
    observed = df["input"].tolist() if "input" in df.columns else [None] * len(df)
    mask = _paper_mac(df, _flags(df["op"].tolist(), SYNAPTIC), df["role"].tolist(), observed)
    return pd.Series(mask, index=df.index)


def _static_scale(facts: LayerFacts, T: int, reuse_static: bool) -> np.ndarray:
    """Per row, the fraction of its counted work that is priced: ``1 / T`` for time-invariant work counted
    once (``reuse_static``), else 1."""
    if not reuse_static:
        return np.ones(len(facts.ops))
    return np.where(facts.static, 1.0 / T, 1.0)


def complete_energy(
    facts: LayerFacts, table: EnergyTable, *, T: int, reuse_static: bool, fold_bn: bool, integer_pricing: str
) -> dict[str, np.ndarray]:
    """Per-layer complete-convention energies (pJ, totals over images), in column order: ``integer_pj``,
    ``mac_pj``, ``ac_pj``, ``bias_pj``, ``bn_pj``, ``pooling_pj``, ``elementwise_pj`` and their sum
    ``complete_pj`` (added left to right). See :func:`price_layers`."""
    c = facts.counts
    scale = _static_scale(facts, T, reuse_static)
    as_macs = check_integer_pricing(integer_pricing) == "mac"
    integer_pj = (c["integer_ops"] * table.mac if as_macs else c["integer_value_ops"] * table.ac) * scale
    mac_pj = c["effective_macs"] * table.mac * scale + (integer_pj if as_macs else 0.0)
    ac_pj = c["acs"] * table.ac * scale + (0.0 if as_macs else integer_pj)
    bias_pj = c["bias_adds"] * table.add * scale
    bn_full = c["muls"] * table.mul + c["adds"] * table.add
    bn_pj = np.where(facts.batchnorm, (c["adds"] * table.add) if fold_bn else bn_full, 0.0) * scale
    ew = (
        c["muls"] * table.mul
        + c["adds"] * table.add
        + c["compares"] * table.compare
        + (c["sigmoids"] + c["activations"]) * (table.mul + table.add + table.compare)
    )
    pooling_pj = np.where(facts.pooling, ew, 0.0) * scale
    elementwise_pj = np.where(~facts.pooling & ~facts.batchnorm & ~facts.synaptic, ew, 0.0) * scale
    return {
        "integer_pj": integer_pj,
        "mac_pj": mac_pj,
        "ac_pj": ac_pj,
        "bias_pj": bias_pj,
        "bn_pj": bn_pj,
        "pooling_pj": pooling_pj,
        "elementwise_pj": elementwise_pj,
        "complete_pj": mac_pj + ac_pj + bias_pj + bn_pj + pooling_pj + elementwise_pj,
    }


def _column_frames(columns: dict, index: pd.Index) -> list[pd.DataFrame]:
    """``pd.DataFrame(columns, index=index)`` as a list of frames to concatenate, built faster: each run of
    consecutive float64 array columns goes in as one 2-D block, each run of other columns as one dict."""
    runs: list[tuple[bool, dict]] = []
    for name, values in columns.items():
        is_float = isinstance(values, np.ndarray) and values.dtype == np.float64 and values.shape == (len(index),)
        if not runs or runs[-1][0] != is_float:
            runs.append((is_float, {}))
        runs[-1][1][name] = values
    return [
        pd.DataFrame(np.stack(list(run.values()), axis=1), columns=list(run), index=index)
        if is_float
        else pd.DataFrame(run, index=index)
        for is_float, run in runs
    ]


def with_columns(df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """A new frame: ``df`` with ``columns`` (name -> values, in order) set as ``df.copy()[name] = values`` sets
    them (new names appended, present ones replaced in place); ``df`` is not changed."""
    if any(name in df.columns for name in columns):
        out = df.copy()
        for name, values in columns.items():
            out[name] = values
        return out
    return pd.concat([df, *_column_frames(columns, df.index)], axis=1)


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
    facts: LayerFacts | None = None,
) -> pd.DataFrame:
    """Per-layer energies (pJ, totals over images) under both conventions.

    Returns ``layers`` with added columns: ``fr_in``, ``approx_acs`` (fr x T x dense, the paper's
    approximation of the AC count), ``paper_pj``, ``complete_pj`` and the complete energy by op class
    (``mac_pj``, ``ac_pj``, ``bias_pj``, ``bn_pj``, ``elementwise_pj``, ``pooling_pj``), ``category`` and
    ``difference_group``. Integer-input synaptic ops are priced by ``integer_pricing``
    (:data:`INTEGER_PRICING`): as MACs (in ``mac_pj``) or as k ACs (in ``ac_pj``); ``integer_pj`` is
    that part on its own. ``facts``: ``LayerFacts.of(layers)`` when the caller has it already.
    """
    facts = facts if facts is not None else LayerFacts.of(layers)
    fr_in = _input_rate_array(layers, lif_sites, T, num_images)
    dense = facts.counts["dense_macs"]
    approx_acs = np.where(facts.spiking, fr_in * dense, 0.0)
    paper_pj = (
        np.where(facts.stem, dense / T * table.mac, 0.0)
        + np.where(facts.paper_mac & ~facts.stem, dense * table.mac, 0.0)
        + np.where(facts.spiking, approx_acs * table.ac, 0.0)
    )
    complete = complete_energy(
        facts, table, T=T, reuse_static=reuse_static, fold_bn=fold_bn, integer_pricing=integer_pricing
    )
    columns = {"fr_in": fr_in, "approx_acs": approx_acs, "paper_pj": paper_pj, **complete}
    columns["category"] = [_category(op) for op in facts.ops] if len(layers) else []
    columns["difference_group"] = (
        [_difference_group(r, op, o) for r, op, o in zip(facts.roles, facts.ops, facts.observed)] if len(layers) else []
    )
    return with_columns(layers, columns)


def neuron_energy(lif_sites: pd.DataFrame, table: EnergyTable) -> dict[str, np.ndarray]:
    """Per LIF site (pJ, totals over images): ``update_pj`` = neuron steps x (mul + add + compare) (leak,
    integrate, threshold compare), ``reset_pj`` = spikes x add (one reset write per spike), ``complete_pj``
    their sum."""
    update = lif_sites["neuron_steps"].to_numpy() * (table.mul + table.add + table.compare)
    reset = lif_sites["spikes"].to_numpy() * table.add
    return {"update_pj": update, "reset_pj": reset, "complete_pj": update + reset}


def price_neurons(lif_sites: pd.DataFrame, table: EnergyTable) -> pd.DataFrame:
    """Per-LIF-site complete energy (pJ): neuron steps x (mul + add + compare) + spikes x add (reset)."""
    return with_columns(lif_sites, {**neuron_energy(lif_sites, table), "paper_pj": np.zeros(len(lif_sites))})


def column_sum(values: np.ndarray):
    """The sum of a column's values exactly as ``Series.sum()`` gives it, without the Series: for floats,
    missing values (NaN) skipped and the rest added by numpy's pairwise sum (what pandas runs, so every last
    bit agrees); other dtypes (the object columns of an empty table) through pandas itself."""
    if values.dtype.kind != "f":
        return pd.Series(values, dtype=values.dtype).sum()
    missing = np.isnan(values)
    return (np.where(missing, 0.0, values) if missing.any() else values).sum()


def group_sums(keys: list, values: np.ndarray) -> dict:
    """``{key: sum of its values}`` (keys sorted, missing keys dropped): pandas' grouped sum, whose order
    of addition the report's figures follow bit for bit."""
    return pd.Series(values, dtype=values.dtype).groupby(np.asarray(keys, dtype=object)).sum().to_dict()


def _summary(total_pj: float, num_images: int, breakdown: dict) -> dict:
    return {
        "total_pj": float(total_pj),
        "per_image_mj": float(total_pj) / max(num_images, 1) / PJ_PER_MJ,
        "breakdown": {k: float(v) for k, v in breakdown.items()},
    }


def neuron_total(complete_pj: np.ndarray) -> float:
    """Complete energy of all LIF sites (pJ, totals over images) from their per-site ``complete_pj``."""
    return float(column_sum(complete_pj)) if len(complete_pj) else 0.0


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
    facts: LayerFacts | None = None,
) -> dict:
    """Both conventions, their difference and what makes it up (JSON-ready dict; pJ totals over images).
    ``facts``: ``LayerFacts.of(layers_priced)`` when the caller has it already."""
    lp, npd = layers_priced, neurons_priced
    neuron_pj = neuron_total(npd["complete_pj"].to_numpy())
    # the stem, or a model's real-input layers: priced as MACs
    stem = facts.paper_mac if facts is not None else paper_mac_layers(lp).to_numpy()
    paper_pj, complete_pj = lp["paper_pj"].to_numpy(), lp["complete_pj"].to_numpy()
    paper = _summary(
        column_sum(paper_pj),
        num_images,
        {"stem_mac_pj": column_sum(paper_pj[stem]), "spiking_ac_pj": column_sum(paper_pj[~stem])},
    )
    by_class = {
        "mac_pj": column_sum(lp["mac_pj"].to_numpy()),
        "ac_pj": column_sum(lp["ac_pj"].to_numpy()),
        "bias_pj": column_sum(lp["bias_pj"].to_numpy()),
        "batchnorm_pj": column_sum(lp["bn_pj"].to_numpy()),
        "neuron_pj": neuron_pj,
        "elementwise_pj": column_sum(lp["elementwise_pj"].to_numpy()),
        "pooling_pj": column_sum(lp["pooling_pj"].to_numpy()),
    }
    complete = _summary(column_sum(complete_pj) + neuron_pj, num_images, by_class)
    by_role = group_sums(lp["role"].tolist(), complete_pj)
    neuron_complete = npd["complete_pj"].to_numpy()
    for role, e in (group_sums(npd["role"].tolist(), neuron_complete) if len(npd) else {}).items():
        by_role[role] = by_role.get(role, 0.0) + e
    complete["by_role_pj"] = {k: float(v) for k, v in by_role.items()}
    if "integer_pj" in lp.columns:  # part of mac_pj or ac_pj, by the integer pricing rule
        complete["integer_inputs_pj"] = float(column_sum(lp["integer_pj"].to_numpy()))
    diff = group_sums(lp["difference_group"].tolist(), complete_pj - paper_pj)
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
