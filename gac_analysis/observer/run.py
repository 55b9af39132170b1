"""Run the observer on a model and a set of images: T_d, T_g, the closed form and Proposition 1.

For every encoder output neuron (image, channel, y, x) of the stem resolution:

- ``T_d``: dynamic duration of direct coding's spikes ``LIF(I)`` (spikes compared exactly);
- ``T_g``: dynamic duration of the GAC output ``G * LIF(I)`` (the model's encoder forward), values
  compared within ``atol`` with the exact zero rule of :mod:`gac_analysis.observer.dynamics`;
- ``T_d_closed``: the closed-form direct-coding duration of :mod:`gac_analysis.observer.closed_form`
  from the stem output ``I`` (float64), with its near-threshold flag.

Proposition 1 says ``T_g >= T_d`` everywhere; every neuron with ``T_g < T_d`` is a violation and is
listed with its position. Images are processed batch by batch; only per-neuron *results* are kept
(and only when ``keep_neurons``), never the activations of earlier batches.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from gac_analysis.data.batches import iter_image_batches
from gac_analysis.errors import ConfigError, DataError
from gac_analysis.observer.closed_form import NEAR_THRESHOLD_TOL, direct_closed_form
from gac_analysis.observer.dynamics import (
    PatternCounter,
    distinct_values,
    dynamic_duration,
    last_change,
    temporal_variance,
)
from gac_analysis.observer.report import DEFINITIONS, ObserverReport, format_verdict
from gac_analysis.observer.seeding import SEED, seed_parameters_

__all__ = ["PRECISIONS", "encoder_outputs", "observe"]

PRECISIONS = ("float32", "float64")
FIRST_DISAGREEMENTS = 20


# ---- inputs ---------------------------------------------------------------------------------------


def _observed_batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
    """The checked batches of at most ``batch_size`` images; :class:`DataError` when there are none."""
    any_batch = False
    for x in iter_image_batches(images, batch_size, split=True):
        any_batch = True
        yield x
    if not any_batch:
        raise DataError("no images to observe: the input is empty")


def _describe_data(images: Any, data_description: dict | None, num_images: int) -> dict:
    if data_description is not None:
        return dict(data_description)
    if hasattr(images, "describe") and callable(images.describe):
        return images.describe()
    kind = "tensor" if isinstance(images, torch.Tensor) else "iterable of batches"
    return {"source": kind, "num_images": num_images}


# ---- the encoders ---------------------------------------------------------------------------------


def _gac_encoder(model, seeded_gac: bool):
    enc = getattr(model, "encoder", None)
    if enc is not None and hasattr(enc, "gate_values") and hasattr(enc, "lif"):
        return enc, False
    if not seeded_gac:
        raise ConfigError(
            f"the model ({getattr(model, 'arch', type(model).__name__)}, coding "
            f"{getattr(model, 'coding', '?')!r}) has no GAC weights: the GAC side of the observer needs them; "
            "use a GAC checkpoint, or --seeded-gac (Python: observe(..., seeded_gac=True)) to compare with a GAC "
            f"encoder of seeded weights (seed {SEED}), which the report flags"
        )
    from gac_analysis.models.gac import GACEncoder

    with torch.random.fork_rng(devices=[]):
        enc = GACEncoder(model.width, model.T, model.lif_variant, model.sca_kernel)
    seed_parameters_(enc, SEED)
    return enc.eval(), True


def encoder_outputs(encoder, lif, I: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(GAC output, spikes)``: the encoder's forward, and the spikes its own LIF made during it.

    The spikes are captured with a forward hook on ``encoder.lif`` (one LIF pass, and exactly the spikes
    the gate multiplied); if the forward does not call its LIF on ``I``, ``lif(I)`` is run separately.
    """
    seen: list[torch.Tensor] = []

    def hook(_module, inputs, output):
        if inputs and inputs[0] is I:
            seen.append(output)

    handle = lif.register_forward_hook(hook)
    try:
        gac = encoder(I)
    finally:
        handle.remove()
    spikes = seen[0] if len(seen) == 1 else lif(I)
    return gac, spikes


# float32 sigmoid(z) = 1 / (1 + exp(-z)) is exactly 0 once exp(-z) overflows (z < -log(max) = -88.72),
# i.e. where the exact gate is below 1 / float32 max (~2.94e-39)
FLOAT32_SIGMOID_ZERO = 1.0 / float(torch.finfo(torch.float32).max)


# ---- accumulation ---------------------------------------------------------------------------------


class _Accumulator:
    def __init__(self, T: int, atol: float, keep_neurons: bool, max_violations: int):
        self.T, self.atol, self.keep, self.max_violations = T, atol, keep_neurons, max_violations
        self.hist_d = np.zeros(T, dtype=np.int64)
        self.hist_g = np.zeros(T, dtype=np.int64)
        self.gt = self.eq = self.lt = 0
        self.n = 0
        self.images = 0
        self.cf = {"checked": 0, "agree": 0, "disagree": 0, "near_threshold": 0, "near_threshold_agree": 0}
        self.first_disagreements: list[dict] = []
        self.support_mismatch = 0
        self.gate_zero = 0
        self.float32_underflow = 0
        self.violations: list[dict] = []
        self.num_violations = 0
        self.causes = {"gate exactly 0 at a spike": 0, "GAC non-zero without a spike": 0, "other": 0}
        self.sums = {c: {"distinct": 0, "last_change": 0, "variance": 0.0, "duration": 0} for c in ("direct", "gac")}
        self.patterns = {"direct": PatternCounter(0.0), "gac": PatternCounter(atol)}
        self.tables: list[dict[str, np.ndarray]] = []
        self.max_input_variation = 0.0

    def _where(self, flat: torch.Tensor, shape) -> tuple[np.ndarray, ...]:
        B, C, H, W = shape
        f = flat.numpy()
        return (self.images + f // (C * H * W), (f // (H * W)) % C, (f // W) % H, f % W)

    def add(
        self, I: torch.Tensor, spikes: torch.Tensor, gac: torch.Tensor, decay: float, vth: float, near_tol: float
    ) -> None:
        """Account one batch: stem output ``I``, the direct spikes and the GAC output, all ``[T, B, C, H, W]``."""
        m = self._measure(I, spikes, gac, decay, vth, near_tol)
        self._count(m)
        self._record_disagreements(m)
        self._record_violations(m)
        secondary = self._add_secondary(m)
        if self.keep:
            self._keep_neurons(m, secondary)
        self.images += m.shape[0]

    def _measure(self, I, spikes, gac, decay: float, vth: float, near_tol: float) -> SimpleNamespace:
        """Per-neuron durations, the closed form and the spike / GAC supports of one batch."""
        T = self.T
        s2, g2 = spikes.reshape(T, -1), gac.reshape(T, -1)
        i0 = I[0].reshape(-1)
        self.max_input_variation = max(self.max_input_variation, float((I - I[:1]).abs().max().item()))
        Td, Tg = dynamic_duration(s2, 0.0), dynamic_duration(g2, self.atol)
        cf = direct_closed_form(i0, T, decay, vth, near_tol=near_tol)
        fired, emitted = s2 != 0, g2 != 0
        return SimpleNamespace(
            shape=tuple(I.shape[1:]),
            s2=s2,
            g2=g2,
            i0=i0,
            Td=Td,
            Tg=Tg,
            cf=cf,
            agree=Td == cf.duration,
            near=cf.near_threshold,
            fired=fired,
            emitted=emitted,
            mismatch=(fired != emitted).any(dim=0),
            zero_at_spike=fired & ~emitted,
            n=s2.shape[1],
        )

    def _count(self, m: SimpleNamespace) -> None:
        """Histograms, T_g vs T_d counts, closed-form agreement and support counts."""
        agree, near = m.agree, m.near
        self.n += m.n
        self.hist_d += np.bincount(m.Td.numpy() - 1, minlength=self.T)
        self.hist_g += np.bincount(m.Tg.numpy() - 1, minlength=self.T)
        self.gt += int((m.Tg > m.Td).sum())
        self.eq += int((m.Tg == m.Td).sum())
        self.lt += int((m.Tg < m.Td).sum())
        self.cf["checked"] += int((~near).sum())
        self.cf["agree"] += int((agree & ~near).sum())
        self.cf["disagree"] += int((~agree & ~near).sum())
        self.cf["near_threshold"] += int(near.sum())
        self.cf["near_threshold_agree"] += int((agree & near).sum())
        self.support_mismatch += int(m.mismatch.sum())
        self.gate_zero += int(m.zero_at_spike.sum())
        if m.g2.dtype == torch.float64:  # what float32 would do to these gates: sigmoid underflow to exactly 0
            self.float32_underflow += int((m.fired & (m.g2.abs() < FLOAT32_SIGMOID_ZERO)).sum())

    def _record_disagreements(self, m: SimpleNamespace) -> None:
        """The first neurons (away from the threshold) where the closed form disagrees with the simulation."""
        bad = torch.nonzero(~m.agree & ~m.near).flatten()
        if not bad.numel() or len(self.first_disagreements) >= FIRST_DISAGREEMENTS:
            return
        bad = bad[: FIRST_DISAGREEMENTS - len(self.first_disagreements)]
        for k, (im, c, y, x) in zip(bad.tolist(), zip(*self._where(bad, m.shape))):
            self.first_disagreements.append(
                {
                    "image": int(im),
                    "channel": int(c),
                    "y": int(y),
                    "x": int(x),
                    "I": float(m.i0[k]),
                    "T_d": int(m.Td[k]),
                    "T_d_closed": int(m.cf.duration[k]),
                    "spikes": m.s2[:, k].tolist(),
                }
            )

    def _record_violations(self, m: SimpleNamespace) -> None:
        """Every neuron with T_g < T_d: counted with its cause, listed up to ``max_violations``."""
        idx = torch.nonzero(m.Tg < m.Td).flatten()
        self.num_violations += int(idx.numel())
        if not idx.numel():
            return
        zeroed = m.zero_at_spike.any(dim=0)
        extra = (m.emitted & ~m.fired).any(dim=0)
        for k, (im, c, y, x) in zip(idx.tolist(), zip(*self._where(idx, m.shape))):
            cause = (
                "gate exactly 0 at a spike"
                if bool(zeroed[k])
                else "GAC non-zero without a spike"
                if bool(extra[k])
                else "other"
            )
            self.causes[cause] += 1
            if len(self.violations) < self.max_violations:
                self.violations.append(
                    {
                        "image": int(im),
                        "channel": int(c),
                        "y": int(y),
                        "x": int(x),
                        "T_d": int(m.Td[k]),
                        "T_g": int(m.Tg[k]),
                        "I": float(m.i0[k]),
                        "spikes": [float(v) for v in m.s2[:, k].tolist()],
                        "gac": [float(v) for v in m.g2[:, k].tolist()],
                        "cause": cause,
                    }
                )

    def _add_secondary(self, m: SimpleNamespace) -> dict[str, torch.Tensor]:
        """Distinct values, last change, temporal variance and patterns of both codings (summed)."""
        sec = {
            "dd": distinct_values(m.s2, 0.0),
            "dg": distinct_values(m.g2, self.atol),
            "ld": last_change(m.s2, 0.0),
            "lg": last_change(m.g2, self.atol),
            "vd": temporal_variance(m.s2),
            "vg": temporal_variance(m.g2),
        }
        for coding, dur, d in (("direct", m.Td, "d"), ("gac", m.Tg, "g")):
            acc = self.sums[coding]
            acc["duration"] += int(dur.sum())
            acc["distinct"] += int(sec[f"d{d}"].sum())
            acc["last_change"] += int(sec[f"l{d}"].sum())
            acc["variance"] += float(sec[f"v{d}"].sum())
        self.patterns["direct"].update(m.s2)
        self.patterns["gac"].update(m.g2)
        return sec

    def _keep_neurons(self, m: SimpleNamespace, sec: dict[str, torch.Tensor]) -> None:
        """One row per neuron of this batch for ``neurons.csv``."""
        image, channel, y, x = self._where(torch.arange(m.n), m.shape)
        small = np.int16 if self.T < 32000 else np.int32
        self.tables.append(
            {
                "image": image.astype(np.int32),
                "channel": channel.astype(np.int32),
                "y": y.astype(np.int32),
                "x": x.astype(np.int32),
                "I": m.i0.numpy().copy(),
                "T_d": m.Td.numpy().astype(small),
                "T_g": m.Tg.numpy().astype(small),
                "T_d_closed": m.cf.duration.numpy().astype(small),
                "first_spike": m.cf.first_spike.numpy().astype(small),
                "near_threshold": m.near.numpy(),
                "closed_agree": m.agree.numpy(),
                "num_spikes": m.fired.sum(dim=0).numpy().astype(small),
                "distinct_d": sec["dd"].numpy().astype(small),
                "distinct_g": sec["dg"].numpy().astype(small),
                "last_change_d": sec["ld"].numpy().astype(small),
                "last_change_g": sec["lg"].numpy().astype(small),
                "var_d": sec["vd"].numpy().astype(np.float32),
                "var_g": sec["vg"].numpy().astype(np.float32),
                "support_mismatch": m.mismatch.numpy(),
            }
        )

    def summary(self) -> pd.DataFrame:
        rows = {}
        for coding in ("direct", "gac"):
            acc, pc = self.sums[coding], self.patterns[coding]
            rows[coding] = {
                "mean_duration": acc["duration"] / self.n,
                "mean_distinct_values": acc["distinct"] / self.n,
                "mean_last_change": acc["last_change"] / self.n,
                "mean_temporal_variance": acc["variance"] / self.n,
                "pattern_entropy_bits": pc.entropy(),
                "num_patterns": pc.num_patterns,
            }
        df = pd.DataFrame.from_dict(rows, orient="index")
        df.index.name = "coding"
        return df

    def neurons(self) -> pd.DataFrame | None:
        if not self.keep:
            return None
        cols = {k: np.concatenate([t[k] for t in self.tables]) for k in self.tables[0]}
        return pd.DataFrame(cols)


def _diagnosis(acc: _Accumulator, precision: str) -> str:
    parts = []
    if acc.support_mismatch == 0:
        parts.append("the GAC output is non-zero exactly where the spikes are, on every neuron")
    else:
        parts.append(
            f"on {acc.support_mismatch} neurons the GAC output is not non-zero exactly where the spikes "
            f"are ({acc.gate_zero} (neuron, step) positions with a spike but a GAC output of exactly 0)"
        )
        if acc.gate_zero and precision == "float32":
            parts.append(
                "a gate of exactly 0 at a spike is float32 sigmoid underflow (TA*SCA below about -88.7, "
                "where exp overflows in float32) unless the encoder is broken; rerun with "
                "precision='float64' (--precision float64) to test the exact-arithmetic statement"
            )
    if acc.float32_underflow and precision == "float64":
        parts.append(
            f"in float32, as the model runs, {acc.float32_underflow} (neuron, step) positions with a spike "
            "get a gate that float32 sigmoid rounds to exactly 0 (its input below -88.7), "
            "which silences those spikes; --precision float32 shows the effect on T_g"
        )
    if acc.num_violations:
        causes = ", ".join(f"{v} {k}" for k, v in acc.causes.items() if v)
        parts.append(f"violation causes: {causes}")
    if acc.cf["disagree"]:
        parts.append(
            f"WARNING: the closed form disagrees with the simulated direct coding on {acc.cf['disagree']} "
            "neurons away from the threshold: a bug in the model's LIF or in the tool"
        )
    if acc.max_input_variation > 0:
        parts.append(
            f"the stem output varies over t (max {acc.max_input_variation:.3g}): the closed form assumes "
            "a constant input; is the model in training mode?"
        )
    return "; ".join(parts)


# ---- the entry point --------------------------------------------------------------------------------


def observe(
    model,
    images,
    *,
    atol: float = 1e-6,
    batch_size: int = 8,
    near_threshold_tol: float = NEAR_THRESHOLD_TOL,
    precision: str = "float64",
    seeded_gac: bool = False,
    keep_neurons: bool = True,
    max_violations: int = 100_000,
    data_description: dict | None = None,
    seed: int | None = None,
) -> ObserverReport:
    """Measure T_d and T_g on every encoder output neuron and test Proposition 1 (``T_g >= T_d``).

    Args:
        model: an :class:`~gac_analysis.models.MSResNet` (GAC coding; see ``seeded_gac``). It is run in
            eval mode (its training flags are restored afterwards) without gradients.
        images: float images ``[B, 3, H, W]`` (normalised), a :class:`~gac_analysis.data.DataSource`, or an
            iterable of such tensors or of ``(images, labels)`` pairs. Image indices in the report count
            from 0 in this order.
        atol: tolerance for comparing real GAC values (output units); spikes are compared exactly.
        batch_size: images per forward pass.
        near_threshold_tol: membrane distance (membrane units) to V_th below which a neuron is counted
            apart from the closed-form agreement.
        precision: ``"float32"`` observes the stem and encoder as the model runs them; ``"float64"``
            evaluates copies of them in float64 (no float32 sigmoid underflow).
        seeded_gac: for a direct-coding model (no GAC weights): ``False`` raises a :class:`ConfigError`;
            ``True`` builds a GAC encoder of the same width/T/LIF with seeded weights (seed 0) and sets
            ``report.seeded_gac``.
        keep_neurons: keep the per-neuron table ``report.neurons`` (one row per neuron); ``False`` keeps
            only aggregates and violations (for large inputs).
        max_violations: violations listed in full (all are counted).
        data_description: provenance of the images (default: ``images.describe()`` for a data source).
        seed: the seed that produced the images, recorded in the provenance.

    Returns:
        An :class:`ObserverReport`. Deterministic: equal inputs give equal reports.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use float32 or float64")
    if not isinstance(atol, (int, float)) or isinstance(atol, bool) or not math.isfinite(atol) or atol < 0:
        raise ConfigError(f"atol must be a finite number >= 0, got {atol!r}")
    if not isinstance(near_threshold_tol, (int, float)) or near_threshold_tol < 0:
        raise ConfigError(f"near_threshold_tol must be >= 0, got {near_threshold_tol!r}")
    atol = float(atol)
    T = int(model.T)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        encoder, seeded = _gac_encoder(model, seeded_gac)
        encoder.eval()
        if precision == "float64":
            stem64 = copy.deepcopy(model.stem).double().eval()
            encoder = copy.deepcopy(encoder).double().eval()

            def stem_fn(x: torch.Tensor) -> torch.Tensor:
                x = x.to(torch.float64)
                return stem64(x.unsqueeze(0).expand(T, *x.shape))
        else:
            stem_fn = model.stem_output
        lif = encoder.lif
        decay, vth = float(lif.decay), float(lif.v_threshold)
        acc = _Accumulator(T, atol, keep_neurons, max_violations)
        with torch.no_grad():
            for x in _observed_batches(images, batch_size):
                I = stem_fn(x)
                gac, spikes = encoder_outputs(encoder, lif, I)
                for where, t in (("stem", I), ("encoder", gac)):  # no verdict on NaN / inf (issue 11 item 4)
                    if not bool(torch.isfinite(t).all()):
                        raise DataError(
                            f"the {where}'s output holds NaN or inf values: Proposition 1 cannot be "
                            "judged on it; check the model's weights and the input images"
                        )
                acc.add(I, spikes, gac, decay, vth, float(near_threshold_tol))
    finally:
        for m, was in flags.items():
            m.training = was

    from gac_analysis.provenance import model_provenance, software_versions

    model_facts = model_provenance(model)
    provenance = {
        **software_versions(),
        "arch": model_facts["arch"],
        "T": T,
        "coding": model_facts["coding"],
        "lif_variant": getattr(lif, "variant", None),
        "decay": decay,
        "v_threshold": vth,
        "width": model_facts["width"],
        "checkpoint": model_facts["checkpoint"],
        "data": _describe_data(images, data_description, acc.images),
        "seed": seed,
        "gac_weights": f"seeded (torch.Generator seed {SEED})" if seeded else "model",
        "max_input_variation_over_t": acc.max_input_variation,
    }
    closed = {**acc.cf, "first_disagreements": acc.first_disagreements}
    return ObserverReport(
        T=T,
        atol=atol,
        near_threshold_tol=float(near_threshold_tol),
        precision=precision,
        num_images=acc.images,
        num_neurons=acc.n,
        neurons=acc.neurons(),
        summary=acc.summary(),
        histogram_T_d=[int(v) for v in acc.hist_d],
        histogram_T_g=[int(v) for v in acc.hist_g],
        count_gt=acc.gt,
        count_eq=acc.eq,
        count_lt=acc.lt,
        closed_form=closed,
        support_mismatch=acc.support_mismatch,
        gate_zero_at_spike=acc.gate_zero,
        float32_gate_underflow_at_spike=acc.float32_underflow if precision == "float64" else None,
        violations=acc.violations,
        num_violations=acc.num_violations,
        verdict=format_verdict(acc.n, acc.violations, acc.num_violations),
        holds=acc.num_violations == 0,
        diagnosis=_diagnosis(acc, precision),
        seeded_gac=seeded,
        provenance=provenance,
        definitions=dict(DEFINITIONS),
    )
