"""`gac-analyze compare`: table values from the runs' own JSON (a toy pair checked by hand), errors."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gac_analysis.cli.main import app
from gac_analysis.compare import build_comparison, read_runs
from gac_analysis.fileio import MANIFEST
from reference_fixtures import one_error_line

runner = CliRunner()

DATA = {"source": "digits", "split": "test", "num_images": 2}
TABLE = {"name": "45nm-fp32", "mac": 4.6, "ac": 0.9}


def _layer(name, role, paper, complete):
    classes = {"mac_pj": complete, "ac_pj": 0.0, "bias_pj": 0.0, "bn_pj": 0.0, "elementwise_pj": 0.0, "pooling_pj": 0.0}
    return {"name": name, "op": "conv2d", "role": role, "paper_pj": paper, "complete_pj": complete, **classes}


def _lif(name, role, rate, complete):
    return {"name": name, "role": role, "firing_rate": rate, "complete_pj": complete}


def _report(coding, layers, lif, paper_pj, complete_pj, rate, accuracy, data=DATA, table=TABLE):
    return {
        "schema": "gac-analysis/energy-report",
        "schema_version": 2,
        "num_images": 2,
        "T": 4,
        "mean_firing_rate": rate,
        "accuracy": accuracy,
        "layers": layers,
        "lif_sites": lif,
        "energy": {
            "paper": {"total_pj": paper_pj, "per_image_mj": paper_pj / 2e9},
            "complete": {"total_pj": complete_pj, "per_image_mj": complete_pj / 2e9},
            "table": dict(table),
            "options": {"reuse_static": True, "fold_bn": False},
            "memory": {"per_image_pj": {"snn_total": 5e9}},
        },
        "provenance": {"model": {"arch": "toy", "coding": coding, "parameters": 10}, "data": dict(data)},
    }


# The toy pair (2 images each; pJ totals over the 2 images):
#   gac:    stem (encoder) paper 2e9 / complete 3e9; attention 0 / 1e9; conv (backbone) 4e9 / 2e9;
#           LIF encoder.lif rate 0.5, 0.5e9 pJ; LIF l1.lif rate 0.2, 1e9 pJ.  paper 6e9, complete 7.5e9.
#   direct: stem paper 2e9 / complete 2e9; conv 6e9 / 3e9; LIF l1.lif rate 0.3, 1e9 pJ. paper 8e9, complete 6e9.
GAC = _report(
    "gac",
    [_layer("stem", "encoder", 2e9, 3e9), _layer("sca", "attention", 0.0, 1e9), _layer("conv", "backbone", 4e9, 2e9)],
    [_lif("encoder.lif", "encoder", 0.5, 0.5e9), _lif("l1.lif", "backbone", 0.2, 1e9)],
    6e9,
    7.5e9,
    0.25,
    {"labelled": 2, "correct": 1, "top1": 0.5, "energy_per_correct_mj": {"paper": 6.0, "complete": 7.5}},
)
DIRECT = _report(
    "direct",
    [_layer("stem", "encoder", 2e9, 2e9), _layer("conv", "backbone", 6e9, 3e9)],
    [_lif("l1.lif", "backbone", 0.3, 1e9)],
    8e9,
    6e9,
    0.3,
    {"labelled": 2, "correct": 2, "top1": 1.0, "energy_per_correct_mj": {"paper": 4.0, "complete": 3.0}},
)
OBSERVER = {
    "schema": "gac-analysis/observer",
    "schema_version": 1,
    "verdict": "Proposition 1 holds",
    "holds": True,
    "T": 4,
    "num_images": 2,
    "num_neurons": 8,
    "mean_T_d": 1.5,
    "mean_T_g": 2.0,
    "num_violations": 0,
    "fraction_gt": 0.25,
    "fraction_eq": 0.75,
    "fraction_lt": 0.0,
    "provenance": {"gac_weights": "model"},
}


def _write(folder: Path, report: dict, observer: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    if observer is not None:
        (folder / "observe").mkdir()
        (folder / "observe" / "observer.json").write_text(json.dumps(observer))
    return folder


@pytest.fixture
def pair(tmp_path):
    return [_write(tmp_path / "gac", GAC, OBSERVER), _write(tmp_path / "direct", DIRECT)]


def test_toy_pair_table_values_by_hand(pair):
    comp = build_comparison(read_runs(pair))
    g, d = comp.rows
    assert (g["name"], d["name"]) == ("gac", "direct") and comp.differences == []
    assert (g["paper_mj"], g["complete_mj"], d["paper_mj"], d["complete_mj"]) == (3.0, 3.75, 4.0, 3.0)
    assert d["paper_ratio_to_first"] == pytest.approx(4 / 3) and d["complete_ratio_to_first"] == pytest.approx(0.8)
    assert g["paper_ratio_to_first"] == 1.0 and d["mean_firing_rate_ratio_to_first"] == pytest.approx(1.2)
    assert g["memory_aware_mj"] == 5.0
    assert (g["top1"], g["correct"], d["top1"]) == (0.5, 1, 1.0)
    assert (g["energy_per_correct_complete_mj"], d["energy_per_correct_paper_mj"]) == (7.5, 4.0)
    # energy by role, mJ per image: complete = layers + LIF neuron updates of the role, / 2 images
    assert comp.roles["complete"]["mj"]["gac"] == {"encoder": 1.75, "attention": 0.5, "backbone": 1.5}
    assert comp.roles["complete"]["mj"]["direct"] == {"encoder": 1.0, "attention": 0.0, "backbone": 2.0}
    assert comp.roles["paper"]["mj"]["gac"] == {"encoder": 1.0, "attention": 0.0, "backbone": 2.0}
    assert comp.roles["paper"]["mj"]["direct"] == {"encoder": 1.0, "attention": 0.0, "backbone": 3.0}
    assert comp.roles["paper"]["ratio_to_first"]["direct"]["backbone"] == pytest.approx(1.5)
    assert comp.roles["complete"]["ratio_to_first"]["direct"]["total"] == pytest.approx(0.8)
    assert comp.roles["complete"]["ratio_to_first"]["direct"]["encoder"] == pytest.approx(1.0 / 1.75)
    # per-LIF-site rates matched by name; direct coding has no encoder LIF
    assert comp.sites == [
        {"site": "encoder.lif", "role": "encoder", "rates": {"gac": 0.5, "direct": None}},
        {"site": "l1.lif", "role": "backbone", "rates": {"gac": 0.2, "direct": 0.3}},
    ]
    # observer: present for gac (in its observe/ sub-folder), absent for direct
    assert (g["prop1"], g["t_g_gt_t_d_share"], g["mean_T_g"], g["observer_gac_weights"]) == (
        "holds",
        0.25,
        2.0,
        "model",
    )
    assert d["prop1"] == "not observed" and d["t_g_gt_t_d_share"] is None


def test_sum_of_roles_is_the_total(pair):
    comp = build_comparison(read_runs(pair))
    for conv in ("paper", "complete"):
        for name in comp.names:
            assert sum(comp.roles[conv]["mj"][name].values()) == pytest.approx(comp.roles[conv]["total_mj"][name])


def test_cli_writes_every_output_and_the_story(pair, tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *map(str, pair), "--out", str(out), "--names", "G,D"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "figures",
    ]
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "compare_energy_by_role.png",
        "compare_firing_rates.png",
    ]
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["name"] for r in rows] == ["G", "D"]
    assert float(rows[1]["complete_ratio_to_first"]) == pytest.approx(0.8)
    assert float(rows[0]["complete_attention_mj"]) == 0.5 and float(rows[1]["paper_backbone_mj"]) == 3.0
    data = json.loads((out / "comparison.json").read_text())
    assert data["runs"] == ["G", "D"] and data["differences"] == []
    md = (out / "comparison.md").read_text()
    assert "All runs share the data (digits (test)), the images analysed (2)" in md
    assert "## GAC vs direct coding on the same task" in md
    assert "GAC lowers top-1 accuracy here: 50.00% (1/2) vs 100.00% (2/2)" in md
    assert "GAC / direct = 0.750" in md and "GAC / direct = 1.250" in md  # paper 3/4, complete 3.75/3
    assert "GAC fires less on 1 of the 1 LIF sites" in md
    assert "| `encoder.lif` | encoder | 0.5 | - |" in md


def test_differences_are_printed_in_the_header(tmp_path):
    other = copy.deepcopy(DIRECT)
    other["provenance"]["data"] = {"source": "random", "seed": 0, "num_images": 3}
    other["num_images"] = 3
    other["energy"]["table"] = {"name": "45nm-int8", "mac": 0.23, "ac": 0.03}
    runs = [_write(tmp_path / "a", GAC), _write(tmp_path / "b", other)]
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *map(str, runs), "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    md = (out / "comparison.md").read_text()
    header = md.split("## ")[0]
    assert "they are compared anyway" in header
    assert "the runs differ in data (" in header and "source: a=digits, b=random" in header
    assert "the runs differ in images analysed (images: a=2, b=3)" in header
    assert "the runs differ in energy table (" in header and "name: a=45nm-fp32, b=45nm-int8" in header
    assert "note: the runs differ in data" in res.output
    assert "GAC vs direct coding" in md and "NOT the same" in md


@pytest.mark.parametrize(
    "case, message",
    [
        ("one", "compare needs at least two runs, got 1"),
        ("missing", "does not exist"),
        ("schema", "is schema 'gac-analysis/observer' version 1; this version reads 'gac-analysis/energy-report'"),
        ("names", "--names gives 3 names for 2 runs"),
        ("dupnames", "names must be non-empty and distinct"),
        ("observer", "observer.json"),
    ],
)
def test_bad_inputs_one_line_exit_2_nothing_written(pair, tmp_path, case, message):
    args = [str(p) for p in pair]
    if case == "one":
        args = args[:1]
    elif case == "missing":
        args.append(str(tmp_path / "nope"))
    elif case == "schema":
        args.append(str(_write(tmp_path / "obs", OBSERVER)))
    elif case == "names":
        args += ["--names", "a,b,c"]
    elif case == "dupnames":
        args += ["--names", "a,a"]
    elif case == "observer":
        (pair[1] / "observer.json").write_text('{"schema": "gac-analysis/observer"}')
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message in one_error_line(res)
    assert not out.exists()


def test_compare_real_runs_reads_their_numbers(tmp_path):
    import torch

    from gac_analysis.accounting import profile
    from gac_analysis.data import digits_split
    from gac_analysis.models import build_model

    images, labels = digits_split("test")
    folders = []
    for coding in ("gac", "direct"):
        torch.manual_seed(0)
        model = build_model("msresnet18-cifar", num_classes=10, T=2, width=4, coding=coding).eval()
        report = profile(model, [(images[:3], labels[:3])])
        report.save(tmp_path / coding)
        folders.append(tmp_path / coding)
    comp = build_comparison(read_runs(folders))
    for row, folder in zip(comp.rows, folders):
        own = json.loads((folder / "report.json").read_text())
        assert row["paper_mj"] == own["energy"]["paper"]["per_image_mj"]
        assert row["complete_mj"] == own["energy"]["complete"]["per_image_mj"]
        assert row["top1"] == own["accuracy"]["top1"] and row["labelled"] == 3
        for conv in ("paper", "complete"):
            assert sum(comp.roles[conv]["mj"][row["name"]].values()) == pytest.approx(row[f"{conv}_mj"], rel=1e-9)
        rates = {r["name"]: r["firing_rate"] for r in own["lif_sites"]}
        assert {s["site"]: s["rates"][row["name"]] for s in comp.sites if s["rates"][row["name"]] is not None} == rates
    assert comp.sites[0]["site"] == "encoder.lif" and comp.sites[0]["rates"]["direct"] is None


def test_report_md_carries_the_gac_vs_direct_section(pair):
    res = runner.invoke(app, ["compare", *map(str, pair), "--out", str(pair[0] / "compare"), "--no-figures"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(pair[0]), "--no-figures"])
    assert res.exit_code == 0, res.output
    md = (pair[0] / "report.md").read_text()
    assert "## GAC vs direct coding on the same task" in md and "[compare/comparison.md](compare/comparison.md)" in md
    assert "Proposition 1 (T_g >= T_d)** on gac (its own GAC encoder, 2 images): holds; T_g > T_d on 25.00%" in md
    res = runner.invoke(app, ["report", str(pair[1]), "--no-figures"])  # no compare/ beside it: no section
    assert "GAC vs direct" not in (pair[1] / "report.md").read_text()


def test_observe_a_direct_model_with_a_seeded_gac(tmp_path):
    import torch

    from gac_analysis.models import build_model, save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "direct.pt"
    save_checkpoint(build_model("msresnet18-cifar", num_classes=10, T=2, width=4, coding="direct"), ckpt)
    res = runner.invoke(
        app, ["observe", str(ckpt), "--data", "digits", "--num-images", "2", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "no GAC weights" in one_error_line(res)
    res = runner.invoke(
        app,
        ["observe", str(ckpt), "--data", "digits", "--num-images", "2", "--seeded-gac", "--out", str(tmp_path / "o")],
    )
    assert res.exit_code == 0, res.output
    obs = json.loads((tmp_path / "o" / "observer.json").read_text())
    assert obs["seeded_gac"] is True and obs["holds"] is True and obs["num_neurons"] == 2 * 4 * 32 * 32


def test_an_observer_of_another_model_is_not_attached(tmp_path):
    """A run folder whose observe/ was run on another checkpoint (or coding): compare and report show no
    verdict for it and say why; the same observer on the same model is attached."""
    from gac_analysis.report_model import observer_mismatch
    from gac_analysis.viz.report_md import read_observer

    gac = copy.deepcopy(GAC)
    gac["provenance"]["model"]["checkpoint"] = {"sha256": "a" * 64}
    other = copy.deepcopy(OBSERVER)
    other["provenance"] = {"gac_weights": "seeded", "coding": "direct", "checkpoint": {"sha256": "b" * 64}}
    same = copy.deepcopy(OBSERVER)
    same["provenance"] = {"gac_weights": "model", "coding": "gac", "checkpoint": {"sha256": "a" * 64}}
    why = observer_mismatch(gac, other)
    assert why == (
        "its observer.json describes another model than its report.json (checkpoint sha256 bbbbbbbbbbbb... there, "
        "aaaaaaaaaaaa... here; coding direct there, gac here)"
    )
    assert observer_mismatch(gac, same) is None and observer_mismatch(gac, OBSERVER) is None  # nothing to compare
    runs = [_write(tmp_path / "g", gac, other), _write(tmp_path / "d", DIRECT)]
    comp = build_comparison(read_runs(runs))
    assert comp.rows[0]["observer_images"] is None and comp.observer_ignored == {"g": why}
    assert comp.to_dict()["observer_ignored"] == {"g": why}
    res = runner.invoke(app, ["compare", *map(str, runs), "--out", str(tmp_path / "c"), "--no-figures"])
    assert res.exit_code == 0 and f"note: run g: {why}; no observer verdict for it" in " ".join(res.output.split())
    assert "no observer verdict" in (tmp_path / "c" / "comparison.md").read_text()
    assert read_observer(runs[0], gac) == f"not shown: {why}; run `gac-analyze observe` on this run's model"
    (runs[0] / "observe" / "observer.json").write_text(json.dumps(same))
    assert read_observer(runs[0], gac).holds is True
    assert build_comparison(read_runs(runs)).observer_ignored == {}


def test_comparison_json_carries_its_provenance(pair, tmp_path):
    from gac_analysis.fileio import file_sha256

    res = runner.invoke(app, ["compare", *map(str, pair), "--out", str(tmp_path / "c"), "--no-figures"])
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "c" / "comparison.json").read_text())["provenance"]
    assert prov["package"].startswith("gac-analysis ") and prov["torch"] and prov["python"]
    g, d = prov["runs"]
    assert g["folder"] == str(pair[0].resolve()) and g["report_sha256"] == file_sha256(pair[0] / "report.json")
    assert g["observer_sha256"] == file_sha256(pair[0] / "observe" / "observer.json") and d["observer_sha256"] is None


def test_the_python_write_comparison_never_replaces_a_users_file(pair, tmp_path):
    from gac_analysis.compare import build_comparison, read_runs, write_comparison
    from gac_analysis.errors import ConfigError

    comp = build_comparison(read_runs(pair, None))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "comparison.md").write_text("my thesis table\n")
    with pytest.raises(ConfigError, match="did not write"):
        write_comparison(comp, mine, figures=False)
    assert (mine / "comparison.md").read_text() == "my thesis table\n" and len(list(mine.iterdir())) == 1
    written = write_comparison(comp, tmp_path / "new", figures=False)
    assert sorted(p.name for p in written) == ["comparison.csv", "comparison.json", "comparison.md"]
    assert all(p.is_file() and p.parent == tmp_path / "new" for p in written)
