"""Byte-identity check of priced reports: dump every report file for many models and pricing options.

For each model below, the counting forward runs once; the counter is then priced with every energy table
(``45nm-fp32``, ``45nm-fp16``, ``45nm-int8``, ``45nm-int32``) x ``fold_bn`` x ``reuse_static`` x
``integer_pricing`` (32 reports) through :func:`gac_analysis.accounting.report_from_counter` (the path of
``gac_analysis.profile`` and of ``gac-analyze energy``), and each report is saved (``report.json``,
``layers.csv``, ``lif_sites.csv``, ``per_step.csv``; and ``facts.txt``: dtypes and reprs) under
``OUT/MODEL/TABLE-fold..-reuse..-PRICING/``.
Run it before and after a change to the pricing code and compare the two folders byte for byte:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/report_identity.py --out /tmp/before [--models default,ms_resnet18]
    ... change the code ...
    .venv/bin/python benchmarks/report_identity.py --out /tmp/after
    .venv/bin/python benchmarks/report_identity.py --compare /tmp/before /tmp/after

Models: the embedded default (``default``: the held-out digits, as ``gac-analyze energy`` analyses it),
its direct-coding twin (``default-direct``), SpikingJelly zoo models (built as ``--model spikingjelly:NAME``
builds them, prepared so that every neuron fires, as in ``bench_zoo.py``; 2 random 32x32 images, T=2), one
zoo model left unprepared (``ms_resnet18-raw``: default thresholds, silent layers possible), a plain torch
network without neurons (``plain-torch``: no LIF sites), one conv called on images and on spikes
(``shared-conv``: observed input ``mixed``) and a lone neuron layer (``lif-only``: no layer rows).
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_zoo import ZOO, prepare, torchvision_stand_in  # noqa: E402

TABLES = ("45nm-fp32", "45nm-fp16", "45nm-int8", "45nm-int32")
OPTIONS = list(itertools.product(TABLES, (False, True), (True, False), ("mac", "k_ac")))
ZOO_MODELS = (
    "ms_resnet18",
    "att_ms_resnet18",
    "sew_resnet18",
    "spiking_resnet18",
    "spiking_vgg11_bn",
    "CIFAR10Net",
    "spikformer_cifar10",
    "sdt_8_384",
    "qkformer_10_384",
    "maxformer_cifar",
)
MODELS = ("default", "default-direct", *ZOO_MODELS, "ms_resnet18-raw", "plain-torch", "shared-conv", "lif-only")


class SharedConv(torch.nn.Module):
    """One conv called on the image and on spikes (observed input ``mixed``), then a linear head."""

    def __init__(self):
        from spikingjelly.activation_based import neuron

        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.lif1 = neuron.LIFNode(v_threshold=0.2)
        self.lif2 = neuron.LIFNode(v_threshold=0.2)
        self.fc = torch.nn.Linear(3 * 32 * 32, 5)

    def forward(self, x):
        s = self.lif2(self.conv(self.lif1(self.conv(x))))
        return self.fc(s.flatten(1))


def counted(name: str):
    """(model, counter, data description) of one model, counted once."""
    from gac_analysis.accounting import count_images
    from gac_analysis.cli.common import default_data_spec, open_data, open_model, uses_embedded_model
    from gac_analysis.models.specs import build_from_spec

    if name in ("default", "default-direct"):
        spec = None if name == "default" else name
        model, _ = open_model(None, model=spec, seed=0)
        source = open_data(default_data_spec(uses_embedded_model(None, spec), None), model, num_images=None, seed=0)
        return model, count_images(model, source.batches(32)), source.describe()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    if name in ("shared-conv", "lif-only"):
        from spikingjelly.activation_based import neuron

        torch.manual_seed(0)
        model = SharedConv() if name == "shared-conv" else torch.nn.Sequential(neuron.LIFNode(v_threshold=0.5))
        return model.eval(), count_images(model.eval(), x, T=2), None
    if name == "plain-torch":
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 10),
        ).eval()
        return model, count_images(model, x, T=1), None
    raw = name.endswith("-raw")
    spec, kwargs = ZOO[name.removesuffix("-raw")]
    model = build_from_spec(spec, kwargs=kwargs, T=2, seed=0)
    model = model.eval() if raw else prepare(model)
    return model, count_images(model, x, T=2), None


def facts(report) -> str:
    """What the saved files do not show: the frames' columns, dtypes, index and the python types of the values
    in their object columns, and the reprs (numpy scalars show as ``np.float64(...)``) of the report's dicts."""
    lines = []
    for key in ("layers", "lif_sites", "per_step"):
        df = getattr(report, key)
        lines.append(f"{key}: {df.shape} index {df.index!r}")
        for col, dtype in df.dtypes.items():
            types = sorted({type(v).__name__ for v in df[col].to_numpy()}) if dtype.kind == "O" else ""
            lines.append(f"  {col}: {dtype} {types}")
    for key in ("energy", "checks", "coverage", "unsupported", "accuracy"):
        lines.append(f"{key}: {getattr(report, key)!r}")
    lines.append(f"totals: {report.totals()!r}")
    lines.append(f"mean_firing_rate: {report.mean_firing_rate!r}")
    return "\n".join(lines) + "\n"


def dump(models: list[str], out: Path) -> None:
    """Save the 32 priced reports of every model under ``out``."""
    from gac_analysis.accounting import report_from_counter

    torchvision_stand_in()
    for name in models:
        t0 = time.perf_counter()
        model, counter, data = counted(name)
        for table, fold, reuse, pricing in OPTIONS:
            report = report_from_counter(
                counter, model, energy=table, fold_bn=fold, reuse_static=reuse, integer_pricing=pricing, data=data
            )
            folder = out / name / f"{table}-fold{int(fold)}-reuse{int(reuse)}-{pricing}"
            report.save(folder)
            (folder / "facts.txt").write_text(facts(report))
        print(f"{name}: {len(counter.sites)} sites, {time.perf_counter() - t0:.1f} s", flush=True)


def compare(a: Path, b: Path) -> int:
    """Number of files that differ (or exist on one side only) between two dumps; prints each."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = sorted(files_a ^ files_b)
    for rel in bad:
        print(f"only in one dump: {rel}")
    differ = [rel for rel in sorted(files_a & files_b) if not filecmp.cmp(a / rel, b / rel, shallow=False)]
    for rel in differ:
        print(f"differs: {rel}")
    print(f"{len(files_a & files_b)} files compared, {len(differ)} differ, {len(bad)} on one side only")
    return len(differ) + len(bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="dump folder")
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two dumps byte for byte")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.compare:
        sys.exit(1 if compare(*args.compare) else 0)
    if args.out is None:
        ap.error("give --out DIR or --compare A B")
    torch.set_num_threads(args.threads)
    print({k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}, flush=True)
    dump([m.strip() for m in args.models.split(",") if m.strip()], args.out)


if __name__ == "__main__":
    main()
