"""Layers that are not files (XYZ tiles, virtual rasters) are exported, then segmented."""

import tempfile
from pathlib import Path

import pytest

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDataSourceUri,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from plugin_test_helpers import ORIGIN, SQUARE, run_dock, write_scene
from rrsis_qgis.layers import file_source, plan_raster_input

WEB_MERCATOR = "EPSG:3857"
HALF_WORLD = 20037508.342789244
ZOOM, TILE_X, TILE_Y = 3, 4, 3  # the tile whose top-left corner is (0, 5009377) m
TILE_SPAN = 2 * HALF_WORLD / 2**ZOOM
RESOLUTION = TILE_SPAN / 256


def _write_tile_pyramid(root: Path) -> str:
    """Dark 256 px PNG tiles at zoom 3; tile (4, 3) holds the bright square. Returns the XYZ URI."""
    r0, r1, c0, c1 = SQUARE
    for x in range(2**ZOOM):
        for y in range(2**ZOOM):
            image = QImage(256, 256, QImage.Format_RGB32)
            image.fill(QColor(30, 30, 30))
            if (x, y) == (TILE_X, TILE_Y):
                painter = QPainter(image)
                painter.fillRect(c0, r0, c1 - c0, r1 - r0, QColor(255, 255, 255))
                painter.end()
            folder = root / str(ZOOM) / str(x)
            folder.mkdir(parents=True, exist_ok=True)
            assert image.save(str(folder / f"{y}.png"))
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", (root.as_uri() + "/{z}/{x}/{y}.png"))
    uri.setParam("zmin", str(ZOOM))
    uri.setParam("zmax", str(ZOOM))
    return bytes(uri.encodedUri()).decode()


@pytest.fixture
def xyz_layer(tmp_path):
    layer = QgsRasterLayer(_write_tile_pyramid(tmp_path / "tiles"), "tiles", "wms")
    assert layer.isValid()
    return layer


def test_file_and_non_file_layers_are_told_apart(tmp_path, xyz_layer, qgis_app):
    path = write_scene(tmp_path / "scene.tif")
    file_layer = QgsRasterLayer(str(path), "scene")
    assert file_source(file_layer) == str(path)
    plan = plan_raster_input(file_layer, QgsRectangle(ORIGIN[0], ORIGIN[1] - 10, ORIGIN[0] + 10, ORIGIN[1]))
    assert plan.path == str(path) and plan.export is None
    assert plan.bbox == (ORIGIN[0], ORIGIN[1] - 10, ORIGIN[0] + 10, ORIGIN[1])

    assert file_source(xyz_layer) is None
    tile = QgsRectangle(0, 0, TILE_SPAN, TILE_SPAN)  # tile (4, 3) of zoom 3
    plan = plan_raster_input(xyz_layer, tile)
    assert plan.export is not None and plan.export.rendered
    assert (plan.export.width, plan.export.height) == (256, 256)  # native zoom-3 resolution
    coarse = plan_raster_input(xyz_layer, tile, resolution=RESOLUTION * 4)
    assert (coarse.export.width, coarse.export.height) == (64, 64)


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_dock_segments_an_xyz_layer(desktop, plugin, xyz_layer, bright_checkpoint):
    project = QgsProject.instance()
    mercator = QgsCoordinateReferenceSystem(WEB_MERCATOR)
    project.setCrs(mercator)
    desktop.canvas.setDestinationCrs(mercator)
    project.addMapLayer(xyz_layer)
    workdirs_before = set(Path(tempfile.gettempdir()).glob("rrsis-qgis-*"))
    dock = plugin.dock
    dock.layer_combo.setLayer(xyz_layer)
    assert dock.resolution_spin.isEnabled()  # export resolution only matters for such layers
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square")
    left, top = 0.0, TILE_SPAN  # the tile (4, 3) of zoom 3
    dock.picker.set_rectangle(QgsRectangle(left, top - TILE_SPAN, left + TILE_SPAN, top), mercator)
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("drawn"))

    outcome = run_dock(dock)

    assert outcome.status == "ok", outcome.message
    (layer_id,) = outcome.layer_ids
    result = project.mapLayer(layer_id)
    assert result.crs().authid() == WEB_MERCATOR
    assert result.featureCount() == 1
    r0, r1, c0, c1 = SQUARE
    extent = result.extent()
    expected = (left + c0 * RESOLUTION, top - r1 * RESOLUTION, left + c1 * RESOLUTION, top - r0 * RESOLUTION)
    got = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
    assert got == pytest.approx(expected, abs=RESOLUTION)  # within one pixel of the drawn square
    assert set(Path(tempfile.gettempdir()).glob("rrsis-qgis-*")) == workdirs_before  # export cleaned up
