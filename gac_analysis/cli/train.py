"""``gac-analyze train``: train a GAC-MS-ResNet (or direct-coding MS-ResNet) and save a checkpoint.

The defaults reproduce the embedded default model (``gac_analysis/assets/default_digits_gac.pt``,
see ``docs/default_model.md``): GAC-MS-ResNet-18, CIFAR topology, stem width 16, T=4, on digits.
"""

from __future__ import annotations

import math
import platform
import shlex
import time
from pathlib import Path
from typing import Optional

import typer

from gac_analysis.cli.common import SEED_MAX, check_output_file, console, handles_errors, plural
from gac_analysis.errors import ConfigError, DataError

#: The kind ``train`` records its checkpoints under (fileio.MANIFEST): it replaces only its own.
TRAIN_KIND = "train"

TRAIN_SOURCES = ("digits", "cifar10", "cifar100")
DEFAULT_EPOCHS = 15
#: Upper end of ``--lr`` (a finite bound, so ``--lr inf`` is a usage error, not a diverged run).
LR_MAX = 1e3


def _format_command(
    *,
    data: str,
    arch: str,
    width: int,
    T: int,
    coding: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    out: Path,
    max_steps: Optional[int],
    threads: Optional[int],
) -> str:
    """The command line that reproduces this run, every result-affecting option spelled out."""
    args = [
        "--data",
        data,
        "--arch",
        arch,
        "--width",
        str(width),
        "--T",
        str(T),
        "--coding",
        coding,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--lr",
        repr(float(lr)),
        "--seed",
        str(seed),
    ]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if threads is not None:
        args += ["--threads", str(threads)]
    args += ["--out", str(out)]
    return "gac-analyze train " + " ".join(shlex.quote(a) for a in args)


def _lr_in_range(value: float) -> float:
    """``--lr``: a finite number in (0, LR_MAX] (NaN is named as such, not as a number above the bound)."""
    if not (math.isfinite(value) and 0 < value <= LR_MAX):
        raise typer.BadParameter(f"must be a finite number > 0 and <= {LR_MAX:g} (got {value})")
    return value


def _check_options(*, data: str, arch: str, T: int, coding: str, lr: float, out: Path) -> None:
    """Validate, before any work, what typer's declared ranges cannot: the data spec, the architecture and
    coding names, GAC's T >= 2, a finite positive learning rate (NaN passes any range) and a file ``--out``."""
    from gac_analysis.models.registry import ARCHS

    kind, sep, path = data.strip().partition(":")
    kind = kind.lower()
    if kind not in TRAIN_SOURCES or (kind == "digits" and sep) or (kind != "digits" and not path.strip()):
        raise DataError(f"unknown training data '{data}': use digits, cifar10:PATH or cifar100:PATH")
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch '{arch}': use one of {', '.join(sorted(ARCHS))}")
    if coding not in ("gac", "direct"):
        raise ConfigError(f"unknown --coding '{coding}': use gac or direct")
    if coding == "gac" and T < 2:
        raise ConfigError(
            f"GAC coding needs --T >= 2 (its temporal attention has T//2 channels; got T={T}); "
            "use --T 2 or more, or --coding direct"
        )
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0 (got {lr})")
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out / 'model.pt'}")


@handles_errors
def train_cmd(
    data: str = typer.Option(
        "digits",
        "--data",
        help="digits (train 1437 / held-out 360), cifar10:PATH or cifar100:PATH (train split / test split).",
    ),
    arch: str = typer.Option("msresnet18-cifar", help="Architecture from the registry."),
    width: int = typer.Option(
        16, min=1, help="Stem width (stages are 2x/4x/8x it on the CIFAR topology; 64 in the paper)."
    ),
    T: int = typer.Option(4, "--T", min=1, help="Time steps (GAC needs T >= 2)."),
    coding: str = typer.Option("gac", help="gac (gated attention coding) or direct."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, min=1, help="Passes over the training split."),
    batch_size: int = typer.Option(64, min=1, help="Images per optimiser step."),
    lr: float = typer.Option(
        0.1,
        callback=_lr_in_range,
        help=f"Peak learning rate of SGD (momentum 0.9, wd 5e-5, cosine schedule); finite, > 0 and <= {LR_MAX:g}.",
    ),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the initialisation, shuffling and augmentation."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (this project's format)."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="stop after N optimiser steps (smoke tests)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice)."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
):
    """Train a model with the reference recipe (scaled down) and save it with its provenance."""
    import torch

    from gac_analysis.data import open_source
    from gac_analysis.models import build_model, count_parameters
    from gac_analysis.models.checkpoint import is_project_checkpoint
    from gac_analysis.training import set_deterministic, train

    _check_options(data=data, arch=arch, T=T, coding=coding, lr=lr, out=out)
    # before training (/proc/x.pt fails now, not in an hour); only a checkpoint train wrote is replaced
    check_output_file(out, is_own=lambda p: is_project_checkpoint(p, written_by=TRAIN_KIND))
    command = _format_command(
        data=data,
        arch=arch,
        width=width,
        T=T,
        coding=coding,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        out=out,
        max_steps=max_steps,
        threads=threads,
    )
    if threads is not None:
        torch.set_num_threads(threads)
    train_src = open_source(data, split="train")
    test_src = open_source(data, split="test")
    num_classes = int(train_src.extra.get("num_classes", int(train_src.labels.max()) + 1))

    set_deterministic(seed)
    model = build_model(arch, num_classes=num_classes, T=T, coding=coding, width=width)
    console.print(
        f"training {arch} ({coding}, T={T}, width {width}, {count_parameters(model):,} parameters) on "
        f"{data}: {len(train_src)} training / {len(test_src)} held-out images, {plural(epochs, 'epoch')}, batch "
        f"{batch_size}, lr {lr}, seed {seed}" + (f", at most {plural(max_steps, 'step')}" if max_steps else ""),
        highlight=False,
        soft_wrap=True,
    )
    t0 = time.perf_counter()
    result = train(
        model,
        train_src,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        augment="auto",
        eval_data=test_src,
        max_steps=max_steps,
        progress=progress,
        on_epoch=_epoch_printer(epochs),
    )
    train_time = time.perf_counter() - t0
    accuracy = _save(
        model,
        out,
        result,
        train_src,
        test_src,
        command=command,
        seed=seed,
        data=data,
        arch=arch,
        coding=coding,
        T=T,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        train_time=train_time,
    )
    console.print(
        f"held-out accuracy {100 * accuracy:.2f}% ({len(test_src)} images, {test_src.split} split); "
        f"{plural(result.steps, 'step')} in {train_time:.1f}s; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)",
        highlight=False,
        soft_wrap=True,
    )


def _epoch_printer(epochs: int):
    """The ``on_epoch`` callback that prints one line per finished epoch."""

    def on_epoch(e) -> None:
        acc = "-" if e.heldout_accuracy is None else f"{100 * e.heldout_accuracy:.2f}%"
        console.print(
            f"epoch {e.epoch:3d}/{epochs}  steps {e.steps:4d}  loss {e.train_loss:.4f}  train acc "
            f"{100 * e.train_accuracy:.2f}%  held-out acc {acc}  lr {e.lr_end:.5f}  {e.seconds:.1f}s",
            highlight=False,
            soft_wrap=True,
        )

    return on_epoch


def _save(model, out: Path, result, train_src, test_src, *, train_time: float, **run) -> float:
    """Write the checkpoint with its provenance: the options of the run (``run``) and the recipe
    :func:`~gac_analysis.training.train` reports it used. Returns the held-out accuracy saved."""
    import torch

    from gac_analysis.models import count_parameters, save_checkpoint
    from gac_analysis.training import evaluate

    accuracy = result.final_accuracy
    if accuracy is None:  # pragma: no cover - train always evaluates after the last step
        accuracy = evaluate(model, test_src)
    save_checkpoint(
        model,
        out,
        written_by=TRAIN_KIND,
        **run,
        **result.recipe,
        epochs_completed=len(result.epochs),
        steps=result.steps,
        heldout_accuracy=accuracy,
        heldout_split=test_src.describe().get("split"),
        num_heldout=len(test_src),
        num_train=len(train_src),
        train_source=train_src.describe(),
        epoch_losses=result.epoch_losses,
        epoch_heldout_accuracies=result.epoch_accuracies,
        train_time_s=round(train_time, 1),
        parameters=count_parameters(model),
        torch_threads=torch.get_num_threads(),
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
    )
    return accuracy
