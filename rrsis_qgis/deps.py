"""Which Python runs the worker, and installing one the plugin manages.

The library and its dependencies (torch, rasterio, geopandas...) never load into QGIS's process
(see :mod:`rrsis_qgis.worker`): they run in a *worker* Python chosen in this order:

1. the dock's setting (Advanced → Worker Python), key :data:`SETTING`;
2. ``$RRSIS_PYTHON``;
3. the virtual environment the plugin manages under the QGIS profile folder, created by the
   dock's *Install now* from a Python ≥ 3.10 found on this machine (:func:`install_steps`).

QGIS's own Python is never modified. Nothing is installed unless the user clicks *Install now*.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal

from .worker import REQUIREMENTS

SETTING = "rrsis/python"
ENV = "RRSIS_PYTHON"
#: PyPI distributions the managed environment gets (the library itself comes with the plugin).
PACKAGES: List[str] = [pip_name for _module, pip_name in REQUIREMENTS]
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class PythonChoice:
    """The worker interpreter and where the choice came from (``setting``, ``environment``,
    ``managed``); ``python`` is None when nothing is configured yet."""

    python: Optional[str]
    source: str

    def describe(self) -> str:
        where = {
            "setting": "set in the dock",
            "environment": f"${ENV}",
            "managed": "the plugin's environment",
        }.get(self.source, self.source)
        return f"{self.python} ({where})" if self.python else "none"


def managed_venv_dir() -> Path:
    """The virtual environment the plugin manages, inside the active QGIS profile folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rrsis" / "venv"


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (Scripts\\python.exe on Windows)."""
    return venv / "Scripts" / "python.exe" if os.name == "nt" else venv / "bin" / "python"


def choose_python() -> PythonChoice:
    """The worker interpreter: setting, else ``$RRSIS_PYTHON``, else the managed venv."""
    configured = str(QgsSettings().value(SETTING, "", type=str) or "").strip()
    if configured:
        return PythonChoice(configured, "setting")
    env = os.environ.get(ENV, "").strip()
    if env:
        return PythonChoice(env, "environment")
    managed = venv_python(managed_venv_dir())
    if managed.is_file():
        return PythonChoice(str(managed), "managed")
    return PythonChoice(None, "none")


def python_version(python: str, timeout: float = 20.0) -> Optional[tuple]:
    """``(major, minor)`` of ``python`` when it runs and can create virtual environments."""
    check = "import sys, venv, ensurepip; print(sys.version_info[0], sys.version_info[1])"
    try:
        out = subprocess.run(
            [python, "-c", check], capture_output=True, text=True, timeout=timeout,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor = (int(v) for v in out.stdout.split())
    except ValueError:
        return None
    return major, minor


def find_base_python(candidates: Sequence[str] = ()) -> Optional[str]:
    """A Python ≥ 3.10 with ``venv`` on this machine, newest first (None when there is none)."""
    names = list(candidates) or [f"python3.{minor}" for minor in range(14, MIN_PYTHON[1] - 1, -1)] + ["python3", "python"]
    seen = set()
    for name in names:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path is None or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        version = python_version(path)
        if version is not None and version >= MIN_PYTHON:
            return path
    return None


def install_steps(base_python: str, venv: Path, packages: Sequence[str] = ()) -> List[List[str]]:
    """argv of each step that creates ``venv`` from ``base_python`` and installs ``packages``."""
    python = str(venv_python(venv))
    steps = [] if Path(python).is_file() else [[base_python, "-m", "venv", str(venv)]]
    wanted = list(packages) if packages else PACKAGES
    steps.append([python, "-m", "pip", "install", "--upgrade", *wanted])
    return steps


class StepRunner(QObject):
    """Runs commands one after the other in a :class:`QProcess` (never blocks the GUI).

    ``output`` carries their merged stdout/stderr; ``finished`` is True when every step exited
    with status 0 (the first failing step stops the sequence).
    """

    output = pyqtSignal(str)
    step = pyqtSignal(int, int)  # index (1-based), count
    finished = pyqtSignal(bool)

    def __init__(self, steps: Sequence[Sequence[str]], parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        if not steps:
            raise ValueError("nothing to run")
        self.steps = [list(s) for s in steps]
        self.index = 0
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.remove("PYTHONHOME")
        env.remove("PYTHONPATH")  # QGIS's own paths must not leak into another Python
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._done)
        self.process.errorOccurred.connect(self._failed_to_start)

    def start(self) -> None:
        argv = self.steps[self.index]
        self.step.emit(self.index + 1, len(self.steps))
        self.output.emit("$ " + subprocess.list2cmdline(argv) if os.name == "nt" else "$ " + " ".join(argv))
        self.process.start(argv[0], argv[1:])

    def kill(self) -> None:
        if self.process.state() != QProcess.NotRunning:
            self.process.kill()
            self.process.waitForFinished(5000)

    def _read(self) -> None:
        data = bytes(self.process.readAllStandardOutput()).decode(errors="replace").rstrip("\n")
        if data:
            self.output.emit(data)

    def _done(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        ok = exit_code == 0 and status == QProcess.NormalExit
        if ok and self.index + 1 < len(self.steps):
            self.index += 1
            self.start()
            return
        self.finished.emit(ok)

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart:
            self.output.emit(f"could not start {self.steps[self.index][0]}")
            self.finished.emit(False)
