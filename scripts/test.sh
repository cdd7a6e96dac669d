#!/usr/bin/env bash
# The whole test suite, QGIS tests included, on a fresh machine: set up .venv, lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff check"
.venv/bin/ruff check .
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
