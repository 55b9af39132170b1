"""Benchmark: the cost of building the priced report (``build_report``) next to the model's plain forward.

For each model the counting forward runs once (batch 1, 32x32 images, T=2 for the SpikingJelly zoo models,
prepared as in ``bench_zoo.py``; the embedded default on 32 of its held-out digits); then ``build_report``
(what ``OpCounter.compute`` / ``report_from_counter`` / ``gac_analysis.profile`` run after the forward: the
one device sync, the tables, both conventions, the memory model and its bounds; 45nm-fp32, default options)
and the plain forward (``torch.inference_mode``, neuron state reset) alternate ``--reps`` times. Prints one
JSON line per model: median milliseconds of each and their ratio.

Run (2 threads; the malloc settings halve CPU time here, see README, Performance):

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/bench_report.py [--models ms_resnet18,default] [--reps 31]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_zoo import ZOO, prepare, torchvision_stand_in  # noqa: E402

MODELS = ("ms_resnet18", "default", "spikformer_cifar10", "sdt_8_384")


def model_and_images(name: str):
    """(model, one batch of images, T) of a benchmark model."""
    from gac_analysis.models.specs import build_from_spec

    if name == "default":
        from gac_analysis.cli.common import default_data_spec, open_data, open_model

        model, _ = open_model(None, seed=0)
        source = open_data(default_data_spec(True, None), model, num_images=32, seed=0)
        return model, next(iter(source.batches(32))), None
    spec, kwargs = ZOO[name]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    return prepare(build_from_spec(spec, kwargs=kwargs, T=2, seed=0)), x, 2


def bench_one(name: str, reps: int) -> dict:
    """Median ms of ``build_report`` and of the plain forward on one model."""
    from spikingjelly.activation_based import functional

    from gac_analysis.accounting import count_images
    from gac_analysis.accounting.report import build_report
    from gac_analysis.energy.tables import load_energy_table

    model, x, T = model_and_images(name)
    images = x[0] if isinstance(x, (tuple, list)) else x
    counter = count_images(model, [x], T=T)
    table = load_energy_table("45nm-fp32")

    def report():
        build_report(counter, table=table, provenance={})

    def plain():
        functional.reset_net(model)
        with torch.inference_mode():
            model(images)

    report(), plain()  # warm-up
    times = {"build_report": [], "plain_forward": []}
    for _ in range(reps):
        for key, fn in (("build_report", report), ("plain_forward", plain)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "model": name,
        "sites": len(counter.sites),
        "images": int(images.shape[0]),
        "reps": reps,
        "build_report_ms": round(med["build_report"], 2),
        "plain_forward_ms": round(med["plain_forward"], 2),
        "report_over_forward": round(med["build_report"] / med["plain_forward"], 3),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of default, " + ", ".join(ZOO))
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torchvision_stand_in()
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        print(json.dumps(bench_one(name, args.reps)), flush=True)


if __name__ == "__main__":
    main()
