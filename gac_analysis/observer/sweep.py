"""T sweep: the observer's measures against the number of time steps, from one checkpoint.

A GAC checkpoint fixes T through its temporal-attention weights (``encoder.ta.mlp.0.weight`` has shape
``[T//2, T, 1, 1, 1]``). Everything else the observer uses does not depend on T: the stem Conv-BN and the
LIF constants, and the SCA convs. So for each T of the sweep the architecture is built at that T and

- every T-independent tensor (stem, SCA, backbone, head) comes from the checkpoint;
- TA comes from the checkpoint where its shapes fit (the checkpoint's own T), else it is **seeded**
  (``torch.Generator().manual_seed(0)``, PyTorch's default-init scale) and the row says
  ``ta_source = "seeded"``;
- a direct-coding checkpoint has no GAC weights at all: TA and SCA are both seeded
  (``sca_source = "seeded"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from gac_analysis.data.batches import iter_image_batches
from gac_analysis.errors import CheckpointError, ConfigError
from gac_analysis.observer.closed_form import NEAR_THRESHOLD_TOL
from gac_analysis.observer.run import observe
from gac_analysis.observer.seeding import SEED, seed_parameters_

__all__ = ["sweep_T", "build_at_T", "SWEEP_COLUMNS"]

SWEEP_COLUMNS = [
    "T",
    "ta_source",
    "sca_source",
    "num_neurons",
    "mean_T_d",
    "mean_T_g",
    "fraction_gt",
    "fraction_eq",
    "fraction_lt",
    "violations",
    "closed_form_checked",
    "closed_form_agree",
    "near_threshold",
    "support_mismatch",
    "holds",
]


def _load(ckpt_path, T_hint: int):
    from gac_analysis.models import load_checkpoint

    try:
        return load_checkpoint(ckpt_path)
    except CheckpointError as first:
        try:  # a direct-coding checkpoint does not fix T: any T of the sweep will do to read it
            return load_checkpoint(ckpt_path, T=T_hint)
        except CheckpointError:
            raise first from None


def build_at_T(canonical: dict, info, T: int):
    """Build a GAC model at ``T`` from a checkpoint's tensors; returns ``(model, ta_source, sca_source)``."""
    from gac_analysis.models import build_model

    if T < 2:
        raise ConfigError(f"T={T} is too small for GAC: its temporal attention needs T >= 2")
    with torch.random.fork_rng(devices=[]):  # the fresh init is overwritten; leave the caller's RNG alone
        model = build_model(
            info.arch, num_classes=info.num_classes, T=T, coding="gac", width=info.width, sca_kernel=info.sca_kernel
        )
    target = model.state_dict()

    def fits(prefix: str) -> bool:
        keys = [k for k in target if k.startswith(prefix)]
        return all(k in canonical and tuple(canonical[k].shape) == tuple(target[k].shape) for k in keys)

    ta_ok, sca_ok = fits("encoder.ta."), fits("encoder.sca.")
    state = {}
    for k, t in target.items():
        if (k.startswith("encoder.ta.") and not ta_ok) or (k.startswith("encoder.sca.") and not sca_ok):
            state[k] = t
            continue
        if k not in canonical or tuple(canonical[k].shape) != tuple(t.shape):
            got = list(canonical[k].shape) if k in canonical else "missing"
            raise CheckpointError(
                f"checkpoint {info.path}: tensor '{k}' ({got}) does not fit the architecture "
                f"{info.arch} at T={T} (expected {list(t.shape)})"
            )
        state[k] = canonical[k]
    model.load_state_dict(state, strict=True)
    if not ta_ok:
        seed_parameters_(model.encoder.ta, SEED)
    if not sca_ok:
        seed_parameters_(model.encoder.sca, SEED)
    model.checkpoint_info = info
    return model.eval(), ("checkpoint" if ta_ok else "seeded"), ("checkpoint" if sca_ok else "seeded")


def _replayable(images: Any, batch_size: int):
    """Images that can be iterated once per T (a one-shot iterator is materialised)."""
    if isinstance(images, (torch.Tensor, list, tuple)) or hasattr(images, "batches"):
        return images
    return list(iter_image_batches(images, batch_size, split=True))


def sweep_T(
    ckpt_path: str | Path,
    Ts: Iterable[int],
    images: Any,
    *,
    atol: float = 1e-6,
    batch_size: int = 8,
    near_threshold_tol: float = NEAR_THRESHOLD_TOL,
    precision: str = "float64",
    seed: int | None = None,
    return_reports: bool = False,
):
    """Observe the checkpoint's encoder at every T in ``Ts`` (see the module docstring).

    Returns a DataFrame with one row per T (columns :data:`SWEEP_COLUMNS`: the TA/SCA weight sources,
    mean T_d and T_g in time steps, fractions of neurons with T_g > / == / < T_d, violations,
    closed-form agreement, near-threshold count, holds); with ``return_reports=True`` also the list of
    :class:`ObserverReport` (without per-neuron tables).
    """
    Ts = list(Ts)
    if not Ts:
        raise ConfigError("the T sweep is empty: give at least one T >= 2")
    for T in Ts:
        if isinstance(T, bool) or not isinstance(T, int) or T < 2:
            raise ConfigError(f"every T of a sweep must be an integer >= 2 (GAC needs it), got {T!r}")
    canonical, info = _load(ckpt_path, Ts[0])
    images = _replayable(images, batch_size)
    rows, reports = [], []
    for T in Ts:
        model, ta_source, sca_source = build_at_T(canonical, info, T)
        rep = observe(
            model,
            images,
            atol=atol,
            batch_size=batch_size,
            near_threshold_tol=near_threshold_tol,
            precision=precision,
            keep_neurons=False,
            seed=seed,
        )
        del model
        rows.append(
            {
                "T": T,
                "ta_source": ta_source,
                "sca_source": sca_source,
                "num_neurons": rep.num_neurons,
                "mean_T_d": rep.mean_T_d,
                "mean_T_g": rep.mean_T_g,
                "fraction_gt": rep.fraction_gt,
                "fraction_eq": rep.fraction_eq,
                "fraction_lt": rep.fraction_lt,
                "violations": rep.num_violations,
                "closed_form_checked": rep.closed_form["checked"],
                "closed_form_agree": rep.closed_form["agree"],
                "near_threshold": rep.closed_form["near_threshold"],
                "support_mismatch": rep.support_mismatch,
                "holds": rep.holds,
            }
        )
        reports.append(rep)
    df = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    return (df, reports) if return_reports else df
