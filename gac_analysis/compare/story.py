"""The "GAC vs direct coding on the same task" text: what a GAC run and a direct-coding run of the same
architecture on the same data show, stated from the numbers whichever way they go."""

from __future__ import annotations

from gac_analysis.compare.table import Comparison
from gac_analysis.report_model import COMPARISON_SCHEMA

__all__ = ["gac_vs_direct_story"]


def _pair(comp: Comparison) -> tuple[dict, dict] | None:
    gac = [r for r in comp.rows if r["coding"] == "gac"]
    direct = [r for r in comp.rows if r["coding"] == "direct"]
    if len(comp.rows) != 2 or len(gac) != 1 or len(direct) != 1:
        return None
    return gac[0], direct[0]


def _cmp(a: float, b: float, lower: str, higher: str) -> str:
    return lower if a < b else higher if a > b else "equal to"


def gac_vs_direct_story(comp: Comparison) -> list[str] | None:
    """Markdown lines of the section, or ``None`` unless the comparison is one GAC and one direct run."""
    pair = _pair(comp)
    if pair is None:
        return None
    g, d = pair
    gn, dn = g["name"], d["name"]
    lines = ["## GAC vs direct coding on the same task", ""]
    same = not comp.differences
    lines.append(
        f"{gn} ({g['arch']}, GAC coding, T={g['T']}, {g['parameters']:,} parameters) and {dn} "
        f"({d['arch']}, direct coding, T={d['T']}, {d['parameters']:,} parameters), "
        + (
            f"on the same {g['images']} images of {g['data']}."
            if same
            else "on inputs that are NOT the same (see the differences above)."
        )
    )
    lines.append("")
    # accuracy
    if g["top1"] is not None and d["top1"] is not None:
        diff = g["correct"] - d["correct"]
        verdict = "raises" if g["top1"] > d["top1"] else "lowers" if g["top1"] < d["top1"] else "does not change"
        lines.append(
            f"- **Accuracy**: GAC {verdict} top-1 accuracy here: {100 * g['top1']:.2f}% "
            f"({g['correct']}/{g['labelled']}) vs {100 * d['top1']:.2f}% ({d['correct']}/{d['labelled']}), "
            f"a difference of {abs(diff)} image(s)."
        )
    else:
        lines.append("- **Accuracy**: not measured (the data carries no labels).")
    # firing rates
    shared = [s for s in comp.sites if s["rates"][gn] is not None and s["rates"][dn] is not None]
    lower = sum(s["rates"][gn] < s["rates"][dn] for s in shared)
    lines.append(
        f"- **Firing rates**: the network mean rate of GAC is {g['mean_firing_rate']:.4f} vs "
        f"{d['mean_firing_rate']:.4f} spikes/neuron/step "
        f"({_cmp(g['mean_firing_rate'], d['mean_firing_rate'], 'lower', 'higher')}"
        f", ratio {g['mean_firing_rate'] / d['mean_firing_rate']:.3f}); GAC fires less on {lower} of the "
        f"{len(shared)} LIF sites both models have (the GAC model also has its encoder LIF, which direct "
        "coding lacks)."
    )
    for r in (g, d):
        silent = [s["site"] for s in shared if s["rates"][r["name"]] == 0]
        if silent:
            lines.append(
                f"  {len(silent)} of these sites never fire in {r['name']} ({', '.join(silent)}): there "
                "the signal passes only through the membrane shortcuts."
            )
    # energy
    for conv in ("paper", "complete"):
        a, b = g[f"{conv}_mj"], d[f"{conv}_mj"]
        lines.append(
            f"- **Energy, {conv} convention**: GAC {a:.4g} vs direct {b:.4g} mJ/image: GAC is "
            f"{_cmp(a, b, 'lower', 'higher')} (GAC / direct = {a / b:.3f})."
        )
    att = comp.roles["complete"]["mj"][gn].get("attention", 0.0)
    lines.append(
        f"  The complete convention includes GAC's attention ({att:.4g} mJ/image, which the paper convention "
        "leaves out)."
    )
    # Proposition 1
    for r, how in ((g, "its own GAC encoder"), (d, "a seeded GAC encoder on its own stem")):
        if r["prop1_holds"] is None:
            lines.append(f"- **Proposition 1** ({r['name']}): not observed.")
        else:
            lines.append(
                f"- **Proposition 1 (T_g >= T_d)** on {r['name']} ({how}, {r['observer_images']} images): "
                f"{r['prop1']}; T_g > T_d on {100 * r['t_g_gt_t_d_share']:.2f}% of the encoder neurons "
                f"(mean T_d {r['mean_T_d']:.3f}, mean T_g {r['mean_T_g']:.3f} time steps)."
            )
    lines += [
        "",
        f"How far this reaches: two sets of weights (one training run each), {g['images']} images of "
        f"{g['data']}, T={g['T']}, energies priced with the {g['energy_table']} table. Differences of a few "
        "images in accuracy are within what another "
        "seed could change; the firing-rate and energy differences are exact for these two sets of weights "
        "on these images. A small model on small data is not evidence for or against the paper's CIFAR/ImageNet "
        "numbers; Proposition 1, by contrast, is a property of any weights and must hold on every neuron.",
        "",
    ]
    return lines


def read_story(run_dir) -> list[str] | None:
    """The GAC-vs-direct section saved in ``run_dir/compare/comparison.json`` (``make demo`` writes it there), with
    a link to the full comparison; ``None`` when absent or unreadable (report.md then has no such section)."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "compare" / "comparison.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    story = data.get("story") if isinstance(data, dict) and data.get("schema") == COMPARISON_SCHEMA else None
    if not isinstance(story, list) or not all(isinstance(s, str) for s in story):
        return None
    return [
        *story,
        "Full comparison (one row per model, energy by role, firing rate per LIF site, figures): "
        "[compare/comparison.md](compare/comparison.md).",
        "",
    ]
