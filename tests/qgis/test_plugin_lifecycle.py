"""The plugin loads like QGIS loads it, and unloading leaves nothing behind."""

from pathlib import Path

import pytest

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QEvent, QProcess
from qgis.PyQt.QtWidgets import QDockWidget

import rrsis_qgis
from rrsis_qgis import deps


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


def test_without_a_worker_python_the_dock_explains_and_installs_nothing(desktop, monkeypatch, tmp_path):
    """No setting, no $RRSIS_PYTHON, no managed environment: the dock says so, nothing runs."""
    monkeypatch.delenv(deps.ENV)
    monkeypatch.setattr(deps, "managed_venv_dir", lambda: tmp_path / "venv")
    plugin = rrsis_qgis.classFactory(desktop)
    plugin.initGui()
    try:
        dock = plugin.dock
        plugin.action.trigger()
        panel = dock.deps_panel
        assert panel.isVisible() and panel.explanation.isVisible()
        assert "Install now" in panel.explanation.text() and "QGIS's own is never modified" in panel.explanation.text()
        assert panel.install_button.isVisible()
        assert not dock.run_button.isEnabled()
        assert "worker Python" in dock.run_button.toolTip()
        # nothing was started: no installer, no process, no environment
        assert panel.runner is None
        assert dock.findChildren(QProcess) == []
        assert dock.probe.python is None and not dock.probe.busy()
        assert not (tmp_path / "venv").exists()
    finally:
        plugin.unload()


def test_a_python_without_the_packages_is_reported(desktop):
    """The system Python (no torch) set in Advanced → Worker Python: it takes precedence over
    $RRSIS_PYTHON, the probe lists what is missing and Run stays off."""
    from qgis.core import QgsSettings

    from plugin_test_helpers import wait_for

    system = "/usr/bin/python3"
    if not Path(system).is_file():
        pytest.skip("no /usr/bin/python3")
    plugin = rrsis_qgis.classFactory(desktop)
    plugin.initGui()
    try:
        dock = plugin.dock
        plugin.action.trigger()
        dock.python_widget.setFilePath(system)
        assert QgsSettings().value(deps.SETTING) == system
        assert dock.python_choice == deps.PythonChoice(system, "setting")
        python, hello = wait_for(dock.probe.result, 120)
        while python != system:  # the answer about $RRSIS_PYTHON, probed when the dock opened
            python, hello = wait_for(dock.probe.result, 120)
        QgsApplication.processEvents()
        assert python == system and hello["type"] == "hello"
        if not hello["missing"]:
            pytest.skip("the system Python has every package: nothing to report")
        panel = dock.deps_panel
        assert f"Python {hello['python_version']}" in panel.summary.text()
        assert "Missing in this Python" in panel.explanation.text()
        assert all(name in panel.explanation.text() for name in hello["missing"])
        assert panel.install_button.isVisible()
        assert not dock.run_button.isEnabled()
    finally:
        QgsSettings().setValue(deps.SETTING, "")
        plugin.unload()


def test_worker_python_choice_order(qgis_app, monkeypatch, tmp_path):
    from qgis.core import QgsSettings

    venv = tmp_path / "venv"
    monkeypatch.setattr(deps, "managed_venv_dir", lambda: venv)
    monkeypatch.delenv(deps.ENV)
    QgsSettings().setValue(deps.SETTING, "")
    assert deps.choose_python() == deps.PythonChoice(None, "none")
    python = deps.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert deps.choose_python() == deps.PythonChoice(str(python), "managed")
    monkeypatch.setenv(deps.ENV, "/opt/py/bin/python3")
    assert deps.choose_python() == deps.PythonChoice("/opt/py/bin/python3", "environment")
    QgsSettings().setValue(deps.SETTING, "/usr/bin/python3")
    try:
        assert deps.choose_python() == deps.PythonChoice("/usr/bin/python3", "setting")
    finally:
        QgsSettings().setValue(deps.SETTING, "")


def test_install_steps_create_a_venv_then_pip_install(tmp_path):
    import sys

    base = deps.find_base_python([sys.executable])
    assert base == sys.executable
    steps = deps.install_steps(base, tmp_path / "venv")
    assert steps[0] == [base, "-m", "venv", str(tmp_path / "venv")]
    assert steps[1][:5] == [str(deps.venv_python(tmp_path / "venv")), "-m", "pip", "install", "--upgrade"]
    assert steps[1][5:] == deps.PACKAGES and "torch" in deps.PACKAGES
    assert deps.find_base_python(["/nonexistent/python3"]) is None


def test_step_runner_runs_steps_in_order_and_stops_at_a_failure(qgis_app):
    """The installer runs exactly the argv it is given, in a QProcess, and reports back.

    Harmless commands stand in for venv and pip so that the test installs nothing.
    """
    import sys

    from plugin_test_helpers import wait_for

    steps = [[sys.executable, "-c", "print('step one')"], [sys.executable, "-c", "print('step two')"]]
    runner = deps.StepRunner(steps)
    lines = []
    runner.output.connect(lines.append)
    runner.start()
    (ok,) = wait_for(runner.finished, 60)
    assert ok
    text = "\n".join(lines)
    assert text.index("step one") < text.index("step two")
    assert text.startswith("$ " + " ".join(steps[0]))

    failing = deps.StepRunner([[sys.executable, "-c", "import sys; sys.exit(3)"], [sys.executable, "-c", "print('never')"]])
    lines = []
    failing.output.connect(lines.append)
    failing.start()
    (ok,) = wait_for(failing.finished, 60)
    assert not ok and "never" not in "\n".join(lines)


def test_settings_stay_in_the_test_profile(qgis_app, tmp_path_factory):
    from qgis.core import QgsSettings

    assert Path(QgsSettings().fileName()).is_relative_to(tmp_path_factory.getbasetemp())


def test_panel_reports_the_worker_and_greys_the_gpu_without_cuda(plugin):
    """The dock's probe: the worker's Python, rrsis and torch; CUDA only when the worker sees it."""
    from plugin_test_helpers import wait_for

    dock = plugin.dock
    assert dock.probe.python is None  # nothing is probed until the dock is opened
    plugin.action.trigger()
    python, hello = wait_for(dock.probe.result, 120)
    QgsApplication.processEvents()
    assert hello["type"] == "hello" and hello["missing"] == []
    summary = dock.deps_panel.summary.text()
    assert hello["python"] in summary and f"rrsis {hello['rrsis']}" in summary and f"torch {hello['torch']}" in summary
    gpu = dock.device_combo.model().item(2)
    assert gpu.isEnabled() == (len(hello["devices"]) > 1)
    assert "worker Python" not in dock.run_button.toolTip()  # the worker is not what blocks Run


@pytest.mark.slow
def test_install_now_creates_the_managed_environment_and_the_dock_uses_it(desktop, monkeypatch, tmp_path):
    """Install now, end to end but offline: the venv is really created from a Python found on
    this machine; pip runs with --no-index on a package the venv already has (pip), so nothing is
    downloaded. The dock then finds the new environment, probes it and lists what it lacks."""
    from plugin_test_helpers import wait_for

    if deps.find_base_python() is None:
        pytest.skip("no Python >= 3.10 with venv on PATH")
    venv = tmp_path / "managed" / "venv"
    monkeypatch.delenv(deps.ENV)
    monkeypatch.setattr(deps, "managed_venv_dir", lambda: venv)
    monkeypatch.setattr(deps, "PACKAGES", ["--no-index", "pip"])
    plugin = rrsis_qgis.classFactory(desktop)
    plugin.initGui()
    try:
        dock = plugin.dock
        plugin.action.trigger()
        panel = dock.deps_panel
        assert panel.install_button.isVisible() and not dock.run_button.isEnabled()
        panel.install_button.click()
        (ok,) = wait_for(panel.runner.finished, 240)
        log = panel.log.toPlainText()
        assert ok, log
        assert f"-m venv {venv}" in log and "pip install --upgrade --no-index pip" in log
        python, hello = wait_for(dock.probe.result, 120)  # the dock re-checks after the install
        QgsApplication.processEvents()
        assert python == str(deps.venv_python(venv)) and dock.python_choice.source == "managed"
        assert hello["type"] == "hello" and "torch" in hello["missing"]  # offline: only pip is there
        assert "torch" in panel.explanation.text() and not dock.run_button.isEnabled()
    finally:
        plugin.unload()


def test_panel_explains_a_worker_that_cannot_import_the_library(qgis_app):
    from rrsis_qgis.deps_panel import DependencyPanel, usable

    hello = {
        "type": "hello", "protocol": 1, "python": "/opt/py/bin/python3", "python_version": "3.12.1",
        "rrsis": None, "rrsis_error": "No module named 'rrsis_geo'", "missing": [], "torch": "2.5.0", "devices": ["cpu"],
    }
    panel = DependencyPanel()
    panel.show_probe(deps.PythonChoice("/opt/py/bin/python3", "setting"), hello)
    assert not usable(hello)
    assert "rrsis library not found" in panel.summary.text() and "torch 2.5.0 (CPU build)" in panel.summary.text()
    assert "cannot import the rrsis library" in panel.explanation.text() and "No module named" in panel.explanation.text()
    assert not panel.install_button.isVisibleTo(panel)  # installing packages would not help
