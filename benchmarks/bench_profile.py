"""Benchmark: profiled forward vs plain forward vs SpikingJelly's op_counter (SynOpCounter, dispatch mode).

Model: CIFAR GAC-MS-ResNet-18 (full width), T=6, batch 32 (defaults), random weights from the
conformance recipe are not needed: a freshly built model with BN weights raised so that it spikes.
The three modes run alternately in one process; each figure is the median of ``--reps`` runs.
SpikingJelly's counter runs under ``torch.no_grad()``: under ``torch.inference_mode()`` its dispatch
rules count nothing (0 synaptic ops, checked here), while plain and profiled forwards use
``inference_mode`` as ``gac_analysis.profile`` does.
Peak memory: each mode runs once more in a fresh subprocess, which reports its peak resident set size
(``ru_maxrss``; on CUDA ``torch.cuda.max_memory_allocated``).

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
from typing import Callable

import torch
from torch import nn


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-sj", action="store_true", help="skip the SpikingJelly op_counter comparison")
    ap.add_argument("--only", choices=["plain", "profiled", "sj_op_counter"], help=argparse.SUPPRESS)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    return ap.parse_args()


def _spiking_model(args, device: torch.device) -> nn.Module:
    """The benchmark model: BN weights raised so that every stage spikes."""
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    model = build_model("msresnet18-cifar", num_classes=10, T=args.T, coding="gac", width=args.width)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1.5)
    return model.to(device).eval()


def _modes(model: nn.Module, x: torch.Tensor, with_sj: bool) -> dict[str, Callable[[], object]]:
    """The forwards compared: plain, profiled (counters + report) and, optionally, SpikingJelly's counter."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    from gac_analysis.accounting import OpCounter
    from gac_analysis.accounting.report import build_report
    from gac_analysis.energy.tables import load_energy_table

    table = load_energy_table("45nm-fp32")

    def plain():
        with torch.inference_mode():
            model(x)

    def profiled():
        with OpCounter(model) as c, torch.inference_mode():
            model(x)
        return build_report(c, table=table)

    def sj():
        counter = SynOpCounter()
        with torch.no_grad(), DispatchCounterMode([counter]):
            model(x)
        return counter.get_total()

    modes = {"plain": plain, "profiled": profiled}
    if with_sj:
        modes["sj_op_counter"] = sj
    return modes


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _median_times(modes: dict, reps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each mode, the modes run alternately after one warm-up call each."""
    for fn in modes.values():  # warm-up (fanout caches, allocator)
        fn()
    times: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(reps):
        for name, fn in modes.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _peak_memory(args, modes) -> dict[str, int]:
    """Peak memory of each mode, each run once in a fresh subprocess (``--only MODE``)."""
    import subprocess
    import sys

    peaks = {}
    for name in modes:
        cmd = [
            sys.executable,
            __file__,
            "--only",
            name,
            "--batch",
            str(args.batch),
            "--T",
            str(args.T),
            "--width",
            str(args.width),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        peaks[name] = json.loads(out)["peak_bytes"]
    return peaks


def main() -> None:
    args = _parse_args()
    device = torch.device(args.device)
    model = _spiking_model(args, device)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    modes = _modes(model, x, with_sj=not args.no_sj)
    if args.only:
        modes[args.only]()
        print(json.dumps({"mode": args.only, "peak_bytes": _peak_bytes(device)}))
        return
    if not args.no_sj:
        assert modes["sj_op_counter"]() > 0, "SpikingJelly's SynOpCounter counted nothing"
    med = _median_times(modes, args.reps, device)
    result = {
        "benchmark": "profile_overhead",
        "model": f"GAC-MS-ResNet-18 CIFAR width {args.width}",
        "T": args.T,
        "batch": args.batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "reps": args.reps,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "profiled_over_plain": round(med["profiled"] / med["plain"], 4),
    }
    if "sj_op_counter" in med:
        result["profiled_over_sj_op_counter"] = round(med["profiled"] / med["sj_op_counter"], 4)
    if not args.no_memory:
        peaks = _peak_memory(args, modes)
        result["peak_mib"] = {k: round(v / 2**20, 1) for k, v in peaks.items()}
        result["peak_profiled_over_plain"] = round(peaks["profiled"] / peaks["plain"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
