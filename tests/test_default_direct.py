"""The embedded direct-coding twin of the default model (gac_analysis/assets/default_digits_direct.pt)."""

import json

import pytest
import torch

from gac_analysis.cli.common import DEFAULT_CHECKPOINT
from gac_analysis.data import digits_split
from gac_analysis.models import count_parameters, load_model
from gac_analysis.training import evaluate

DIRECT = DEFAULT_CHECKPOINT.parent / "default_digits_direct.pt"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_direct_twin_is_the_gac_default_but_direct_coding():
    assert DIRECT.exists() and DIRECT.stat().st_size <= 5 * 1024 * 1024
    twin, gac = load_model(DIRECT), load_model(DEFAULT_CHECKPOINT)
    assert (twin.arch, twin.coding, twin.T, twin.width) == ("msresnet18-cifar", "direct", 4, 16)
    assert (gac.arch, gac.T, gac.width) == (twin.arch, twin.T, twin.width)
    # the same network without the GAC attention (TA + SCA: 8,208 parameters)
    assert count_parameters(gac) - count_parameters(twin) == 8208
    tm, gm = twin.checkpoint_info.metadata, gac.checkpoint_info.metadata
    assert tm["command"].startswith("gac-analyze train") and "--coding direct" in tm["command"]
    for key in ("seed", "epochs", "batch_size", "lr", "width", "T", "data", "steps", "weight_decay", "schedule"):
        assert tm[key] == gm[key], key
    side = json.loads(DIRECT.with_suffix(".json").read_text())
    assert side["size_bytes"] == DIRECT.stat().st_size and side["sha256"] == twin.checkpoint_info.sha256


def test_direct_twin_heldout_accuracy_recomputed():
    model = load_model(DIRECT)
    images, labels = digits_split("test")
    assert images.shape[0] == 360
    acc = evaluate(model, images, labels, batch_size=180)
    assert acc >= 0.95
    assert acc == pytest.approx(359 / 360)  # the figure docs/default_model.md quotes
