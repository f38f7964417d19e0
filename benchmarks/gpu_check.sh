#!/usr/bin/env bash
# The one prepared run for a CUDA machine (a session's `device` tool, or any GPU box), from the
# repository root:  OUT=gpu-out bash benchmarks/gpu_check.sh
# 1. the GPU tests (tests/test_cuda.py: every shipped config trains and resumes on CUDA, fp16/bf16
#    penalties stay finite, train.compile equals eager, streaming through pinned memory);
# 2. benchmarks/bench_gpu.py (overhead vs the bare loop at batch 64/256, each regularizer's ratio,
#    precision speed-ups, compile speed-ups, DDP scaling when >= 2 GPUs), JSON naming the card.
# Results under $OUT: nvidia-smi.txt, pytest-cuda.txt, bench_gpu.json (+ .err). Needs omegaconf and
# antlr4 (wheels in .whl/ are installed to /tmp/site when present: see the device tool's notes).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if compgen -G '.whl/*.whl' >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
XDIST=()
if python3 -c "import xdist" 2>/dev/null; then XDIST=(-n 4); fi
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -rf "${XDIST[@]}" tests/test_cuda.py > "$OUT/pytest-cuda.txt" 2>&1
echo "tests: exit $?" | tee -a "$OUT/pytest-cuda.txt"
timeout "${BENCH_TIMEOUT:-420}" python3 benchmarks/bench_gpu.py --no-progress "$@" > "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.err"
echo "bench_gpu: exit $?"
tail -3 "$OUT/pytest-cuda.txt"
