"""Output folders: the tool replaces or removes only files it recorded writing, unchanged since.

Each case is one way a user's file used to be lost or a folder left mixed: `compare --out` into a run
folder (its `figures/`), a foreign `report.json` beside another kind of run, a user's `encoding_mine.png`
matching observe's pattern, `report` through a `figures` link or over a user's `report.md`, an
interrupted `report`, a stale `report.md` after a new `energy` run, and a run folder written before the
record existed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gac_analysis import fileio
from gac_analysis.cli.main import app
from gac_analysis.errors import ConfigError
from gac_analysis.fileio import MANIFEST, atomic_output_dir
from gac_analysis.report_model import OBSERVER_SCHEMA

runner = CliRunner()
ENERGY = ["energy", "--data", "random", "--image-size", "8", "--num-images", "1", "--batch-size", "1"]


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _refused(args: list[str], fragment: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and fragment in result.output, result.output
    return result.output


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST  # the record changes with every run
    }


@pytest.fixture(scope="module")
def energy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    _ok([*ENERGY, "--out", str(out)])
    _ok(["report", str(out)])
    return out


@pytest.fixture
def run(energy_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(energy_run, folder)
    return folder


def test_the_record_lists_every_file_written_with_its_command_and_hash(run):
    files = json.loads((run / MANIFEST).read_text())["files"]
    assert {k: v["kind"] for k, v in files.items()} == {
        **dict.fromkeys(["report.json", "layers.csv", "lif_sites.csv", "per_step.csv"], "energy"),
        "report.md": "report",
        **{f"figures/{p.name}": "report" for p in (run / "figures").iterdir()},
    }
    assert all(v["sha256"] == fileio.file_sha256(run / k) for k, v in files.items())


def test_compare_into_a_run_folder_keeps_the_reports_figures_and_the_users(run, tmp_path):
    mine = run / "figures" / "my_plot.png"
    mine.write_bytes(b"mine")
    before = _snapshot(run)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    _ok(["compare", str(run), str(other), "--out", str(run)])
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of energy's, report's or mine lost
    assert {"comparison.json", "figures/compare_firing_rates.png", "figures/compare_energy_by_role.png"} <= set(after)
    _ok(["compare", str(run), str(other), "--out", str(run), "--no-figures"])  # its own figures go, nothing else
    final = _snapshot(run)
    assert "figures/compare_firing_rates.png" not in final and mine.read_bytes() == b"mine"
    assert {k: v for k, v in final.items() if k in before} == before


def test_a_foreign_report_json_beside_another_kind_of_run_is_refused(tmp_path):
    out = tmp_path / "obs"
    with atomic_output_dir(out, kind="observe") as tmp:
        (tmp / "observer.json").write_text(json.dumps({"schema": OBSERVER_SCHEMA}))
    (out / "report.json").write_text('{"tool": "other"}')
    (out / "layers.csv").write_text("my,csv\n")
    before = _snapshot(out)
    _refused([*ENERGY, "--out", str(out)], "'layers.csv', 'report.json' are in the way")
    assert _snapshot(out) == before


def test_observe_pattern_never_takes_a_users_file(tmp_path):
    """Stale figures of an earlier observe run are removed; a user's encoding_mine.png is not."""
    out = tmp_path / "obs"
    with atomic_output_dir(out, kind="observe") as tmp:
        (tmp / "observer.json").write_text(json.dumps({"schema": OBSERVER_SCHEMA}))
        (tmp / "encoding_T4.png").write_bytes(b"ours")
    (out / "encoding_mine.png").write_bytes(b"mine")
    with atomic_output_dir(out, kind="observe") as tmp:
        (tmp / "observer.json").write_text(json.dumps({"schema": OBSERVER_SCHEMA, "n": 2}))
        (tmp / "encoding_T8.png").write_bytes(b"ours again")
    names = sorted(p.name for p in out.iterdir())
    assert names == [MANIFEST, "encoding_T8.png", "encoding_mine.png", "observer.json"]
    assert (out / "encoding_mine.png").read_bytes() == b"mine"
    (out / "encoding_T8.png").write_bytes(b"changed by the user")  # now theirs: not replaced, not removed
    with pytest.raises(ConfigError, match="'encoding_T8.png' is in the way"):
        with atomic_output_dir(out, kind="observe") as tmp:
            (tmp / "observer.json").write_text("{}")
            (tmp / "encoding_T8.png").write_bytes(b"new")
    with atomic_output_dir(out, kind="observe") as tmp:
        (tmp / "observer.json").write_text(json.dumps({"schema": OBSERVER_SCHEMA, "n": 3}))
    assert (out / "encoding_T8.png").read_bytes() == b"changed by the user"


def test_report_never_writes_through_a_link_or_over_a_users_report_md(run, tmp_path):
    elsewhere = tmp_path / "myfigs"
    shutil.move(run / "figures", elsewhere)
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    before, outside = _snapshot(run), _snapshot(elsewhere)
    _refused(["report", str(run)], "in the way")
    assert _snapshot(run) == before and _snapshot(elsewhere) == outside
    (run / "figures").unlink()
    (run / "report.md").write_text("# my own notes\n")
    _refused(["report", str(run), "--no-figures"], "'report.md' is in the way")
    assert (run / "report.md").read_text() == "# my own notes\n"


def test_an_interrupted_report_changes_nothing(run, monkeypatch):
    from gac_analysis.viz import energy_figures

    before = _snapshot(run)

    def interrupted(run_data, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(energy_figures, "plot_energy_by_role", interrupted)
    with pytest.raises(KeyboardInterrupt):
        from gac_analysis.viz.report_md import write_report_md

        write_report_md(run)
    assert _snapshot(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(fileio.TEMP_PREFIX)]


def test_a_new_energy_run_removes_the_stale_report_it_made_but_not_a_changed_one(run):
    _ok([*ENERGY, "--seed", "3", "--out", str(run)])
    assert not (run / "report.md").exists() and not (run / "figures").exists()  # described the old run
    _ok(["report", str(run)])
    (run / "report.md").write_text((run / "report.md").read_text() + "\nmy annotation\n")
    _ok([*ENERGY, "--seed", "4", "--out", str(run)])
    assert (run / "report.md").read_text().endswith("my annotation\n")  # changed by the user: kept
    assert not (run / "figures").exists()


def test_a_folder_without_the_record_is_not_a_run_whatever_it_holds(run, tmp_path):
    """A report.json or observer.json of this project's schema proves nothing: a user saves one with the
    Python API into a folder of their own files. Without the record, energy and observe refuse the folder
    and nothing in it changes (before, such a folder was adopted and its observer.json overwritten);
    report adds new files beside the report.json and never replaces one it did not write."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    shutil.copy(run / "report.json", mine / "report.json")  # as `report.to_json()` saved by hand
    before = _snapshot(mine)
    _refused([*ENERGY, "--out", str(mine)], "already holds files this tool did not write")
    assert _snapshot(mine) == before
    _ok(["report", str(mine)])  # report adds its new files beside the report.json, and records them
    after = _snapshot(mine)
    assert {k: after[k] for k in before} == before and "report.md" in after
    assert set(json.loads((mine / MANIFEST).read_text())["files"]) >= {"report.md"}
    assert "report.json" not in json.loads((mine / MANIFEST).read_text())["files"]
    # report's record does not make the folder a run: energy (and observe, compare) still refuse it
    _refused([*ENERGY, "--out", str(mine)], "did not write (e.g. 'notes.txt'")
    (mine / "report.md").write_text("mine now\n")
    _refused(["report", str(mine)], "'report.md' is in the way")
    (run / MANIFEST).unlink()  # a run folder of a version before the record: refused the same way
    before = _snapshot(run)
    _refused([*ENERGY, "--out", str(run)], f"it records what it writes in {MANIFEST}")
    assert _snapshot(run) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX links")
def test_a_link_named_like_an_output_is_never_followed(tmp_path):
    out = tmp_path / "run"
    with atomic_output_dir(out, kind="energy") as tmp:
        (tmp / "report.json").write_text("{}")
    target = tmp_path / "precious.csv"
    target.write_text("keep")
    (out / "layers.csv").symlink_to(target)
    with pytest.raises(ConfigError, match="'layers.csv' is in the way"):
        with atomic_output_dir(out, kind="energy") as tmp:
            (tmp / "report.json").write_text("{}")
            (tmp / "layers.csv").write_text("new")
    assert target.read_text() == "keep" and (out / "layers.csv").is_symlink()


def test_one_commands_file_is_not_anothers_to_replace(tmp_path):
    out = tmp_path / "run"
    with atomic_output_dir(out, kind="observe") as tmp:
        (tmp / "observer.json").write_text("{}")
        (tmp / "figures").mkdir()
        (tmp / "figures" / "shared.png").write_bytes(b"observe's")
    with pytest.raises(ConfigError, match="'figures/shared.png' is in the way"):
        with atomic_output_dir(out, kind="compare") as tmp:
            (tmp / "figures").mkdir()
            (tmp / "figures" / "shared.png").write_bytes(b"compare's")
    assert (out / "figures" / "shared.png").read_bytes() == b"observe's"


def _forge(folder: Path, rel: str, entry: dict) -> None:
    record = json.loads((folder / MANIFEST).read_text())
    record["files"][rel] = entry
    (folder / MANIFEST).write_text(json.dumps(record))


def test_record_entries_outside_the_folder_or_malformed_are_ignored(run, tmp_path):
    """A record that names ../x, an absolute path or an entry without a kind touches nothing outside
    (or at all) and breaks nothing."""
    outside = tmp_path / "notes.txt"
    outside.write_text("outside")
    (run / "notes.txt").write_text("mine")
    sha = fileio.file_sha256(outside)
    _forge(run, "../notes.txt", {"kind": "energy", "sha256": sha})
    _forge(run, "figures/../../notes.txt", {"kind": "report", "sha256": sha})
    _forge(run, str(outside), {"kind": "energy", "sha256": sha})
    _forge(run, "notes.txt", {"sha256": fileio.file_sha256(run / "notes.txt")})  # no kind
    _ok([*ENERGY, "--seed", "2", "--out", str(run)])
    _ok(["report", str(run)])
    assert outside.read_text() == "outside" and (run / "notes.txt").read_text() == "mine"
    assert set(json.loads((run / MANIFEST).read_text())["files"]) >= {"report.json", "report.md"}


@pytest.mark.parametrize("taken_by", ["user file", "folder", "link"])
def test_the_record_name_taken_by_something_else_is_refused_before_anything_moves(tmp_path, run, taken_by):
    target = run if taken_by != "user file" else tmp_path / "fresh"
    target.mkdir(exist_ok=True)
    record = target / MANIFEST
    if record.exists():
        record.unlink()
    if taken_by == "user file":
        record.write_text("my notes")
    elif taken_by == "folder":
        record.mkdir()
    else:
        (tmp_path / "ext.json").write_text("{}")
        record.symlink_to(tmp_path / "ext.json")
    before = _snapshot(target)
    _refused([*ENERGY, "--out", str(target)], f"'{MANIFEST}' is in the way")
    assert _snapshot(target) == before and record.exists()
    assert not [p for p in target.iterdir() if p.name.startswith(fileio.TEMP_PREFIX)]


def test_a_report_is_not_committed_beside_a_run_written_meanwhile(run, monkeypatch):
    from gac_analysis.viz import report_md

    real_load = report_md.load_run

    def load_then_rerun(folder):
        loaded = real_load(folder)
        data = json.loads((run / "report.json").read_text())
        data["num_images"] = 99  # another energy run committed while the report is drawn
        (run / "report.json").write_text(json.dumps(data))
        return loaded

    monkeypatch.setattr(report_md, "load_run", load_then_rerun)
    (run / "report.md").unlink()
    before = _snapshot(run)
    with pytest.raises(ConfigError, match="report.json changed while this command ran"):
        report_md.write_report_md(run)
    after = _snapshot(run)
    assert after.pop("report.json") != before.pop("report.json")  # the other run's, as it wrote it
    assert after == before and not (run / "report.md").exists()  # no report of the old numbers beside it


def test_save_checkpoint_never_replaces_a_users_file(tmp_path):
    from gac_analysis.models import build_model, save_checkpoint

    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=2)
    mine = tmp_path / "model.pt"
    mine.write_text("my data")
    with pytest.raises(ConfigError, match="not written by this tool"):
        save_checkpoint(model, mine)
    assert mine.read_text() == "my data" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    ours = tmp_path / "ours.pt"
    save_checkpoint(model, ours)
    save_checkpoint(model, ours)  # its own checkpoint, recorded and unchanged: replaced
    recorded = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert set(recorded) == {"ours.pt"} and recorded["ours.pt"]["kind"] == "checkpoint"
    copy = tmp_path / "colleague.pt"  # this project's format, but not written there by the tool: a copy
    shutil.copy(ours, copy)
    with pytest.raises(ConfigError, match="not written by this tool"):
        save_checkpoint(model, copy)
    with open(ours, "ab") as f:  # changed since the tool wrote it: the user's now
        f.write(b"\0")
    with pytest.raises(ConfigError, match="was written by this tool but changed since"):
        save_checkpoint(model, ours)
    trained = tmp_path / "trained.pt"
    save_checkpoint(model, trained, written_by="train")
    with pytest.raises(ConfigError, match="written by this tool's train, not by checkpoint"):
        save_checkpoint(model, trained)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        save_checkpoint(model, tmp_path / "folder.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_train_replaces_only_a_checkpoint_it_wrote_and_never_through_a_link(tmp_path, monkeypatch):
    from gac_analysis.models import build_model, save_checkpoint

    monkeypatch.chdir(tmp_path)
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=2)
    (tmp_path / "lib").mkdir()
    save_checkpoint(model, tmp_path / "lib" / "best.pt")  # recorded in lib/
    shutil.copy(tmp_path / "lib" / "best.pt", tmp_path / "copy.pt")  # not recorded here
    (tmp_path / "link.pt").symlink_to(tmp_path / "lib" / "best.pt")
    save_checkpoint(model, tmp_path / "my_finetuned.pt", note="mine")  # the user's, through the Python API
    before = _snapshot(tmp_path)
    train = ["train", "--data", "digits", "--epochs", "1", "--max-steps", "1", "--width", "2", "--T", "2"]
    for out in ("copy.pt", "my_finetuned.pt"):
        _refused([*train, "--out", out], "already exists and was not written by this tool")
    _refused([*train, "--out", "link.pt"], "is a symbolic link")
    assert _snapshot(tmp_path) == before
    _ok([*train, "--out", "trained.pt"])
    first = (tmp_path / "trained.pt").read_bytes()
    _ok([*train, "--seed", "1", "--out", "trained.pt"])  # its own, unchanged: replaced
    assert (tmp_path / "trained.pt").read_bytes() != first
    recorded = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert recorded["trained.pt"]["kind"] == "train" and recorded["my_finetuned.pt"]["kind"] == "checkpoint"
    assert {k: v for k, v in _snapshot(tmp_path).items() if k not in ("trained.pt", MANIFEST)} == {
        k: v for k, v in before.items() if k != MANIFEST
    }
    (tmp_path / "ckpts").mkdir()
    _ok([*train, "--out", "ckpts/a.pt"])
    _refused([*ENERGY, "--out", "ckpts"], "holds this tool's train outputs, not a run")
    (tmp_path / "ckpts" / MANIFEST).write_text("{bad")
    output = _refused([*train, "--out", "ckpts/b.pt"], "is not this tool's record of its files")
    assert "epoch" not in output and not (tmp_path / "ckpts" / "b.pt").exists()  # refused before training


def test_report_never_writes_into_a_users_figures_folder_and_its_record_makes_no_run(run, tmp_path):
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "my_plot.png").write_bytes(b"mine")
    shutil.copy(run / "report.json", mine / "report.json")
    before = _snapshot(mine)
    _refused(["report", str(mine)], "'figures' is in the way")
    assert _snapshot(mine) == before and not (mine / MANIFEST).exists()
    shutil.rmtree(mine / "figures")
    _ok(["report", str(mine), "--no-figures"])
    for args in (
        [*ENERGY, "--out", str(mine)],
        ["observe", "--num-images", "1", "--no-figures", "--out", str(mine)],
        ["compare", str(run), str(run), "--no-figures", "--out", str(mine)],
    ):
        _refused(args, "already holds files this tool did not write (e.g. 'report.json'")


def test_an_out_reaching_the_data_folder_through_a_link_is_refused(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "data" / c / "0.png")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    before = _snapshot(tmp_path / "data")
    for data, out in (("link", "data/out"), ("data", "link/out")):
        args = ["energy", "--data", f"folder:{tmp_path / data}", "--num-images", "1", "--out", str(tmp_path / out)]
        _refused(args, "is (inside) the input")
    assert _snapshot(tmp_path / "data") == before


def test_a_record_nested_too_deeply_is_one_line(run):
    (run / MANIFEST).write_text("[" * 100000 + "]" * 100000)
    before = _snapshot(run)
    _refused([*ENERGY, "--out", str(run)], "in the way")
    (run / "report.json").write_text("[" * 100000 + "]" * 100000)
    _refused(["budget", str(run)], "nests its JSON too deeply")
    assert {k: v for k, v in _snapshot(run).items() if k != "report.json"} == {
        k: v for k, v in before.items() if k != "report.json"
    }
