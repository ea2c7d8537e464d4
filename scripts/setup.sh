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
  echo "installing pneumoscope into .venv (log: $log) ..."
  {
    .venv/bin/python -m pip install --upgrade pip &&
    .venv/bin/python -m pip install "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}" &&
    .venv/bin/python -m pip install -e '.[test]'
  } > "$log" 2>&1 || { tail -30 "$log"; echo "setup failed; see $log" >&2; exit 1; }
  .venv/bin/python -c "import pneumoscope, torch, segmentation_models_pytorch, xgboost"
  echo "$want" > "$stamp"
fi
