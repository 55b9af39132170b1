"""Model specs: one string names the model a command analyses.

``default``
    the embedded GAC digits model (``assets/default_digits_gac.pt``).
``default-direct``
    its direct-coding twin (``assets/default_digits_direct.pt``).
``spikingjelly:NAME``
    a model of SpikingJelly 2.0's zoo, built by its constructor name (``ms_resnet18``, ``spikformer_cifar10``,
    ``CIFAR10Net`` ...; ``MODULE.NAME`` such as ``parametric_lif_net.CIFAR10Net`` also works).
``PACKAGE.MODULE:FACTORY``
    a user's own model: ``FACTORY(**kwargs)`` of an importable module.
``path/to/file.py:FACTORY``
    the same from a Python file.

:func:`build_from_spec` builds the model (keyword arguments from ``--model-kwargs``), optionally loads a
state_dict into it (``torch.load(weights_only=True)``, strictly), and tags it with its provenance
(``model.gac_model_spec``). Every failure is one :class:`ModelSpecError` / :class:`CheckpointError` line.
A model without its own ``T`` is run by :class:`DirectEncodingOverTime` when a ``T`` is given. Nothing here
changes the user's process at import time; importing a user's file puts its folder (a user's module: the
current folder, as ``python -m`` does) first on ``sys.path`` only while it is imported and its factory runs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from gac_analysis.errors import CheckpointError, ConfigError, first_line

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The embedded models selectable by name, and the file each one is.
EMBEDDED = {
    "default": ASSETS / "default_digits_gac.pt",
    "default-direct": ASSETS / "default_digits_direct.pt",
}
EMBEDDED_DESCRIPTIONS = {
    "default": "GAC-MS-ResNet-18 CIFAR topology, reduced width, trained on digits",
    "default-direct": "direct-coding twin of the default: same architecture, width, T and training, coding direct",
}

SJ_PREFIX = "spikingjelly:"
SJ_PACKAGE = "spikingjelly.activation_based.model"
#: Zoo modules whose builders build and run here, and the zoo modules that import torchvision.
SJ_MODULES = (
    "ms_resnet",
    "masnn",
    "spikformer",
    "spike_driven_transformer",
    "qkformer",
    "maxformer",
    "parametric_lif_net",
)
SJ_TORCHVISION_MODULES = ("sew_resnet", "spiking_resnet", "spiking_vgg")
#: Name prefixes of the torchvision families' builders (so their names resolve without importing them).
_TORCHVISION_PREFIXES = (
    ("sew_", "sew_resnet"),
    ("spiking_resnet", "spiking_resnet"),
    ("spiking_resnext", "spiking_resnet"),
    ("spiking_wide_resnet", "spiking_resnet"),
    ("spiking_vgg", "spiking_vgg"),
)
#: Arguments the zoo builders need and have no default for, filled in when ``--model-kwargs`` lacks them: the
#: neuron of each family's paper (PLIF; IF for SEW's ImageNet models; LIF for the plain spiking ResNet/VGG), and
#: SEW's ``ADD`` connect function.
SJ_DEFAULT_KWARGS = {
    "parametric_lif_net": {"spiking_neuron": "ParametricLIFNode"},
    "sew_resnet": {"spiking_neuron": "IFNode", "cnf": "ADD"},
    "spiking_resnet": {"spiking_neuron": "LIFNode"},
    "spiking_vgg": {"spiking_neuron": "LIFNode"},
}

_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_USAGE = (
    "use default, default-direct, spikingjelly:NAME, PACKAGE.MODULE:FACTORY or path/to/file.py:FACTORY "
    "(see docs/profile_your_snn.md)"
)


class ModelSpecError(ConfigError):
    """A ``--model`` spec or its ``--model-kwargs`` cannot give a model (exit 2, one line)."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    ``kind`` is ``embedded`` (target ``default`` / ``default-direct``), ``spikingjelly`` (target: a zoo
    builder name, maybe ``MODULE.NAME``), ``module`` (target ``PACKAGE.MODULE``) or ``file`` (target: a
    ``.py`` path); ``factory`` is the callable's name for ``module`` and ``file``.
    """

    text: str
    kind: str
    target: str
    factory: str | None = None


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a ``--model`` string into a :class:`ModelSpec` (syntax only; nothing is imported)."""
    if not isinstance(text, str) or not text.strip():
        raise ModelSpecError(f"--model is empty: {_USAGE}")
    text = text.strip()
    if text in EMBEDDED:
        return ModelSpec(text, "embedded", text)
    if text.startswith(SJ_PREFIX):
        name = text[len(SJ_PREFIX) :].strip()
        if not _DOTTED.match(name) or name.count(".") > 1:
            raise ModelSpecError(
                f"--model {text}: '{name}' is not a zoo builder name; use spikingjelly:NAME, e.g. "
                f"spikingjelly:spikformer_cifar10 (names: {', '.join(zoo_names()[:6])}, ...)"
            )
        return ModelSpec(text, "spikingjelly", name)
    where, sep, factory = text.rpartition(":")
    if not sep or not where:
        raise ModelSpecError(f"--model {text}: unknown model spec; {_USAGE}")
    if not _IDENT.match(factory):
        raise ModelSpecError(
            f"--model {text}: '{factory}' after the last ':' is not a Python name; name the "
            "function or class that builds the model, e.g. mypkg.nets:build"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        return ModelSpec(text, "file", where, factory)
    if not _DOTTED.match(where):
        raise ModelSpecError(
            f"--model {text}: '{where}' is neither a module name (PACKAGE.MODULE) nor a .py file; {_USAGE}"
        )
    return ModelSpec(text, "module", where, factory)


def parse_model_kwargs(raw: str | None) -> dict:
    """``--model-kwargs`` JSON object -> dict (``None`` or empty -> ``{}``)."""
    if raw is None or not str(raw).strip():
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ModelSpecError("--model-kwargs nests its JSON too deeply: pass a flat object") from None
    except json.JSONDecodeError as e:
        raise ModelSpecError(
            f"--model-kwargs is not valid JSON ({e.msg} at character {e.pos}): pass an object, "
            """e.g. --model-kwargs '{"T": 4, "num_classes": 10}'"""
        ) from None
    if not isinstance(value, dict):
        raise ModelSpecError(
            f"--model-kwargs must be a JSON object of keyword arguments, got "
            f"{type(value).__name__}: e.g. --model-kwargs '{{\"T\": 4}}'"
        )
    return value


# ---- SpikingJelly's zoo --------------------------------------------------------------------------------


def zoo_names() -> list[str]:
    """Builder names of SpikingJelly's zoo that build here (read from the zoo modules' ``__all__``; the
    torchvision families are listed by their prefixes ``sew_*``, ``spiking_resnet*``, ``spiking_vgg*``)."""
    names = []
    for mod in SJ_MODULES:
        module = importlib.import_module(f"{SJ_PACKAGE}.{mod}")
        names += [n for n in getattr(module, "__all__", ()) if _is_builder(mod, getattr(module, n, None))]
    return names


def _is_builder(module_name: str, obj) -> bool:
    """Zoo builders are the lower-case functions, and parametric_lif_net's network classes."""
    if module_name == "parametric_lif_net":
        return inspect.isclass(obj)
    return inspect.isfunction(obj)


def _zoo_module_of(name: str) -> tuple[str, str]:
    """``NAME`` or ``MODULE.NAME`` -> (zoo module, builder name); unknown names raise one line."""
    if "." in name:
        mod, _, fn = name.partition(".")
        if mod not in SJ_MODULES + SJ_TORCHVISION_MODULES:
            raise ModelSpecError(
                f"--model spikingjelly:{name}: '{mod}' is not a SpikingJelly zoo module; use one of "
                f"{', '.join(SJ_MODULES + SJ_TORCHVISION_MODULES)}"
            )
        return mod, fn
    for prefix, mod in _TORCHVISION_PREFIXES:
        if name.startswith(prefix):
            return mod, name
    for mod in SJ_MODULES:
        module = importlib.import_module(f"{SJ_PACKAGE}.{mod}")
        if name in getattr(module, "__all__", ()) and _is_builder(mod, getattr(module, name, None)):
            return mod, name
    import difflib

    close = difflib.get_close_matches(name, zoo_names(), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ModelSpecError(
        f"--model spikingjelly:{name}: no such builder in SpikingJelly's zoo; {hint}"
        f"builders: {', '.join(zoo_names())}, sew_resnet*, spiking_resnet*, spiking_vgg*"
    )


def _import_zoo_module(mod: str, name: str):
    try:
        return importlib.import_module(f"{SJ_PACKAGE}.{mod}")
    except Exception as e:  # noqa: BLE001 - a zoo module that cannot import is one line, whatever the cause
        if mod in SJ_TORCHVISION_MODULES:
            raise ModelSpecError(
                f"--model spikingjelly:{name}: SpikingJelly's {mod} imports torchvision, which "
                f"fails to import here ({type(e).__name__}: {first_line(e)}); install a torchvision "
                "built for this torch, or use a zoo model without torchvision (ms_resnet18, "
                "spikformer_cifar10, ...)"
            ) from None
        raise ModelSpecError(
            f"--model spikingjelly:{name}: importing {SJ_PACKAGE}.{mod} failed ({type(e).__name__}: {first_line(e)})"
        ) from None


def resolve_zoo_builder(name: str):
    """The SpikingJelly builder called ``name`` (``NAME`` or ``MODULE.NAME``) and its zoo module's name."""
    mod, fn = _zoo_module_of(name)
    module = _import_zoo_module(mod, name)
    builder = getattr(module, fn, None)
    if builder is None or not _is_builder(mod, builder) or fn not in getattr(module, "__all__", (fn,)):
        public = [n for n in getattr(module, "__all__", ()) if _is_builder(mod, getattr(module, n, None))]
        raise ModelSpecError(
            f"--model spikingjelly:{name}: {mod} has no builder '{fn}'; it has {', '.join(public) or 'none'}"
        )
    return builder, mod


def _zoo_kwargs(mod: str, kwargs: dict, spec: str) -> dict:
    """Fill in :data:`SJ_DEFAULT_KWARGS`, and resolve ``spiking_neuron`` given by name (``"LIFNode"``)."""
    kwargs = {**SJ_DEFAULT_KWARGS.get(mod, {}), **kwargs}
    neuron_name = kwargs.get("spiking_neuron")
    if isinstance(neuron_name, str):
        from spikingjelly.activation_based import neuron

        cls = getattr(neuron, neuron_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, neuron.BaseNode)):
            raise ModelSpecError(
                f"--model {spec}: spiking_neuron '{neuron_name}' is not a neuron class of "
                'spikingjelly.activation_based.neuron; use e.g. "LIFNode" or "ParametricLIFNode"'
            )
        kwargs["spiking_neuron"] = cls
    return kwargs


# ---- a user's factory -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _on_sys_path(folder: Path):
    """Put ``folder`` first on ``sys.path`` for the duration (so a user's file can import its siblings)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_user_module(spec: ModelSpec):
    if spec.kind == "module":
        try:
            with _on_sys_path(Path.cwd()):  # as `python -m` does: the current folder's packages import
                return importlib.import_module(spec.target)
        except ModuleNotFoundError as e:
            raise ModelSpecError(
                f"--model {spec.text}: cannot import {spec.target} (no module named '{e.name}' in the current "
                "folder or the installed packages); run from the folder that holds it, add that folder to "
                "PYTHONPATH, or install the package"
            ) from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module raised (or exited) while importing
            raise ModelSpecError(
                f"--model {spec.text}: importing {spec.target} raised {type(e).__name__}: {first_line(e)}"
            ) from None
    path = Path(spec.target).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"--model {spec.text}: file not found: {path} (check the path before ':{spec.factory}')")
    name = f"gac_user_model_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelSpecError(f"--model {spec.text}: {path} cannot be loaded as a Python module; name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        with _on_sys_path(path.resolve().parent):
            module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's file raised (or exited) while importing
        raise ModelSpecError(
            f"--model {spec.text}: importing {path} raised {type(e).__name__}: {first_line(e)}"
        ) from None
    return module


# ---- building --------------------------------------------------------------------------------------------


def build_from_spec(
    spec: str | ModelSpec, *, kwargs: dict | None = None, checkpoint=None, T: int | None = None, seed: int = 0
):
    """Build the model that ``spec`` names, in eval mode on the CPU.

    Args:
        spec: a spec string (see the module doc) or a parsed :class:`ModelSpec`.
        kwargs: keyword arguments of the builder (``--model-kwargs``); not for the embedded models.
        checkpoint: a state_dict file to load into the built model (strict; ``weights_only=True``).
        T: time steps asked for on the command line: passed to the builder as ``T`` where it takes one and
            ``kwargs`` does not; a different ``T`` in ``kwargs`` is an error. The embedded models have theirs.
        seed: the builder runs under ``torch.manual_seed(seed)`` in a forked RNG state (the caller's global RNG is
            left as it was), so the initial weights of a model built without a checkpoint are reproducible.

    Returns:
        the model, carrying ``model.gac_model_spec`` (spec, builder, kwargs, checkpoint path and sha256).

    Raises:
        ModelSpecError: unknown name, import error, builder that raises, result that is not an ``nn.Module``.
        CheckpointError: unreadable checkpoint, or a state_dict that does not fit the model.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    kwargs = dict(kwargs or {})
    if parsed.kind == "embedded":
        return build_embedded(parsed.target, kwargs=kwargs, checkpoint=checkpoint, T=T)
    if parsed.kind == "spikingjelly":
        builder, mod = resolve_zoo_builder(parsed.target)
        kwargs = _zoo_kwargs(mod, kwargs, parsed.text)
        where = f"{SJ_PACKAGE}.{mod}.{builder.__name__}"
        model = _call_builder(builder, kwargs, parsed, T, where, seed)
    else:
        module = _import_user_module(parsed)
        builder = getattr(module, parsed.factory, None)
        if builder is None or not callable(builder):
            public = [
                n
                for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
            ]
            what = "has no" if builder is None else "has a non-callable"
            raise ModelSpecError(
                f"--model {parsed.text}: {parsed.target} {what} '{parsed.factory}'"
                + (f"; it defines {', '.join(public[:8])}" if public else "")
            )
        where = f"{parsed.target}:{parsed.factory}"
        folder = Path(parsed.target).expanduser().resolve().parent if parsed.kind == "file" else Path.cwd()
        with _on_sys_path(folder):
            model = _call_builder(builder, kwargs, parsed, T, where, seed)
    ckpt_meta = load_state_dict_into(model, checkpoint, parsed.text) if checkpoint is not None else None
    time_loop = None
    if getattr(model, "T", None) is None and T is not None:
        model = DirectEncodingOverTime(model, T)
        time_loop = f"direct encoding added by gac-analysis: the image at each of T={T} steps (" + (
            "T calls of the single-step model)" if model.step_mode == "s" else "one call on [T,B,...])"
        )
    model.gac_model_spec = {
        "spec": parsed.text,
        "builder": where,
        "kwargs": _json_safe(kwargs),
        "init_seed": seed,
        "checkpoint": ckpt_meta,
        "time_loop": time_loop,
    }
    return model.eval()


def _call_builder(builder, kwargs: dict, spec: ModelSpec, T: int | None, where: str, seed: int):
    kwargs = dict(kwargs)
    if T is not None:
        if "T" in kwargs and kwargs["T"] != T:
            raise ModelSpecError(
                f"--model {spec.text}: --T {T} contradicts T={kwargs['T']} in --model-kwargs; give T once"
            )
        if "T" not in kwargs and _accepts(builder, "T"):
            kwargs["T"] = T
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(**kwargs)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever the builder raises (or exits with): one line
        raise ModelSpecError(
            f"--model {spec.text}: {where}(**{_short_kwargs(kwargs)}) raised {type(e).__name__}: {first_line(e)}"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise ModelSpecError(
            f"--model {spec.text}: {where} returned a {type(model).__name__}, not a "
            "torch.nn.Module; the factory must return the model"
        )
    if T is not None and getattr(model, "T", T) != T:
        raise ModelSpecError(
            f"--model {spec.text}: the built model has T={model.T} but --T {T} was given; pass T "
            "in --model-kwargs or drop --T"
        )
    return model


class DirectEncodingOverTime(torch.nn.Module):
    """A network without its own time loop, run on the same image at each of ``T`` steps (direct encoding).

    Neurons in step mode ``'s'``: ``T`` calls on ``[B, ...]``; in ``'m'``: one call on the image repeated to
    ``[T, B, ...]``. The output is ``[T, B, ...]``. Built for ``--model`` builders whose model has no ``T``
    (SpikingJelly's SEW/spiking ResNets and VGGs, the parametric-LIF nets), so they can be analysed on images.
    """

    def __init__(self, net, T: int):
        super().__init__()
        from spikingjelly.activation_based.neuron import BaseNode, SimpleBaseNode

        modes = {getattr(m, "step_mode", "s") for m in net.modules() if isinstance(m, (BaseNode, SimpleBaseNode))}
        if len(modes) > 1:
            raise ModelSpecError(
                f"the model mixes neuron step modes {sorted(modes)} and has no T of its own: set one "
                "step mode (spikingjelly functional.set_step_mode) or give the model a T"
            )
        self.net, self.T, self.step_mode = net, int(T), (modes.pop() if modes else "s")

    def forward(self, x):
        if self.step_mode == "s":
            return torch.stack([self.net(x) for _ in range(self.T)])
        return self.net(x.unsqueeze(0).repeat(self.T, *([1] * x.dim())))


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def build_embedded(name: str, *, kwargs: dict | None = None, checkpoint=None, T: int | None = None):
    """The embedded model ``default`` or ``default-direct``, loaded from its asset file."""
    from gac_analysis.models.checkpoint import load_model

    if kwargs:
        raise ModelSpecError(f"--model {name} is an embedded checkpoint and takes no --model-kwargs; drop them")
    if checkpoint is not None:
        raise ModelSpecError(f"--model {name} is itself a checkpoint; pass either a CKPT or --model {name}, not both")
    path = EMBEDDED[name]
    if not path.exists():
        if name == "default-direct":
            raise ModelSpecError(
                f"--model default-direct: the embedded direct-coding twin ({path.name}) is not in "
                f"this installation ({path.parent}); train it as docs/default_model.md says, or "
                "use --model default"
            )
        raise CheckpointError(
            f"the embedded default checkpoint is missing ({path}); pass a checkpoint, or create it "
            f"with `gac-analyze train --data digits --out {path}`"
        )
    model = load_model(path, T=T)
    model.gac_model_spec = {
        "spec": name,
        "builder": f"embedded checkpoint {path.name}",
        "kwargs": {},
        "checkpoint": {"path": str(path), "sha256": model.checkpoint_info.sha256},
    }
    return model


def load_state_dict_into(model, path, spec_text: str) -> dict:
    """Load the state_dict in ``path`` into ``model`` strictly (``weights_only=True``); one-line errors.

    Accepts a plain state_dict, one wrapped under ``state_dict`` / ``model`` / ``net``, and the ``module.``
    prefix of multi-GPU training. Returns ``{"path", "sha256", "tensors"}``.
    """
    from gac_analysis.models.checkpoint import _read_file, _strip_prefix, _unwrap, file_sha256

    path = Path(path)
    sd, _, header = _unwrap(_read_file(path), path)
    sd, _ = _strip_prefix(sd)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    shapes = [k for k in expected if k in sd and tuple(getattr(sd[k], "shape", ())) != tuple(expected[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first '{missing[0]}')")
        if extra:
            parts.append(f"{len(extra)} unexpected (first '{extra[0]}')")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} of another shape (first '{k}': file {list(sd[k].shape)}, model "
                f"{list(expected[k].shape)})"
            )
        raise CheckpointError(
            f"checkpoint {path} does not fit --model {spec_text} (tensors: {', '.join(parts)}); "
            "is it from another model or other --model-kwargs?"
        )
    model.load_state_dict(sd, strict=True)
    return {"path": str(path), "sha256": file_sha256(path), "tensors": len(sd)}


def _short_kwargs(kwargs: dict) -> str:
    text = json.dumps(_json_safe(kwargs))
    return text if len(text) <= 80 else text[:77] + "..."


def _json_safe(value):
    """``kwargs`` for JSON provenance: classes and callables by their qualified name."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
