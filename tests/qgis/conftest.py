"""Fixtures for tests that run inside real QGIS (Debian's python3-qgis 3.22).

One ``QgsApplication`` (GUI enabled, offscreen platform, a throw-away profile so that the user's
QGIS settings are never touched) serves the whole session, with Processing initialised. The
QGIS desktop is replaced by :class:`rrsis_qgis.standalone.MiniDesktop` (real main window,
canvas and message bar); test_desktop.py runs the real ``qgis.bin`` and ``qgis_process.bin``.

The plugin runs the library in a worker process: here the interpreter running the tests
(``$RRSIS_PYTHON``), with this folder on its ``PYTHONPATH`` (``$RRSIS_WORKER_PATH``) and ``brightness_model`` imported as
an extension so that it knows the test architecture.

Models: ``bright_checkpoint`` is a checkpoint of a test architecture whose output is known —
the target probability is a steep function of pixel brightness — so that tests can check where
polygons land; ``tiny_checkpoint`` is the library's random-initialised ``tiny-lgce`` preset.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

#: set to 1 to run the suite without QGIS (a developer's choice; CI and scripts/test.sh never do):
#: the QGIS tests are then not collected, and the run says so
SKIP_ENV = "RRSIS_SKIP_QGIS"
#: what the QGIS tests need: the Python bindings, the desktop and qgis_process binaries, Xvfb
REQUIRED_BINARIES = ("qgis.bin", "qgis_process.bin", "xvfb-run")
INSTALL = "install QGIS 3.22+ (Debian: apt-get install python3-qgis qgis qgis-providers xvfb; scripts/setup.sh does it as root)"


def missing_qgis() -> list:
    """What of QGIS is not there (empty when everything is)."""
    missing = []
    try:
        import qgis.core  # noqa: F401
    except ImportError as exc:
        missing.append(f"the Python bindings ({exc})")
    missing += [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    return missing


SKIPPED = os.environ.get(SKIP_ENV) == "1"
MISSING = missing_qgis()
if SKIPPED or MISSING:
    collect_ignore_glob = ["test_*.py"]

PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"
HERE = Path(__file__).resolve().parent

if not (SKIPPED or MISSING):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject
    from qgis.PyQt.QtCore import QCoreApplication, QSettings

    from plugin_test_helpers import FORBIDDEN, LIBRARY_ALLOWED, SCENE_CRS, brightness_checkpoint, make_checkpoint, write_scene

os.environ["RRSIS_PYTHON"] = sys.executable
os.environ["RRSIS_EXTENSIONS"] = "brightness_model"
os.environ["RRSIS_WORKER_PATH"] = str(HERE)


def pytest_configure(config):
    if MISSING and not SKIPPED:
        raise pytest.UsageError(
            f"the QGIS tests need QGIS, and this machine lacks {', '.join(MISSING)}: {INSTALL}; "
            f"or set {SKIP_ENV}=1 to leave the plugin untested"
        )


def pytest_report_header(config):
    if SKIPPED:
        return f"QGIS tests NOT RUN: {SKIP_ENV}=1 (the plugin is untested in this run)"
    return None


def pytest_terminal_summary(terminalreporter):
    if SKIPPED:
        terminalreporter.write_line(f"QGIS tests were not run ({SKIP_ENV}=1): the plugin is untested", red=True)


# ------------------------------------------------------------------------------------ QGIS app


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """The session's QgsApplication, with Processing ready."""
    profile = tmp_path_factory.mktemp("qgis-profile")
    # settings (the dock's expression history...) go to the throw-away profile, not to ~/.config
    QCoreApplication.setOrganizationName("rrsis-tests")
    QCoreApplication.setApplicationName("QGIS3")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(profile))
    app = QgsApplication([], True, str(profile))
    app.initQgis()
    if PROCESSING_PLUGINS not in sys.path:
        sys.path.append(PROCESSING_PLUGINS)
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    # No exitQgis(): tearing QGIS down while Python still holds wrappers crashes at interpreter
    # exit on 3.22 and would turn a green run into a failing exit status.
    QgsProject.instance().clear()


@pytest.fixture
def desktop(qgis_app):
    """A fresh QGIS-like main window (``iface``) over an empty project."""
    from rrsis_qgis.standalone import MiniDesktop

    project = QgsProject.instance()
    project.clear()
    project.setCrs(QgsCoordinateReferenceSystem(SCENE_CRS))
    iface = MiniDesktop(project)
    iface.canvas.setDestinationCrs(project.crs())
    iface.window.show()
    yield iface
    project.removeAllMapLayers()
    project.clear()
    iface.close()
    qgis_app.processEvents()


@pytest.fixture(scope="session")
def bright_checkpoint(qgis_app, tmp_path_factory) -> Path:
    """Checkpoint whose output is known: bright pixels are the target."""
    return brightness_checkpoint(tmp_path_factory.mktemp("ckpt") / "bright")


@pytest.fixture(scope="session")
def slow_checkpoint(bright_checkpoint, tmp_path_factory) -> Path:
    """Like ``bright_checkpoint`` but every batch takes 0.2 s: time to cancel a run."""
    return brightness_checkpoint(tmp_path_factory.mktemp("ckpt") / "slow", delay_s=0.2)


@pytest.fixture(scope="session")
def tiny_checkpoint(qgis_app, tmp_path_factory) -> Path:
    """The library's random-initialised tiny LGCE model."""
    return make_checkpoint("tiny-lgce", tmp_path_factory.mktemp("ckpt") / "tiny-lgce")


@pytest.fixture(autouse=True)
def qgis_process_stays_clean():
    """After every test: none of the library's stack loaded here. This process stands in for
    QGIS's, where pip wheels' GDAL/GEOS next to QGIS's own crash it (CI once did, mid-run)."""
    yield
    loaded = sorted(name for name in FORBIDDEN if name in sys.modules)
    assert not loaded, f"the process hosting QGIS imported {loaded}"
    # of the library, only its standard-library-only parts (the options schema, the errors; the
    # packager's io_utils)
    library = sorted(n for n in sys.modules if n.split(".")[0] == "rrsis_geo" and n not in LIBRARY_ALLOWED)
    assert not library, f"the process hosting QGIS imported {library}"


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_scene(tmp_path / "scene.tif")


@pytest.fixture
def plugin(desktop):
    """The plugin loaded the way QGIS does it: classFactory + initGui; unloaded afterwards."""
    import rrsis_qgis

    instance = rrsis_qgis.classFactory(desktop)
    instance.initGui()
    yield instance
    instance.unload()
    QgsApplication.processEvents()
