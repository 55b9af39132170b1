"""Where the attention energy sits: GAC-MS-ResNet-18 (attention in the encoder only) against SpikingJelly's
Att-MS-ResNet-18 (channel-spatial attention in every block), same counter, seeded weights, same input, same T.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
    python benchmarks/attention_placement.py [--size 224] [--T 4] [--json out.json]

Both are ImageNet-topology ResNet-18s (7x7 stride-2 stem, stages of 64/128/256/512 channels, 1000 classes),
built with ``torch.manual_seed(0)`` and run in eval mode on the first bundled scikit-learn photo resized to
``--size`` (gac_analysis data source ``photos``), each for T time steps. Counts and prices are
``gac_analysis.profile`` with the 45nm-fp32 table. Roles: GAC-MS-ResNet declares its own (encoder =
stem conv + BN + LIF, attention = TA + SCA + gate); for Att-MS-ResNet this script declares them the same way
(``gac_role`` on its modules): ``stem.*`` encoder, every module of each block's ``attention``
(MultiDimensionalAttention: channel MLP, spatial conv, sigmoids, gating multiply) attention, ``head_lif`` /
``avgpool`` / ``head`` head, the rest backbone; its stem is declared static (``gac_static``: the same image
at every step, counted once) as GAC's stem is. Every BatchNorm weight is set to 1 in both models (both
families initialise a block's last BN to 0 or 0.1, which silences an untrained network's residual
branches). Weights are untrained, so the spike-driven (AC) parts depend
on the seeded firing rates; attention runs on real-valued inputs, so its MAC count is shape-determined.
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

ROLES = ("encoder", "attention", "backbone", "head")
CLASSES = (
    ("mac_pj", "MAC"),
    ("ac_pj", "AC"),
    ("bias_pj", "bias"),
    ("bn_pj", "BN"),
    ("elementwise_pj", "elementwise"),
    ("pooling_pj", "pooling"),
)


def bn_weights_one(model: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm weight 1 (both families zero- or small-initialise a block's last BN, which silences the
    residual branches of an untrained network; the same change is made to both models)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.fill_(1.0)
    return model


def gac_msresnet18(T: int):
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    return bn_weights_one(build_model("msresnet18-imagenet", num_classes=1000, T=T, coding="gac", width=64)).eval()


def att_msresnet18(T: int):
    from spikingjelly.activation_based.model import masnn

    torch.manual_seed(0)
    model = bn_weights_one(masnn.att_ms_resnet18(T=T, num_classes=1000)).eval()
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[0] == "stem":
            module.gac_role = "encoder"
            module.gac_static = True  # the stem sees the same image at every step: counted once, as GAC's stem
        elif "attention" in parts:
            module.gac_role = "attention"
        elif parts[0] in ("head_lif", "avgpool", "head", "dropout"):
            module.gac_role = "head"
    return model


def image(size: int) -> torch.Tensor:
    from gac_analysis.data import open_source

    source = open_source("photos", image_size=size)
    return next(source.batches(1))[0]


def summarise(report) -> dict:
    """Energy per image (mJ) by role in both conventions, the complete energy by op class per role (mJ),
    the attention's op counts per image and the mean firing rate."""
    n = report.num_images
    lay, lif = report.layers, report.lif_sites
    out = {
        "paper_mj": report.energy["paper"]["per_image_mj"],
        "complete_mj": report.energy["complete"]["per_image_mj"],
        "mean_firing_rate": report.mean_firing_rate,
        "by_role": {},
        "unsupported": getattr(report, "unsupported", None),
    }
    for role in ROLES:
        rows, neurons = lay[lay["role"] == role], lif[lif["role"] == role]
        classes = {label: float(rows[col].sum()) / n / 1e9 for col, label in CLASSES if col in rows}
        classes["neuron updates"] = float(neurons["complete_pj"].sum()) / n / 1e9 if len(neurons) else 0.0
        out["by_role"][role] = {
            "paper_mj": float(rows["paper_pj"].sum()) / n / 1e9,
            "complete_mj": float(rows["complete_pj"].sum() + (neurons["complete_pj"].sum() if len(neurons) else 0))
            / n
            / 1e9,
            "complete_by_class_mj": classes,
            "dense_macs": int(rows["dense_macs"].sum()) // n,
            "effective_macs": int(rows["effective_macs"].sum()) // n,
            "acs": int(rows["acs"].sum()) // n,
            "modules_counted": int(rows["name"].nunique()),
        }
    return out


def main() -> None:
    from gac_analysis import profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x = image(args.size)
    results = {"input": f"photos[0] {args.size}x{args.size}", "T": args.T, "energy_table": "45nm-fp32"}
    for name, build in (("GAC-MS-ResNet-18", gac_msresnet18), ("Att-MS-ResNet-18", att_msresnet18)):
        model = build(args.T)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = profile(model, x, T=args.T)
        res = summarise(report)
        res["parameters"] = sum(p.numel() for p in model.parameters())
        res["warnings"] = sorted({str(w.message) for w in caught})
        results[name] = res
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
