"""Provenance: what produced a number (versions, model, checkpoint hash, data, T)."""

from __future__ import annotations

import platform


def software_versions() -> dict:
    """Versions of this package, Python, torch and SpikingJelly."""
    import torch

    from gac_analysis import __version__

    try:
        from importlib.metadata import version

        sj = version("spikingjelly")
    except Exception:  # pragma: no cover - metadata missing
        sj = "unknown"
    return {
        "package": f"gac-analysis {__version__}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "spikingjelly": sj,
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
