"""A small, honest trainer for the project's spiking models (the reference CIFAR recipe, scaled down).

Recipe (the CIFAR training recipe of the GAC reference code, Qiu et al., AAAI 2024): SGD with momentum
0.9, lr 0.1, weight decay 5e-5 on every parameter, a cosine schedule over all optimiser steps
(``CosineAnnealingLR(T_max=steps)``, stepped once per optimiser step), cross-entropy on the
time-averaged output ``logits.mean(0)``; the surrogate gradients come from the model's LIF neurons.
CutMix and the 250-epoch budget of the reference are not reproduced.

Everything random is seeded: :func:`set_deterministic` seeds torch / numpy / random, and one
``torch.Generator`` seeded with ``seed`` draws the shuffling order and the augmentation, so two runs
with the same seed, data, thread count and torch build give identical losses.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from gac_analysis.data.base import DataSource, TensorStore
from gac_analysis.training.augment import POLICY_DESCRIPTIONS, Augment, make_augment, zero_pixel_fill

#: The learning-rate schedule and loss :func:`train` uses (recorded in :attr:`TrainResult.recipe`).
SCHEDULE = "cosine over all optimiser steps"
LOSS = "cross-entropy on logits.mean(0)"

TensorPair = tuple[torch.Tensor, torch.Tensor]
TrainData = Union[DataSource, TensorPair]


@dataclass
class EpochStats:
    """One finished (or, with ``max_steps``, cut short) epoch."""

    epoch: int  # 1-based
    steps: int  # optimiser steps taken in this epoch
    train_loss: float  # mean loss over the epoch's steps
    train_accuracy: float  # accuracy on the (augmented) training batches, in train mode
    heldout_accuracy: Optional[float]
    lr_end: float  # learning rate after the epoch's last step
    seconds: float  # wall time of the epoch (evaluation included)


@dataclass
class TrainResult:
    """What :func:`train` did: per-step losses, per-epoch statistics and timing."""

    step_losses: list[float] = field(default_factory=list)
    epochs: list[EpochStats] = field(default_factory=list)
    steps: int = 0
    planned_steps: int = 0
    train_time_s: float = 0.0
    seed: int = 0
    stopped_early: bool = False  # max_steps ended the run before the planned epochs
    #: the settings the run used: lr, momentum, weight_decay, schedule, loss, augmentation (what it does)
    recipe: dict = field(default_factory=dict)

    @property
    def epoch_losses(self) -> list[float]:
        return [e.train_loss for e in self.epochs]

    @property
    def epoch_accuracies(self) -> list[Optional[float]]:
        return [e.heldout_accuracy for e in self.epochs]

    @property
    def final_accuracy(self) -> Optional[float]:
        """Held-out accuracy after the last epoch (``None`` without ``eval_data``)."""
        return self.epochs[-1].heldout_accuracy if self.epochs else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epoch_losses"] = self.epoch_losses
        d["epoch_accuracies"] = self.epoch_accuracies
        return d


def set_deterministic(seed: int, *, strict: bool = False) -> torch.Generator:
    """Seed ``random``, numpy and torch; return a ``torch.Generator`` seeded with ``seed``.

    ``strict=True`` also calls ``torch.use_deterministic_algorithms(True)`` (process-wide; CPU kernels
    are deterministic for a fixed thread count without it).
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    torch.manual_seed(seed)
    if strict:
        torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


# ---- data access ------------------------------------------------------------------------------------


class _Batches:
    """Uniform access to training data: a DataSource (loaded per batch) or in-memory tensors."""

    def __init__(self, data: TrainData):
        if isinstance(data, DataSource):
            self.source = data
            self.images = None
            self.labels = data.labels
            if isinstance(data.images, TensorStore):
                # In-memory float sources (digits): take them once instead of re-loading every batch.
                self.images, self.labels = next(data.batches(len(data)))
        else:
            images, labels = data
            if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"expected images [N, C, H, W] and labels [N], got {list(images.shape)} and {list(labels.shape)}"
                )
            self.source = None
            self.images = images.float()
            self.labels = labels.long()
        if bool((self.labels < 0).any()):
            raise ValueError("training data has unknown labels (-1); train on a labelled source")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def get(self, idx: torch.Tensor) -> TensorPair:
        if self.images is not None:
            return self.images[idx], self.labels[idx]
        return next(self.source.batches(len(idx), indices=idx.tolist()))


def _resolve_augment(augment, data: TrainData) -> tuple[Augment | None, str]:
    """``(augmentation, what it does)``: ``"auto"`` picks ``digits`` / ``cifar`` from a DataSource's name
    (``none`` for bare tensors); a callable is used as given."""
    if augment is None:
        return None, POLICY_DESCRIPTIONS["none"]
    if callable(augment):
        return augment, f"custom: {getattr(augment, '__name__', type(augment).__name__)}"
    if not isinstance(augment, str):
        raise ValueError(f"augment must be a policy name, a callable or None, got {augment!r}")
    fill: float | Sequence[float] = 0.0
    if isinstance(data, DataSource):
        fill = zero_pixel_fill(data.mean, data.std)
    if augment == "auto":
        name = data.name.split(":", 1)[0].lower() if isinstance(data, DataSource) else ""
        augment = {"digits": "digits", "cifar10": "cifar", "cifar100": "cifar"}.get(name, "none")
    return make_augment(augment, fill=fill), POLICY_DESCRIPTIONS[augment]


# ---- evaluation ---------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: torch.nn.Module, images, labels: torch.Tensor | None = None, batch_size: int = 128) -> float:
    """Top-1 accuracy of ``model`` (eval mode, no grad, prediction = argmax of the mean over T).

    ``images``/``labels`` are tensors ``[N, 3, H, W]`` / ``[N]``, or ``images`` is a DataSource (then
    ``labels`` is ``None``). The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        if isinstance(images, DataSource):
            batches = images.batches(batch_size)
        else:
            if labels is None:
                raise ValueError("evaluate needs labels with image tensors")
            batches = (
                (images[i : i + batch_size], labels[i : i + batch_size])
                for i in range(0, int(images.shape[0]), batch_size)
            )
        for x, y in batches:
            pred = model(x).mean(0).argmax(1)
            correct += int((pred == y).sum())
            total += int(y.shape[0])
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: no images")
    return correct / total


# ---- training -----------------------------------------------------------------------------------------


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def _train_epoch(
    model,
    batches: _Batches,
    order: torch.Tensor,
    *,
    batch_size: int,
    steps_per_epoch: int,
    planned: int,
    aug,
    gen: torch.Generator,
    opt,
    sched,
    result: TrainResult,
    bar,
    task,
    epoch_label: str,
) -> tuple[list[float], int, int]:
    """One pass over ``order``: (losses of its steps, correct predictions, images seen); stops at ``planned``
    steps in all. :class:`FloatingPointError` when the loss stops being finite."""
    losses, correct, seen = [], 0, 0
    for s in range(steps_per_epoch):
        if result.steps >= planned:
            break
        x, y = batches.get(order[s * batch_size : (s + 1) * batch_size])
        if aug is not None:
            x = aug(x, gen)
        out = model(x).mean(0)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged: loss {value} at step {result.steps + 1}; lower the learning rate"
            )
        losses.append(value)
        result.step_losses.append(value)
        result.steps += 1
        correct += int((out.detach().argmax(1) == y).sum())
        seen += int(y.shape[0])
        bar.update(task, advance=1, epoch=epoch_label, loss=value)
    return losses, correct, seen


def _held_out_accuracy(model, eval_data, batch_size: int) -> Optional[float]:
    if eval_data is None:
        return None
    if isinstance(eval_data, DataSource):
        return evaluate(model, eval_data, batch_size=batch_size)
    images, labels = eval_data
    return evaluate(model, images, labels, batch_size)


def train(
    model: torch.nn.Module,
    data: TrainData,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-5,
    seed: int = 0,
    augment: Union[str, Augment, None] = "auto",
    eval_data=None,
    eval_batch_size: int = 128,
    max_steps: Optional[int] = None,
    progress: bool = True,
    on_epoch: Optional[Callable[[EpochStats], None]] = None,
) -> TrainResult:
    """Train ``model`` in place and return a :class:`TrainResult` (with the ``recipe`` it used).

    Args:
        model: images ``[B, 3, H, W]`` -> logits ``[T, B, classes]`` (this project's MSResNet).
        data: a labelled :class:`DataSource` or a pair ``(images [N, 3, H, W], labels [N])``.
        epochs, batch_size: passes over ``data`` and images per optimiser step (the last batch of an
            epoch may be smaller; shuffled anew each epoch).
        lr, momentum, weight_decay: SGD settings; the lr follows a cosine over all planned steps.
        seed: seeds torch (see :func:`set_deterministic`) and the generator for shuffling/augmentation.
        augment: ``"auto"`` (digits: shift <= 2 px; CIFAR: crop pad 4 + flip; tensors: none), a policy
            name (``none``/``digits``/``cifar``), a callable ``(x, generator) -> x``, or ``None``.
        eval_data: held-out data (DataSource or ``(images, labels)``), evaluated after every epoch.
        max_steps: stop after this many optimiser steps (the schedule is planned for
            ``min(max_steps, epochs * steps_per_epoch)``).
        progress: show a rich progress bar on stderr.
        on_epoch: called with each :class:`EpochStats` as soon as the epoch ends.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1 (got {epochs}, {batch_size})")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (got {max_steps})")
    gen = set_deterministic(seed)
    batches = _Batches(data)
    aug, augmentation = _resolve_augment(augment, data)
    n = len(batches)
    steps_per_epoch = math.ceil(n / batch_size)
    planned = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=planned)
    result = TrainResult(
        planned_steps=planned,
        seed=seed,
        recipe={
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "schedule": SCHEDULE,
            "loss": LOSS,
            "augmentation": augmentation,
        },
    )
    start = time.perf_counter()
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("train", total=planned, epoch=f"1/{epochs}", loss=float("nan"))
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=gen)
            losses, correct, seen = _train_epoch(
                model,
                batches,
                order,
                batch_size=batch_size,
                steps_per_epoch=steps_per_epoch,
                planned=planned,
                aug=aug,
                gen=gen,
                opt=opt,
                sched=sched,
                result=result,
                bar=bar,
                task=task,
                epoch_label=f"{epoch}/{epochs}",
            )
            if not losses:
                break
            stats = EpochStats(
                epoch=epoch,
                steps=len(losses),
                train_loss=sum(losses) / len(losses),
                train_accuracy=correct / max(seen, 1),
                heldout_accuracy=_held_out_accuracy(model, eval_data, eval_batch_size),
                lr_end=opt.param_groups[0]["lr"],
                seconds=time.perf_counter() - t0,
            )
            result.epochs.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            if result.steps >= planned:
                result.stopped_early = epoch < epochs
                break
    model.eval()
    result.train_time_s = time.perf_counter() - start
    return result
