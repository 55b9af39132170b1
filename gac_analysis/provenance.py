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


def software_versions() -> dict:
    """Versions of this package, Python, torch and SpikingJelly."""
    import torch

    from gac_analysis import __version__

    return {
        "package": f"gac-analysis {__version__}",
        "python": platform.python_version(),
        "torch": torch.__version__,
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
        "firing_rule": "u > V_th (strict, as the reference code)",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if info is not None:
        out["checkpoint"] = {"path": info.path, "sha256": info.sha256, "layout": info.layout}
    else:
        out["checkpoint"] = None
    if getattr(model, "gac_model_spec", None) is not None:  # built from a --model spec (models.specs)
        out["spec"] = model.gac_model_spec
    return out
