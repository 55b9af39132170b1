"""The comparison of several runs, built from their reports' own numbers (plain dictionaries; no torch).

Units: energies in mJ per image (``*_mj``), or mJ per correct prediction (``energy_per_correct_*``);
firing rates in spikes / neuron / time step; accuracy and shares as fractions 0..1. Energy by role is
the sum of the report's per-layer energies (``layers[].paper_pj`` / ``complete_pj``) and, in the
complete convention, the LIF neuron updates (``lif_sites[].complete_pj``) of that role, divided by the
run's images. Ratios are to the first run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gac_analysis.compare.runs import Run
from gac_analysis.energy.tables import table_label
from gac_analysis.report_model import COMPARISON_SCHEMA, COMPARISON_SCHEMA_VERSION

__all__ = ["Comparison", "ROLE_ORDER", "build_comparison", "energy_by_role", "firing_rates_by_site", "run_row"]

PJ_PER_MJ = 1e9
ROLE_ORDER = ("encoder", "attention", "backbone", "head")
CONVENTIONS = ("paper", "complete")


def _get(d: Any, dotted: str, default: Any = None) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def ordered_roles(roles) -> list[str]:
    """The roles in model order (encoder, attention, backbone, head), others after them by name."""
    roles = set(roles)
    return [r for r in ROLE_ORDER if r in roles] + sorted(r for r in roles if r not in ROLE_ORDER)


def energy_by_role(report: dict) -> dict[str, dict[str, float]]:
    """``{"paper": {role: mJ/image}, "complete": {role: mJ/image}}`` from the report's rows."""
    n = max(int(report["num_images"]), 1)
    out: dict[str, dict[str, float]] = {c: {} for c in CONVENTIONS}
    for row in report.get("layers", []):
        role = str(row.get("role"))
        for conv in CONVENTIONS:
            out[conv][role] = out[conv].get(role, 0.0) + float(row.get(f"{conv}_pj") or 0.0)
    for row in report.get("lif_sites", []):
        role = str(row.get("role"))
        out["complete"][role] = out["complete"].get(role, 0.0) + float(row.get("complete_pj") or 0.0)
        out["paper"].setdefault(role, 0.0)
    return {conv: {r: out[conv].get(r, 0.0) / n / PJ_PER_MJ for r in ordered_roles(out[conv])} for conv in CONVENTIONS}


def firing_rates_by_site(runs: list[Run]) -> list[dict]:
    """One row per LIF site name over all runs, in network order (a site missing from the first run
    is placed after the site that precedes it in its own run): ``{"site", "role", "rates": {run: rate or
    None}}``. Rates: spikes / (neurons x T x images), the report's ``lif_sites[].firing_rate``."""
    order: list[str] = []
    roles: dict[str, str] = {}
    for run in runs:
        prev = None
        for row in run.report.get("lif_sites", []):
            name = row["name"]
            roles.setdefault(name, str(row.get("role")))
            if name not in order:
                order.insert(order.index(prev) + 1 if prev is not None else 0, name)
            prev = name
    rates = {
        run.name: {row["name"]: float(row["firing_rate"]) for row in run.report.get("lif_sites", [])} for run in runs
    }
    return [{"site": s, "role": roles[s], "rates": {run.name: rates[run.name].get(s) for run in runs}} for s in order]


def _data_label(report: dict) -> str:
    data = _get(report, "provenance.data") or {}
    label = str(data.get("source", "?"))
    if data.get("split"):
        label += f" ({data['split']})"
    if data.get("seed") is not None and data.get("source") == "random":
        label += f" seed {data['seed']}"
    return label


def _observer_fields(obs: dict | None) -> dict:
    if obs is None:
        return {
            "prop1": "not observed",
            "prop1_holds": None,
            "t_g_gt_t_d_share": None,
            "mean_T_d": None,
            "mean_T_g": None,
            "observer_images": None,
            "observer_gac_weights": None,
        }
    weights = _get(obs, "provenance.gac_weights") or ("seeded" if obs.get("seeded_gac") else "model")
    holds = obs.get("holds")
    return {
        "prop1": "holds" if holds is True else "FAILS" if holds is False else "unknown",
        "prop1_holds": holds,
        "t_g_gt_t_d_share": obs.get("fraction_gt"),
        "mean_T_d": obs.get("mean_T_d"),
        "mean_T_g": obs.get("mean_T_g"),
        "observer_images": obs.get("num_images"),
        "observer_gac_weights": weights,
    }


def run_row(run: Run) -> dict:
    """The comparison row of one run (see the module docstring for units)."""
    r = run.report
    model = _get(r, "provenance.model") or {}
    acc = r.get("accuracy") if isinstance(r.get("accuracy"), dict) else None
    mem = _get(r, "energy.memory.per_image_pj.snn_total")
    row = {
        "name": run.name,
        "path": str(run.path),
        "arch": model.get("arch"),
        "coding": model.get("coding"),
        "T": r.get("T"),
        "parameters": model.get("parameters"),
        "data": _data_label(r),
        "images": r.get("num_images"),
        "energy_table": table_label(_get(r, "energy.table")),
        "labelled": acc["labelled"] if acc else None,
        "correct": acc["correct"] if acc else None,
        "top1": acc["top1"] if acc else None,
        "paper_mj": float(r["energy"]["paper"]["per_image_mj"]),
        "complete_mj": float(r["energy"]["complete"]["per_image_mj"]),
        "memory_aware_mj": float(mem) / PJ_PER_MJ if isinstance(mem, (int, float)) else None,
        "energy_per_correct_paper_mj": _get(acc, "energy_per_correct_mj.paper"),
        "energy_per_correct_complete_mj": _get(acc, "energy_per_correct_mj.complete"),
        "mean_firing_rate": float(r["mean_firing_rate"]),
    }
    by_role = energy_by_role(r)
    for conv in CONVENTIONS:
        for role, v in by_role[conv].items():
            row[f"{conv}_{role}_mj"] = v
    row.update(_observer_fields(run.observer))
    return row


def _differences(runs: list[Run]) -> list[str]:
    """What the runs do not share (data, images, energy table, energy options), as sentences."""

    def table_key(r: dict) -> dict:
        t = _get(r, "energy.table") or {}
        return {k: v for k, v in t.items() if k not in ("path", "description", "source")}

    def data_key(r: dict) -> dict:
        return {k: v for k, v in (_get(r, "provenance.data") or {}).items() if k != "num_images"}

    checks = [
        ("data", data_key),
        ("images analysed", lambda r: {"images": r.get("num_images")}),
        ("energy table", table_key),
        ("energy options", lambda r: _get(r, "energy.options") or {}),
        ("time steps", lambda r: {"T": r.get("T")}),
    ]
    out = []
    for what, key in checks:
        values = [key(run.report) for run in runs]
        keys = sorted({k for v in values for k in v})
        parts = []
        for k in keys:
            seen = [v.get(k) for v in values]
            if any(s != seen[0] for s in seen[1:]):
                parts.append(f"{k}: " + ", ".join(f"{run.name}={_short(s)}" for run, s in zip(runs, seen)))
        if parts:
            out.append(f"the runs differ in {what} ({'; '.join(parts)})")
    return out


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@dataclass
class Comparison:
    """The comparison of ``runs``: ``rows`` (one per run), ``sites`` (firing rate per LIF site name),
    ``roles`` (energy per run by role, both conventions, with ratios to the first run) and
    ``differences`` (what the runs do not share; empty when they share data, images and table)."""

    runs: list[Run]
    rows: list[dict]
    sites: list[dict]
    roles: dict[str, dict]
    differences: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        """What this comparison was made of: the software, and each run's folder, the sha256 of its
        report.json (and observer.json), its checkpoint's sha256 and model spec, as its report records them."""
        from gac_analysis.fileio import file_sha256
        from gac_analysis.provenance import software_versions
        from gac_analysis.report_model import dotted_get, report_json_path

        runs = []
        for run in self.runs:
            model = dotted_get(run.report, "provenance.model") or {}
            runs.append(
                {
                    "name": run.name,
                    "folder": str(run.path.resolve()),
                    "report_sha256": file_sha256(
                        report_json_path(run.path, "report.json", writer="gac-analyze energy")
                    ),
                    "observer_sha256": file_sha256(run.observer_path) if run.observer_path else None,
                    "checkpoint_sha256": dotted_get(model, "checkpoint.sha256"),
                    "model_spec": dotted_get(model, "spec.spec"),
                }
            )
        return {**software_versions(import_torch=False), "runs": runs}

    @property
    def observer_ignored(self) -> dict[str, str]:
        """Run name -> why its folder's observer.json was not attached (another model's)."""
        return {run.name: run.observer_ignored for run in self.runs if run.observer_ignored}

    @property
    def names(self) -> list[str]:
        return [run.name for run in self.runs]

    def to_dict(self) -> dict:
        return {
            "schema": COMPARISON_SCHEMA,
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "units": {
                "*_mj": "mJ per image",
                "energy_per_correct_*_mj": "mJ per correct prediction",
                "firing_rate": "spikes / neuron / time step",
                "top1": "fraction 0..1",
                "t_g_gt_t_d_share": "fraction of observed encoder neurons with T_g > T_d",
                "*_ratio_to_first": f"this run / the first run ({self.names[0]})",
            },
            "runs": self.names,
            "provenance": self.provenance(),
            "differences": self.differences,
            "observer_ignored": self.observer_ignored,
            "rows": self.rows,
            "energy_by_role": self.roles,
            "firing_rates": self.sites,
        }


def _role_table(rows: list[dict], by_role: dict[str, dict]) -> dict[str, dict]:
    """``{conv: {"roles", "mj": {run: {role: mJ}}, "total_mj": {run: mJ}, "ratio_to_first": {run: {role or
    "total": this run / the first run}}}}`` (mJ per image)."""
    out = {}
    first = rows[0]["name"]
    for conv in CONVENTIONS:
        roles = ordered_roles({role for v in by_role.values() for role in v[conv]})
        mj = {name: {role: v[conv].get(role, 0.0) for role in roles} for name, v in by_role.items()}
        totals = {row["name"]: row[f"{conv}_mj"] for row in rows}
        ratio = {
            name: {
                **{role: _ratio(v[role], mj[first][role]) for role in roles},
                "total": _ratio(totals[name], totals[first]),
            }
            for name, v in mj.items()
        }
        out[conv] = {"roles": roles, "mj": mj, "total_mj": totals, "ratio_to_first": ratio}
    return out


def build_comparison(runs: list[Run]) -> Comparison:
    """Compare ``runs`` (the first is the reference of every ratio)."""
    rows = [run_row(run) for run in runs]
    by_role = {run.name: energy_by_role(run.report) for run in runs}
    first = rows[0]
    for row in rows:
        for conv in CONVENTIONS:
            row[f"{conv}_ratio_to_first"] = _ratio(row[f"{conv}_mj"], first[f"{conv}_mj"])
        row["mean_firing_rate_ratio_to_first"] = _ratio(row["mean_firing_rate"], first["mean_firing_rate"])
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                from gac_analysis.errors import ReportError

                raise ReportError(f"run {row['name']}: {k} is {v}; re-run `gac-analyze energy` on that run")
    return Comparison(
        runs=runs,
        rows=rows,
        sites=firing_rates_by_site(runs),
        roles=_role_table(rows, by_role),
        differences=_differences(runs),
    )
