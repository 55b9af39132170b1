"""Accounting: forward hooks, exact counting kernels, report tables, and ``profile``."""

from __future__ import annotations

import warnings

import torch

from gac_analysis.accounting.engine import (
    CounterConfig,
    OpCounter,
    TimeStepsError,
    UnsupportedOpsError,
    is_internal,
    resolve_T,
)
from gac_analysis.accounting.handles import HANDLES, register_handle
from gac_analysis.accounting.report import SCHEMA, SCHEMA_VERSION, Report, build_report, device_of
from gac_analysis.data.batches import iter_image_batches  # one home, re-exported
from gac_analysis.errors import GacError, GacWarning, ModelForwardError

__all__ = [
    "OpCounter",
    "CounterConfig",
    "HANDLES",
    "Report",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TimeStepsError",
    "UnsupportedOpsError",
    "UnsupportedOpsWarning",
    "build_report",
    "profile",
    "register_handle",
    "iter_image_batches",
    "count_images",
    "report_from_counter",
]


class UnsupportedOpsWarning(GacWarning):
    """The forward ran operations that no counting rule knows; they are listed under ``unsupported``."""


def _neuron_memories(model: torch.nn.Module) -> list[tuple[torch.nn.Module, dict]]:
    """A copy of every SpikingJelly memory (``v`` and the like) of ``model``, to restore afterwards."""
    from spikingjelly.activation_based.base import MemoryModule

    saved = []
    for m in model.modules():
        if isinstance(m, MemoryModule):
            saved.append((m, {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in m._memories.items()}))
    return saved


def _reset_neurons(model: torch.nn.Module) -> None:
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


def _forward(model: torch.nn.Module, batch: torch.Tensor, index: int, T: int):
    """``model(batch)``; what the model's own forward raises (a shape it does not take, a bug of its
    own) becomes one :class:`~gac_analysis.errors.ModelForwardError` line; an error of the counting
    itself (``engine.is_internal``) keeps its traceback."""
    try:
        return model(batch)
    except GacError:
        raise
    except Exception as e:
        if is_internal(e):
            raise
        detail = " ".join(str(e).split()) or "(no message)"
        raise ModelForwardError(
            f"batch {index}: {_model_name(model)}'s forward raised {type(e).__name__} on images of shape "
            f"{list(batch.shape)} (T={T}): {detail[:300]}; check that the model takes this data "
            "(channels, image size, T, --model-kwargs)"
        ) from e


def _model_name(model) -> str:
    """The class name of the user's model (inside the wrapper that runs a model without T over time)."""
    inner = getattr(model, "net", None) if type(model).__name__ == "DirectEncodingOverTime" else None
    return type(inner if inner is not None else model).__name__


def _report_unsupported(counter: OpCounter, strict: bool) -> None:
    """``strict``: an :class:`UnsupportedOpsError` naming the ops without a rule; else one warning."""
    rows = counter.unsupported_rows()
    if not rows:
        return
    ops = sorted({r["op"] for r in rows})
    where = sorted({r["module"] for r in rows})
    listed = ", ".join(ops)
    if strict:
        raise UnsupportedOpsError(
            f"no counting rule for {len(ops)} operation(s): {listed} (in {', '.join(where[:5])}"
            f"{' ...' if len(where) > 5 else ''}); add a rule (docs/counting_rules.md) or run "
            "without --strict to list them under 'unsupported'"
        )
    warnings.warn(
        f"gac-analysis: no counting rule for {listed}: listed under 'unsupported' in the report, not counted",
        UnsupportedOpsWarning,
        stacklevel=3,
    )


def count_images(
    model: torch.nn.Module,
    images,
    progress=None,
    *,
    T: int | None = None,
    strict: bool = False,
    handles: tuple | None = None,
) -> OpCounter:
    """Run ``model`` over ``images`` with counting hooks (the first half of :func:`profile`).

    Neuron state is reset (SpikingJelly's ``functional.reset_net``) before every batch; afterwards
    the model is left as it was found (training flag, neuron memories). Returns the :class:`OpCounter`
    (hooks detached). No batches give a counter with no sites and ``num_images == 0`` (e.g. a
    process with an empty shard). Operations without a rule are warned about once, or raise
    :class:`UnsupportedOpsError` when ``strict``.
    """
    from gac_analysis.accounting.accuracy import Accuracy, batches_with_labels
    from gac_analysis.accounting.finite import FiniteWatch, NonFiniteError, first_nonfinite_module
    from gac_analysis.data.validate import validate_images

    config = CounterConfig(T=resolve_T(model, T), handles=HANDLES if handles is None else tuple(handles))
    device = device_of(model)
    was_training = model.training
    memories = _neuron_memories(model)
    model.eval()
    try:
        # Non-finite weights or activations are an error, not a number: the weights are checked on entry,
        # the activations where NaN or inf could vanish (one host read per batch); a batch that is not
        # finite is run again under a full watch that names the module where the values first appear.
        not_finite = None  # (index, batch) of a batch whose forward was not finite
        sentinel = FiniteWatch(model, sentinel=True)
        with OpCounter(model, config) as counter, sentinel, torch.inference_mode():
            counter.watch_inputs = sentinel.flag_function_inputs  # comparisons between modules, too
            counter.accuracy = Accuracy(counter.T)  # top-1 over the labelled images (accounting/accuracy.py)
            for i, (batch, labels) in enumerate(batches_with_labels(images)):
                validate_images(batch, where=f"batch {i}")
                _reset_neurons(model)
                batch = batch.to(device, non_blocking=True)
                counter.accuracy.update(_forward(model, batch, i, counter.T), labels)
                if not sentinel.forward_finite():
                    not_finite = (i, batch)
                    break
                if progress is not None:
                    progress(i, int(batch.shape[0]))
        if not_finite is not None:  # run again, hooks off, under a full watch that names the module
            i, batch = not_finite
            where = sentinel.first_nonfinite_function()
            if where is not None:
                raise NonFiniteError(
                    f"batch {i}: an input of '{where}' (an operation in the model's forward, where NaN or inf "
                    "could vanish) holds NaN or inf values; no result is reported: check the model's numerics "
                    "(overflow, division by zero) before that operation"
                )
            raise first_nonfinite_module(model, batch) or NonFiniteError(
                f"batch {i} gave NaN or inf values in the model's forward; no result is reported"
            )
    finally:
        _reset_neurons(model)
        for module, saved in memories:
            for key, value in saved.items():
                setattr(module, key, value)
        model.train(was_training)
    _report_unsupported(counter, strict)
    return counter


def report_from_counter(
    counter: OpCounter,
    model: torch.nn.Module,
    *,
    energy: str = "45nm-fp32",
    reuse_static: bool = True,
    fold_bn: bool = False,
    data: dict | None = None,
    integer_pricing: str = "mac",
) -> Report:
    """Price a counter (possibly summed across processes) into a :class:`Report` with its provenance
    (the second half of :func:`profile`)."""
    from gac_analysis.energy.tables import load_energy_table
    from gac_analysis.errors import DataError
    from gac_analysis.provenance import model_provenance, software_versions

    table = load_energy_table(energy)
    if counter.num_images == 0:
        raise DataError("no images were analysed: the data set is empty; check --data / --num-images")
    provenance = {
        **software_versions(),
        "model": model_provenance(model),
        "data": data or {"source": "tensor"},
        "num_images": counter.num_images,
        "T": counter.T,
        "device": str(device_of(model)),
        "energy_table": table.name,
    }
    report = counter.compute(
        table=table, provenance=provenance, reuse_static=reuse_static, fold_bn=fold_bn, integer_pricing=integer_pricing
    )
    _add_accuracy(report, getattr(counter, "accuracy", None))
    return report


def _add_accuracy(report: Report, accuracy) -> None:
    """Top-1 accuracy and energy per correct prediction (``accuracy: null`` without labels)."""
    from gac_analysis.accounting.accuracy import accuracy_summary

    if accuracy is None:
        return
    report.accuracy = accuracy_summary(accuracy.compute(), report.energy, report.num_images)
    if accuracy.unavailable:
        report.provenance["accuracy_unavailable"] = accuracy.unavailable


def profile(
    model: torch.nn.Module,
    images,
    *,
    T: int | None = None,
    strict: bool = False,
    integer_pricing: str = "mac",
    energy: str = "45nm-fp32",
    reuse_static: bool = True,
    fold_bn: bool = False,
    data: dict | None = None,
    progress=None,
    handles: tuple | None = None,
) -> Report:
    """Count every operation and spike of ``model`` on ``images`` and price it in both conventions.

    Args:
        model: any ``nn.Module`` SNN whose forward takes image batches ``[B, C, H, W]``: this project's
            models, SpikingJelly 2.0 models with neurons in step mode ``'s'`` (the forward loops over T)
            or ``'m'``, plain PyTorch layers. Every neuron is a LIF site; every tensor operation is
            counted by a rule, known to be free, or listed under ``unsupported``
            (docs/counting_rules.md).
        T: time steps; default ``model.T`` (a :class:`TimeStepsError` when both are missing or differ).
        strict: raise :class:`UnsupportedOpsError` when an operation has no counting rule.
        integer_pricing: how synaptic ops on integer-valued, non-binary inputs (SEW ADD, spike counts)
            are priced: ``"mac"`` (one MAC per pair, syops' choice) or ``"k_ac"`` (k ACs for a value k).
        images: a tensor ``[B, 3, H, W]``, a ``DataSource`` (``gac_analysis.data.open_source``; batches of
            32), or an iterable of such batches or of ``(images, labels)``.
        energy: a bundled energy table name (``45nm-fp32``, ``45nm-fp16``, ``45nm-int8``, ``45nm-int32``)
            or a YAML file path.
        reuse_static: count time-invariant work (stem on the repeated image, SCA, TA pooling) once.
        fold_bn: price batch norm as folded into the conv (1 add per element) instead of unfolded.
        data: description of the data for the provenance (e.g. ``DataSource.describe()``).
        progress: optional callable ``progress(batch_index, batch_size)`` called after each batch.
        handles: the module rule table for this run (``register_handle`` returns an extended copy).

    Returns:
        a :class:`Report`; counts are totals over all images and time steps.
    """
    from gac_analysis.energy.conventions import check_integer_pricing
    from gac_analysis.energy.tables import load_energy_table

    load_energy_table(energy)  # a bad table or option fails before any work
    check_integer_pricing(integer_pricing)
    counter = count_images(model, images, progress, T=T, strict=strict, handles=handles)
    return report_from_counter(
        counter,
        model,
        energy=energy,
        reuse_static=reuse_static,
        fold_bn=fold_bn,
        data=data,
        integer_pricing=integer_pricing,
    )
