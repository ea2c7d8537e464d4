#!/usr/bin/env bash
# The test suite, with its own set-up: bash scripts/test.sh [pytest args]
# Sets up .venv and the Debian packages the tests drive, lints (ruff, configured in pyproject.toml), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system-packages.sh  # Orthanc, dcmtk, dicom3tools, Chromium: installed as root, else the command is printed
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest -q "$@"
