#!/usr/bin/env bash
# The GPU check: CUDA correctness tests, then the policy's latency, energy, memory and training speed on
# the GPU, each part bounded in time so that one slow part cannot cost the others. Writes OUT_DIR/*.txt
# and *.json (figures: docs/RESULTS.md, "The policy on a GPU").
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default bench_results/gpu; PYTHON=python3 by default)
#   PARTS="test_cuda latency" bash bench/gpu_check.sh OUT_DIR      (only the parts named)
#
# Runs from a checkout without installing (PYTHONPATH); needs torch with CUDA, transformers, safetensors,
# pydantic, h5py, numpy, opencv, pytest and nvidia-ml-py (NVML energy). No simulator is needed.
set -u
OUT_DIR=$(realpath -m "${1:-$(dirname "$0")/../bench_results/gpu}")  # before the cd: relative to the caller
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! why=$("$PY" -c "import torch" 2>&1); then  # its last line, not a ModuleNotFoundError traceback
    echo "gpu_check: $PY cannot import torch (${why##*$'\n'}); set PYTHON, e.g. PYTHON=.venv/bin/python" >&2
    exit 2
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: $PY's torch sees no CUDA GPU here: nothing to check" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)

part() {  # part NAME SECONDS COMMAND...: run it under a time limit, output to OUT_DIR/NAME.txt and the log
    local name=$1 limit=$2
    shift 2
    [[ -z ${PARTS:-} || " $PARTS " == *" $name "* ]] || return 0
    echo "=== $name (limit ${limit}s, at $(( $(date +%s) - started ))s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.txt" 2>&1
    local rc=$?
    tail -n 40 "$OUT_DIR/$name.txt"
    echo "=== $name: rc $rc"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } > "$OUT_DIR/machine.txt" 2>&1
cat "$OUT_DIR/machine.txt"

part test_cuda 150 "$PY" -m pytest -p no:cacheprovider -q test/test_cuda.py
part latency 150 "$PY" bench/bench_latency.py --checkpoint default --device cuda --episodes 8 --calib-episodes 4 \
    --energy-seconds 2 \
    --json "$OUT_DIR/latency.json"
part train_speed 240 "$PY" bench/bench_train_speed.py --config config/train_mt50.yaml --device cuda \
    --batch-sizes 8,64,256 --num-workers 0,4 --steps 30 --json "$OUT_DIR/train_speed.json"
part model_1b 90 "$PY" bench/bench_model.py --preset 1b --device cuda --dtype bfloat16
part memory 90 "$PY" bench/bench_memory.py --checkpoint default --device cuda --caps 1 2 6 12 --repeats 1 \
    --json "$OUT_DIR/memory.json"
echo "=== done in $(( $(date +%s) - started ))s"
