"""Shared CLI plumbing: one-line errors with exit codes, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from gac_analysis.errors import ConfigError, GacError, GacWarning, first_line

# the one home of output folders and pre-flight checks; re-exported for the commands
from gac_analysis.fileio import (  # noqa: F401
    atomic_output_dir,
    check_output_dir,
    check_output_file,
    check_output_path,
    sigterm_unwinds,
)

#: ``--out`` help of every command that writes an output folder (what happens to an existing folder).
OUT_HELP = (
    "Output folder. A new folder is created; an existing one is used only when it is empty or holds an "
    "earlier run of this tool, and then only the tool's own files are replaced (yours stay). A failed "
    "run leaves nothing."
)

#: Seeds are 64-bit (torch.manual_seed); every ``--seed`` is declared with ``min=0, max=SEED_MAX``.
SEED_MAX = 2**64 - 1
#: ``--data`` default shown in the help of the analysis commands (see :func:`default_data_spec`).
DATA_DEFAULT = "digits (the 360 held-out digits) for the default model, else random"

console = Console()
err_console = Console(stderr=True)


def handles_errors(fn):
    """Turn a :class:`GacError` into ``error: <message>`` on stderr and its exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with sigterm_unwinds(), warnings_as_lines():  # SIGTERM cleans up like Ctrl-C: no temporary is left
                return fn(*args, **kwargs)
        except GacError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(code=130) from None
        except OSError as e:  # a path the system refuses (too long, a loop of links, no permission, ...)
            where = f": {e.filename}" if e.filename else ""
            message = f"{e.strerror or e}{where}; check the path (and its permissions) and try again"
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except (MemoryError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not _out_of_memory(e):
                raise
            message = (
                "not enough memory for this run; use fewer --num-images, a smaller --batch-size, --image-size or T"
                f" (the system said: {first_line(e)})"
            )
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


@contextlib.contextmanager
def warnings_as_lines():
    """While a command runs, this tool's own warnings (:class:`~gac_analysis.errors.GacWarning`) are one
    ``warning: <message>`` line on stderr, not Python's two-line format with a source path; others
    (torch's, a user's model's) are shown as Python shows them."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, GacWarning):
            text = str(message).removeprefix("gac-analysis: ")  # the line says whose it is
            err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _out_of_memory(e: RuntimeError) -> bool:
    """A torch allocation failure (CPU or CUDA), as opposed to any other runtime error."""
    text = str(e).lower()
    return "can't allocate memory" in text or "out of memory" in text or "not enough memory" in text


# ---- shared by the analysis commands -------------------------------------------------------------

DEFAULT_DATA_FOR_DEFAULT = "digits"
MODEL_HELP = (
    "default | default-direct | spikingjelly:NAME | PACKAGE.MODULE:FACTORY | path/to/file.py:FACTORY; "
    "with CKPT, the state_dict in CKPT is loaded into it (see docs/profile_your_snn.md)."
)
MODEL_KWARGS_HELP = """Keyword arguments of the --model builder, a JSON object, e.g. '{"T": 4, "num_classes": 10}'."""


def __getattr__(name: str):
    """``DEFAULT_CHECKPOINT``: the embedded default model's file (``models.specs.EMBEDDED``), looked up lazily so
    that importing the CLI does not import torch."""
    if name == "DEFAULT_CHECKPOINT":
        from gac_analysis.models.specs import EMBEDDED

        return EMBEDDED["default"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_model(
    ckpt: Path | None, *, T: int | None = None, model: str | None = None, model_kwargs: str | None = None, seed: int = 0
):
    """The model a command analyses, and its checkpoint path (``None`` for a built model without one).

    ``model`` is a ``--model`` spec (:mod:`gac_analysis.models.specs`); without it, ``ckpt`` is a checkpoint of
    this project's formats, and neither means the embedded default (said on stderr). With both, the state_dict
    in ``ckpt`` is loaded into the built model; without ``ckpt`` its initial weights are seeded with ``seed``.
    """
    from gac_analysis.models import load_model
    from gac_analysis.models.specs import (
        EMBEDDED,
        EMBEDDED_DESCRIPTIONS,
        build_from_spec,
        parse_model_kwargs,
        parse_model_spec,
    )

    if model is None:
        if model_kwargs is not None:
            raise ConfigError("--model-kwargs needs --model SPEC (the builder they are passed to); add --model")
        if ckpt is not None:
            return load_model(ckpt, T=T), ckpt
        model = "default"
    spec = parse_model_spec(model)
    kwargs = parse_model_kwargs(model_kwargs)
    built = build_from_spec(spec, kwargs=kwargs, checkpoint=ckpt, T=T, seed=seed)
    if spec.kind == "embedded":
        err_console.print(
            f"using the embedded {spec.target} model ({EMBEDDED[spec.target].name}: "
            f"{EMBEDDED_DESCRIPTIONS[spec.target]}; its data, unless --data says otherwise: the 360 "
            "held-out digits)",
            highlight=False,
        )
        return built, EMBEDDED[spec.target]
    err_console.print(
        f"built {spec.text} ({built.gac_model_spec['builder']}"
        + (f", weights from {ckpt}" if ckpt is not None else f", initial weights seeded with {seed}")
        + ")",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return built, ckpt


def uses_embedded_model(ckpt: Path | None, model: str | None) -> bool:
    """Whether the command analyses an embedded model (whose default data are the held-out digits)."""
    from gac_analysis.models.specs import EMBEDDED

    return (model is None and ckpt is None) or (model or "").strip() in EMBEDDED


def plural(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def describe_data(data: dict | None) -> str:
    """A data description of the provenance in a few words: ``digits (test split)``, ``random (seed 0)``."""
    data = data or {}
    name = str(data.get("source", "tensor"))
    extra = (
        f"{data['split']} split"
        if data.get("split")
        else (f"seed {data['seed']}" if data.get("seed") is not None else "")
    )
    return f"{name} ({extra})" if extra else name


def default_data_spec(ckpt_was_default: bool, data: str | None) -> str:
    """The data source to use: the user's, else held-out digits for the default model, else seeded random."""
    if data:
        return data
    return DEFAULT_DATA_FOR_DEFAULT if ckpt_was_default else "random"


def open_data(spec: str, model, *, num_images: int | None, seed: int = 0, image_size: int | None = None):
    """Open a data source sized for ``model``.

    The size is ``image_size`` when given, else the source's own for digits and CIFAR, else the nominal input
    size the model declares (``model.spec.input_size``, this project's models), else the source's default
    (random: 32x32; photos and folder: 224x224). Images are always 3-channel ``[N, 3, S, S]``.
    """
    from gac_analysis.data import open_source

    nominal = getattr(getattr(model, "spec", None), "input_size", None)
    size = image_size or (None if spec.split(":", 1)[0] in ("cifar10", "cifar100", "digits") else nominal)
    source = open_source(spec, num_images=num_images, image_size=size, seed=seed)
    available = len(source)
    if num_images is not None and available < num_images:
        console.print(
            f"note: --num-images {num_images}, but {spec} holds {available} images: analysing all {available}",
            highlight=False,
            soft_wrap=True,
        )
    return source


def input_paths(ckpt: Path | None, data_spec: str | None) -> list[Path]:
    """The files and folders a run reads (checkpoint, data folder): an ``--out`` may never replace them."""
    paths = [Path(ckpt)] if ckpt is not None else []
    if data_spec and ":" in data_spec:
        kind, _, path = data_spec.partition(":")
        if kind in ("folder", "cifar10", "cifar100") and path.strip():
            paths.append(Path(path).expanduser())
    return paths
