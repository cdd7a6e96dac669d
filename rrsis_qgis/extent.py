"""The extent to segment: whole layer, current canvas extent, or a rectangle drawn on the canvas."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsProject, QgsRasterLayer, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtGui import QColor

from .layers import LayerInputError, extent_in_layer_crs

WHOLE_LAYER = "layer"
CANVAS = "canvas"
DRAWN = "drawn"


class ExtentPicker(QObject):
    """Lets the user draw a rectangle on the canvas and remembers it (shown as a rubber band)."""

    drawn = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.rect: Optional[QgsRectangle] = None
        self.crs = QgsCoordinateReferenceSystem()
        self._tool: Optional[QgsMapToolExtent] = None
        self._previous_tool = None
        self._band: Optional[QgsRubberBand] = None

    def start(self) -> None:
        """Switch the canvas to a rectangle-drawing tool until a rectangle is drawn."""
        if self._tool is None:
            self._tool = QgsMapToolExtent(self.canvas)
            self._tool.extentChanged.connect(self._on_extent)
        current = self.canvas.mapTool()
        if current is not self._tool:
            self._previous_tool = current
        self.canvas.setMapTool(self._tool)

    def set_rectangle(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rect`` (in ``crs``) as the drawn extent and show it on the canvas."""
        self.rect = QgsRectangle(rect)
        self.crs = QgsCoordinateReferenceSystem(crs)
        self.show_band()
        self.drawn.emit()

    def _on_extent(self, rect: QgsRectangle) -> None:
        if rect.isEmpty():
            return
        self.set_rectangle(rect, self.canvas.mapSettings().destinationCrs())
        self._tool.clearRubberBand()
        self._restore_tool()

    def _restore_tool(self) -> None:
        if self._tool is not None and self.canvas.mapTool() is self._tool:
            if self._previous_tool is not None:
                self.canvas.setMapTool(self._previous_tool)
            else:
                self.canvas.unsetMapTool(self._tool)
        self._previous_tool = None

    def show_band(self) -> None:
        """Show the drawn rectangle on the canvas (nothing before one is drawn)."""
        if self.rect is None:
            return
        if self._band is None:
            self._band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
            self._band.setColor(QColor(255, 127, 0, 220))
            self._band.setFillColor(QColor(255, 127, 0, 30))
            self._band.setWidth(2)
        self._band.setToGeometry(QgsGeometry.fromRect(self.rect), self.crs)

    def hide_band(self) -> None:
        if self._band is not None:
            self._band.reset(QgsWkbTypes.PolygonGeometry)

    def shutdown(self) -> None:
        """Remove the tool and the rubber band from the canvas (plugin unload)."""
        self._restore_tool()
        if self._tool is not None:
            self._tool.deleteLater()
            self._tool = None
        if self._band is not None:
            self.canvas.scene().removeItem(self._band)
            self._band = None


def extent_for(
    choice: str,
    layer: QgsRasterLayer,
    canvas: QgsMapCanvas,
    picker: ExtentPicker,
    project: Optional[QgsProject] = None,
) -> Optional[QgsRectangle]:
    """The extent to process in the layer's CRS (``None`` for the whole layer).

    Raises :class:`~rrsis_qgis.layers.LayerInputError` when the extent misses the layer or no
    rectangle was drawn.
    """
    if choice == WHOLE_LAYER:
        return None
    if choice == CANVAS:
        return extent_in_layer_crs(canvas.extent(), canvas.mapSettings().destinationCrs(), layer, project)
    if choice == DRAWN:
        if picker.rect is None:
            raise LayerInputError("no rectangle drawn yet: click 'Draw' and drag a rectangle on the map")
        return extent_in_layer_crs(picker.rect, picker.crs, layer, project)
    raise ValueError(f"unknown extent choice {choice!r}")
