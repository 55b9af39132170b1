"""Memory-aware energy of spiking layers (Lemaire et al., ICONIP 2022, arXiv:2210.13107).

The plain ``E = n_MAC * E_MAC + n_AC * E_AC`` estimate prices arithmetic only. Lemaire et
al. also count the work a spiking layer does around each synaptic operation -- the membrane
leak, the reset, the address computations of an event-driven core -- and every memory access,
each priced by the size of the memory it touches. This module implements that model for
one synaptic layer (a convolution or a fully connected layer followed, usually, by LIF
neurons) from its *traffic*: the layer's shape and how many events enter and leave it.

Notation for one layer and one inference (one image, all ``T`` time steps):

* ``theta_in``  input events (spikes, or non-zero inputs) over all T steps;
* ``theta_out`` output spikes over all T steps (0 when no LIF follows the layer);
* ``|out|``     output elements per time step (``C_out*H_out*W_out``, or ``N_out``);
* ``Hk, Wk``    kernel size, ``S = (Sh, Sw)`` stride, ``C_out`` output channels.

Spiking convolution:

* accumulations ``ACC_ops = theta_in*ceil(Hk/Sh)*ceil(Wk/Sw)*C_out + T*|out| + theta_out``
  (synaptic accumulations, one update per neuron per step, one reset per output spike);
* leak multiplies ``T*|out|``, priced as MACs (``E_mul + E_add``) as in the paper;
* addressing: ``MAC_addr = 2*theta_in`` (MAC-priced) and ``ACC_addr = theta_in*Hk*Wk``
  (add-priced);
* memory: input reads ``theta_in``; weight reads ``theta_in*C_out*Hk*Wk``; bias reads
  ``T*|out|`` **only when the layer has a bias** (no bias, no bias memory); potential reads
  ``theta_in*C_out*Hk*Wk + T*|out|`` and the same number of potential writes; output writes
  ``theta_out``.

Spiking fully connected layer (``N_in = c_in``, ``N_out = c_out``): the convolution formulas
with a 1x1 kernel and stride 1, i.e. ``ACC_ops = theta_in*N_out + T*N_out + theta_out``,
leak multiplies ``T*N_out``, ``MAC_addr = 2*theta_in``, ``ACC_addr = theta_in`` (one weight
row per event), weight reads ``theta_in*N_out``, potential reads/writes
``theta_in*N_out + T*N_out``, input reads ``theta_in``, output writes ``theta_out``, bias
reads ``T*N_out`` when there is a bias.

.. note:: **Corrected fully connected form.** The paper prints the FC accumulation count as
   ``theta_in * N_in * N_out`` (without the reset term). An input event touches one row of
   ``N_out`` weights, not all ``N_in*N_out``, so that form counts ``N_in`` times too many
   accumulations, and it omits the ``theta_out`` resets that the convolution formula has.
   The authors' own implementation counts ``theta_in*N_out + T*N_out + theta_out``; this
   module implements that corrected form.

Equivalent ANN layer (``spiking=False``; the same layer run once, densely, on real inputs):
``MACs = |out|*c_in*Hk*Wk`` (convolution; groups ignored) or ``N_in*N_out`` (linear), with no
``T`` factor (an ANN runs once). Memory, following the paper's convention for ANNs: input
reads = MACs, weight reads = MACs, output writes = ``|out|``, bias reads = ``|out|`` when the
layer has a bias; no membrane potentials and no addressing.

Energy (pJ)::

    E = (MAC_ops + MAC_addr) * (E_mul + E_add) + (ACC_ops + ACC_addr) * E_add
        + sum over streams of accesses * E_ram(size of the memory holding that stream)

with ``E_ram(n) = slope * (n * word_bits) + intercept`` pJ per access (the table's linear SRAM
fit; ``word_bits`` from the table). The memories: input = ``in_numel`` elements, weights =
``c_out*c_in*Hk*Wk`` (``N_in*N_out`` for linear), potentials = ``|out|``, outputs = ``|out|``,
bias = ``c_out``. ``E_add``/``E_mul`` default to the table's ``add``/``mul`` costs, so a
precision preset flows through; the paper's defaults (``E_add = 0.1 pJ``, ``E_mul = 3.1 pJ``)
are the bundled ``45nm-int32`` table.

``placement="dram"`` fetches every weight access from DRAM at the table's
``dram_pj_per_access`` (other data stay in SRAM), for upper bounds. The SRAM fit is
calibrated on 8 KB - 1 MB memories; far above that it is extrapolated and, for weight
memories above ``(dram - intercept) / slope`` bits (about 118 Mbit with the bundled numbers),
it prices an SRAM access above a DRAM access, so the DRAM placement is an upper bound only
within the calibrated range.

Counts are per inference (per image) and may be fractional when theta values are averages.
This module knows nothing of torch; it prices numbers it is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

from gac_analysis.energy.tables import EnergyTable, load_energy_table
from gac_analysis.errors import EnergyTableError

__all__ = [
    "ADDITIVE_COLUMNS",
    "PLACEMENTS",
    "LayerMemoryEnergy",
    "LayerTraffic",
    "TrafficColumns",
    "ann_equivalent",
    "check_traffic_row",
    "estimate_columns",
    "estimate_layer",
    "estimate_network",
    "totals",
]

#: Where the weights live: ``"sram"`` (E_ram from the table's fit) or ``"dram"``.
PLACEMENTS: tuple[str, ...] = ("sram", "dram")

_KINDS = ("conv", "linear")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _bad(layer: str, what: str, todo: str) -> EnergyTableError:
    return EnergyTableError(f"layer traffic {layer!r}: {what}; {todo}")


def _pos_int(layer: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise _bad(layer, f"{field} = {value!r} is not a positive integer", f"set {field} to an integer >= 1")
    return int(value)


def _int_pair(layer: str, field: str, value: Any) -> tuple[int, int]:
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2:
        raise _bad(layer, f"{field} = {value!r} is not a pair", f"give {field} as (height, width)")
    return (_pos_int(layer, field, items[0]), _pos_int(layer, field, items[1]))


def _events(layer: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
        raise _bad(
            layer,
            f"{field} = {value!r} is not a finite non-negative number",
            f"set {field} to the events per inference (per image, all T steps)",
        )
    return float(value)


@dataclass(frozen=True)
class LayerTraffic:
    """One synaptic layer's shape and event traffic for one inference (one image).

    ``kernel``/``stride`` are ``(height, width)``; ``(1, 1)`` for linear layers (an int is
    taken as a square pair). ``out_shape`` is per time step and image: ``(C_out, H_out, W_out)``
    for a convolution, ``(N_out,)`` for a linear layer. ``in_numel`` is the input elements per
    time step per image. ``theta_in``/``theta_out`` are the input events and output spikes per
    inference (per image, summed over all T steps); ``theta_out`` is 0 when no LIF follows.
    ``spiking=False`` describes the equivalent ANN layer (dense, real inputs, run once).
    Invalid values raise :class:`EnergyTableError`.
    """

    name: str
    kind: str
    T: int
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    out_shape: tuple[int, ...]
    in_numel: int
    theta_in: float
    theta_out: float
    has_bias: bool
    spiking: bool = True

    def __post_init__(self) -> None:
        layer = str(self.name)
        if self.kind not in _KINDS:
            raise _bad(layer, f"kind = {self.kind!r} is unknown", f"use one of {', '.join(_KINDS)}")

        def set_(key: str, value: Any) -> None:  # the dataclass is frozen: normalise fields in place once
            object.__setattr__(self, key, value)

        for key in ("T", "c_in", "c_out", "in_numel"):
            set_(key, _pos_int(layer, key, getattr(self, key)))
        set_("kernel", _int_pair(layer, "kernel", self.kernel))
        set_("stride", _int_pair(layer, "stride", self.stride))
        try:
            shape = tuple(self.out_shape)
        except TypeError:
            shape = ()
        expected = 3 if self.kind == "conv" else 1
        if len(shape) != expected:
            form = "(C_out, H_out, W_out)" if self.kind == "conv" else "(N_out,)"
            raise _bad(layer, f"out_shape = {self.out_shape!r} does not fit a {self.kind} layer", f"give it as {form}")
        shape = tuple(_pos_int(layer, "out_shape", v) for v in shape)
        if shape[0] != self.c_out:
            raise _bad(
                layer,
                f"out_shape[0] = {shape[0]} differs from c_out = {self.c_out}",
                "make the output channels/features agree",
            )
        set_("out_shape", shape)
        if self.kind == "linear" and (self.kernel != (1, 1) or self.stride != (1, 1)):
            raise _bad(
                layer,
                f"a linear layer has kernel {self.kernel} and stride {self.stride}",
                "use kernel=(1, 1) and stride=(1, 1) for linear layers",
            )
        set_("theta_in", _events(layer, "theta_in", self.theta_in))
        set_("theta_out", _events(layer, "theta_out", self.theta_out))
        for key in ("has_bias", "spiking"):
            value = getattr(self, key)
            if not isinstance(value, bool):
                raise _bad(layer, f"{key} = {value!r} is not a bool", f"set {key} to True or False")

    @property
    def out_numel(self) -> int:
        """``|out|``: output elements per time step per image."""
        return math.prod(self.out_shape)

    @property
    def weight_numel(self) -> int:
        """Weights held in memory: ``c_out*c_in*Hk*Wk`` (``N_in*N_out`` for linear)."""
        return self.c_out * self.c_in * self.kernel[0] * self.kernel[1]

    @property
    def dense_macs(self) -> int:
        """MACs of the equivalent dense ANN layer, once: ``|out|*c_in*Hk*Wk`` (groups ignored)."""
        return self.out_numel * self.c_in * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class LayerMemoryEnergy:
    """Counts (per inference) and energies (pJ) of one layer under the Lemaire model.

    ``mul_ops`` are the LIF leak multiplies and ``mac_ops`` the dense MACs of an ANN layer;
    both are priced ``E_mul + E_add``. ``acc_ops`` are priced ``E_add``. ``mac_addr`` /
    ``acc_addr`` are the addressing operations, priced likewise. ``*_pj`` stream energies
    are accesses times the per-access energy of the memory holding that stream.
    """

    name: str
    kind: str
    spiking: bool
    placement: str
    e_add_pj: float
    e_mul_pj: float
    # operation counts
    acc_ops: float
    mul_ops: float
    mac_ops: float
    mac_addr: float
    acc_addr: float
    # memory access counts
    input_reads: float
    weight_reads: float
    bias_reads: float
    potential_reads: float
    potential_writes: float
    output_writes: float
    memory_accesses: float
    # per-stream memory energies (pJ)
    input_read_pj: float
    weight_read_pj: float
    bias_read_pj: float
    potential_read_pj: float
    potential_write_pj: float
    output_write_pj: float
    # energies (pJ)
    arithmetic_pj: float
    addressing_pj: float
    memory_pj: float
    total_pj: float

    def to_dict(self) -> dict:
        """Every field, in declaration order (one DataFrame row)."""
        return asdict(self)


#: Columns of :func:`estimate_network` that add up over layers (counts and energies).
ADDITIVE_COLUMNS: tuple[str, ...] = tuple(
    f.name
    for f in fields(LayerMemoryEnergy)
    if f.name not in {"name", "kind", "spiking", "placement", "e_add_pj", "e_mul_pj"}
)


def ann_equivalent(lt: LayerTraffic) -> LayerTraffic:
    """The same layer as a dense ANN layer (``spiking=False``)."""
    return replace(lt, spiking=False)


def _cost(value: float | None, default: float, key: str) -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
        raise EnergyTableError(
            f"estimate_layer: {key} = {value!r} is not a finite non-negative number; "
            f"pass pJ per operation or None for the table's cost"
        )
    return float(value)


def _as_float(value):
    """A count as a double: ``float`` of a number, float64 of an array (one conversion, as for one layer)."""
    return value.astype(np.float64) if isinstance(value, np.ndarray) else float(value)


def _spiking_counts(T, c_out, kernel, stride, out, t_in, t_out, has_bias) -> dict:
    """Operations, address computations and memory accesses of an event-driven (spiking) layer (per
    inference). Every argument is a number (one layer) or a numpy array (many layers; ``kernel``/``stride``
    are then pairs of arrays): ``out`` output elements per step, ``t_in``/``t_out`` input events / output
    spikes (floats), ``has_bias`` a bool (array)."""
    hk, wk = kernel
    sh, sw = stride
    synaptic = t_in * c_out * hk * wk  # weight reads = potential updates per event
    potential_reads = synaptic + T * out
    return {
        "acc_ops": t_in * _ceil_div(hk, sh) * _ceil_div(wk, sw) * c_out + T * out + t_out,
        "mul_ops": _as_float(T * out),
        "mac_ops": 0.0,
        "mac_addr": 2.0 * t_in,
        "acc_addr": t_in * hk * wk,
        "input_reads": t_in,
        "weight_reads": synaptic,
        "bias_reads": _as_float(T * out * has_bias),  # no bias, no bias reads
        "potential_reads": potential_reads,
        "potential_writes": potential_reads,
        "output_writes": t_out,
    }


def _dense_counts(dense_macs, out, has_bias) -> dict:
    """Operations and memory accesses of a dense (ANN-style, real-valued input) layer, run once; numbers or
    numpy arrays as in :func:`_spiking_counts`."""
    dense = _as_float(dense_macs)
    return {
        "acc_ops": 0.0,
        "mul_ops": 0.0,
        "mac_ops": dense,
        "mac_addr": 0.0,
        "acc_addr": 0.0,
        "input_reads": dense,
        "weight_reads": dense,
        "bias_reads": _as_float(out * has_bias),
        "potential_reads": 0.0,
        "potential_writes": 0.0,
        "output_writes": _as_float(out),
    }


def _access_pj(table: EnergyTable, placement: str, *, in_numel, weight_numel, c_out, out_numel) -> dict:
    """pJ per access of each memory stream: SRAM cost from the size (elements x ``word_bits``) of the array
    read, weights at the DRAM cost per access with ``placement="dram"``. Numbers or numpy arrays."""
    bits = table.word_bits
    e_out = table.sram_access_pj(out_numel * bits)
    return {
        "input": table.sram_access_pj(in_numel * bits),
        "weight": table.dram_pj_per_access if placement == "dram" else table.sram_access_pj(weight_numel * bits),
        "bias": table.sram_access_pj(c_out * bits),
        "potential": e_out,
        "output": e_out,
    }


def _energies(c: dict, e: dict, *, add: float, mul: float) -> dict:
    """Stream, arithmetic, addressing, memory and total energies (pJ) and the memory accesses, from the
    counts ``c`` and the per-access costs ``e`` (numbers or numpy arrays); every sum in one fixed order."""
    mac = mul + add
    stream_pj = {
        "input_read_pj": c["input_reads"] * e["input"],
        "weight_read_pj": c["weight_reads"] * e["weight"],
        "bias_read_pj": c["bias_reads"] * e["bias"],
        "potential_read_pj": c["potential_reads"] * e["potential"],
        "potential_write_pj": c["potential_writes"] * e["potential"],
        "output_write_pj": c["output_writes"] * e["output"],
    }
    arithmetic_pj = (c["mul_ops"] + c["mac_ops"]) * mac + c["acc_ops"] * add
    addressing_pj = c["mac_addr"] * mac + c["acc_addr"] * add
    memory_pj = (
        stream_pj["input_read_pj"]
        + stream_pj["weight_read_pj"]
        + stream_pj["bias_read_pj"]
        + stream_pj["potential_read_pj"]
        + stream_pj["potential_write_pj"]
        + stream_pj["output_write_pj"]
    )
    return {
        "memory_accesses": c["input_reads"]
        + c["weight_reads"]
        + c["bias_reads"]
        + c["potential_reads"]
        + c["potential_writes"]
        + c["output_writes"],
        **stream_pj,
        "arithmetic_pj": arithmetic_pj,
        "addressing_pj": addressing_pj,
        "memory_pj": memory_pj,
        "total_pj": arithmetic_pj + addressing_pj + memory_pj,
    }


def _check_estimate_args(lt: Any, table: EnergyTable | str, placement: str) -> EnergyTable:
    if not isinstance(lt, LayerTraffic):
        raise EnergyTableError(f"estimate_layer: got {type(lt).__name__}, not a LayerTraffic; build one per layer")
    if not isinstance(table, EnergyTable):
        table = load_energy_table(table)
    if placement not in PLACEMENTS:
        raise EnergyTableError(
            f"estimate_layer: placement = {placement!r} for layer {lt.name!r} is unknown; "
            f"use one of {', '.join(PLACEMENTS)}"
        )
    return table


def estimate_layer(
    lt: LayerTraffic,
    table: EnergyTable | str,
    *,
    e_add: float | None = None,
    e_mul: float | None = None,
    placement: str = "sram",
) -> LayerMemoryEnergy:
    """Counts and energy of one layer (see the module docstring for every formula).

    ``table`` is an :class:`EnergyTable` or a name/path for :func:`load_energy_table`.
    ``e_add``/``e_mul`` (pJ) override the table's ``add``/``mul`` costs; the paper's
    defaults are the ``45nm-int32`` table (0.1 pJ, 3.1 pJ). ``placement`` is ``"sram"``
    (every stream priced by the SRAM fit) or ``"dram"`` (weight accesses at the table's
    DRAM cost, the rest in SRAM).
    """
    table = _check_estimate_args(lt, table, placement)
    add = _cost(e_add, table.add, "e_add")
    mul = _cost(e_mul, table.mul, "e_mul")
    if lt.spiking:
        c = _spiking_counts(lt.T, lt.c_out, lt.kernel, lt.stride, lt.out_numel, lt.theta_in, lt.theta_out, lt.has_bias)
    else:
        c = _dense_counts(lt.dense_macs, lt.out_numel, lt.has_bias)
    e = _access_pj(
        table, placement, in_numel=lt.in_numel, weight_numel=lt.weight_numel, c_out=lt.c_out, out_numel=lt.out_numel
    )
    energies = _energies(c, e, add=add, mul=mul)
    return LayerMemoryEnergy(
        name=lt.name,
        kind=lt.kind,
        spiking=lt.spiking,
        placement=placement,
        e_add_pj=add,
        e_mul_pj=mul,
        **{k: float(v) for k, v in c.items()},
        **energies,
    )


@dataclass(frozen=True, eq=False)
class TrafficColumns:
    """The traffic of many layers (the fields of one :class:`LayerTraffic` each, as numpy arrays with one
    entry per layer, in the units of LayerTraffic), for pricing them all at once (:func:`estimate_columns`)."""

    names: list
    T: int
    c_in: np.ndarray
    c_out: np.ndarray
    kernel: tuple[np.ndarray, np.ndarray]  # (height, width)
    stride: tuple[np.ndarray, np.ndarray]
    out_numel: np.ndarray  # |out| per time step per image
    in_numel: np.ndarray
    theta_in: np.ndarray  # events per inference (float)
    theta_out: np.ndarray
    has_bias: np.ndarray
    spiking: np.ndarray

    @classmethod
    def of(cls, rows: list[dict], *, T: int) -> TrafficColumns:
        """The columns of layers given as :class:`LayerTraffic` keyword arguments that
        :func:`check_traffic_row` accepted, each for ``T`` steps."""

        def ints(key, at=None):
            return np.array([r[key] if at is None else r[key][at] for r in rows], dtype=np.int64)

        return cls(
            names=[r["name"] for r in rows],
            T=T,
            c_in=ints("c_in"),
            c_out=ints("c_out"),
            kernel=(ints("kernel", 0), ints("kernel", 1)),
            stride=(ints("stride", 0), ints("stride", 1)),
            out_numel=np.array([math.prod(r["out_shape"]) for r in rows], dtype=np.int64),
            in_numel=ints("in_numel"),
            theta_in=np.array([r["theta_in"] for r in rows], dtype=np.float64),
            theta_out=np.array([r["theta_out"] for r in rows], dtype=np.float64),
            has_bias=np.array([r["has_bias"] for r in rows], dtype=bool),
            spiking=np.array([r["spiking"] for r in rows], dtype=bool),
        )


def check_traffic_row(row: dict) -> dict:
    """``row`` (:class:`LayerTraffic` keyword arguments already in the form LayerTraffic normalises to:
    ``kind`` conv or linear; ``kernel``, ``stride`` and ``out_shape`` tuples of ints that fit the kind and
    ``c_out``; bools) when its numbers pass LayerTraffic's checks (positive sizes, finite non-negative
    events), without building one; otherwise LayerTraffic's :class:`EnergyTableError` for it."""
    sizes = (row["T"], row["c_in"], row["c_out"], row["in_numel"], *row["kernel"], *row["stride"], *row["out_shape"])
    events = (row["theta_in"], row["theta_out"])
    if not (min(sizes) >= 1 and all(0 <= e < math.inf for e in events)):
        LayerTraffic(**row)  # raises the error
    return row


def estimate_columns(columns: TrafficColumns, table: EnergyTable, *, placement: str, ann: bool) -> dict:
    """:func:`estimate_layer` (the table's costs) of every layer of ``columns`` at once: each count and energy
    of :class:`LayerMemoryEnergy` as a float64 array, every element computed as for that one layer;
    ``ann=True`` prices every layer as its dense ANN equivalent (:func:`ann_equivalent`)."""
    if placement not in PLACEMENTS:
        raise EnergyTableError(f"estimate_columns: placement = {placement!r} is unknown; use one of {PLACEMENTS}")
    k = columns
    dense_macs = k.out_numel * k.c_in * k.kernel[0] * k.kernel[1]
    dense = _dense_counts(dense_macs, k.out_numel, k.has_bias)
    if ann:
        counts = {key: np.full(len(k.names), value) if np.isscalar(value) else value for key, value in dense.items()}
    else:
        spiking = _spiking_counts(k.T, k.c_out, k.kernel, k.stride, k.out_numel, k.theta_in, k.theta_out, k.has_bias)
        counts = {key: np.where(k.spiking, spiking[key], dense[key]) for key in spiking}
    weight_numel = k.c_out * k.c_in * k.kernel[0] * k.kernel[1]
    e = _access_pj(
        table, placement, in_numel=k.in_numel, weight_numel=weight_numel, c_out=k.c_out, out_numel=k.out_numel
    )
    return {**counts, **_energies(counts, e, add=float(table.add), mul=float(table.mul))}


def estimate_network(layers: list[LayerTraffic], table: EnergyTable | str, **kw: Any) -> pd.DataFrame:
    """One row per layer (columns: every :class:`LayerMemoryEnergy` field), no total row.

    Keyword arguments (``e_add``, ``e_mul``, ``placement``) go to :func:`estimate_layer`;
    use :func:`totals` for the network sums.
    """
    if not isinstance(table, EnergyTable):
        table = load_energy_table(table)
    rows = [estimate_layer(lt, table, **kw).to_dict() for lt in layers]
    return pd.DataFrame(rows, columns=[f.name for f in fields(LayerMemoryEnergy)])


def totals(df: pd.DataFrame) -> dict:
    """Network sums of every count and energy column of :func:`estimate_network`'s frame."""
    return {col: float(df[col].sum()) for col in ADDITIVE_COLUMNS if col in df.columns}
