"""Runs inside the real QGIS desktop (``qgis.bin --code THIS``), started by test_desktop.py.

It drives the installed plugin's dock like a user: (1) a run on the sample scene; (2) "houses"
typed into the expression box, and once the "understood as" hint is there a screenshot of the
main window; (3) a run on a larger scene cancelled once tiles are being processed; (4) a run
whose worker is killed (SIGKILL) mid-run; (5) a run on a GeoTIFF cut short; (6) one more run on
the sample; (7) a layer that is no file (XYZ tiles cut from the sample, zoom 17), which QGIS
exports on the task's thread before the worker runs; (8) "cars" on the Munich street sample, and
a second screenshot; (9) "cars" on the Munich sample again, on the warm worker. Each run is timed
from the click to the styled layer. Then it writes what it saw to the
JSON report named in ``$RRSIS_DESKTOP_TEST`` and makes QGIS exit by itself (``os._exit``: no
"save the project?" question). A watchdog ends the session if a step hangs.
"""

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtTest import QTest
from qgis.utils import iface, plugins

CONFIG = json.loads(Path(os.environ["RRSIS_DESKTOP_TEST"]).read_text())
FORBIDDEN = ("torch", "rasterio", "shapely", "pyogrio", "geopandas", "pyproj", "rrsis_geo")
#: the library's standard-library-only modules the plugin reads its options schema from
ALLOWED = ("rrsis_geo", "rrsis_geo.errors", "rrsis_geo.options", "rrsis_geo.checkpoint_config", "rrsis_geo.calibration",
           "rrsis_geo.knowledge", "rrsis_geo.models", "rrsis_geo.models.vocabulary")
REPORT = {"steps": {}, "error": None}
_timers = []  # single-shot timers must stay referenced until they fire


def finish():
    REPORT["forbidden_modules"] = sorted(
        name for name in sys.modules if name.split(".")[0] in FORBIDDEN and name not in ALLOWED
    )
    Path(CONFIG["report"]).write_text(json.dumps(REPORT, indent=1, default=str))
    sys.stdout.flush()
    os._exit(0)


def later(ms, function):
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(guarded(function))
    timer.start(ms)
    _timers.append(timer)


def guarded(function):
    def call(*args):
        try:
            function(*args)
        except Exception:
            REPORT["error"] = traceback.format_exc()
            finish()

    return call


def watchdog():
    REPORT["error"] = REPORT["error"] or f"watchdog: the session took over {CONFIG['timeout_s']} s"
    finish()


later(int(CONFIG["timeout_s"] * 1000), watchdog)
plugin = plugins["rrsis_qgis"]
dock = plugin.dock
project = QgsProject.instance()


def workdirs():
    return sorted(str(p) for p in Path(tempfile.gettempdir()).glob("rrsis-qgis-*"))


def describe(outcome):
    layers = []
    for layer_id in outcome.layer_ids:
        layer = project.mapLayer(layer_id)
        symbol = layer.renderer().symbol()
        layers.append({
            "name": layer.name(), "features": layer.featureCount(), "provider": layer.providerType(),
            "fill_alpha": symbol.color().alpha(), "crs": layer.crs().authid(),
        })
    return {
        "status": outcome.status, "message": outcome.message, "layers": layers,
        "bar": [item.text() for item in iface.messageBar().items()],
        "workdirs": workdirs(), "project_layers": len(project.mapLayers()),
    }


def start_run(name, on_progress=None, on_done=None):
    """Click Run; call ``on_progress(task)`` once tiles are being processed, then ``on_done``."""
    assert dock.run_button.isEnabled(), dock.run_button.toolTip()
    REPORT["steps"][name] = {"layers_before": len(project.mapLayers())}
    started = time.monotonic()
    task = dock.run()
    assert task is not None, dock.status_label.text()
    fired = []

    def progressed(value):
        if on_progress is not None and value > 0 and not fired and task.worker_pid:
            fired.append(value)
            guarded(on_progress)(task)

    def finished(outcome):
        dock.run_finished.disconnect(finished)
        REPORT["steps"][name].update(describe(outcome), worker_pid=task.worker_pid, exit=task.worker.returncode,
                                     seconds=time.monotonic() - started, options=task.request.options.to_dict(),
                                     bbox=task.request.raster.bbox, scene=task.request.raster.path)
        later(0, lambda: on_done(task))

    task.progressChanged.connect(progressed)
    dock.run_finished.connect(finished)


def step_run():
    layer = QgsRasterLayer(CONFIG["scene"], "dubai_sample")
    assert layer.isValid(), CONFIG["scene"]
    project.addMapLayer(layer)
    iface.setActiveLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    iface.mainWindow().resize(1600, 1000)  # the Xvfb screen; no window manager maximises it
    plugin.action.trigger()  # the toolbar button opens the dock
    dock.advanced.setCollapsed(False)  # the screenshot shows the Worker Python field too
    dock.expression_edit.setText(CONFIG["expression"])
    start_run("run", on_done=lambda task: step_hint())


def step_hint():
    """Type "houses" as a user would; the screenshot waits for the worker's answer."""
    dock.expression_edit.clear()
    dock.expression_edit.setFocus()

    def answered():
        if dock.hint_label.text().startswith("'houses' understood as"):
            dock.hints.answered.disconnect(handler)
            REPORT["hint"] = {"text": dock.hint_label.text(), "visible": dock.hint_label.isVisible(),
                              "workers": dock.hints.requests, "completer": dock.completer.vocabulary,
                              "seconds": dock.hints.last_seconds, "started": dock.workers.started}
            later(1500, screenshot)  # the canvas finishes drawing the result layer

    handler = guarded(answered)
    dock.hints.answered.connect(handler)
    QTest.keyClicks(dock.expression_edit, "houses")
    REPORT["hint_before"] = dock.hint_label.text()


def screenshot():
    image = iface.mainWindow().grab().toImage()
    REPORT["screenshot"] = {"saved": image.save(CONFIG["screenshot"]), "size": [image.width(), image.height()]}
    REPORT["panel"] = dock.deps_panel.summary.text()
    step_cancel()


def step_cancel():
    big = QgsRasterLayer(CONFIG["big_scene"], "big")  # long enough to be stopped mid-way
    assert big.isValid(), CONFIG["big_scene"]
    project.addMapLayer(big)
    dock.layer_combo.setLayer(big)
    dock.expression_edit.setText(CONFIG["expression"])
    dock.file_radio.setChecked(True)
    dock.output_widget.setFilePath(CONFIG["cancel_output"])
    start_run("cancel", on_progress=lambda task: dock.cancel_button.click(), on_done=after_cancel)


def after_cancel(task):
    step = REPORT["steps"]["cancel"]
    folder = Path(CONFIG["cancel_output"]).parent
    step["output_folder"] = sorted(p.name for p in folder.iterdir())
    step["worker_alive"] = _alive(task.worker_pid)
    dock.temporary_radio.setChecked(True)
    start_run("kill", on_progress=lambda task: os.kill(task.worker_pid, signal.SIGKILL), on_done=after_kill)


def after_kill(task):
    REPORT["steps"]["kill"]["worker_alive"] = _alive(task.worker_pid)
    cut = QgsRasterLayer(CONFIG["cut_scene"], "cut")  # the header is intact: QGIS opens it
    assert cut.isValid(), CONFIG["cut_scene"]
    project.addMapLayer(cut)
    dock.layer_combo.setLayer(cut)
    iface.messageBar().clearWidgets()
    start_run("fault", on_done=after_fault)


def after_fault(task):
    dock.layer_combo.setLayer(project.mapLayersByName("dubai_sample")[0])
    start_run("again", on_done=lambda task: step_xyz())


HALF_WORLD = 20037508.342789244  # EPSG:3857
ZOOM, TILE0 = 17, (87_000, 56_000)  # a 3 x 3 block of zoom-17 tiles (1.19 m per pixel)


def step_xyz():
    """XYZ tiles cut from the Dubai sample: a non-file layer, exported by QGIS, then segmented."""
    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsCoordinateReferenceSystem, QgsDataSourceUri, QgsRectangle
    from qgis.PyQt.QtGui import QImage

    root = Path(CONFIG["xyz_root"])
    pixels = gdal.Open(CONFIG["scene"]).ReadAsArray()  # bands, rows, cols (QGIS's own GDAL)
    for i in range(3):
        for j in range(3):
            tile = np.ascontiguousarray(np.moveaxis(pixels[:3, j * 256:(j + 1) * 256, i * 256:(i + 1) * 256], 0, -1))
            image = QImage(tile.data, 256, 256, 3 * 256, QImage.Format_RGB888).copy()
            folder = root / str(ZOOM) / str(TILE0[0] + i)
            folder.mkdir(parents=True, exist_ok=True)
            assert image.save(str(folder / f"{TILE0[1] + j}.png"))
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", root.as_uri() + "/{z}/{x}/{y}.png")
    uri.setParam("zmin", str(ZOOM))
    uri.setParam("zmax", str(ZOOM))
    layer = QgsRasterLayer(bytes(uri.encodedUri()).decode(), "tiles", "wms")
    assert layer.isValid()
    project.addMapLayer(layer)
    span = 2 * HALF_WORLD / 2**ZOOM
    left, top = -HALF_WORLD + TILE0[0] * span, HALF_WORLD - TILE0[1] * span
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    dock.layer_combo.setLayer(layer)
    dock.picker.set_rectangle(QgsRectangle(left, top - 3 * span, left + 3 * span, top), mercator)
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("drawn"))
    dock.expression_edit.setText(CONFIG["expression"])
    REPORT["xyz_workdirs_before"] = workdirs()
    start_run("xyz", on_done=lambda task: step_vehicles())


def step_vehicles():
    """The Munich street sample (0.12 m): "cars", and a screenshot of what was found."""
    munich = QgsRasterLayer(CONFIG["vehicle_scene"], "munich_street_sample")
    assert munich.isValid(), CONFIG["vehicle_scene"]
    project.addMapLayer(munich)
    for layer in project.mapLayers().values():  # only the strip and its result on the map
        if layer is not munich:
            project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    iface.setActiveLayer(munich)
    dock.layer_combo.setLayer(munich)
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("layer"))
    iface.mapCanvas().setDestinationCrs(munich.crs())
    iface.mapCanvas().setExtent(munich.extent())
    dock.expression_edit.setText(CONFIG["vehicle_expression"])
    start_run("vehicles", on_done=lambda task: start_run("vehicles_again", on_done=vehicles_done))


def vehicles_done(task):
    REPORT["workers"] = {"started": dock.workers.started, "alive": dock.workers.describe()}
    later(1500, vehicles_screenshot)


def vehicles_screenshot():
    dock.show_hint()  # the run's plan told the dock how it read "cars": no worker needed
    REPORT["vehicles_hint"] = dock.hint_label.text()
    later(300, grab_vehicles)


def grab_vehicles():
    image = iface.mainWindow().grab().toImage()
    REPORT["vehicles_screenshot"] = {"saved": image.save(CONFIG["vehicles_screenshot"])}
    finish()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


later(500, step_run)
