"""Figures of a run folder: every PNG written, non-empty, at its fixed pixel size; defensive reading."""

import json
import shutil

import pandas as pd
import pytest
import torch
from PIL import Image

from gac_analysis.viz.energy_figures import (
    CLASS_COLUMNS,
    DPI,
    FIGURE_FILES,
    FIGURE_SIZES,
    MAX_ROWS,
    _aggregate_rows,
    energy_unit,
    load_run,
    plot_energy_per_layer,
    plot_memory_energy,
    write_energy_figures,
)

ALWAYS = ["firing_rate_per_site", "firing_rate_heatmap", "energy_per_layer", "energy_by_role", "energy_cumulative"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gac_analysis.accounting import profile
    from gac_analysis.models import build_model

    torch.manual_seed(0)
    m = build_model("msresnet18-cifar", num_classes=10, T=4, width=8)
    folder = tmp_path_factory.mktemp("run")
    profile(m.eval(), torch.randn(2, 3, 32, 32)).save(folder)
    return folder


def _copy(run_dir, tmp_path, edit=None, drop=()):
    folder = tmp_path / "copy"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("figures"))
    for name in drop:
        (folder / name).unlink()
    if edit is not None:
        report = json.loads((folder / "report.json").read_text())
        edit(report)
        (folder / "report.json").write_text(json.dumps(report))
    return folder


def _check_png(path, name):
    assert path.is_file() and path.stat().st_size > 1000, path
    w, h = FIGURE_SIZES[name]
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (round(w * DPI), round(h * DPI)), (name, im.size)


def test_every_figure_written_at_its_pixel_size(run_dir):
    paths = write_energy_figures(run_dir)
    # every report now carries the memory-aware estimate (energy.memory), so its figure is always there
    expected = [*ALWAYS, "energy_memory"]
    assert [p.name for p in paths] == [FIGURE_FILES[n] for n in expected]
    for p, name in zip(paths, expected):
        assert p.parent == run_dir / "figures"
        _check_png(p, name)
    assert not list((run_dir / "figures").glob("*.partial"))  # atomic writes leave no temp files


def test_schema_has_one_home():
    from gac_analysis.accounting import report as accounting_report
    from gac_analysis.report_model import SCHEMA, SCHEMA_VERSION
    from gac_analysis.viz import energy_figures

    assert (accounting_report.SCHEMA, accounting_report.SCHEMA_VERSION) == (SCHEMA, SCHEMA_VERSION)
    assert not hasattr(energy_figures, "REPORT_SCHEMA") and not hasattr(energy_figures, "_derive_classes")


def test_classes_from_report_json_match_layers_csv(run_dir, tmp_path):
    run = load_run(run_dir)
    assert run.order_source == "per_step.csv"
    cols = [c for c, _ in CLASS_COLUMNS]
    csv = pd.read_csv(run_dir / "layers.csv")
    pd.testing.assert_frame_equal(run.layers[cols], csv[cols], rtol=1e-12, atol=0)
    folder = _copy(run_dir, tmp_path, drop=("layers.csv", "per_step.csv"))
    derived = load_run(folder)
    assert derived.order_source.startswith("approximate")
    pd.testing.assert_frame_equal(derived.layers[cols], run.layers[cols], rtol=0, atol=0)
    # each layer's classes add up to its complete energy; the order still holds every site once
    assert (run.layers[cols].sum(axis=1) - run.layers["complete_pj"]).abs().max() < 1e-3
    assert sorted(derived.order) == sorted(run.order)
    # a memory figure this tool drew for an earlier report does not linger when this report has no memory
    # estimate; a user's file of that name (not written by the tool) is left alone
    report = json.loads((folder / "report.json").read_text())
    names = [r["name"] for r in report["layers"]]
    report["energy"]["memory"] = {"layers": [{"name": n, "compute_pj": 15.0, "memory_pj": 30.0} for n in names[:12]]}
    (folder / "report.json").write_text(json.dumps(report))
    stale = folder / "figures" / FIGURE_FILES["energy_memory"]
    assert stale in write_energy_figures(folder) and stale.exists()
    report["energy"].pop("memory")
    (folder / "report.json").write_text(json.dumps(report))
    assert [p.name for p in write_energy_figures(folder)] == [FIGURE_FILES[n] for n in ALWAYS]
    assert not stale.exists()
    stale.write_bytes(b"a user's own figure")
    assert [p.name for p in write_energy_figures(folder)] == [FIGURE_FILES[n] for n in ALWAYS]
    assert stale.read_bytes() == b"a user's own figure"


def test_memory_figure_when_the_report_has_energy_memory(run_dir, tmp_path):
    names = [r["name"] for r in json.loads((run_dir / "report.json").read_text())["layers"]]

    def add_memory(report):
        report["energy"]["memory"] = {
            "layers": [{"name": n, "compute_pj": 15.0, "memory_pj": 30.0} for n in names[:12]]
        }

    folder = _copy(run_dir, tmp_path, edit=add_memory)
    run = load_run(folder)
    assert run.memory.compute_pj == pytest.approx(12 * 15.0) and run.memory.memory_pj == pytest.approx(360.0)
    path = plot_memory_energy(run, folder / "figures" / FIGURE_FILES["energy_memory"])
    _check_png(path, "energy_memory")


def test_unusable_memory_entry_is_skipped(run_dir, tmp_path):
    folder = _copy(run_dir, tmp_path, edit=lambda r: r["energy"].update(memory={"note": "pending"}))
    assert load_run(folder).memory is None


def test_run_without_lif_sites_still_draws(run_dir, tmp_path):
    folder = _copy(run_dir, tmp_path, edit=lambda r: r.update(lif_sites=[]), drop=("per_step.csv",))
    paths = write_energy_figures(folder)
    for p, name in zip(paths, ALWAYS):
        _check_png(p, name)


def test_many_layers_are_summed_per_block():
    df = pd.DataFrame({"name": [f"stage.{b}.op{i}" for b in range(40) for i in range(5)], "complete_pj": 1.0})
    out, how = _aggregate_rows(df, ["complete_pj"])
    assert len(out) == 40 <= MAX_ROWS and "block" in how
    assert out["complete_pj"].sum() == len(df) and out["label"].iloc[0] == "stage.0.* (5)"


def test_energy_unit():
    assert energy_unit(2.5e9) == (1e9, "mJ")
    assert energy_unit(3e5) == (1e3, "nJ")
    assert energy_unit(0.0) == (1.0, "pJ")


def _bar_extents(ax) -> float:
    return max((p.get_x() + p.get_width() for p in ax.patches), default=0.0)


def test_energy_per_layer_shows_every_bar_of_both_panels(run_dir, tmp_path):
    """The complete panel's largest bar is longer than the paper panel's: both fit the shared axis."""
    run = load_run(run_dir)
    captured = {}

    def keep(fig, path):  # draw, then look at the axes instead of the PNG
        captured["axes"] = fig.axes[:2]
        return path

    import gac_analysis.viz.energy_figures as ef

    saved, ef._save = ef._save, keep
    try:
        plot_energy_per_layer(run, tmp_path / "e.png")
    finally:
        ef._save = saved
    paper, complete = captured["axes"]
    assert _bar_extents(complete) > _bar_extents(paper) > 0
    for ax in (paper, complete):
        lo, hi = ax.get_xlim()
        assert lo == 0 and hi >= _bar_extents(ax), (hi, _bar_extents(ax))


def test_firing_rate_figures_do_not_name_the_energy_table(run_dir, tmp_path):
    import gac_analysis.viz.energy_figures as ef

    run = load_run(run_dir)
    table = run.report.table_name
    titles = {}
    saved = ef._save
    try:
        for name, fn in (
            ("rate", ef.plot_firing_rates),
            ("heatmap", ef.plot_firing_rate_heatmap),
            ("energy", ef.plot_energy_per_layer),
        ):
            ef._save = lambda fig, path, name=name: titles.setdefault(name, fig._suptitle.get_text()) and path
            fn(run, tmp_path / f"{name}.png")
    finally:
        ef._save = saved
    assert table and table in titles["energy"]
    assert table not in titles["rate"] and table not in titles["heatmap"]
    assert "T=4" in titles["rate"] and "2 images" in titles["heatmap"]


def test_fraction_vs_T_draws_checkpoint_and_seeded_TA_as_separate_series(tmp_path, monkeypatch):
    """A sweep with TA from the checkpoint at T=4 and seeded TA elsewhere: two lines, never one joined line."""
    import gac_analysis.viz.observer_figures as of

    sweep = pd.DataFrame(
        {
            "T": [2, 4, 6, 8],
            "ta_source": ["seeded", "checkpoint", "seeded", "seeded"],
            "sca_source": "checkpoint",
            "fraction_gt": [0.5, 0.2, 0.6, 0.7],
            "fraction_lt": 0.0,
            "violations": 0,
        }
    )
    captured = {}
    monkeypatch.setattr(of, "_save", lambda fig, path: captured.setdefault("ax", fig.axes[0]) and path)
    of.plot_fraction_vs_T(sweep, tmp_path / "f.png")
    ax = captured["ax"]
    lines = {ln.get_label(): list(ln.get_xdata()) for ln in ax.get_lines()}
    ckpt = next(v for k, v in lines.items() if "checkpoint" in k)
    seeded = next(v for k, v in lines.items() if "seeded" in k)
    assert ckpt == [4] and seeded == [2, 6, 8]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("checkpoint" in t for t in legend) and any("seeded" in t for t in legend)


def test_importing_the_package_changes_nothing_global():
    """Importing gac_analysis (models, figures) into a user's process leaves their matplotlib backend, open
    figures and warning filters as they were."""
    import subprocess
    import sys

    # torch and SpikingJelly add warning filters of their own when imported: import them first
    code = (
        "import warnings, matplotlib, torch, spikingjelly.activation_based.neuron, seaborn; "
        "before = (matplotlib.get_backend(), list(warnings.filters)); "
        "import gac_analysis.models, gac_analysis.viz.observer_figures, gac_analysis.viz.energy_figures; "
        "import matplotlib.pyplot as plt; "
        "print(before == (matplotlib.get_backend(), list(warnings.filters)), plt.get_fignums())"
    )
    env = {"MPLBACKEND": "svg", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True []", out.stdout + out.stderr


def test_sca_even_kernel_warning_silenced_only_inside_the_forward():
    import warnings

    from gac_analysis.models.gac import SpatialChannelAttention

    sca = SpatialChannelAttention(2)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sca(torch.randn(2, 1, 2, 5, 5))
    assert not [w for w in seen if "even kernel" in str(w.message)]
    assert list(warnings.filters) == before
