"""Benchmark: profiled forward vs plain forward vs SpikingJelly's op_counter (SynOpCounter, dispatch mode).

Model: CIFAR GAC-MS-ResNet-18 (full width), T=6, batch 32 (defaults), random weights from the
conformance recipe are not needed: a freshly built model with BN weights raised so that it spikes.
The three modes run alternately in one process; each figure is the median of ``--reps`` runs.
Peak memory: the max resident set size growth is not separable per mode in one process, so the
script measures peak *allocated tensor bytes* through a tracking allocator hook on CPU
(torch.cuda.max_memory_allocated on CUDA).

Run (the malloc settings halve CPU time here; see README, Performance):

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \
        .venv/bin/python benchmarks/bench_profile.py [--batch 32] [--reps 5] [--device cpu|cuda]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-sj", action="store_true", help="skip the SpikingJelly op_counter comparison")
    args = ap.parse_args()

    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    from gac_analysis.accounting import Counter
    from gac_analysis.accounting.report import build_report
    from gac_analysis.energy.tables import load_energy_table
    from gac_analysis.models import build_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("msresnet18-cifar", num_classes=10, T=args.T, coding="gac", width=args.width)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1.5)
    model = model.to(device).eval()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    table = load_energy_table("45nm-fp32")

    def plain():
        with torch.inference_mode():
            model(x)

    def profiled():
        with Counter(model) as c, torch.inference_mode():
            model(x)
        return build_report(c, table=table)

    def sj():
        counter = SynOpCounter()
        with torch.inference_mode(), DispatchCounterMode([counter]):
            model(x)
        return counter.get_total()

    modes = {"plain": plain, "profiled": profiled}
    if not args.no_sj:
        modes["sj_op_counter"] = sj
    for fn in modes.values():  # warm-up (fanout caches, allocator)
        fn()
    times = {k: [] for k in modes}
    for _ in range(args.reps):
        for name, fn in modes.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "profile_overhead", "model": f"GAC-MS-ResNet-18 CIFAR width {args.width}", "T": args.T,
        "batch": args.batch, "device": str(device), "threads": torch.get_num_threads(), "reps": args.reps,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "profiled_over_plain": round(med["profiled"] / med["plain"], 4),
    }
    if "sj_op_counter" in med:
        result["profiled_over_sj_op_counter"] = round(med["profiled"] / med["sj_op_counter"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
