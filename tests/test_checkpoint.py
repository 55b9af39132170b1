"""Checkpoint loading: every reference layout, aliases, prefixes, wrappers, round trips, and errors."""

import os

import pytest
import torch

from gac_analysis.errors import CheckpointError
from gac_analysis.models import build_model, load_checkpoint, load_model, save_checkpoint
from reference_fixtures import LAYOUT_NAMES, LAYOUT_SEEDS, arch_of, layouts, reference_state_dict


def _save(obj, tmp_path, name="ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_every_reference_layout_loads(name, tmp_path):
    entry = layouts()[name]
    sd = reference_state_dict(name, LAYOUT_SEEDS[name])
    T = None if entry["using_gac"] else entry["T"]  # a direct checkpoint does not fix T
    model = load_model(_save(sd, tmp_path), T=T)
    info = model.checkpoint_info
    assert info.arch == arch_of(name)
    assert (info.T, info.num_classes) == (entry["T"], entry["num_classes"])
    assert info.coding == ("gac" if entry["using_gac"] else "direct")
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    assert not model.training
    # every distinct reference tensor landed in the model (checked through the checksums)
    params = dict(model.state_dict())
    assert torch.equal(params["head.fc.weight"], sd["fc1.weight"])
    first = entry["groups"][0]
    assert abs(params["stem.conv.weight"].double().sum().item() - first["checksum_sum"]) < 1e-6


def test_seeded_recipe_matches_conformance_checksums():
    for name in LAYOUT_NAMES:
        sd = reference_state_dict(name, LAYOUT_SEEDS[name])
        for group in layouts()[name]["groups"]:
            t = sd[group["keys"][0]].double()
            assert t.sum().item() == pytest.approx(group["checksum_sum"], rel=1e-9, abs=1e-9)
            assert t.abs().sum().item() == pytest.approx(group["checksum_abs_sum"], rel=1e-9, abs=1e-9)


def test_imagenet_module_prefix_and_wrappers(tmp_path):
    sd = reference_state_dict("imagenet_msresnet18_gac_T4", 11)
    base = load_model(_save(sd, tmp_path, "plain.pt"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = base(x)
    prefixed = {"module." + k: v for k, v in sd.items()}
    for wrapper in (None, "state_dict", "model", "net"):
        obj = prefixed if wrapper is None else {wrapper: prefixed, "epoch": 3}
        m = load_model(_save(obj, tmp_path, f"w_{wrapper}.pt"))
        assert m.checkpoint_info.module_prefix and m.checkpoint_info.wrapper == wrapper
        with torch.no_grad():
            assert torch.equal(m(x), ref)


def test_project_format_round_trip(tmp_path, golden_ckpt, golden_input):
    model = load_model(golden_ckpt)
    out = save_checkpoint(model, tmp_path / "sub" / "mine.pt", command="pytest", seed=7)
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    again = load_model(out)
    assert again.checkpoint_info.layout == "gac-analysis"
    assert again.checkpoint_info.metadata["command"] == "pytest"
    assert again.checkpoint_info.metadata["seed"] == 7
    with torch.no_grad():
        assert torch.equal(model(golden_input), again(golden_input))


def test_reduced_width_round_trip(tmp_path):
    model = build_model("msresnet18-cifar", num_classes=10, T=4, coding="gac", width=16).eval()
    again = load_model(save_checkpoint(model, tmp_path / "w16.pt"))
    assert again.width == 16 and again.T == 4
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_plain_native_state_dict_loads(tmp_path):
    model = build_model("msresnet18-imagenet", num_classes=3, T=2, coding="gac", width=8)
    m = load_model(_save(model.state_dict(), tmp_path))
    assert m.checkpoint_info.layout == "native-state_dict" and m.arch == "msresnet18-imagenet"


# ---- errors: one line, naming what and where --------------------------------------------------


def test_alias_disagreement_is_named(tmp_path):
    sd = dict(reference_state_dict("cifar_msresnet18_c10_gac_T6", 1))
    sd["conv1_s.layer.module.weight"] = sd["conv1.weight"] + 1
    with pytest.raises(
        CheckpointError, match=r"aliased keys disagree.*'conv1.weight' and 'conv1_s.layer.module.weight'"
    ):
        load_model(_save(sd, tmp_path))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path)


def test_not_a_checkpoint_and_truncated(tmp_path, golden_ckpt):
    text = tmp_path / "notes.pt"
    text.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint or truncated"):
        load_model(text)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(golden_ckpt.read_bytes()[: os.path.getsize(golden_ckpt) // 2])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint or truncated"):
        load_model(cut)


class Opaque:
    pass


def test_pickled_code_is_refused(tmp_path):
    path = _save({"weights": {}, "obj": Opaque()}, tmp_path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*Opaque.*weights_only=True"):
        load_model(path)


def test_unknown_layout_shows_nearest_key(tmp_path):
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout.*closest to expected 'fc1.weight'"):
        load_model(_save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, tmp_path))
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        load_model(_save(torch.zeros(3), tmp_path, "tensor.pt"))


def test_unknown_key_inside_known_layout(tmp_path):
    sd = dict(reference_state_dict("cifar_msresnet18_c10_gac_T6", 1))
    sd["layer1.0.conv3.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unknown key 'layer1.0.conv3.weight'.*closest to expected"):
        load_model(_save(sd, tmp_path))


def test_shape_mismatch_names_key(tmp_path):
    sd = dict(reference_state_dict("cifar_msresnet18_c10_gac_T6", 1))
    w = torch.zeros(128, 64, 5, 5)
    sd["layer1.0.conv1.weight"] = sd["layer1.0.conv1_s.layer.module.weight"] = w
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch .* 'layers.0.0.conv1.weight': expected \[128, 64, 3, 3\], got \[128, 64, 5, 5\]",
    ):
        load_model(_save(sd, tmp_path))


def test_missing_tensor_is_named(tmp_path):
    sd = {
        k: v
        for k, v in reference_state_dict("imagenet_msresnet18_gac_T4", 11).items()
        if not k.startswith("conv3_x.1.bn2")
    }
    with pytest.raises(CheckpointError, match=r"lacks 'layers.1.1.bn2.weight'"):
        load_model(_save(sd, tmp_path))


def test_T_and_class_mismatch_say_both_values(tmp_path):
    path = _save(reference_state_dict("cifar_msresnet18_c10_gac_T6", 1), tmp_path)
    with pytest.raises(CheckpointError, match=r"T=6 .* but T=4 was given"):
        load_model(path, T=4)
    with pytest.raises(CheckpointError, match=r"num_classes=10 .* but num_classes=100 was given"):
        load_model(path, num_classes=100)
    with pytest.raises(CheckpointError, match=r"arch=msresnet18-cifar .* but arch=msresnet18-imagenet"):
        load_model(path, arch="msresnet18-imagenet")


def test_direct_checkpoint_needs_T(tmp_path):
    path = _save(reference_state_dict("cifar_msresnet18_c10_direct_T6", 3), tmp_path)
    with pytest.raises(CheckpointError, match="T cannot be inferred .* pass T"):
        load_checkpoint(path)
