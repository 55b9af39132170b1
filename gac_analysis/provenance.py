"""Provenance: what produced a number (versions, model, checkpoint hash, data, T)."""

from __future__ import annotations

import functools
import platform


@functools.cache
def _installed_version(distribution: str) -> str:
    """An installed distribution's version from its metadata (read once per process: parsing the metadata
    costs about 1 ms, a sixth of a small model's report), or ``"unknown"``."""
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


def software_versions(*, import_torch: bool = True) -> dict:
    """Versions of this package, Python, torch and SpikingJelly (``import_torch=False``: torch's from its
    installed metadata, for the commands that never import it)."""
    from gac_analysis import __version__

    if import_torch:
        import torch

        torch_version = torch.__version__
    else:
        torch_version = _installed_version("torch")
    return {
        "package": f"gac-analysis {__version__}",
        "python": platform.python_version(),
        "torch": torch_version,
        "spikingjelly": _installed_version("spikingjelly"),
    }


def model_provenance(model) -> dict:
    """Architecture facts of a model and, when it was loaded from a file, the checkpoint's identity."""
    info = getattr(model, "checkpoint_info", None)
    out = {
        "arch": getattr(model, "arch", type(model).__name__),
        "T": getattr(model, "T", None),
        "coding": getattr(model, "coding", None),
        "num_classes": getattr(model, "num_classes", None),
        "width": getattr(model, "width", None),
        "lif_variant": getattr(model, "lif_variant", None),
        "firing_rule": firing_rules(model),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if info is not None:
        out["checkpoint"] = {"path": info.path, "sha256": info.sha256, "layout": info.layout}
    else:
        out["checkpoint"] = None
    if getattr(model, "gac_model_spec", None) is not None:  # built from a --model spec (models.specs)
        out["spec"] = model.gac_model_spec
    return out


#: The firing rule of this project's LIF (the GAC reference code's), and of SpikingJelly's neurons.
PROJECT_FIRING_RULE = "u > V_th (strict, as the reference code)"
SPIKINGJELLY_FIRING_RULE = "v >= V_th (SpikingJelly's Heaviside, (v - v_threshold) >= 0)"


def firing_rules(model) -> str | None:
    """The firing rule(s) of the model's neurons: this project's LIF fires on ``u > V_th``, SpikingJelly's
    nodes (through their surrogate's Heaviside) on ``v >= V_th``; both named when both are present, the
    neuron class for any other; None for a model without neurons."""
    from spikingjelly.activation_based.neuron import BaseNode, SimpleBaseNode

    from gac_analysis.models.neurons import LIF

    rules = []
    for m in model.modules():
        if isinstance(m, LIF):
            rule = PROJECT_FIRING_RULE
        elif isinstance(m, (BaseNode, SimpleBaseNode)):
            surrogate = type(getattr(m, "surrogate_function", None)).__module__
            own = type(m).__module__.startswith("spikingjelly.") and surrogate.startswith("spikingjelly.")
            rule = SPIKINGJELLY_FIRING_RULE if own else f"{type(m).__name__}'s own rule"
        else:
            continue
        if rule not in rules:
            rules.append(rule)
    return "; ".join(rules) if rules else None
