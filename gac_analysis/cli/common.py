"""Shared CLI plumbing: one-line errors with exit codes, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from gac_analysis.errors import CheckpointError, ConfigError, GacError
from gac_analysis.fileio import ordinary_mode

console = Console()
err_console = Console(stderr=True)


def handles_errors(fn):
    """Turn a :class:`GacError` into ``error: <message>`` on stderr and its exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GacError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(code=130) from None

    return wrapper


# ---- shared by the analysis commands -------------------------------------------------------------

#: The embedded default model: a reduced-width GAC-MS-ResNet (CIFAR topology) trained on digits.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default_digits_gac.pt"
DEFAULT_DATA_FOR_DEFAULT = "digits"


def open_model(ckpt: Path | None, *, T: int | None = None):
    """Load ``ckpt``; ``None`` means the embedded default (say so on stderr). Returns (model, ckpt path)."""
    from gac_analysis.models import load_model

    if ckpt is None:
        if not DEFAULT_CHECKPOINT.exists():
            raise CheckpointError(f"the embedded default checkpoint is missing ({DEFAULT_CHECKPOINT}); pass a "
                                  "checkpoint, or create it with `gac-analyze train --data digits --out "
                                  f"{DEFAULT_CHECKPOINT}`")
        err_console.print(f"using the embedded default model ({DEFAULT_CHECKPOINT.name}: GAC-MS-ResNet-18 CIFAR "
                          "topology, reduced width, trained on digits)", highlight=False)
        ckpt = DEFAULT_CHECKPOINT
    return load_model(ckpt, T=T), ckpt


def default_data_spec(ckpt_was_default: bool, data: str | None) -> str:
    """The data source to use: the user's, else held-out digits for the default model, else seeded random."""
    if data:
        return data
    return DEFAULT_DATA_FOR_DEFAULT if ckpt_was_default else "random"


def open_data(spec: str, model, *, num_images: int | None, seed: int = 0, image_size: int | None = None):
    """Open a data source sized for ``model`` (its architecture's nominal input size unless given)."""
    from gac_analysis.data import open_source

    size = image_size or (None if spec.split(":", 1)[0] in ("cifar10", "cifar100", "digits")
                          else model.spec.input_size)
    return open_source(spec, num_images=num_images, image_size=size, seed=seed)


def check_output_path(out: Path) -> Path:
    """Check that ``out`` can become an output folder (creating only its parent); one-line errors."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output folder's parent {out.parent}: {e.strerror}") from None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder; choose another --out")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder's parent {out.parent} is not writable; choose another --out")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: Path):
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on failure it is removed.

    So a failed run never leaves a half-written output folder behind. An existing ``out`` is replaced
    only when the run succeeds.
    """
    out = check_output_path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    ordinary_mode(tmp, folder=True)  # mkdtemp makes 0700; the output is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
