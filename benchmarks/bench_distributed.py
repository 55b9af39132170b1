"""Wall time of ``gac-analyze energy``: one process vs ``torchrun`` with N CPU processes (gloo, localhost).

Threads are fixed so both sides use the same cores: the single process gets ``--cpus`` threads
(``OMP_NUM_THREADS``), each of the N distributed processes ``max(1, cpus // N)``. Every run is a
whole command (process start-up, imports, model load, analysis, report), median of ``--repeats``.
The distributed report is checked equal to the single-process one (``provenance.distributed`` aside).

    .venv/bin/python benchmarks/bench_distributed.py            # 64 random images, 2 processes

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def make_checkpoint(path: Path, width: int) -> None:
    import torch

    from gac_analysis.models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("msresnet18-cifar", num_classes=10, T=4, width=width)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(2.0)  # a fresh model barely spikes
    save_checkpoint(model, path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd: list[str], env: dict, timeout: float) -> float:
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(cmd)}\n{run.stdout}\n{run.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--width", type=int, default=8, help="stem width of the msresnet18-cifar model")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    base.update(MALLOC, GLOO_SOCKET_IFNAME="lo", NO_COLOR="1")
    threads_single = args.cpus
    threads_each = max(1, args.cpus // args.nproc)
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "model.pt"
        make_checkpoint(ckpt, args.width)
        common = [str(ckpt), "--data", "random", "--num-images", str(args.images), "--batch-size", str(args.batch_size)]
        single_cmd = [str(BIN / "gac-analyze"), "energy", *common, "--no-distributed", "--out", str(tmp / "single")]
        single_env = {**base, "OMP_NUM_THREADS": str(threads_single)}
        dist_env = {**base, "OMP_NUM_THREADS": str(threads_each)}
        single, dist = [], []
        for _ in range(args.repeats):  # interleaved, so a change in machine load hits both sides alike
            single.append(timed(single_cmd, single_env, args.timeout))
            dist_cmd = [
                str(BIN / "torchrun"),
                f"--nproc_per_node={args.nproc}",
                "--nnodes=1",
                "--master_addr=127.0.0.1",
                f"--master_port={free_port()}",
                "--no-python",
                str(BIN / "gac-analyze"),
                "energy",
                *common,
                "--out",
                str(tmp / "dist"),
            ]
            dist.append(timed(dist_cmd, dist_env, args.timeout))
        a = json.loads((tmp / "single" / "report.json").read_text())
        b = json.loads((tmp / "dist" / "report.json").read_text())
        a["provenance"].pop("distributed")
        b["provenance"].pop("distributed")
        identical = a == b and all(
            (tmp / "single" / f).read_bytes() == (tmp / "dist" / f).read_bytes()
            for f in ("layers.csv", "lif_sites.csv", "per_step.csv")
        )
    med_single, med_dist = statistics.median(single), statistics.median(dist)
    print(
        json.dumps(
            {
                "bench": "distributed",
                "model": f"msresnet18-cifar width {args.width} T=4",
                "images": args.images,
                "batch_size": args.batch_size,
                "cpus": args.cpus,
                "single": {
                    "processes": 1,
                    "threads": threads_single,
                    "median_s": round(med_single, 3),
                    "min_s": round(min(single), 3),
                    "runs_s": [round(x, 3) for x in single],
                },
                "distributed": {
                    "processes": args.nproc,
                    "threads_each": threads_each,
                    "backend": "gloo",
                    "median_s": round(med_dist, 3),
                    "min_s": round(min(dist), 3),
                    "runs_s": [round(x, 3) for x in dist],
                },
                "speedup": round(med_single / med_dist, 3),  # of the medians
                "speedup_of_minima": round(min(single) / min(dist), 3),  # less sensitive to other load on the machine
                "identical_reports": identical,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
