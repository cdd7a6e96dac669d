"""The plugin loads like QGIS loads it, and unloading leaves nothing behind."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("qgis.core", reason="QGIS Python bindings cannot be imported: install python3-qgis", exc_type=ImportError)

from qgis.core import QgsApplication  # noqa: E402
from qgis.PyQt.QtCore import QEvent, QProcess  # noqa: E402
from qgis.PyQt.QtWidgets import QDockWidget  # noqa: E402

import rrsis_qgis  # noqa: E402
from rrsis_qgis import deps  # noqa: E402


def _footprint(desktop):
    """Everything a plugin can add to the desktop, as comparable values."""
    registry = QgsApplication.processingRegistry()
    return {
        "raster_menu": [a.text() for a in desktop.raster_menu.actions()],
        "plugins_menu": [a.text() for a in desktop.plugins_menu.actions()],
        "raster_toolbar": [a.objectName() for a in desktop.raster_toolbar.actions()],
        "plugin_toolbar": [a.objectName() for a in desktop.plugin_toolbar.actions()],
        "docks": sorted(d.objectName() for d in desktop.window.findChildren(QDockWidget)),
        "providers": sorted(p.id() for p in registry.providers()),
        "map_tool": desktop.canvas.mapTool(),
        "canvas_items": len(desktop.canvas.scene().items()),
    }


def test_class_factory_returns_a_plugin(desktop):
    plugin = rrsis_qgis.classFactory(desktop)
    assert callable(plugin.initGui) and callable(plugin.unload)


def test_init_gui_adds_and_unload_removes_everything(desktop):
    before = _footprint(desktop)
    for _ in range(2):  # reloading the plugin (plugin reloader, upgrade) must work too
        plugin = rrsis_qgis.classFactory(desktop)
        plugin.initGui()
        during = _footprint(desktop)
        assert during["raster_toolbar"] == before["raster_toolbar"] + ["rrsisShowDock"]
        assert len(during["raster_menu"]) == len(before["raster_menu"]) + 1
        assert "RRSISDock" in during["docks"]
        assert "rrsis" in during["providers"]
        assert QgsApplication.processingRegistry().algorithmById("rrsis:segment") is not None

        plugin.action.trigger()  # the toolbar button shows the dock
        assert plugin.dock.isVisible()
        plugin.dock.draw_button.setEnabled(True)
        plugin.dock.draw_extent()  # a map tool is active while drawing
        assert desktop.canvas.mapTool() is not None

        plugin.unload()
        QgsApplication.processEvents()
        QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # run deleteLater()
        assert _footprint(desktop) == before
        assert QgsApplication.processingRegistry().algorithmById("rrsis:segment") is None


def test_missing_package_is_explained_and_nothing_is_installed(desktop, monkeypatch):
    """A missing dependency: the plugin loads, the dock says what to run, nothing runs."""
    fake = deps.Requirement("rrsis_package_that_does_not_exist", "rrsis-package-that-does-not-exist", "testing")
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + [fake])

    plugin = rrsis_qgis.classFactory(desktop)
    plugin.initGui()
    try:
        dock = plugin.dock
        plugin.action.trigger()
        panel = dock.deps_panel
        assert panel.isVisible()
        assert "rrsis-package-that-does-not-exist" in panel.explanation.text()
        command = panel.command.toPlainText()
        assert command.startswith(deps.format_command([deps.qgis_python()]))
        assert " -m pip install " in command
        assert f"numpy=={deps.installed_numpy_version()}" in command
        assert command.endswith("rrsis-package-that-does-not-exist")
        assert not dock.run_button.isEnabled()
        assert not dock.form_widget.isEnabled()
        # nothing was started: no installer, no process, and the package is still absent
        assert panel.installer is None
        assert dock.findChildren(QProcess) == []
        assert importlib.util.find_spec("rrsis_package_that_does_not_exist") is None
    finally:
        plugin.unload()


def test_pip_command_targets_qgis_python_and_pins_numpy():
    missing = [r for r in deps.REQUIREMENTS if r.module in ("torch", "rrsis_geo")]
    argv = deps.pip_arguments(missing)
    assert argv[0] == deps.qgis_python()
    assert argv[1:4] == ["-m", "pip", "install"]
    assert f"numpy=={deps.installed_numpy_version()}" in argv
    assert argv[-1] == "torch"  # rrsis_geo is not on PyPI: never put in a pip command
    assert "rrsis_geo" in deps.describe_missing(missing)


def test_all_dependencies_present_in_this_environment():
    assert deps.missing_requirements() == []


def test_settings_stay_in_the_test_profile(qgis_app, tmp_path_factory):
    from qgis.core import QgsSettings

    assert Path(QgsSettings().fileName()).is_relative_to(tmp_path_factory.getbasetemp())


def test_install_button_runs_the_shown_command_without_blocking(desktop, monkeypatch):
    """The installer runs exactly the argv it is given, in a QProcess, and reports back.

    A harmless command stands in for pip so that the test installs nothing.
    """
    from plugin_test_helpers import wait_for

    panel_argv = [deps.qgis_python(), "-c", "print('pretend pip ran')"]
    installer = deps.PipInstaller(panel_argv)
    lines = []
    installer.output.connect(lines.append)
    installer.start()
    (ok,) = wait_for(installer.finished, 60)
    assert ok
    text = "".join(lines)
    assert text.startswith("$ " + deps.format_command(panel_argv))
    assert "pretend pip ran" in text


def test_gpu_choice_is_greyed_without_cuda(plugin):
    import torch

    dock = plugin.dock
    assert dock.probe.thread is None  # nothing imports torch until the dock is opened
    plugin.action.trigger()
    assert dock.probe.thread is not None
    dock.probe.wait()
    QgsApplication.processEvents()  # the probe's answer arrives as a queued signal
    gpu = dock.device_combo.model().item(2)
    assert gpu.isEnabled() == torch.cuda.is_available()
