"""Accounting: forward hooks, exact counting kernels, report tables, and ``profile``."""

from __future__ import annotations

import torch

from gac_analysis.accounting.engine import Counter, CounterConfig
from gac_analysis.accounting.handles import HANDLES, register_handle
from gac_analysis.accounting.report import SCHEMA, SCHEMA_VERSION, Report, build_report, device_of
from gac_analysis.data.batches import iter_image_batches  # one home, re-exported

__all__ = ["Counter", "CounterConfig", "HANDLES", "Report", "SCHEMA", "SCHEMA_VERSION", "build_report", "profile",
           "register_handle", "iter_image_batches", "count_images", "report_from_counter"]


def count_images(model: torch.nn.Module, images, progress=None) -> Counter:
    """Run ``model`` over ``images`` with counting hooks (the first half of :func:`profile`).

    Returns the :class:`Counter` (hooks detached). No batches give a counter with no sites and
    ``num_images == 0`` (e.g. a process with an empty shard).
    """
    from gac_analysis.accounting.accuracy import Accuracy, batches_with_labels
    from gac_analysis.data.validate import validate_images

    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        with Counter(model) as counter, torch.inference_mode():
            counter.accuracy = Accuracy(counter.T)  # top-1 over the labelled images (accounting/accuracy.py)
            for i, (batch, labels) in enumerate(batches_with_labels(images)):
                validate_images(batch, where=f"batch {i}")
                counter.accuracy.update(model(batch.to(device, non_blocking=True)), labels)
                if progress is not None:
                    progress(i, int(batch.shape[0]))
    finally:
        model.train(was_training)
    return counter


def report_from_counter(counter: Counter, model: torch.nn.Module, *, energy: str = "45nm-fp32",
                        reuse_static: bool = True, fold_bn: bool = False, data: dict | None = None) -> Report:
    """Price a counter (possibly summed across processes) into a :class:`Report` with its provenance
    (the second half of :func:`profile`)."""
    from gac_analysis.energy.tables import load_energy_table
    from gac_analysis.errors import DataError
    from gac_analysis.provenance import model_provenance, software_versions

    table = load_energy_table(energy)
    if counter.num_images == 0:
        raise DataError("no images were analysed: the data set is empty; check --data / --num-images")
    provenance = {**software_versions(), "model": model_provenance(model), "data": data or {"source": "tensor"},
                  "num_images": counter.num_images, "T": counter.T, "device": str(device_of(model)),
                  "energy_table": table.name}
    report = counter.compute(table=table, provenance=provenance, reuse_static=reuse_static, fold_bn=fold_bn)
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


def profile(model: torch.nn.Module, images, *, energy: str = "45nm-fp32", reuse_static: bool = True,
            fold_bn: bool = False, data: dict | None = None, progress=None) -> Report:
    """Count every operation and spike of ``model`` on ``images`` and price it in both conventions.

    Args:
        model: a model with a ``T`` attribute whose forward maps images ``[B, 3, H, W]`` to
            ``[T, B, classes]`` (every model of :mod:`gac_analysis.models`).
        images: a tensor ``[B, 3, H, W]``, a ``DataSource`` (``gac_analysis.data.open_source``; batches of
            32), or an iterable of such batches or of ``(images, labels)``.
        energy: a bundled energy table name (``45nm-fp32``, ``45nm-fp16``, ``45nm-int8``, ``45nm-int32``)
            or a YAML file path.
        reuse_static: count time-invariant work (stem on the repeated image, SCA, TA pooling) once.
        fold_bn: price batch norm as folded into the conv (1 add per element) instead of unfolded.
        data: description of the data for the provenance (e.g. ``DataSource.describe()``).
        progress: optional callable ``progress(batch_index, batch_size)`` called after each batch.

    Returns:
        a :class:`Report`; counts are totals over all images and time steps.
    """
    from gac_analysis.energy.tables import load_energy_table

    load_energy_table(energy)  # a bad table fails before any work
    counter = count_images(model, images, progress)
    return report_from_counter(counter, model, energy=energy, reuse_static=reuse_static, fold_bn=fold_bn, data=data)
