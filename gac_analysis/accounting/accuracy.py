"""Top-1 accuracy over the analysed images, beside the energy (NeuroBench-style ``reset/update/compute``).

Labels come with the data: ``(images, labels)`` batches, a :class:`~gac_analysis.data.DataSource`
(labels ``-1`` where unknown). Only images with a known label (``>= 0``) count; with none, the report
carries ``accuracy: null`` ("no labels").

The prediction is the arg-max of the time-averaged output: ``logits.mean(0)`` for a time-major output
``[T, B, classes]`` (this project's and SpikingJelly's multi-step convention), the output itself for
``[B, classes]``. Any other output shape, or a label outside the model's classes, leaves the accuracy
*unavailable* with the reason stated, never a number the tool cannot stand behind.

``update`` never synchronises with the device (counts stay int64 tensors where the model runs);
:meth:`Accuracy.state` reads them once, so a distributed run can sum them across processes.
"""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["Accuracy", "accuracy_summary", "batches_with_labels"]

PJ_PER_MJ = 1e9


def batches_with_labels(images, batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(images, labels or None)`` from a tensor ``[B, 3, H, W]`` (no labels), a data source
    (batches of ``batch_size``), or an iterable of tensors or ``(images, labels)`` pairs."""
    if isinstance(images, torch.Tensor):
        yield images, None
        return
    if hasattr(images, "batches") and callable(images.batches):
        images = images.batches(batch_size)
    for item in images:
        if isinstance(item, (tuple, list)):
            yield item[0], (item[1] if len(item) > 1 and isinstance(item[1], torch.Tensor) else None)
        else:
            yield item, None


class Accuracy:
    """Counts labelled images and correct top-1 predictions of a classifier over batches.

    Attributes (after :meth:`compute` or :meth:`state`): ``labelled`` images with a known label,
    ``correct`` of them predicted right, ``unavailable``: why no accuracy can be given (or ``None``).
    """

    def __init__(self, T: int | None = None):
        self.T = T
        self.reset()

    def reset(self) -> None:
        """Forget every count."""
        self._labelled: torch.Tensor | int = 0
        self._correct: torch.Tensor | int = 0
        self._out_of_range: torch.Tensor | int = 0
        self._bad_shape: list[int] | None = None

    def _predictions(self, output: torch.Tensor, batch: int) -> torch.Tensor | None:
        if not isinstance(output, torch.Tensor):
            return None
        if output.dim() == 3 and output.shape[1] == batch and (self.T is None or output.shape[0] == self.T):
            return output.mean(0)
        if output.dim() == 2 and output.shape[0] == batch:
            return output
        return None

    def update(self, output, labels: torch.Tensor | None) -> None:
        """Add one batch: the model's ``output`` and the batch's ``labels`` (int ``[B]``, ``-1`` unknown)."""
        if labels is None or self._bad_shape is not None:
            return
        labels = labels.reshape(-1)
        scores = self._predictions(output, int(labels.shape[0]))
        if scores is None:
            self._bad_shape = list(output.shape) if isinstance(output, torch.Tensor) else []
            return
        labels = labels.to(scores.device)
        known = labels >= 0
        in_range = known & (labels < scores.shape[-1])
        self._labelled = self._labelled + known.sum()
        self._out_of_range = self._out_of_range + (known & ~in_range).sum()
        self._correct = self._correct + ((scores.argmax(-1) == labels) & in_range).sum()

    def state(self) -> list[int]:
        """``[labelled, correct, labels outside the classes, output shape unreadable (0/1)]`` as ints
        (one device read; a distributed run sums these over the processes)."""
        return [int(self._labelled), int(self._correct), int(self._out_of_range), int(self._bad_shape is not None)]

    def load_state(self, values: list[int]) -> None:
        """Replace the counts by ``values`` (the form of :meth:`state`, e.g. summed over processes)."""
        self._labelled, self._correct, self._out_of_range = (int(v) for v in values[:3])
        if values[3] and self._bad_shape is None:
            self._bad_shape = []

    def compute(self) -> dict | None:
        """``{"labelled", "correct", "top1"}`` (top1: fraction 0..1), ``None`` without labels or when
        unavailable (see :attr:`unavailable`)."""
        labelled, correct, _, _ = self.state()
        if self.unavailable is not None or labelled == 0:
            return None
        return {"labelled": labelled, "correct": correct, "top1": correct / labelled}

    @property
    def unavailable(self) -> str | None:
        """Why labelled data gives no accuracy (``None``: nothing is wrong)."""
        if self._bad_shape is not None:
            shape = f" {self._bad_shape}" if self._bad_shape else ""
            return (
                f"the model's output{shape} is neither [T, B, classes] nor [B, classes], so no class "
                "prediction can be read from it"
            )
        out = int(self._out_of_range)
        if out:
            return f"{out} labels lie outside the model's classes: the data does not fit the classifier"
        return None


def accuracy_summary(acc: dict | None, energy: dict, num_images: int) -> dict | None:
    """The report's ``accuracy`` entry: ``acc`` plus energy per correct prediction in mJ, both conventions.

    Energy per correct prediction = (energy per image x labelled images) / correct predictions: the
    energy spent on the labelled images divided by the right answers among them (mJ per correct
    prediction); ``None`` when no prediction is correct.
    """
    if acc is None:
        return None
    per_correct = {}
    for conv in ("paper", "complete"):
        per_image = float(energy[conv]["total_pj"]) / max(num_images, 1) / PJ_PER_MJ
        per_correct[conv] = per_image * acc["labelled"] / acc["correct"] if acc["correct"] else None
    return {**acc, "energy_per_correct_mj": per_correct}
