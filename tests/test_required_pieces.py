"""QGIS is part of the product: its tests fail when it is missing, unless a developer opts out.

Run in the library's pytest process; each case collects ``tests/qgis`` in a child pytest whose
``PATH`` lacks the QGIS binaries (as on a machine where ``scripts/setup.sh`` could not install
QGIS), so that the real conftest decides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def collect_qgis_tests(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "RRSIS_SKIP_QGIS"}
    environment.update(PATH=str(empty), QT_QPA_PLATFORM="offscreen", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/qgis", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )


def test_missing_qgis_binaries_fail_the_qgis_tests_with_what_to_install(tmp_path):
    done = collect_qgis_tests(tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "qgis.bin" in output and "qgis_process.bin" in output and "xvfb-run" in output
    assert "apt-get install python3-qgis qgis qgis-providers xvfb" in output
    assert "RRSIS_SKIP_QGIS=1" in output
    assert "Traceback" not in output  # one message, not a stack


def test_opting_out_is_said_out_loud(tmp_path):
    done = collect_qgis_tests(tmp_path, RRSIS_SKIP_QGIS="1")
    output = done.stdout + done.stderr
    assert "QGIS tests were not run (RRSIS_SKIP_QGIS=1): the plugin is untested" in output
    assert "test_dock.py" not in output  # nothing of the plugin was collected
    assert done.returncode == 5  # pytest: no tests collected
