"""Distributed analysis (gac_analysis.distributed, ``gac-analyze energy`` under torchrun).

The end-to-end tests launch 2 CPU processes with torchrun (gloo on 127.0.0.1, a free port, each run
bounded by a timeout) and check the outputs equal the single-process run exactly.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gac_analysis import distributed as gd
from gac_analysis.errors import ConfigError

BIN = Path(sys.executable).parent
TORCHRUN = BIN / "torchrun"
GAC = BIN / "gac-analyze"
RUN_TIMEOUT_S = 28  # per torchrun launch; three launches keep the module under 90 s
OUTPUTS = ("report.json", "layers.csv", "lif_sites.csv", "per_step.csv")


# ---- shard_indices --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), world=st.integers(1, 9), block=st.integers(1, 7))
def test_shards_cover_every_image_once(n, world, block):
    shards = [gd.shard_indices(n, r, world, block=block) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # union is range(n), nothing duplicated or padded
    assert len(flat) == len(set(flat))  # disjoint
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= block
    for s in shards:
        assert s == sorted(s)
        # each run of `block` consecutive positions of a shard is one single-process batch of size `block`
        for k in range(0, len(s), block):
            chunk = s[k : k + block]
            assert chunk[0] % block == 0 and chunk == list(range(chunk[0], min(chunk[0] + block, n)))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), world=st.integers(1, 9))
def test_shards_strided_sizes_differ_by_at_most_one(n, world):
    shards = [gd.shard_indices(n, r, world) for r in range(world)]
    assert shards == [list(range(r, n, world)) for r in range(world)]
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


@pytest.mark.parametrize("args", [(5, 2, 2), (5, -1, 2), (5, 0, 0), (-1, 0, 1), (5, 0, 1.5)])
def test_shard_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        gd.shard_indices(*args)


# ---- launch environment ------------------------------------------------------------------------------

TORCHRUN_ENV = {
    "WORLD_SIZE": "2",
    "RANK": "1",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def test_launch_env_detection():
    assert gd.launch_env({}) is None
    env = gd.launch_env(TORCHRUN_ENV)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (1, 2, 1, 2)
    assert gd.resolve_launch(None, TORCHRUN_ENV) == env
    assert gd.resolve_launch(None, {}) is None
    assert gd.resolve_launch(False, {}) is None
    assert (
        gd.resolve_launch(
            False, {**TORCHRUN_ENV, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        )
        is None
    )
    with pytest.raises(ConfigError, match="torchrun"):
        gd.resolve_launch(True, {})
    with pytest.raises(ConfigError, match="MASTER_PORT"):
        gd.resolve_launch(True, {k: v for k, v in TORCHRUN_ENV.items() if k != "MASTER_PORT"})
    with pytest.raises(ConfigError, match="--no-distributed"):
        gd.resolve_launch(False, TORCHRUN_ENV)
    with pytest.raises(ConfigError, match="RANK"):
        gd.launch_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ConfigError, match="not an integer"):
        gd.launch_env({"WORLD_SIZE": "two", "RANK": "0"})


def test_configure_threads_respects_omp_num_threads():
    before = torch.get_num_threads()
    try:
        assert gd.configure_threads(2, {"OMP_NUM_THREADS": "1"}) == before  # left alone
        assert gd.configure_threads(10_000, {}) == 1
    finally:
        torch.set_num_threads(before)


# ---- reduce_counter on a process group of one ------------------------------------------------------


def _small_model(seed: int = 0):
    from gac_analysis.models import build_model

    torch.manual_seed(seed)
    model = build_model("msresnet18-cifar", num_classes=10, T=4, width=8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(2.0)  # a fresh model barely spikes; this makes the rates meaningful
    return model.eval()


@pytest.fixture
def world_of_one(tmp_path):
    env = gd.LaunchEnv(rank=0, world_size=1, local_rank=0, local_world_size=1, master_addr=None, master_port=None)
    with gd.init(timeout_s=30, env=env, init_method=f"file://{tmp_path / 'rendezvous'}") as sess:
        yield sess
    assert not torch.distributed.is_initialized()


def _snapshot(counter):
    return (
        [
            (name, s.calls, copy.deepcopy(s.ints), {k: v.clone() for k, v in s.tensors.items()})
            for name, s in counter.sites.items()
        ],
        counter.num_images,
        counter.batches,
    )


@pytest.fixture(scope="module")
def counted():
    """The small model and its counter on one image (deep-copy the counter before changing it)."""
    model = _small_model()
    return model, gd.count_images(model, [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))])


def test_reduce_counter_world_of_one_is_identity(world_of_one):
    from gac_analysis.accounting import profile

    model = _small_model()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    counter = gd.count_images(model, [images[:1], images[1:]])
    before = _snapshot(counter)
    assert counter.sites and counter.num_images == 2 and counter.batches == 2
    gd.reduce_counter(counter, object_group=world_of_one.object_group)
    after = _snapshot(counter)
    assert [s[:3] for s in after[0]] == [s[:3] for s in before[0]] and after[1:] == before[1:]
    for (_, _, _, ta), (_, _, _, tb) in zip(after[0], before[0]):
        assert ta.keys() == tb.keys()
        for k in ta:
            assert ta[k].dtype == torch.int64 and torch.equal(ta[k], tb[k])
    for site in counter.sites.values():
        assert all(type(v) is int for values in site.ints.values() for v in values)
    # the reduced counter prices exactly as the one-call API
    ours = gd.report_from_counter(counter, model, data={"source": "tensor"})
    ref = profile(model, [images[:1], images[1:]])
    assert ours.to_json() == ref.to_json()
    assert ours.totals()["spikes"] > 0


def test_reduce_counter_empty_rank_world_of_one(world_of_one, counted):
    from gac_analysis.errors import DataError

    model = counted[0]
    counter = gd.count_images(model, [])
    gd.reduce_counter(counter)
    assert counter.sites == {} and counter.num_images == 0 and counter.batches == 0
    with pytest.raises(DataError, match="no images"):
        gd.report_from_counter(counter, model)


def test_reduce_counter_without_process_group_is_a_no_op(counted):
    assert not torch.distributed.is_initialized()
    counter = copy.deepcopy(counted[1])
    before = _snapshot(counter)
    gd.reduce_counter(counter)
    assert [s[:3] for s in _snapshot(counter)[0]] == [s[:3] for s in before[0]]


def test_merge_layouts_unites_sites_for_an_empty_rank(counted):
    counter = counted[1]
    layout = gd._site_layout(counter)
    merged = gd.merge_layouts([layout, []])
    assert [m[0] for m in merged] == list(counter.sites)
    assert gd.merge_layouts([[], layout]) == merged
    assert all(m[1].calls == 0 and not m[1].ints and not m[1].tensors for m in merged)


def test_agree_raises_rank_failed_everywhere(world_of_one):
    from gac_analysis.errors import DataError

    assert world_of_one.run_local(lambda: 42, "the test") == 42

    def boom():
        raise DataError("bad shard")

    with pytest.raises(gd.RankFailed, match=r"rank 0 of 1 failed during the test: bad shard") as e:
        world_of_one.run_local(boom, "the test")
    assert e.value.exit_code == 2 and e.value.failures == [(0, "bad shard", 2)]


# ---- end to end: torchrun, 2 CPU processes ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", COLUMNS="120", NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    if not TORCHRUN.exists() or not GAC.exists():
        pytest.skip("torchrun / gac-analyze not installed beside this python")
    cmd = [
        str(TORCHRUN),
        f"--nproc_per_node={nproc}",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "--no-python",
        str(GAC),
        "energy",
        *args,
        "--dist-timeout",
        "60",
    ]
    # a session of its own, so that a run past the timeout is ended with all its worker processes
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish within {RUN_TIMEOUT_S} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _single(*args: str) -> None:
    from typer.testing import CliRunner

    from gac_analysis.cli.main import app

    result = CliRunner().invoke(app, ["energy", *args, "--no-distributed"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    from gac_analysis.models import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(_small_model(), path)
    return path


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _assert_same_outputs(single: Path, dist: Path, world: int) -> None:
    a, b = _report(single), _report(dist)
    assert a["provenance"].pop("distributed") == {"world_size": 1, "backend": None}
    assert b["provenance"].pop("distributed") == {"world_size": world, "backend": "gloo"}
    assert a == b  # counts equal, rates equal to the last bit
    for name in OUTPUTS[1:]:
        assert (single / name).read_bytes() == (dist / name).read_bytes(), name


@pytest.mark.parametrize("num_images", [5, 2])
def test_torchrun_two_processes_equal_one_process(small_ckpt, tmp_path, num_images):
    # 5 images in batches of 2: 3 batches, rank 0 gets 2 of them (3 images), rank 1 one (2 images);
    # 2 images: a single batch, so rank 1 has no images at all and no sites.
    args = [str(small_ckpt), "--data", "random", "--num-images", str(num_images), "--batch-size", "2"]
    _single(*args, "--out", str(tmp_path / "single"))
    run = _torchrun(*args, "--out", str(tmp_path / "dist"))
    assert run.returncode == 0, run.stdout + run.stderr
    _assert_same_outputs(tmp_path / "single", tmp_path / "dist", world=2)
    report = _report(tmp_path / "dist")
    assert report["num_images"] == num_images and report["totals"]["spikes"] > 0
    assert "energy per image" in run.stdout and run.stdout.count("energy per image") == 1  # rank 0 only
    if num_images == 2:
        assert "1 process(es) stay idle" in run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "single"]


def test_torchrun_failing_rank_fails_the_run_and_writes_nothing(small_ckpt, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = torch.randint(0, 256, (24, 24, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "img2.png").write_bytes(b"not an image")  # in batch 1 of 2 -> rank 1's shard only
    out_parent = tmp_path / "runs"
    out_parent.mkdir()
    run = _torchrun(
        str(small_ckpt), "--data", f"folder:{folder}", "--batch-size", "2", "--out", str(out_parent / "energy")
    )
    text = run.stdout + run.stderr
    assert run.returncode != 0, text
    assert "rank 1 of 2 failed during the analysis" in text and "img2.png" in text, text
    assert "rank 0 of 2 failed" not in text, text
    assert list(out_parent.iterdir()) == []  # no output folder, no temporary folder


def test_energy_no_distributed_inside_torchrun_env_is_refused(small_ckpt, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gac_analysis.cli.main import app

    for k, v in TORCHRUN_ENV.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(app, ["energy", str(small_ckpt), "--no-distributed", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--no-distributed" in result.output
    assert not (tmp_path / "o").exists()


def test_energy_distributed_flag_without_launcher_is_refused(small_ckpt, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gac_analysis.cli.main import app

    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    result = CliRunner().invoke(app, ["energy", str(small_ckpt), "--distributed", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "torchrun" in result.output
    assert not (tmp_path / "o").exists()
