#!/usr/bin/env bash
# The whole test suite, QGIS tests included, on a fresh machine: set up .venv, lint, then pytest.
#
# The QGIS tests run in a pytest process of their own: a process hosting QGIS must not already hold
# the pip wheels' GDAL/GEOS (rasterio, shapely, pyogrio) that the library tests load — the very clash
# that made the plugin run the library in a worker process. Arguments go to one pytest run as given.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff check"
.venv/bin/ruff check .
export QT_QPA_PLATFORM=offscreen
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest --ignore=tests/qgis
exec .venv/bin/python -m pytest tests/qgis
