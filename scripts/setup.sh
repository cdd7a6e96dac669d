#!/usr/bin/env bash
# Create .venv with everything rrsis needs, on a fresh Debian machine.
#
# - QGIS 3.22 for the plugin and its tests comes from Debian (python3-qgis, and qgis for the desktop
#   and qgis_process binaries); it is installed with apt-get when missing and we are root, else we
#   say what to install.
# - The venv is made from the system Python with --system-site-packages so that it sees `qgis`
#   and still takes the pinned torch; constraints.txt keeps NumPy on 1.x for QGIS's GDAL bindings.
# Re-running is cheap: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PY=/usr/bin/python3
# the desktop binaries too: tests/qgis/test_desktop.py runs qgis.bin and qgis_process.bin
if ! "$SYS_PY" -c "import qgis.core" >/dev/null 2>&1 || ! command -v qgis_process.bin >/dev/null || ! command -v xvfb-run >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing QGIS (python3-qgis, the qgis desktop and qgis_process) and xvfb with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-qgis qgis qgis-providers xvfb python3-venv >/dev/null
    else
        echo "!! QGIS's Python bindings are missing: install python3-qgis (Debian/Ubuntu) to use the plugin;" >&2
        echo "!! the library and command line work without them." >&2
    fi
fi
[ -x "$SYS_PY" ] || SYS_PY=$(command -v python3)

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv from $SYS_PY"
    "$SYS_PY" -m venv --system-site-packages .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "== installing torch 2.14.1 + torchvision 0.29.1"
    "${PIP[@]}" install -c constraints.txt torch==2.14.1 torchvision==0.29.1
fi
echo "== installing rrsis (editable) and its dependencies"
"${PIP[@]}" install -c constraints.txt -e ".[train,test,batch]"
echo "== ready: .venv/bin/rrsis-geo --help"
