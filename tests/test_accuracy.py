"""Top-1 accuracy beside the energy (gac_analysis/accounting/accuracy.py) and its place in every report."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from gac_analysis.accounting import count_images, profile
from gac_analysis.accounting.accuracy import Accuracy, accuracy_summary
from gac_analysis.cli.main import app
from gac_analysis.models import build_model

runner = CliRunner()


def test_prediction_is_the_argmax_of_the_time_average():
    # T=2, 3 images, 3 classes; image 0's per-step arg-maxes (0, then 1) differ from its time-averaged one
    out = torch.tensor(
        [[[5.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 6.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]]
    )
    # time averages: image 0 (2.5, 3, 0) -> 1; image 1 (0, 1, 0) -> 1; image 2 (1, 0, 0.5) -> 0
    acc = Accuracy(T=2)
    acc.update(out, torch.tensor([1, 1, 0]))  # right, right, right
    acc.update(out[0], torch.tensor([0, -1, 2]))  # [B, classes] form (0, 1, 2): right, label unknown, right
    assert acc.compute() == {"labelled": 5, "correct": 5, "top1": 1.0}
    acc.update(out, torch.tensor([0, 0, 2]))  # wrong, wrong, wrong
    assert acc.compute() == {"labelled": 8, "correct": 5, "top1": 5 / 8}
    acc.reset()
    assert acc.compute() is None and acc.state() == [0, 0, 0, 0]


def test_no_labels_unreadable_outputs_and_foreign_labels_give_no_number():
    acc = Accuracy(T=2)
    acc.update(torch.zeros(2, 3, 10), None)
    acc.update(torch.zeros(2, 3, 10), torch.full((3,), -1))
    assert acc.compute() is None and acc.unavailable is None  # no labels: "no labels"
    acc.update(torch.zeros(3, 10, 2, 2), torch.tensor([0, 1, 2]))  # not [T, B, C] nor [B, C]
    assert acc.compute() is None and "neither [T, B, classes] nor [B, classes]" in acc.unavailable
    acc = Accuracy(T=2)
    acc.update(torch.zeros(2, 3, 10), torch.tensor([0, 12, 3]))  # label 12 of a 10-class model
    assert acc.compute() is None and "1 labels lie outside the model's classes" in acc.unavailable


def test_energy_per_correct_prediction_by_hand():
    energy = {"paper": {"total_pj": 8e9}, "complete": {"total_pj": 12e9}}  # 8 images: 1 / 1.5 mJ per image
    got = accuracy_summary({"labelled": 6, "correct": 4, "top1": 4 / 6}, energy, num_images=8)
    # 6 labelled images cost 6 and 9 mJ; 4 right answers: 1.5 and 2.25 mJ per correct prediction
    assert got["energy_per_correct_mj"] == pytest.approx({"paper": 1.5, "complete": 2.25}, rel=1e-12)
    none_right = accuracy_summary({"labelled": 6, "correct": 0, "top1": 0.0}, energy, num_images=8)
    assert none_right["energy_per_correct_mj"] == {"paper": None, "complete": None}
    assert accuracy_summary(None, energy, 8) is None


@pytest.fixture(scope="module")
def toy():
    """A small untrained GAC model, its outputs on 12 digits with some labels unknown, and those labels."""
    from gac_analysis.data import digits_split

    torch.manual_seed(3)
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=4).eval()
    images, labels = digits_split("test")
    images, labels = images[:12], labels[:12].clone()
    labels[[2, 7]] = -1
    return model, images, labels


def test_profile_accuracy_equals_an_independent_evaluation(toy):
    model, images, labels = toy
    with torch.no_grad():  # independent: plain forward, no hooks, mean over T, arg-max
        pred = model(images).mean(0).argmax(1)
    known = labels >= 0
    expected_correct = int((pred[known] == labels[known]).sum())
    report = profile(model, [(images[:5], labels[:5]), (images[5:], labels[5:])])
    acc = report.to_dict()["accuracy"]
    assert acc["labelled"] == 10 and acc["correct"] == expected_correct
    assert acc["top1"] == expected_correct / 10
    e = report.energy
    if expected_correct:
        assert acc["energy_per_correct_mj"]["complete"] == pytest.approx(
            e["complete"]["total_pj"] / 12 * 10 / expected_correct / 1e9, rel=1e-12
        )
    # the counts do not depend on the labels
    plain = profile(model, [images[:5], images[5:]])
    assert plain.to_dict()["accuracy"] is None
    assert plain.totals() == report.totals()


def test_counter_carries_the_accuracy_state(toy):
    model, images, labels = toy
    counter = count_images(model, [(images, labels)])
    labelled, correct, outside, unreadable = counter.accuracy.state()
    assert (labelled, outside, unreadable) == (10, 0, 0) and 0 <= correct <= 10


def test_energy_cli_reports_accuracy_and_no_labels(tmp_path):
    from gac_analysis.data import digits_split
    from gac_analysis.models import save_checkpoint

    torch.manual_seed(0)
    model = build_model("msresnet18-cifar", num_classes=10, T=2, width=4).eval()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(model, ckpt)
    images, labels = digits_split("test")
    with torch.no_grad():
        expected = int((model(images[:6]).mean(0).argmax(1) == labels[:6]).sum())
    res = runner.invoke(
        app,
        [
            "energy",
            str(ckpt),
            "--data",
            "digits",
            "--num-images",
            "6",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path / "d"),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    acc = json.loads((tmp_path / "d" / "report.json").read_text())["accuracy"]
    assert (acc["labelled"], acc["correct"]) == (6, expected)
    assert f"{expected} of 6 labelled images" in res.output
    res = runner.invoke(
        app,
        ["energy", str(ckpt), "--data", "random", "--num-images", "2", "--out", str(tmp_path / "r")],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["accuracy"] is None
    assert "no labels in the data" in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "r"), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "no labels" in (tmp_path / "r" / "report.md").read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "d"), "--no-figures"])
    assert f"{expected} correct of 6 labelled images" in (tmp_path / "d" / "report.md").read_text()


def test_torchrun_sums_correct_and_labelled_across_processes(tmp_path):
    from test_distributed import _assert_same_outputs, _single, _small_model, _torchrun

    from gac_analysis.models import save_checkpoint

    ckpt = tmp_path / "small.pt"
    save_checkpoint(_small_model(), ckpt)
    # 5 digits in batches of 2: rank 0 analyses 3 images, rank 1 two; the report must equal one process's
    args = [str(ckpt), "--data", "digits", "--num-images", "5", "--batch-size", "2"]
    _single(*args, "--out", str(tmp_path / "single"))
    run = _torchrun(*args, "--out", str(tmp_path / "dist"))
    assert run.returncode == 0, run.stdout + run.stderr
    _assert_same_outputs(tmp_path / "single", tmp_path / "dist", world=2)
    acc = json.loads((tmp_path / "dist" / "report.json").read_text())["accuracy"]
    assert acc["labelled"] == 5
