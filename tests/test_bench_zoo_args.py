"""The zoo benchmark's ``--image-size``: a bad value is one usage error (exit 2), before any model is built."""

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
