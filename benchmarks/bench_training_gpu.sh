#!/usr/bin/env bash
# Training and loader throughput on a CUDA machine, in one go; prints Markdown tables.
#
#   bash benchmarks/bench_training_gpu.sh            # 20 M rows, batch 2^16..2^20
#   ROWS=2000000 WORKERS=4 bash benchmarks/bench_training_gpu.sh
#
# Needs the project's venv with a CUDA build of the pinned torch (README, "GPU"); the
# synthetic data is generated under data/bench/ on first use (about 2 GB for 20 M rows).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
ROWS=${ROWS:-20000000}
WORKERS=${WORKERS:-8}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PYTHON" - <<'PY'
import torch
assert torch.cuda.is_available(), "this script needs a CUDA build of torch and a GPU"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PY
echo "## $(date -u +%Y-%m-%dT%H:%MZ) $(hostname), $(nproc) CPUs"
"$PYTHON" benchmarks/bench_training.py --rows "$ROWS" --log2-batch 16 17 18 19 20 \
    --num-workers "$WORKERS" 2>&1 | grep -E '^(#|\|)'
"$PYTHON" benchmarks/bench_loader.py --rows 1000000 "$ROWS" \
    --cases ours ours_in_order ours_workers resident raw_arrow 2>&1 | grep -E '^(#|\|)'
