#!/usr/bin/env bash
# The test suite, with its own set-up: bash scripts/test.sh [pytest args]
# Lints first (ruff, configured in pyproject.toml), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest -q "$@"
