#!/usr/bin/env bash
# Create .venv and install pneumoscope with its test dependencies (idempotent).
# PyTorch is pinned here (torch 2.14.1 / torchvision 0.29.1); pyproject.toml accepts any >= 2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.pneumoscope-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log=.venv/install.log
  # PyPI's Linux torch pulls CUDA libraries: ~6 GB in .venv. Say so before pip fills the disk.
  free_gb=$(df -Pk .venv | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 8 ]; then
    echo "warning: ${free_gb} GB free on the disk of .venv; installing PyTorch needs about 8 GB" >&2
  fi
  echo "installing pneumoscope into .venv (log: $log) ..."
  {
    .venv/bin/python -m pip install --no-cache-dir --upgrade pip &&
    .venv/bin/python -m pip install --no-cache-dir "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}" &&
    .venv/bin/python -m pip install --no-cache-dir -e '.[test]'
  } > "$log" 2>&1 || { tail -30 "$log"; df -h .venv >&2; echo "setup failed; see $log" >&2; exit 1; }
  .venv/bin/python -c "import pneumoscope, torch, segmentation_models_pytorch, xgboost"
  echo "$want" > "$stamp"
fi
