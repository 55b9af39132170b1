"""Benchmark: gac_analysis.profile vs a plain forward vs SpikingJelly 2.0's counters, on SpikingJelly's zoo.

For each zoo model (built as ``--model spikingjelly:NAME`` builds it, with ``--model-kwargs``-style arguments
below) and each batch size, the methods run alternately in one process (the order rotates every repetition),
each over the same data set of ``--batches-per-run`` seeded batches (default 4), as a user profiles a data set:

- ``plain``:   the model's forward under ``torch.inference_mode()``, batch after batch;
- ``count``:   ``gac_analysis.accounting.count_images`` over the batches (hooks and counting, no report);
- ``profile``: ``gac_analysis.profile`` over the batches (counting plus the priced report, what a user calls);
- ``synop``:   SpikingJelly's ``SynOpCounter`` in a ``DispatchCounterMode`` around the batches (under
               ``torch.no_grad()``: its counters count nothing under ``inference_mode``);
- ``ac_mac``:  SpikingJelly's ``ACCounter`` + ``MACCounter`` in one ``DispatchCounterMode``;
- ``profile_one``: ``gac_analysis.profile`` on the first batch alone: the fixed costs (hooks set up, the
               report built) weigh most there; its ratio is to one plain forward.

Every figure is the median over ``--reps`` repetitions of the ratio ``t(method) / t(plain)`` measured in the
same repetition (plus the median plain time per forward in seconds). ``profile`` over N batches and over one
split its time into a fixed cost and a cost per batch (:func:`fixed_and_per_batch`): ``t(N) = fixed + N * m``,
so ``m = (t(N) - t(1)) / (N - 1)``; ``m / plain`` is what each further batch of a data set costs, the ratio a
long profiling run tends to. Neuron state is reset before every
forward.
Models are prepared so that every neuron layer fires (BN weights 1, thresholds 0.05, images ``rand * 2``),
as in the counting tests: a silent network would flatter the spike-dependent counters.

Inputs are RGB images of ``--image-size``: ``native`` (the default) gives each model the size it is built
for (:data:`NATIVE_SIZE`: 224x224 for the ImageNet models, 32x32 for the CIFAR ones), as a user profiles it;
a number gives every model that size (``32``: the ImageNet models on CIFAR-sized images, whose maps are then
a few pixels wide and whose forward is so short that the fixed cost of every counted call weighs most).
T=2 by default: that keeps the CPU run to minutes; the ratios, not the absolute times, are the result.
``sew_*``, ``spiking_resnet*`` and ``spiking_vgg*`` import
torchvision, which does not import here: this script then installs a stand-in module for the one name they
import from it (``load_state_dict_from_url``, which is never called: no pretrained weights are used).

Run (2 threads; the malloc settings halve CPU time here, see README, Performance):

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/bench_zoo.py [--batches 1,16] [--batches-per-run 4] [--reps 3] [--T 2] \\
        [--device cpu|cuda] [--image-size native|32] \\
        [--models ms_resnet18,spikformer_cifar10] [--json out.jsonl] [--markdown out.md]

Prints one JSON line per (model, batch) and, at the end, the markdown table of README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

import torch

#: name -> (spec, builder arguments). T is added from --T where the builder takes it.
ZOO = {
    "ms_resnet18": ("spikingjelly:ms_resnet18", {"num_classes": 10}),
    "ms_resnet34": ("spikingjelly:ms_resnet34", {"num_classes": 10}),
    "att_ms_resnet18": ("spikingjelly:att_ms_resnet18", {"num_classes": 10}),
    "spikformer_cifar10": ("spikingjelly:spikformer_cifar10", {}),
    "spikformer_ti": ("spikingjelly:spikformer_ti", {"num_classes": 10, "img_size_h": 32, "img_size_w": 32}),
    "sdt_8_384": ("spikingjelly:sdt_8_384", {"num_classes": 10}),
    "qkformer_10_384": ("spikingjelly:qkformer_10_384", {"num_classes": 10}),
    "maxformer_cifar": ("spikingjelly:maxformer_cifar", {"num_classes": 10}),
    "CIFAR10Net": ("spikingjelly:CIFAR10Net", {"channels": 64}),
    "sew_resnet18": ("spikingjelly:sew_resnet18", {"num_classes": 10}),
    "spiking_resnet18": ("spikingjelly:spiking_resnet18", {"num_classes": 10}),
    "spiking_vgg11_bn": ("spikingjelly:spiking_vgg11_bn", {"num_classes": 10}),
}
#: The input size each model is built for (its stem and, for transformers, its patch grid).
NATIVE_SIZE = {name: 32 if name in ("spikformer_cifar10", "maxformer_cifar", "CIFAR10Net") else 224 for name in ZOO}
METHODS = ("plain", "count", "profile", "synop", "ac_mac", "profile_one")


def image_size(value: str) -> str | int:
    """``--image-size``: ``native`` or a whole number of pixels >= 8 (argparse reports anything else)."""
    if value == "native":
        return value
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 8:
        raise argparse.ArgumentTypeError(f"{value!r} is not 'native' or a whole number of pixels >= 8 (e.g. 32)")
    return size


def build_kwargs(name: str, size: int) -> dict:
    """The builder arguments of ``name`` for ``size x size`` images (models with a fixed patch grid are told)."""
    kwargs = dict(ZOO[name][1])
    if "img_size_h" in kwargs:
        kwargs.update(img_size_h=size, img_size_w=size)
    return kwargs


THRESHOLD = 0.05


def torchvision_stand_in() -> bool:
    """Install a stand-in ``torchvision.models.utils`` when torchvision does not import; True if installed."""
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:  # noqa: BLE001 - any import failure: the stand-in replaces it
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

    def load_state_dict_from_url(*args, **kwargs):
        raise RuntimeError("the benchmark's torchvision stand-in downloads nothing")

    tv, models, utils = (types.ModuleType(n) for n in ("torchvision", "torchvision.models", "torchvision.models.utils"))
    utils.load_state_dict_from_url = load_state_dict_from_url
    tv.models, models.utils = models, utils
    for mod in (tv, models, utils):
        sys.modules[mod.__name__] = mod
    return True


def prepare(model):
    """Every neuron layer fires: BN weights 1, neuron thresholds ``THRESHOLD``; eval mode."""
    from spikingjelly.activation_based import neuron

    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.fill_(1.0)
        if isinstance(m, neuron.BaseNode):
            m.v_threshold = THRESHOLD
    return model.eval()


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def methods_for(model, xs: list, T: int):
    """The timed callables on ``model`` over the batches ``xs`` (one data set: every method sees all of them)."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import ACCounter, DispatchCounterMode, MACCounter, SynOpCounter

    import gac_analysis as ga
    from gac_analysis.accounting import count_images

    def plain():
        for x in xs:
            functional.reset_net(model)
            with torch.inference_mode():
                model(x)

    def count():
        return count_images(model, xs, T=T)

    def profile():
        return ga.profile(model, xs, T=T)

    def profile_one():  # one batch: what the fixed costs (hooks set up, report built) weigh alone
        return ga.profile(model, xs[:1], T=T)

    def synop():
        c = SynOpCounter()
        with torch.no_grad(), DispatchCounterMode([c]):
            for x in xs:
                functional.reset_net(model)
                model(x)
        return c.get_total()

    def ac_mac():
        counters = [ACCounter(), MACCounter()]
        with torch.no_grad(), DispatchCounterMode(counters):
            for x in xs:
                functional.reset_net(model)
                model(x)
        return [c.get_total() for c in counters]

    return {
        "plain": plain,
        "count": count,
        "profile": profile,
        "synop": synop,
        "ac_mac": ac_mac,
        "profile_one": profile_one,
    }


def ratios_of(times: dict[str, list[float]], batches: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``(medians, ranges)`` of ``t(method) / t(plain)`` over the repetitions (each ratio within one
    repetition; ``ranges``: ``[min, max]``, the spread the noise gives a row). ``profile_one`` ran one batch
    and plain all ``batches`` of them: its ratios are to one plain forward (the mean of the run's)."""
    medians, spread = {}, {}
    for m, ts in times.items():
        if m == "plain":
            continue
        scale = batches if m == "profile_one" else 1
        per_rep = [t / p * scale for t, p in zip(ts, times["plain"])]
        medians[m] = statistics.median(per_rep)
        spread[m] = [min(per_rep), max(per_rep)]
    return medians, spread


def fixed_and_per_batch(times: dict[str, list[float]], batches: int) -> dict | None:
    """``profile``'s fixed cost and its cost per batch, from its time over ``batches`` batches and over one
    (``profile_one``), per repetition: ``m = (t(N) - t(1)) / (N - 1)``, ``fixed = t(1) - m``. Returns the
    medians over the repetitions of ``m / t(plain per forward)`` (``per_batch_ratio``, with its ``[min, max]``
    as ``per_batch_range``) and of ``fixed`` in seconds (``fixed_s``); None for one batch per run (nothing to
    split)."""
    if batches < 2:
        return None
    per_batch, fixed = [], []
    for t_n, t_1, p in zip(times["profile"], times["profile_one"], times["plain"]):
        m = (t_n - t_1) / (batches - 1)
        per_batch.append(m / (p / batches))
        fixed.append(t_1 - m)
    return {
        "per_batch_ratio": statistics.median(per_batch),
        "per_batch_range": [min(per_batch), max(per_batch)],
        "fixed_s": statistics.median(fixed),
    }


def bench_one(name: str, batch: int, *, T: int, reps: int, device, batches: int, size: int) -> dict:
    from gac_analysis.models.specs import build_from_spec

    model = prepare(build_from_spec(ZOO[name][0], kwargs=build_kwargs(name, size), T=T, seed=0)).to(device)
    gen = torch.Generator().manual_seed(1)
    xs = [(torch.rand(batch, 3, size, size, generator=gen) * 2).to(device) for _ in range(batches)]
    fns = methods_for(model, xs, T)
    report = fns["profile"]()  # warm-up of every method, and the coverage / firing facts of the row
    for m in METHODS:
        if m != "profile":
            fns[m]()
    times = {m: [] for m in METHODS}
    for r in range(reps):
        order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
        for m in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[m]()
            _sync(device)
            times[m].append(time.perf_counter() - t0)
    ratios, spread = ratios_of(times, batches)
    split = fixed_and_per_batch(times, batches)
    sj = max(ratios["synop"], ratios["ac_mac"])
    cov = getattr(report, "coverage", None) or {}
    return {
        "model": name,
        "batch": batch,
        "batches_per_run": batches,
        "T": T,
        "image": [3, size, size],
        "device": str(device),
        "reps": reps,
        "plain_s": statistics.median(times["plain"]) / batches,  # per forward
        "ratio": ratios,
        "ratio_range": spread,
        "profile_vs_sj_synop": ratios["profile"] / ratios["synop"],
        "profile_vs_sj_ac_mac": ratios["profile"] / ratios["ac_mac"],
        "goal_profile_le_1_15": ratios["profile"] <= 1.15,
        "goal_half_of_sj": (ratios["profile"] <= 0.5 * sj) if sj >= 2 else None,
        "profile_split": split,  # fixed cost (s) and cost per further batch (ratio to plain), see fixed_and_per_batch
        "goal_per_batch_le_1_15": split["per_batch_ratio"] <= 1.15 if split else None,
        "mean_firing_rate": float(report.mean_firing_rate),
        "unsupported_calls": cov.get("unsupported_calls"),
    }


def markdown(rows: list[dict]) -> str:
    head = (
        "| model | image | batch | plain s/forward | count / plain | profile / plain (min-max) | "
        "SynOpCounter / plain | AC+MAC / plain | profile / SynOp | profile / AC+MAC | profile, 1 batch / plain | "
        "profile per further batch / plain (min-max) | profile fixed cost, ms |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        q = r["ratio"]
        lo, hi = r["ratio_range"]["profile"]
        split = r.get("profile_split")
        if split:
            b_lo, b_hi = split["per_batch_range"]
            tail = f"{split['per_batch_ratio']:.2f} ({b_lo:.2f}-{b_hi:.2f}) | {split['fixed_s'] * 1000:.1f} |"
        else:
            tail = "- | - |"
        lines.append(
            f"| {r['model']} | {r['image'][1]} | {r['batch']} | {r['plain_s']:.4f} | {q['count']:.2f} | "
            f"{q['profile']:.2f} ({lo:.2f}-{hi:.2f}) | "
            f"{q['synop']:.2f} | {q['ac_mac']:.2f} | {r['profile_vs_sj_synop']:.2f} | "
            f"{r['profile_vs_sj_ac_mac']:.2f} | {q['profile_one']:.2f} | {tail}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ZOO), help="comma list of " + ", ".join(ZOO))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--T", type=int, default=2)
    ap.add_argument("--batches-per-run", type=int, default=4, help="batches in the data set each method runs over")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--image-size", type=image_size, default="native", help="native (each model's own size) or a number of pixels"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="append the JSON lines to this file too")
    ap.add_argument("--markdown", help="write the markdown table to this file too")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stand_in = torchvision_stand_in()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": args.threads,
                "device": str(device),
                "torchvision_stand_in": stand_in,
                "loadavg_at_start": load,
                "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
            }
        ),
        flush=True,
    )
    rows = []
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        for batch in [int(b) for b in args.batches.split(",")]:
            size = NATIVE_SIZE[name] if args.image_size == "native" else args.image_size
            row = bench_one(
                name, batch, T=args.T, reps=args.reps, device=device, batches=args.batches_per_run, size=size
            )
            row["loadavg"] = os.getloadavg() if hasattr(os, "getloadavg") else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    table = markdown(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
