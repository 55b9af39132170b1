"""The trainer (`gac_analysis.training`), `gac-analyze train`, and the shipped default checkpoint."""

import pickle
import shlex

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gac_analysis.cli.common import DEFAULT_CHECKPOINT
from gac_analysis.cli.main import app
from gac_analysis.data import digits_split
from gac_analysis.models import build_model, load_model, save_checkpoint
from gac_analysis.training import evaluate, random_hflip, random_shift, train
from reference_fixtures import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: these models are tiny, and on a busy 2-core machine two OpenMP threads
    spin-wait for each other (a test then costs 10-20x its CPU time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_train():
    return digits_split("train")


def _tiny(seed=0, T=2):
    torch.manual_seed(seed)
    return build_model("msresnet18-cifar", num_classes=10, T=T, coding="gac", width=4)


def test_loss_falls_on_a_fixed_batch(digits_train):
    # one fixed batch of 16 digits, seen 20 times (no augmentation): the tiny model must start to overfit it
    x, y = digits_train[0][:16], digits_train[1][:16]
    result = train(_tiny(), (x, y), epochs=20, batch_size=16, lr=0.1, seed=0, augment=None, progress=False)
    losses = result.step_losses
    assert len(losses) == 20 and result.steps == 20 and len(result.epochs) == 20
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.1, losses


def test_same_seed_same_losses(digits_train):
    x, y = digits_train[0][:160], digits_train[1][:160]
    runs = [
        train(_tiny(seed=5), (x, y), epochs=1, batch_size=32, seed=5, augment="digits", progress=False)
        for _ in range(2)
    ]
    assert runs[0].steps == 5 and runs[0].step_losses == runs[1].step_losses
    other = train(_tiny(seed=5), (x, y), epochs=1, batch_size=32, seed=6, augment="digits", progress=False)
    assert other.step_losses != runs[0].step_losses  # the seed drives shuffling and augmentation


def test_augmentations_are_seeded_shifts_and_flips():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    a = random_shift(x, torch.Generator().manual_seed(1), pad=2, fill=-1.0)
    b = random_shift(x, torch.Generator().manual_seed(1), pad=2, fill=-1.0)
    assert a.shape == x.shape and torch.equal(a, b)
    # every output is the input translated by at most 2 px, filled with -1 outside
    for i in range(2):
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2), value=-1.0)
        assert any(torch.equal(a[i], padded[:, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5))
    f = random_hflip(x, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1))


def test_cli_checkpoint_round_trips_and_reproduces(tmp_path):
    out = tmp_path / "m.pt"
    args = [
        "train",
        "--width",
        "4",
        "--T",
        "2",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--max-steps",
        "2",
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output and out.exists()
    model = load_model(out)
    meta = model.checkpoint_info.metadata
    assert meta["command"].startswith("gac-analyze train ") and "--seed 3" in meta["command"]
    assert meta["seed"] == 3 and meta["steps"] == 2 and meta["data"] == "digits"
    assert 0.0 <= meta["heldout_accuracy"] <= 1.0 and meta["width"] == 4 and model.T == 2

    x = digits_split("test")[0][:8]
    raw = torch.load(out, weights_only=True)
    fresh = build_model(
        raw["arch"], num_classes=raw["num_classes"], T=raw["T"], coding=raw["coding"], width=raw["width"]
    )
    fresh.load_state_dict(raw["state_dict"])
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, fresh.eval()(x))
        save_checkpoint(model, tmp_path / "again.pt", **meta)
        assert torch.equal(y, load_model(tmp_path / "again.pt")(x))

    # the recorded command line re-creates the same weights
    replay = shlex.split(meta["command"])[1:]
    replay[replay.index("--out") + 1] = str(tmp_path / "replay.pt")
    assert runner.invoke(app, [*replay, "--no-progress"]).exit_code == 0
    again = torch.load(tmp_path / "replay.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(again[k], raw["state_dict"][k]) for k in raw["state_dict"])


def _fake_cifar10(root):
    """A tiny CIFAR-10 folder in the python-pickle layout (5 x 4 training images, 6 test images)."""
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [("test_batch", 6)] + [(f"data_batch_{k}", 4) for k in range(1, 6)]:
        with open(d / name, "wb") as f:
            pickle.dump(
                {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()},
                f,
            )
    return d


def test_cli_trains_on_cifar_layout(tmp_path):
    folder = _fake_cifar10(tmp_path)
    out = tmp_path / "c.pt"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            f"cifar10:{folder}",
            "--width",
            "4",
            "--T",
            "2",
            "--coding",
            "direct",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = load_model(out).checkpoint_info.metadata
    assert meta["steps"] == 3 and meta["num_train"] == 20 and meta["num_heldout"] == 6
    assert "flip" in meta["augmentation"] and meta["coding"] == "direct"


def test_shipped_default_checkpoint():
    assert DEFAULT_CHECKPOINT.exists(), DEFAULT_CHECKPOINT
    assert DEFAULT_CHECKPOINT.stat().st_size <= 5 * 1024 * 1024
    model = load_model(DEFAULT_CHECKPOINT)
    assert (model.arch, model.coding, model.T) == ("msresnet18-cifar", "gac", 4)
    meta = model.checkpoint_info.metadata
    assert meta["command"].startswith("gac-analyze train") and "seed" in meta
    images, labels = digits_split("test")
    assert images.shape[0] == 360
    assert evaluate(model, images, labels, batch_size=180) >= 0.95


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "foo"], "unknown training data 'foo'"),
        (["--T", "1"], "GAC coding needs --T >= 2"),
        (["--arch", "resnet9"], "unknown --arch"),
        (["--data", "cifar10:"], "unknown training data"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    out = tmp_path / "x.pt"
    result = runner.invoke(app, ["train", *args, "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not out.exists()


def test_recipe_reports_the_values_train_used(digits_train):
    """Checkpoint metadata comes from what train() used, not from literals beside it."""
    x, y = digits_train[0][:8], digits_train[1][:8]
    result = train(
        _tiny(),
        (x, y),
        epochs=1,
        batch_size=8,
        lr=0.05,
        momentum=0.5,
        weight_decay=1e-4,
        augment="cifar",
        progress=False,
    )
    assert result.recipe == {
        "lr": 0.05,
        "momentum": 0.5,
        "weight_decay": 1e-4,
        "schedule": "cosine over all optimiser steps",
        "loss": "cross-entropy on logits.mean(0)",
        "augmentation": "random crop (pad 4) + horizontal flip",
    }
    assert train(_tiny(), (x, y), epochs=1, batch_size=8, augment=None, progress=False).recipe["augmentation"] == "none"


def test_cli_checkpoint_metadata_is_the_trainers_recipe(tmp_path, monkeypatch):
    import gac_analysis.training as training

    real = training.train
    seen = {}

    def spy(*args, **kwargs):
        seen["result"] = real(*args, **kwargs)
        return seen["result"]

    monkeypatch.setattr(training, "train", spy)
    out = tmp_path / "d.pt"
    result = runner.invoke(
        app,
        [
            "train",
            "--width",
            "4",
            "--T",
            "2",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = load_model(out).checkpoint_info.metadata
    assert {k: meta[k] for k in seen["result"].recipe} == seen["result"].recipe
