#!/usr/bin/env bash
# The peers' environment for `eval/benchmark.py --compare timm,timm-onnxruntime`: a separate
# virtual env with PyTorch (CPU build), timm, onnx and onnxruntime, kept apart from the project's
# .venv (MXNet 1.9.1 needs numpy 1.23.5; these need numpy 2). Made once; prints its python.
# usage: bash tools/bench-env.sh [VENV]   (default .bench-venv)
set -euo pipefail
V=${1:-.bench-venv}
if [ ! -f "$V/.ready" ]; then
  python3 -m venv "$V" >&2
  "$V/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
  # the CPU wheel of torch: PyPI's default one brings gigabytes of CUDA libraries
  "$V/bin/pip" install -q --disable-pip-version-check \
    --index-url https://download.pytorch.org/whl/cpu torch >&2
  "$V/bin/pip" install -q --disable-pip-version-check timm onnx onnxruntime >&2
  touch "$V/.ready"
fi
echo "$V/bin/python"
