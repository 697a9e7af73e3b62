#!/usr/bin/env bash
# GPU check: IS-Net fp32/fp16 on ONNX Runtime's CUDA provider (and TensorRT where it imports),
# InSPyReNet base/fast fp16/bf16 on torch (untrained checkpoints: latency and memory only), the
# cold start of each; one summary.json and a short table, in at most 8 minutes on one CUDA
# machine. Without CUDA it says so in one line and exits 0.
#
#   bash eval/gpu_check.sh [--out DIR] [--budget-s 420] [--warm 20]
#
# The work is in eval/quant/gpu_check.py (see its docstring).
set -u
cd "$(dirname "$0")/.." || exit 1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA device on this machine (nvidia-smi finds no GPU); nothing measured."
    exit 0
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec timeout 480 "$PY" eval/quant/gpu_check.py "$@"
