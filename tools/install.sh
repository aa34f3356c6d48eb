#!/usr/bin/env bash
# Creates the virtual environment $1 (default .venv) with everything the project, its tests and
# its Horovod runs need. Safe to re-run.
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install --upgrade pip setuptools wheel
$PIP install -e ".[dev,onnx]"
$PIP install --no-deps onnxruntime==1.16.3
$PIP install coloredlogs flatbuffers sympy packaging
if ! "$VENV/bin/python" -c 'import horovod.mxnet' 2>/dev/null; then
  echo "building horovod 0.28.1 with MXNet and Gloo (about 2 minutes)"
  HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
    HOROVOD_WITHOUT_PYTORCH=1 $PIP install --no-build-isolation horovod==0.28.1
fi
"$VENV/bin/python" -c 'import mxnet, numpy, horovod.mxnet; print("mxnet", mxnet.__version__, "numpy", numpy.__version__)'
