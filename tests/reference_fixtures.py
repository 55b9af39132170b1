"""Rebuild reference-layout checkpoints from the conformance data (tests/data, copied from shared/conformance).

The seeded weight recipe: walk the layout's alias groups in order with one generator; draw per group
by its first key's leaf name (BatchNorm statistics/affine, >=2-dim weights Kaiming-like, others small).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
LAYOUT_NAMES = [
    "cifar_msresnet18_c10_gac_T6",
    "cifar_msresnet18_c100_gac_T6",
    "cifar_msresnet18_c10_direct_T6",
    "imagenet_msresnet18_gac_T4",
    "imagenet_msresnet34_gac_T4",
]
LAYOUT_SEEDS = dict(zip(LAYOUT_NAMES, [1, 2, 3, 11, 12]))
LAYOUT_ARCH = {
    "cifar": "msresnet18-cifar",
    "imagenet_msresnet18": "msresnet18-imagenet",
    "imagenet_msresnet34": "msresnet34-imagenet",
}


@lru_cache(maxsize=None)
def layouts() -> dict:
    return json.loads((DATA / "official_layouts.json").read_text())


@lru_cache(maxsize=None)
def golden() -> dict:
    return json.loads((DATA / "cifar_msresnet18_c10_gac_T6.golden.json").read_text())


def arch_of(layout_name: str) -> str:
    return next(v for k, v in LAYOUT_ARCH.items() if layout_name.startswith(k))


def reference_state_dict(layout_name: str, seed: int) -> dict[str, torch.Tensor]:
    """The state_dict the reference code would write for this layout, with seeded weights (aliases shared)."""
    entry = layouts()[layout_name]
    all_keys = {k for g in entry["groups"] for k in g["keys"]}
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for group in entry["groups"]:
        first = group["keys"][0]
        prefix, _, leaf = first.rpartition(".")
        shape = group["shape"]
        is_bn = f"{prefix}.running_mean" in all_keys
        if leaf == "num_batches_tracked":
            t = torch.zeros((), dtype=torch.long)
        elif is_bn and leaf == "running_mean":
            t = torch.randn(shape, generator=g) * 0.2
        elif is_bn and leaf == "running_var":
            t = 0.5 + torch.rand(shape, generator=g)
        elif is_bn and leaf == "weight":
            t = 0.6 + 0.8 * torch.rand(shape, generator=g)
        elif is_bn and leaf == "bias":
            t = torch.randn(shape, generator=g) * 0.2 + 0.1
        elif leaf == "weight" and len(shape) >= 2:
            t = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:]))
        else:
            t = torch.randn(shape, generator=g) * 0.05
        for key in group["keys"]:
            sd[key] = t
    return sd


def one_error_line(result) -> str:
    """The single ``error: ...`` line of a failed CLI run (no traceback, nothing else printed)."""
    text = result.output.strip()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    return lines[0]
