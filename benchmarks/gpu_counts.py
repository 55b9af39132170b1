"""Counting on a GPU checked against independent counters on the same GPU (issue 10, item 10).

For every zoo model of ``tests/zoo_fixtures.py`` (seeded, every neuron layer firing) and the embedded GAC default:

1. ``profile`` on the device: its exact synaptic ops equal SpikingJelly's ``SynOpCounter`` and its dense MACs
   torch's ``FlopCounterMode``, per module scope, run on the same device tensors (the checks of
   ``tests/test_zoo_oracles.py``, reused as they are);
2. the shape-only counts (dense MACs per layer, neurons per LIF site) equal the CPU run's exactly; spike counts
   may differ where a membrane potential lies within float rounding of the threshold, so their relative
   difference is printed, not asserted.

Run: ``.venv/bin/python benchmarks/gpu_counts.py [--device cuda]``; exit 0 when every check passes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    import test_zoo_oracles as oracles

    import zoo_fixtures as zf
    from gac_analysis import profile
    from gac_analysis.models.specs import build_from_spec

    failures = 0
    cases = [(name, *zf.build(name)) for name in zf.ZOO]
    default = build_from_spec("default")
    digits_like = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cases.append(("default (GAC digits)", default, digits_like))
    for name, model, images in cases:
        try:
            cpu = profile(model, images)
            model = model.to(device)
            images = images.to(device)
            dev = profile(model, images)
            if name in zf.ZOO:
                oracles._check_against_peers(model, images, dev)
            assert cpu.layers["dense_macs"].tolist() == dev.layers["dense_macs"].tolist(), "dense MACs differ"
            assert cpu.lif_sites["neurons"].tolist() == dev.lif_sites["neurons"].tolist(), "neurons differ"
            s_cpu, s_dev = int(cpu.lif_sites["spikes"].sum()), int(dev.lif_sites["spikes"].sum())
            print(
                f"ok   {name}: acs {int(dev.layers['acs'].sum()):,} on {device}; spikes cpu {s_cpu:,} "
                f"{device} {s_dev:,} (rel. diff {abs(s_dev - s_cpu) / max(s_cpu, 1):.2e})",
                flush=True,
            )
        except AssertionError as e:
            failures += 1
            print(f"FAIL {name}: {e}", flush=True)
        finally:
            model.to("cpu")
    print(f"{len(cases) - failures} of {len(cases)} models: counts on {device} equal the independent counters")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
