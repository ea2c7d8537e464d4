#!/usr/bin/env bash
# The main job, with its own set-up: bash scripts/run.sh [pneumoscope run args]
# With no arguments: the demo config on the embedded synthetic phantoms, into runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pneumoscope run "$@"
