#!/usr/bin/env bash
# The GPU check of issue 10 (item 10), as one prepared script: counting on CUDA against independent counters,
# the CLI on CUDA, and the zoo benchmark on CUDA. Needs a torch build with CUDA (the pinned CPU wheel of
# `make install` has none: install the CUDA wheel of the same torch version into the venv first).
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: reports/gpu; about 5-10 minutes on one GPU
#
# Writes OUT_DIR/{gpu.txt, gpu_counts.txt, energy_spikformer/, bench_zoo_cuda.jsonl, bench_zoo_cuda.md}.
# Exit status: non-zero when a count check fails (the benchmark only measures).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-reports/gpu}
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736
mkdir -p "$OUT"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none";
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } | tee "$OUT/gpu.txt"
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: this torch sees no CUDA device')"

# 1. counts on CUDA == SynOpCounter / FlopCounterMode on CUDA, per module (every zoo model) and CPU shape counts
timeout 300 "$PY" benchmarks/gpu_counts.py --device cuda | tee "$OUT/gpu_counts.txt"

# 2. the CLI end to end on CUDA
"$PY" -m gac_analysis.cli.main energy --device cuda --model spikingjelly:spikformer_cifar10 --data random \
    --num-images 16 --batch-size 16 --out "$OUT/energy_spikformer"

# 3. the zoo benchmark on CUDA (same script as the CPU table in README, Performance)
timeout 420 "$PY" benchmarks/bench_zoo.py --device cuda --batches 1,16 --reps 5 \
    --json "$OUT/bench_zoo_cuda.jsonl" --markdown "$OUT/bench_zoo_cuda.md" || echo "benchmark stopped early (timeout)"
