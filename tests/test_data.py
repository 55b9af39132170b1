"""Tests for gac_analysis.data: every source, batching, validation and error messages."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gac_analysis.data import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataSource,
    digits_split,
    open_source,
    raw_photos,
    validate_images,
)
from gac_analysis.errors import DataError, GacError


def all_batches(src: DataSource, batch_size: int = 64, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*src.batches(batch_size, **kw))
    return torch.cat(xs), torch.cat(ys)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ----------------------------------------------------------------------------- random


def test_random_shape_dtype_and_defaults():
    src = open_source("random")
    x, y = all_batches(src)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and (y == -1).all()
    assert len(src) == 16


def test_random_is_seeded_gaussian():
    x, _ = all_batches(open_source("random", seed=7, num_images=5, image_size=8))
    expected = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(x, expected)


def test_random_deterministic_and_seed_dependent():
    a, _ = all_batches(open_source("random", seed=1))
    b, _ = all_batches(open_source("random", seed=1))
    c, _ = all_batches(open_source("random", seed=2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert open_source("random", seed=3).describe()["seed"] == 3


# ----------------------------------------------------------------------------- digits


def test_digits_split_sizes_disjoint_and_complete():
    xtr, ytr = digits_split("train")
    xte, yte = digits_split("test")
    xall, yall = digits_split("all")
    assert (xtr.shape[0], xte.shape[0], xall.shape[0]) == (1437, 360, 1797)
    assert xte.shape[1:] == (3, 32, 32) and xte.dtype == torch.float32
    assert ytr.dtype == torch.int64
    # Train and test are the fixed seed-0 permutation of the full set: disjoint, complete.
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xtr, xall[perm[:1437]]) and torch.equal(ytr, yall[perm[:1437]])
    assert torch.equal(xte, xall[perm[1437:]]) and torch.equal(yte, yall[perm[1437:]])
    assert set(perm[:1437].tolist()).isdisjoint(perm[1437:].tolist())


def test_digits_values_labels_and_channels():
    x, y = digits_split("all")
    assert y.min() == 0 and y.max() == 9 and len(torch.unique(y)) == 10
    assert x.min() == -1.0 and x.max() == 1.0  # convex interpolation keeps [0, 1] -> [-1, 1]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    # align_corners=False upsampling by 4 maps the corner pixels onto the source corners.
    from sklearn.datasets import load_digits

    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    assert torch.allclose(x[:, 0, 0, 0], raw[:, 0, 0] / 16 * 2 - 1)
    assert torch.allclose(x[:, 0, 31, 31], raw[:, 7, 7] / 16 * 2 - 1)
    assert torch.equal(y, torch.as_tensor(load_digits().target, dtype=torch.int64))


def test_digits_source_is_held_out_split_and_ignores_seed():
    src = open_source("digits")
    assert len(src) == 360
    x, y = all_batches(src, 100)
    xte, yte = digits_split("test")
    assert torch.equal(x, xte) and torch.equal(y, yte)
    x2, _ = all_batches(open_source("digits", seed=123))
    assert torch.equal(x, x2)
    d = src.describe()
    assert d["split"] == "test" and d["image_size"] == [32, 32]
    assert d["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert len(open_source("digits", split="train")) == 1437
    assert len(open_source("digits", split="all", num_images=10)) == 10


# ----------------------------------------------------------------------------- cifar


def _fake_data(n: int, offset: int) -> np.ndarray:
    """uint8 [n, 3072] whose pixel (i, c, y, x) is (offset + 7*i + c + y + x) % 256."""
    i, c, yy, xx = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((offset + 7 * i + c + yy + xx) % 256).astype(np.uint8).reshape(n, 3072)


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    _dump(d / "test_batch", {b"data": _fake_data(5, 0), b"labels": [3, 1, 4, 1, 5]})
    for k in range(1, 6):
        _dump(d / f"data_batch_{k}", {b"data": _fake_data(2, 100 * k), b"labels": [k, 9 - k]})
    return d


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    _dump(d / "test", {b"data": _fake_data(4, 50), b"fine_labels": [99, 0, 42, 7], b"coarse_labels": [1, 2, 3, 4]})
    _dump(d / "train", {b"data": _fake_data(3, 9), b"fine_labels": [10, 20, 30]})
    return d


def _cifar_value(v: int, c: int, kind: str = "cifar10") -> float:
    mean, std = (CIFAR_MEAN, CIFAR_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    return (v / 255 - mean[c]) / std[c]


def test_cifar_normalisation_is_the_reference_loaders():
    # the GAC reference code's CIFAR transforms (Normalize mean/std per channel)
    assert (CIFAR_MEAN, CIFAR_STD) == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert (CIFAR100_MEAN, CIFAR100_STD) == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


def test_cifar10_test_split_values(cifar10_dir: Path):
    src = open_source(f"cifar10:{cifar10_dir}")
    x, y = all_batches(src, 2)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [3, 1, 4, 1, 5]
    # pixel (i=2, c=1, y=3, x=4) holds 7*2 + 1 + 3 + 4 = 22
    assert x[2, 1, 3, 4].item() == pytest.approx(_cifar_value(22, 1), abs=1e-6)
    assert x[4, 2, 31, 31].item() == pytest.approx(_cifar_value(28 + 2 + 62, 2), abs=1e-6)
    d = src.describe()
    assert d["split"] == "test" and d["num_images"] == 5
    assert d["normalization"]["mean"] == list(CIFAR_MEAN)


def test_cifar10_parent_folder_and_train_split(cifar10_dir: Path):
    a, ya = all_batches(open_source(f"cifar10:{cifar10_dir}"))
    b, yb = all_batches(open_source(f"cifar10:{cifar10_dir.parent}"))
    assert torch.equal(a, b) and torch.equal(ya, yb)
    train = open_source(f"cifar10:{cifar10_dir.parent}", split="train")
    x, y = all_batches(train, 3)
    assert len(train) == 10 and y.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    # first image of data_batch_3 has offset 300 -> pixel (c=0, 0, 0) = 300 % 256 = 44
    assert x[4, 0, 0, 0].item() == pytest.approx(_cifar_value(44, 0), abs=1e-6)
    few = open_source(f"cifar10:{cifar10_dir}", split="train", num_images=3)
    xf, yf = all_batches(few)
    assert yf.tolist() == [1, 8, 2] and torch.equal(xf, x[:3])


def test_cifar100_both_forms_and_train(cifar100_dir: Path):
    for path in (cifar100_dir, cifar100_dir.parent):
        x, y = all_batches(open_source(f"cifar100:{path}"))
        assert x.shape == (4, 3, 32, 32) and y.tolist() == [99, 0, 42, 7]
        assert x[1, 0, 0, 5].item() == pytest.approx(_cifar_value(50 + 7 + 5, 0, "cifar100"), abs=1e-6)
    _, y = all_batches(open_source(f"cifar100:{cifar100_dir}", split="train"))
    assert y.tolist() == [10, 20, 30]


def test_cifar_missing_file_names_it(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        open_source(f"cifar10:{tmp_path / 'empty'}")
    assert "test_batch" in one_line_error(e)
    with pytest.raises(DataError) as e:
        open_source(f"cifar100:{tmp_path / 'empty'}", split="train")
    assert "train" in one_line_error(e)


def test_cifar_train_needs_every_batch(cifar10_dir: Path):
    (cifar10_dir / "data_batch_4").unlink()
    with pytest.raises(DataError) as e:
        open_source(f"cifar10:{cifar10_dir}", split="train")
    assert "data_batch_4" in one_line_error(e)


def test_cifar_corrupt_and_unsafe_pickles(tmp_path: Path):
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError) as e:
        open_source(f"cifar10:{tmp_path}")
    assert "corrupt" in one_line_error(e) and "test_batch" in str(e.value)
    _dump(tmp_path / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match="3072"):
        open_source(f"cifar10:{tmp_path}")
    _dump(tmp_path / "test_batch", {b"pixels": 1})
    with pytest.raises(DataError, match="data"):
        open_source(f"cifar10:{tmp_path}")
    _dump(tmp_path / "test_batch", os.getcwd)  # a global that could be anything: refused
    with pytest.raises(DataError, match="refusing"):
        open_source(f"cifar10:{tmp_path}")


def test_cifar_empty_data_set(tmp_path: Path):
    _dump(tmp_path / "test_batch", {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    with pytest.raises(DataError) as e:
        open_source(f"cifar10:{tmp_path}")
    assert "empty" in one_line_error(e)


# ----------------------------------------------------------------------------- folder


def _png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    _png(root / "dogs" / "b.png", (0, 255, 0))
    _png(root / "cats" / "z.PNG", (255, 0, 0), (30, 70))
    _png(root / "cats" / "a.jpg", (10, 20, 30))
    _png(root / "dogs" / "sub" / "c.bmp", (0, 0, 255))
    (root / "cats" / "notes.txt").write_text("not an image")
    _png(root / ".hidden" / "x.png", (1, 2, 3))
    return root


def test_folder_labels_order_and_size(image_dir: Path):
    src = open_source(f"folder:{image_dir}")
    assert len(src) == 4
    x, y = all_batches(src, 3)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    # sorted by relative path: cats/a.jpg, cats/z.PNG, dogs/b.png, dogs/sub/c.bmp
    assert y.tolist() == [0, 0, 1, 1]
    assert src.describe()["classes"] == ["cats", "dogs"]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    red = (torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1) - mean) / std
    assert torch.allclose(x[1], red.expand(3, 224, 224), atol=1e-6)
    blue = (torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1) - mean) / std
    assert torch.allclose(x[3], blue.expand(3, 224, 224), atol=1e-6)
    small = open_source(f"folder:{image_dir}", image_size=64, num_images=2)
    xs, ys = all_batches(small)
    assert xs.shape == (2, 3, 64, 64) and ys.tolist() == [0, 0]
    assert small.describe()["image_size"] == [64, 64]


def test_folder_without_subfolders_has_unknown_labels(tmp_path: Path):
    _png(tmp_path / "b.png", (1, 1, 1))
    _png(tmp_path / "a.webp", (2, 2, 2))
    _, y = all_batches(open_source(f"folder:{tmp_path}", image_size=16))
    assert y.tolist() == [-1, -1]


def test_folder_center_crop_is_exact(tmp_path: Path):
    # 80x40 image, image_size 35: shorter side round(35/0.875) = 40, so no resize;
    # the crop is rows 2..36 and columns 22..56 (torchvision's rounding).
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(40, 80, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.png")
    x, _ = all_batches(open_source(f"folder:{tmp_path}", image_size=35))
    expected = torch.from_numpy(arr[2:37, 22:57]).permute(2, 0, 1).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x[0], (expected - mean) / std, atol=1e-6)


def test_folder_unreadable_file_is_named(tmp_path: Path):
    _png(tmp_path / "good.png", (5, 5, 5))
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    src = open_source(f"folder:{tmp_path}")  # lazy: opening does not read the files
    with pytest.raises(DataError) as e:
        list(src.batches(2))
    assert "broken.png" in one_line_error(e)


def test_folder_errors(tmp_path: Path):
    with pytest.raises(DataError) as e:
        open_source(f"folder:{tmp_path / 'nope'}")
    assert "not found" in one_line_error(e) and "nope" in str(e.value)
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(DataError) as e:
        open_source(f"folder:{tmp_path / 'txt'}")
    assert "no images" in one_line_error(e)


# ----------------------------------------------------------------------------- photos


def test_photos_shape_and_raw_match():
    src = open_source("photos")
    x, y = all_batches(src)
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [-1, -1]
    raw = raw_photos(224)
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 224, 224)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw.float() / 255 - mean) / std, atol=1e-6)
    assert not torch.equal(raw[0], raw[1])
    d = open_source("photos", num_images=10, image_size=48).describe()
    assert d["num_images"] == 2 and d["image_size"] == [48, 48]
    json.dumps(d)


# ----------------------------------------------------------------------------- batches


def test_batches_sizes_and_indices():
    src = open_source("random", num_images=10, image_size=4)
    sizes = [x.shape[0] for x, _ in src.batches(4)]
    assert sizes == [4, 4, 2]
    full, _ = all_batches(src)
    sub = list(src.batches(2, indices=[7, 2, 5]))
    assert [x.shape[0] for x, _ in sub] == [2, 1]
    got = torch.cat([x for x, _ in sub])
    assert torch.equal(got, full[[7, 2, 5]])
    assert list(src.batches(3, indices=[])) == []


def test_batches_indices_keep_labels_aligned():
    src = open_source("digits", num_images=20)
    x, y = all_batches(src)
    xs, ys = all_batches(src, 4, indices=torch.tensor([19, 0, 3]))
    assert torch.equal(xs, x[[19, 0, 3]]) and torch.equal(ys, y[[19, 0, 3]])


def test_batches_bad_arguments():
    src = open_source("random", num_images=3)
    with pytest.raises(DataError, match="out of range"):
        list(src.batches(2, indices=[0, 3]))
    with pytest.raises(DataError, match="batch_size"):
        list(src.batches(0))


# ----------------------------------------------------------------------------- validate


@pytest.mark.parametrize(
    "x, word",
    [
        ([[1.0]], "not a tensor"),
        (torch.zeros(3, 8, 8), "dimensions"),
        (torch.zeros(2, 1, 8, 8), "channels"),
        (torch.zeros(2, 4, 8, 8), "channels"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "dtype"),
        (torch.zeros(0, 3, 8, 8), "empty"),
    ],
)
def test_validate_images_rejects(x, word):
    with pytest.raises(DataError) as e:
        validate_images(x, where="unit-test batch")
    msg = one_line_error(e)
    assert word in msg and msg.startswith("unit-test batch")


def test_validate_images_nonfinite_counts_and_index():
    x = torch.zeros(2, 3, 4, 4)
    x[1, 2, 0, 3] = float("nan")
    x[1, 2, 1, 1] = float("nan")
    x[0, 0, 3, 3] = float("inf")
    with pytest.raises(DataError) as e:
        validate_images(x, where="b")
    msg = one_line_error(e)
    assert "2 NaN" in msg and "1 inf" in msg and "[0, 0, 3, 3]" in msg
    validate_images(torch.zeros(1, 3, 2, 2, dtype=torch.float64), where="ok")  # no error


def test_data_error_is_gac_error():
    assert issubclass(DataError, GacError)


# ----------------------------------------------------------------------------- open_source errors


@pytest.mark.parametrize(
    "spec, kw, words",
    [
        ("foo", {}, ["unknown data source 'foo'", "cifar10:PATH", "folder:PATH", "digits"]),
        ("cifar10:", {}, ["empty path", "cifar10:PATH"]),
        ("cifar100:  ", {}, ["empty path"]),
        ("folder:", {}, ["empty path"]),
        ("cifar10:/definitely/not/here", {}, ["not found", "/definitely/not/here"]),
        ("random", {"num_images": 0}, ["num_images", "positive"]),
        ("digits", {"num_images": -2}, ["num_images"]),
        ("random", {"image_size": 0}, ["image_size"]),
        ("digits", {"split": "val"}, ["split", "'val'"]),
        ("digits:x", {}, ["takes no path"]),
    ],
)
def test_open_source_errors(spec, kw, words):
    with pytest.raises(DataError) as e:
        open_source(spec, **kw)
    msg = one_line_error(e)
    for w in words:
        assert w in msg


def test_cifar_all_split_is_refused(cifar10_dir: Path):
    with pytest.raises(DataError, match="use test or train"):
        open_source(f"cifar10:{cifar10_dir}", split="all")


def test_describe_is_json_and_counts_used_images():
    d = open_source("digits", num_images=5000).describe()
    assert d["num_images"] == 360
    d = open_source("random", num_images=3).describe()
    assert d["num_images"] == 3 and d["source"] == "random"
    assert set(d) >= {"source", "num_images", "image_size", "normalization", "split", "seed"}
    json.dumps(d)


def test_random_data_that_cannot_fit_in_memory_is_one_line_not_an_allocation_failure():
    from gac_analysis.data.sources import open_source
    from gac_analysis.errors import DataError

    with pytest.raises(DataError, match=r"random data: 10000000000000 images of 32x32 would take .* GiB at once"):
        open_source("random", num_images=10**13)
    with pytest.raises(DataError, match="16 images of 99999999x99999999"):
        open_source("random", image_size=99999999)
