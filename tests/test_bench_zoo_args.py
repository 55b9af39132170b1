"""The zoo benchmark: a bad ``--image-size`` is one usage error (exit 2), before any model is built; its ratios are
medians of per-repetition ratios, with their spread, and the table shows both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_zoo.py"


@pytest.mark.parametrize("value", ["abc", "0", "-32", "3.5"])
def test_bad_image_size_is_one_usage_error(value):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--image-size", value, "--models", "ms_resnet18"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert errors == [
        f"bench_zoo.py: error: argument --image-size: {value!r} is not 'native' or a whole number of pixels "
        ">= 8 (e.g. 32)"
    ]


def _bench_zoo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratios_are_medians_of_per_repetition_ratios_with_their_spread():
    bench = _bench_zoo()
    times = {
        "plain": [1.0, 2.0, 4.0],
        "count": [1.1, 2.4, 4.0],  # ratios 1.1, 1.2, 1.0
        "profile_one": [0.3, 0.5, 1.2],  # one of 4 batches: ratios 1.2, 1.0, 1.2
    }
    medians, spread = bench.ratios_of(times, batches=4)
    assert medians == pytest.approx({"count": 1.1, "profile_one": 1.2})
    assert spread["count"] == pytest.approx([1.0, 1.2]) and spread["profile_one"] == pytest.approx([1.0, 1.2])
    assert "plain" not in medians


def test_the_table_shows_the_median_and_the_spread_of_profile():
    bench = _bench_zoo()
    row = {
        "model": "m",
        "image": [3, 32, 32],
        "batch": 1,
        "plain_s": 0.0123,
        "ratio": {"count": 1.1, "profile": 1.26, "synop": 2.5, "ac_mac": 4.0, "profile_one": 1.5},
        "ratio_range": {"profile": [1.18, 1.354]},
        "profile_vs_sj_synop": 0.504,
        "profile_vs_sj_ac_mac": 0.315,
    }
    header, _, line = bench.markdown([row]).splitlines()
    assert "profile / plain (min-max)" in header
    assert line == "| m | 32 | 1 | 0.0123 | 1.10 | 1.26 (1.18-1.35) | 2.50 | 4.00 | 0.50 | 0.32 | 1.50 | - | - |"
    row["profile_split"] = {"per_batch_ratio": 1.124, "per_batch_range": [1.05, 1.3], "fixed_s": 0.00612}
    header, _, line = bench.markdown([row]).splitlines()
    assert header.endswith("| profile per further batch / plain (min-max) | profile fixed cost, ms |")
    assert line.endswith("| 1.50 | 1.12 (1.05-1.30) | 6.1 |")


def test_profile_splits_into_a_fixed_cost_and_a_cost_per_batch():
    """t(N) = fixed + N * m per repetition: built from known fixed costs and per-batch costs, the split gives
    them back (medians over the repetitions, the per-batch cost as a ratio to one plain forward)."""
    bench = _bench_zoo()
    plain_per_batch = [0.010, 0.012, 0.011]
    per_batch = [0.0125, 0.0132, 0.0143]  # ratios 1.25, 1.10, 1.30
    fixed = [0.006, 0.008, 0.005]
    n = 4
    times = {
        "plain": [p * n for p in plain_per_batch],
        "profile": [f + n * m for f, m in zip(fixed, per_batch)],
        "profile_one": [f + m for f, m in zip(fixed, per_batch)],
    }
    split = bench.fixed_and_per_batch(times, n)
    assert split["per_batch_ratio"] == pytest.approx(1.25)
    assert split["per_batch_range"] == pytest.approx([1.10, 1.30])
    assert split["fixed_s"] == pytest.approx(0.006)
    assert bench.fixed_and_per_batch(times, 1) is None  # one batch per run: nothing to split
