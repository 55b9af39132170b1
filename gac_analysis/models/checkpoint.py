"""Checkpoint loading (the reference GAC code's layouts and this project's own) and atomic saving.

Accepted inputs of :func:`load_model`:

- this project's format (``save_checkpoint``): a dict with ``format == "gac-analysis/checkpoint"``
  that carries arch, T, classes, coding, width and provenance metadata;
- reference CIFAR state_dicts, whose tensors are registered under several aliased keys
  (``conv1.weight`` == ``conv1_s.layer.module.weight``; each BN under four names): every alias is
  accepted and all aliases of one tensor must agree;
- reference ImageNet state_dicts, with or without the ``module.`` prefix of multi-GPU training;
- any of these wrapped under ``state_dict``, ``model`` or ``net``.

Files are always read with ``torch.load(weights_only=True)``: a file that needs arbitrary pickled
code is refused. T comes from the TA weight shape ``[T//2, T, 1, 1, 1]``, the class count from the
classifier, the width from the stem conv, and the layout from the key names.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import os
import pickle
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gac_analysis.errors import CheckpointError, TimeStepsUnknownError
from gac_analysis.fileio import file_sha256, owns_file, write_recorded_file  # noqa: F401 - file_sha256 re-exported
from gac_analysis.models.gac import SCA_KERNEL
from gac_analysis.models.msresnet import MSResNet
from gac_analysis.models.registry import ARCHS, build_model

FORMAT = "gac-analysis/checkpoint"
FORMAT_VERSION = 1
#: The command kind a checkpoint is recorded under in its folder's record (``save_checkpoint``, ``train``).
CHECKPOINT_KIND = "checkpoint"
WRAPPER_KEYS = ("state_dict", "model", "net")

# Reference key -> this project's key. Each rule: (compiled regex, replacement builder).
_BN = r"(?:bn|seqbn\.module)"
_CIFAR_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^(?:conv1|conv1_s\.layer\.module)\.weight$"), "stem.conv.weight"),
    (re.compile(rf"^(?:bn1|conv1_s\.bn)\.{_BN}\.(\w+)$"), r"stem.bn.\1"),
    (re.compile(r"^layer(\d)\.(\d+)\.(conv[12])(?:_s\.layer\.module)?\.weight$"), r"layers.{s}.\2.\3.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.(bn[12])\.{_BN}\.(\w+)$"), r"layers.{s}.\2.\3.\4"),
    (re.compile(rf"^layer(\d)\.(\d+)\.conv([12])_s\.bn\.{_BN}\.(\w+)$"), r"layers.{s}.\2.bn\3.\4"),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.layer\.module\.weight$"), r"layers.{s}.\2.shortcut.conv.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.downsample\.bn\.{_BN}\.(\w+)$"), r"layers.{s}.\2.shortcut.bn.\3"),
]
_IMAGENET_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^conv1\.0\.weight$"), "stem.conv.weight"),
    (re.compile(r"^conv1\.1\.bn\.(\w+)$"), r"stem.bn.\1"),
    (re.compile(r"^conv([2-5])_x\.(\d+)\.(conv[12])\.weight$"), r"layers.{s}.\2.\3.weight"),
    (re.compile(r"^conv([2-5])_x\.(\d+)\.(bn[12])\.bn\.(\w+)$"), r"layers.{s}.\2.\3.\4"),
    (re.compile(r"^conv([2-5])_x\.(\d+)\.shortcut\.0\.weight$"), r"layers.{s}.\2.shortcut.conv.weight"),
    (re.compile(r"^conv([2-5])_x\.(\d+)\.shortcut\.1\.bn\.(\w+)$"), r"layers.{s}.\2.shortcut.bn.\3"),
]
_COMMON_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^(?:fc1|fc1_s\.layer\.module)\.(weight|bias)$"), r"head.fc.\1"),
    (re.compile(r"^encoding\.TA\.sharedMLP\.([02])\.weight$"), r"encoder.ta.mlp.\1.weight"),
    (re.compile(r"^encoding\.SCA\.sharedMLP\.([02])\.weight$"), r"encoder.sca.mlp.\1.weight"),
]
# Stage numbering: CIFAR layer1..3 and ImageNet conv2_x..conv5_x both become layers.0..
_STAGE_OFFSET = {"cifar-reference": 1, "imagenet-reference": 2}


@dataclass
class CheckpointInfo:
    """What was learned about a checkpoint file while loading it."""

    path: str
    sha256: str
    layout: str  # "gac-analysis", "cifar-reference", "imagenet-reference", "native-state_dict"
    wrapper: str | None  # "state_dict" / "model" / "net" when the weights were wrapped
    module_prefix: bool  # keys carried a "module." prefix
    arch: str
    T: int
    num_classes: int
    coding: str
    width: int
    sca_kernel: int
    num_keys: int  # keys in the file's state_dict (aliases included)
    num_tensors: int  # distinct model tensors after alias resolution
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


#: The one reason given for a file that needs more than tensors and containers (whatever torch's wording).
PICKLED_CODE = "needs arbitrary Python objects (pickled code), refused with weights_only=True"
#: Modules whose globals a checkpoint may name (tensor rebuilding, storages, ordered dicts).
_SAFE_GLOBAL_MODULES = ("torch", "collections", "builtins", "_codecs", "numpy")


def _pickle_globals(path: Path) -> list[str]:
    """The ``module.name`` globals a pickle (or a torch zip's ``data.pkl``) refers to, read without running it."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                data = z.read(names[0]) if names else b""
        else:
            data = path.read_bytes()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return found
    except Exception:  # noqa: BLE001 - a corrupt file simply names no globals; the caller reports it as such
        return []


def _unsafe_global(path: Path, message: str) -> str | None:
    """The first global outside the allowed modules that loading ``path`` needs, or ``None``."""
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    if found:
        return found.group(1)
    for name in _pickle_globals(path):
        if name.split(".", 1)[0] not in _SAFE_GLOBAL_MODULES:
            return name
    return None


def _read_file(path: Path) -> object:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of plain pickles: the error says it all
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files (KeyError, RuntimeError, EOFError, ...)
        msg = str(e)
        unsafe = _unsafe_global(path, msg) if isinstance(e, pickle.UnpicklingError) else None
        if unsafe:
            raise CheckpointError(
                f"refusing to load {path} (it names {unsafe}): it {PICKLED_CODE}; re-save it as a plain "
                "state_dict with torch.save(model.state_dict(), path)"
            ) from None
        if isinstance(e, pickle.UnpicklingError):
            reason = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
            raise CheckpointError(
                f"not a PyTorch checkpoint or truncated: {path} (unpickling failed: "
                f"{reason.group(1).strip() if reason else _first_line(msg)})"
            ) from None
        raise CheckpointError(
            f"not a PyTorch checkpoint or truncated: {path} ({type(e).__name__}: {_first_line(msg)}); "
            "check that the file was fully written by torch.save"
        ) from None


def _first_line(msg: str) -> str:
    line = msg.strip().splitlines()[0] if msg.strip() else ""
    return line.split(". ")[0][:160]


def _unwrap(obj: object, path: Path) -> tuple[dict, str | None, dict | None]:
    """Return (state_dict, wrapper key, native header or None); the state_dict maps names to tensors."""
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"unknown checkpoint layout in {path}: expected a state_dict (a mapping of parameter names to "
            f"tensors), got {type(obj).__name__}"
        )
    if obj.get("format") == FORMAT:
        sd, wrapper, header = obj.get("state_dict", {}), None, obj
    else:
        sd, wrapper, header = obj, None, None
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                sd, wrapper = inner, key
                break
    _check_state_dict(sd, path)
    if header is not None:
        _check_header(header, path)
    return sd, wrapper, header


def _check_state_dict(sd: object, path: Path) -> None:
    """A state_dict is a mapping of string names to tensors; one line naming the first thing that is not."""
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"unknown checkpoint layout in {path}: its state_dict is a {type(sd).__name__}, not a "
            "mapping of parameter names to tensors; save it with torch.save(model.state_dict())"
        )
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"unknown checkpoint layout in {path}: key {key!r} is a {type(key).__name__}, "
                "not a parameter name; save it with torch.save(model.state_dict())"
            )
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: key '{key}' holds a {type(value).__name__}, not a tensor; save "
                "only tensors with torch.save(model.state_dict())"
            )


def _check_header(header: dict, path: Path) -> None:
    """The fields of this project's header: a known arch and coding, positive integer T / classes / width."""
    arch, coding = header.get("arch"), header.get("coding")
    if arch is not None and arch not in ARCHS:
        raise CheckpointError(
            f"{path}: unknown arch {arch!r} in the checkpoint header; supported: {', '.join(sorted(ARCHS))}"
        )
    if coding is not None and coding not in ("gac", "direct"):
        raise CheckpointError(f"{path}: unknown coding {coding!r} in the checkpoint header; expected gac or direct")
    for name in ("T", "num_classes", "width"):
        v = header.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise CheckpointError(f"{path}: the checkpoint header's {name} is {v!r}; expected an integer >= 1")


def nonfinite_state(named_tensors) -> str | None:
    """Describe the first tensor of ``(name, tensor)`` pairs that no result can be built on, else ``None``.

    Floating tensors must be finite; a batch-norm ``running_var`` must also be >= 0 (a variance).
    """
    for name, t in named_tensors:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            what = " and ".join(p for p in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if p)
            return f"'{name}' holds {what} values"
        if name.endswith("running_var") and bool((t < 0).any()):
            return f"'{name}' holds {int((t < 0).sum())} negative values (a variance is >= 0)"
    return None


def _strip_prefix(sd: dict) -> tuple[dict, bool]:
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}, True
    return sd, False


def detect_layout(keys) -> str:
    """Name the layout of a state_dict from its key names."""
    keys = set(keys)
    if "stem.conv.weight" in keys:
        return "native-state_dict"
    if "conv1_s.layer.module.weight" in keys or any(k.startswith("layer1.0.") for k in keys):
        return "cifar-reference"
    if "conv1.0.weight" in keys or any(k.startswith("conv2_x.") for k in keys):
        return "imagenet-reference"
    return "unknown"


def _translate_key(key: str, layout: str) -> str | None:
    rules = (_CIFAR_RULES if layout == "cifar-reference" else _IMAGENET_RULES) + _COMMON_RULES
    for pattern, repl in rules:
        m = pattern.match(key)
        if m:
            out = m.expand(repl)
            if "{s}" in out:
                out = out.replace("{s}", str(int(m.group(1)) - _STAGE_OFFSET[layout]))
            return out
    return None


def _expected_reference_keys(layout: str) -> list[str]:
    """Example key names of a layout, for 'nearest expected key' hints."""
    if layout == "imagenet-reference":
        return [
            "conv1.0.weight",
            "conv1.1.bn.weight",
            "conv2_x.0.conv1.weight",
            "conv2_x.0.bn1.bn.weight",
            "conv2_x.0.shortcut.0.weight",
            "conv2_x.0.shortcut.1.bn.weight",
            "fc1.weight",
            "fc1.bias",
            "encoding.TA.sharedMLP.0.weight",
            "encoding.SCA.sharedMLP.0.weight",
        ]
    return [
        "conv1.weight",
        "conv1_s.layer.module.weight",
        "bn1.bn.weight",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.bn.weight",
        "layer1.0.downsample.layer.module.weight",
        "fc1.weight",
        "fc1.bias",
        "encoding.TA.sharedMLP.0.weight",
        "encoding.SCA.sharedMLP.0.weight",
        "stem.conv.weight",
        "conv1.0.weight",
        "conv2_x.0.conv1.weight",
    ]


def _nearest_hint(keys: list[str], layout: str) -> str:
    candidates = _expected_reference_keys(layout)
    for k in keys[:20]:
        close = difflib.get_close_matches(k, candidates, n=2, cutoff=0.5)
        if close:
            return f"e.g. '{k}' is closest to expected '{close[0]}'"
    return "expected keys like " + ", ".join(f"'{c}'" for c in candidates[:4])


def canonical_state_dict(sd: dict, layout: str, path: Path) -> dict[str, torch.Tensor]:
    """Translate a reference state_dict to this project's keys, checking that aliases agree."""
    if layout == "native-state_dict":
        return dict(sd)
    groups: dict[str, list[tuple[str, torch.Tensor]]] = {}
    unknown = []
    for key, tensor in sd.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: key '{key}' holds a {type(tensor).__name__}, not a tensor")
        new = _translate_key(key, layout)
        if new is None:
            unknown.append(key)
        else:
            groups.setdefault(new, []).append((key, tensor))
    if unknown:
        raise CheckpointError(
            f"unknown key '{unknown[0]}' in {path} ({len(unknown)} unknown keys for the {layout} layout); "
            f"{_nearest_hint(unknown, layout)}"
        )
    out = {}
    for new, members in groups.items():
        first_key, first = members[0]
        if new.endswith("num_batches_tracked"):
            out[new] = max((t for _, t in members), key=lambda t: int(t))
            continue
        for key, t in members[1:]:
            if t.shape != first.shape or not torch.equal(t, first):
                diff = (t.float() - first.float()).abs().max().item() if t.shape == first.shape else "shapes differ"
                raise CheckpointError(
                    f"aliased keys disagree in {path}: '{first_key}' and '{key}' are the same tensor in the "
                    f"reference model but differ here (max |diff| {diff}); the checkpoint is inconsistent"
                )
        out[new] = first
    return out


def _infer_arch(sd: dict, path: Path, family_hint: str | None) -> str:
    stages = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^layers\.(\d+)\.", k))})
    blocks = tuple(len({int(m.group(1)) for k in sd if (m := re.match(rf"^layers\.{s}\.(\d+)\.", k))}) for s in stages)
    for name, spec in ARCHS.items():
        if spec.blocks == blocks and (family_hint is None or spec.family == family_hint):
            return name
    raise CheckpointError(
        f"unknown architecture in {path}: {len(blocks)} stages with {list(blocks)} blocks; supported: "
        + ", ".join(f"{n} {list(s.blocks)}" for n, s in ARCHS.items())
    )


def _check_arg(name: str, given, found, where: str, path: Path):
    if given is not None and found is not None and given != found:
        raise CheckpointError(
            f"{name} mismatch for {path}: the checkpoint has {name}={found} ({where}) but "
            f"{name}={given} was given; drop the argument or use the matching checkpoint"
        )
    return found if found is not None else given


def _shape_of(sd: dict, key: str) -> list[int] | None:
    t = sd.get(key)
    return list(t.shape) if t is not None else None


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    T: int | None = None,
    coding: str | None = None,
) -> tuple[dict, CheckpointInfo]:
    """Read a checkpoint file into this project's state_dict and describe it (no model is built)."""
    path = Path(path)
    raw = _read_file(path)
    sd, wrapper, header = _unwrap(raw, path)
    sd, prefixed = _strip_prefix(sd)
    if not sd:
        raise CheckpointError(f"unknown checkpoint layout in {path}: the state_dict is empty")
    if header is not None:
        layout = "gac-analysis"
        canonical = dict(sd)
        meta = header.get("metadata") or {}
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{path}: its 'metadata' is a {type(meta).__name__}, not a mapping; re-save the checkpoint with "
                "metadata={...} or without it"
            )
        meta = dict(meta)
        version = header.get("format_version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION
        ):
            raise CheckpointError(
                f"{path}: checkpoint format_version {version!r} is not one this gac-analysis reads (it reads "
                f"up to {FORMAT_VERSION}); upgrade gac-analysis or re-save the checkpoint with this version"
            )
        f_arch, f_T, f_cls, f_coding = (
            header.get("arch"),
            header.get("T"),
            header.get("num_classes"),
            header.get("coding"),
        )
    else:
        layout = detect_layout(sd.keys())
        if layout == "unknown":
            keys = list(sd.keys())
            raise CheckpointError(
                f"unknown checkpoint layout in {path}: {len(keys)} keys such as '{keys[0]}' match neither the "
                f"reference CIFAR nor ImageNet GAC layouts nor this project's; {_nearest_hint(keys, 'cifar-reference')}"
            )
        canonical = canonical_state_dict(sd, layout, path)
        meta = {}
        f_arch = f_T = f_cls = f_coding = None
    has_gac = "encoder.ta.mlp.0.weight" in canonical
    ta_shape = _shape_of(canonical, "encoder.ta.mlp.0.weight")
    inferred_T = ta_shape[1] if ta_shape else None
    fc_shape = _shape_of(canonical, "head.fc.weight")
    stem_shape = _shape_of(canonical, "stem.conv.weight")
    if fc_shape is None or stem_shape is None:
        missing = "head.fc.weight" if fc_shape is None else "stem.conv.weight"
        raise CheckpointError(f"incomplete checkpoint {path}: no tensor for '{missing}' (classifier / stem conv)")
    family = {"cifar-reference": "cifar", "imagenet-reference": "imagenet"}.get(layout)
    f_arch = f_arch or _infer_arch(canonical, path, family)
    f_coding = f_coding or ("gac" if has_gac else "direct")
    f_cls = f_cls or fc_shape[0]
    f_T = f_T or inferred_T
    arch_ = _check_arg("arch", arch, f_arch, "from its key names and block counts", path)
    cls_ = _check_arg("num_classes", num_classes, f_cls, f"classifier weight {fc_shape}", path)
    T_ = _check_arg("T", T, f_T, f"TA weight {ta_shape} fixes T" if ta_shape else "stored", path)
    coding_ = _check_arg("coding", coding, f_coding, "GAC weights present" if has_gac else "no GAC weights", path)
    if T_ is None:
        raise TimeStepsUnknownError(
            f"T cannot be inferred from {path}: a direct-coding checkpoint has no TA weights; pass T (--T N)"
        )
    if isinstance(T_, bool) or not isinstance(T_, int) or T_ < 1:
        raise CheckpointError(f"T={T_!r} for {path}: the number of time steps must be an integer >= 1 (--T N)")
    if coding_ == "gac" and T_ < 2:
        raise CheckpointError(f"T={T_} for {path}: GAC coding needs T >= 2 (its temporal attention has T//2 channels)")
    bad = nonfinite_state(canonical.items())
    if bad:
        raise CheckpointError(
            f"{path}: {bad}; no result can be computed from such weights (the first such "
            "tensor is named; check how the checkpoint was trained or edited)"
        )
    sca_shape = _shape_of(canonical, "encoder.sca.mlp.0.weight")
    info = CheckpointInfo(
        path=str(path),
        sha256=file_sha256(path),
        layout=layout,
        wrapper=wrapper,
        module_prefix=prefixed,
        arch=arch_,
        T=int(T_),
        num_classes=int(cls_),
        coding=coding_,
        width=int(stem_shape[0]),
        sca_kernel=int(sca_shape[-1]) if sca_shape else SCA_KERNEL,
        num_keys=len(sd),
        num_tensors=len(canonical),
        metadata=meta,
    )
    return canonical, info


def is_project_checkpoint(path: str | os.PathLike, written_by: str = CHECKPOINT_KIND) -> bool:
    """Whether ``path`` is a checkpoint this tool wrote there with ``written_by`` (``save_checkpoint``'s kind,
    or ``train``) and nobody changed since (its folder's record: ``fileio.owns_file``); a file of this
    format saved or copied otherwise is not."""
    return owns_file(path, written_by)


def load_state_into(model: torch.nn.Module, canonical: dict, path: str) -> None:
    """Load a canonical state_dict strictly, with one-line errors for missing, extra or mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in canonical]
    extra = [k for k in canonical if k not in expected]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks '{missing[0]}' ({len(missing)} missing tensors) "
            f"expected by the model; is it from a different architecture?"
        )
    if extra:
        raise CheckpointError(
            f"checkpoint {path} has unexpected tensor '{extra[0]}' ({len(extra)} extra); "
            f"{_nearest_hint(extra, 'cifar-reference')}"
        )
    for k, t in expected.items():
        if tuple(canonical[k].shape) != tuple(t.shape):
            raise CheckpointError(
                f"shape mismatch in {path} at '{k}': expected {list(t.shape)}, got {list(canonical[k].shape)}"
            )
    model.load_state_dict(canonical, strict=True)


def load_model(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    T: int | None = None,
    coding: str | None = None,
    map_location="cpu",
) -> MSResNet:
    """Load a checkpoint (any accepted layout) into a fresh model, in eval mode.

    Arguments left as ``None`` are inferred from the file; an argument that contradicts the file is a
    :class:`CheckpointError` naming both values. The returned model carries ``model.checkpoint_info``
    (a :class:`CheckpointInfo`: path, sha256, layout, inferred values, metadata).
    """
    canonical, info = load_checkpoint(path, arch=arch, num_classes=num_classes, T=T, coding=coding)
    model = build_model(
        info.arch,
        num_classes=info.num_classes,
        T=info.T,
        coding=info.coding,
        width=info.width,
        sca_kernel=info.sca_kernel,
    )
    load_state_into(model, canonical, str(path))
    model.checkpoint_info = info
    return model.to(map_location).eval()


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def save_checkpoint(model: MSResNet, path: str | os.PathLike, *, written_by: str = CHECKPOINT_KIND, **metadata) -> Path:
    """Write ``model`` in this project's format, atomically (temp file in the same folder, then rename);
    an existing ``path`` is replaced only when this function wrote it there and it is unchanged since (its
    folder's record, ``fileio.MANIFEST``, says so), else a ``ConfigError``: a checkpoint a user copied is
    theirs. ``written_by`` is the kind it is recorded under: ``train`` replaces only what ``train`` wrote,
    never a checkpoint a user saved with this function (kind ``checkpoint``).

    ``metadata`` (e.g. ``command``, ``seed``, ``accuracy``) is stored JSON-safe beside the weights with
    the package and torch versions and the time of writing.
    """
    from gac_analysis import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "package": f"gac-analysis {__version__}",
        "torch": torch.__version__,
        "written_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "T": model.T,
        "num_classes": model.num_classes,
        "coding": model.coding,
        "width": model.width,
        "sca_kernel": model.sca_kernel,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": _json_safe(meta),
    }
    write_recorded_file(path, lambda tmp: torch.save(payload, tmp), kind=written_by)
    return path
