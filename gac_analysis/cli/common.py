"""Shared CLI plumbing: one-line errors with exit codes, never a traceback."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from gac_analysis.errors import CheckpointError, GacError
# the one home of output folders and pre-flight checks; re-exported for the commands
from gac_analysis.fileio import atomic_output_dir, check_output_dir, check_output_file, check_output_path  # noqa: F401
from gac_analysis.fileio import sigterm_unwinds

#: ``--out`` help of every command that writes an output folder (what happens to an existing folder).
OUT_HELP = ("Output folder. A new folder is created; an existing one is used only when it is empty or holds an "
            "earlier run of this tool, and then only the tool's own files are replaced (yours stay). A failed "
            "run leaves nothing.")

#: Seeds are 64-bit (torch.manual_seed); every ``--seed`` is declared with ``min=0, max=SEED_MAX``.
SEED_MAX = 2 ** 64 - 1
#: ``--data`` default shown in the help of the analysis commands (see :func:`default_data_spec`).
DATA_DEFAULT = "digits (the 360 held-out digits) for the default model, else random"

console = Console()
err_console = Console(stderr=True)


def handles_errors(fn):
    """Turn a :class:`GacError` into ``error: <message>`` on stderr and its exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with sigterm_unwinds():  # SIGTERM cleans up like Ctrl-C: no temporary is left behind
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
                          "topology, reduced width, trained on digits; its data, unless --data says otherwise: the "
                          "360 held-out digits)", highlight=False)
        ckpt = DEFAULT_CHECKPOINT
    return load_model(ckpt, T=T), ckpt


def plural(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def describe_data(data: dict | None) -> str:
    """A data description of the provenance in a few words: ``digits (test split)``, ``random (seed 0)``."""
    data = data or {}
    name = str(data.get("source", "tensor"))
    extra = f"{data['split']} split" if data.get("split") else (f"seed {data['seed']}" if data.get("seed") is not None
                                                               else "")
    return f"{name} ({extra})" if extra else name


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


def input_paths(ckpt: Path | None, data_spec: str | None) -> list[Path]:
    """The files and folders a run reads (checkpoint, data folder): an ``--out`` may never replace them."""
    paths = [Path(ckpt)] if ckpt is not None else []
    if data_spec and ":" in data_spec:
        kind, _, path = data_spec.partition(":")
        if kind in ("folder", "cifar10", "cifar100") and path.strip():
            paths.append(Path(path).expanduser())
    return paths
