#!/usr/bin/env bash
# GPU benchmark of the full preset in bf16 (translate + training throughput, MFU vs the bf16 peak).
# One command, under 8 minutes on an H100/H200:  bash bench/gpu.sh [extra bench/device.py options]
# CPU smoke test of the same code path:          bash bench/gpu.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec timeout 480 "$PY" bench/device.py "$@"
