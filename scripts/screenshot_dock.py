#!/usr/bin/env python3
"""Save a screenshot of the plugin's dock with a result over the map, rendered offscreen.

This is the quick stand-in, without the QGIS desktop binary; the screenshot from the real ``qgis``
(under Xvfb, plugin installed from the zip) comes from ``pytest tests/qgis/test_desktop.py``,
which saves ``build/screenshots/qgis_desktop_dock.png``.

The plugin runs in :class:`rrsis_qgis.standalone.MiniDesktop` (a QGIS-like main window: layers
panel, map canvas, message bar) exactly as in QGIS: ``classFactory`` + ``initGui``, the dock
filled in, Run clicked, the background task awaited. Then the window is grabbed; when the
offscreen canvas grab comes out blank, the map is rendered with ``QgsMapRendererParallelJob``
and painted into the canvas area. The worker Python is ``$RRSIS_PYTHON``, else this interpreter.

    python scripts/screenshot_dock.py                       # sample scene + default model
    python scripts/screenshot_dock.py --scene S.tif --checkpoint DIR -e "road" -o dock.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RRSIS_PYTHON", sys.executable)  # the worker: this interpreter has the packages


def default_scene() -> Optional[Path]:
    """The first image GeoTIFF of ``resources/sample`` (not a label raster), if installed."""
    sample = REPO / "resources" / "sample"
    found = sorted(p for p in sample.glob("*.tif") if not p.name.endswith(".labels.tif")) if sample.is_dir() else []
    return found[0] if found else None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", type=Path, default=None, help="georeferenced raster (default: the first resources/sample/*.tif image)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: the default model)")
    parser.add_argument("-e", "--expression", default="building along the road")
    parser.add_argument("--threshold", type=float, default=None, help="default: the model's own")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "build" / "screenshots" / "qgis_dock.png")
    parser.add_argument("--size", default="1500x900", help="window size WxH (default 1500x900)")
    parser.add_argument("--advanced", action="store_true", help="show the dock's Advanced section expanded")
    return parser.parse_args(argv)


def _is_blank(image) -> bool:
    """True when every pixel of a (downscaled) image has the same colour."""
    small = image.scaled(64, 64)
    first = small.pixel(0, 0)
    return all(small.pixel(x, y) == first for x in range(small.width()) for y in range(small.height()))


def render_map(canvas):
    """The canvas's map rendered off-screen (what the canvas would show)."""
    from qgis.core import QgsMapRendererParallelJob

    settings = canvas.mapSettings()
    settings.setOutputSize(canvas.size())
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def grab_window(desktop):
    """The main window as a QImage, with the map painted in if the canvas grab is blank."""
    from qgis.PyQt.QtCore import QPoint
    from qgis.PyQt.QtGui import QPainter

    image = desktop.window.grab().toImage()
    canvas = desktop.canvas
    if _is_blank(canvas.grab().toImage()):
        origin = canvas.mapTo(desktop.window, QPoint(0, 0))
        painter = QPainter(image)
        painter.drawImage(origin, render_map(canvas))
        painter.end()
    return image


def main(argv=None) -> int:
    args = parse_args(argv)
    scene = args.scene or default_scene()
    if scene is None or not scene.exists():
        print("no scene: pass --scene PATH (the sample scene in resources/sample/ is not installed)", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))

    import tempfile

    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QSettings, Qt, QTimer

    # a throw-away profile: the dock's settings (history, last checkpoint) must not land in the
    # user's QGIS settings
    profile = tempfile.mkdtemp(prefix="rrsis-screenshot-profile-")
    QCoreApplication.setOrganizationName("rrsis-screenshot")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, profile)
    app = QgsApplication([], True, profile)
    app.initQgis()

    import rrsis_qgis
    from rrsis_qgis.standalone import MiniDesktop

    project = QgsProject.instance()
    layer = QgsRasterLayer(str(scene), scene.stem)
    if not layer.isValid():
        print(f"{scene} is not a raster QGIS can open", file=sys.stderr)
        return 2
    project.setCrs(layer.crs())
    desktop = MiniDesktop(project, size=(width, height))
    desktop.canvas.setDestinationCrs(layer.crs())
    project.addMapLayer(layer)
    desktop.setActiveLayer(layer)
    desktop.window.show()
    desktop.zoomToLayer(layer)

    plugin = rrsis_qgis.classFactory(desktop)
    plugin.initGui()
    plugin.action.trigger()
    dock = plugin.dock
    desktop.window.resizeDocks([desktop.layers_dock, dock], [300, 430], Qt.Horizontal)
    if args.checkpoint is not None:
        dock.model_widget.setFilePath(str(args.checkpoint))
    if args.threshold is not None:
        dock.threshold_slider.setValue(int(round(args.threshold * 100)))
    dock.expression_edit.setText(args.expression)
    if args.advanced:
        dock.advanced.setCollapsed(False)
    if not dock.run_button.isEnabled():
        print(f"cannot run: {dock.run_button.toolTip()}", file=sys.stderr)
        return 2

    loop = QEventLoop()
    dock.run_finished.connect(lambda _outcome: loop.quit())
    dock.run()
    loop.exec_()
    outcome = dock.last_outcome
    print(f"run: {outcome.status}: {outcome.message}")

    # let the canvas render the new layers before grabbing
    desktop.canvas.refreshAllLayers()
    rendered = QEventLoop()
    desktop.canvas.mapCanvasRefreshed.connect(rendered.quit)
    QTimer.singleShot(15000, rendered.quit)
    rendered.exec_()
    app.processEvents()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    image = grab_window(desktop)
    if not image.save(str(args.output)):
        print(f"could not write {args.output}", file=sys.stderr)
        return 1
    print(f"screenshot: {args.output} ({image.width()}x{image.height()})")
    plugin.unload()
    shutil.rmtree(profile, ignore_errors=True)
    return 0 if outcome.status == "ok" else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # skip QGIS/Qt teardown at interpreter exit (it can crash after a successful run on 3.22)
    os._exit(code)
