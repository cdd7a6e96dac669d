"""A minimal QGIS desktop for running the plugin outside the QGIS application.

:class:`MiniDesktop` implements the part of ``QgisInterface`` (``iface``) the plugin uses, with
real QGIS widgets: a ``QMainWindow`` holding a ``QgsMapCanvas`` bridged to the project's layer
tree, a ``QgsMessageBar``, a layers panel, a raster toolbar and a Raster menu. The plugin's tests
and ``scripts/screenshot_dock.py`` use it; it is not part of the packaged plugin.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from qgis.core import QgsLayerTreeModel, QgsMapLayer, QgsProject
from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsLayerTreeView, QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QMainWindow, QMenu, QToolBar, QVBoxLayout, QWidget


class MiniDesktop(QObject):
    """The ``iface`` subset the plugin needs (see module docstring)."""

    currentLayerChanged = pyqtSignal(object)

    def __init__(self, project: Optional[QgsProject] = None, size=(1280, 800)) -> None:
        super().__init__()
        self.project = project or QgsProject.instance()
        self.window = QMainWindow()
        self.window.setObjectName("QgisApp")
        self.window.setWindowTitle("QGIS (rrsis standalone desktop)")
        self.window.resize(*size)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.message_bar = QgsMessageBar()
        self.canvas = QgsMapCanvas()
        self.canvas.setCanvasColor(QColor(255, 255, 255))
        self.canvas.setDestinationCrs(self.project.crs())
        layout.addWidget(self.message_bar)
        layout.addWidget(self.canvas, 1)
        self.window.setCentralWidget(central)
        self.bridge = QgsLayerTreeMapCanvasBridge(self.project.layerTreeRoot(), self.canvas)

        self.layer_view = QgsLayerTreeView()
        self.layer_view.setModel(QgsLayerTreeModel(self.project.layerTreeRoot(), self))
        self.layers_dock = QDockWidget("Layers")
        self.layers_dock.setObjectName("Layers")
        self.layers_dock.setWidget(self.layer_view)
        self.window.addDockWidget(Qt.LeftDockWidgetArea, self.layers_dock)
        self.layer_view.currentLayerChanged.connect(self._current_layer_changed)

        self.raster_menu = QMenu("&Raster", self.window)
        self.plugins_menu = QMenu("&Plugins", self.window)
        self.window.menuBar().addMenu(self.raster_menu)
        self.window.menuBar().addMenu(self.plugins_menu)
        self.raster_toolbar = QToolBar("Raster Toolbar", self.window)
        self.plugin_toolbar = QToolBar("Plugins Toolbar", self.window)
        self.window.addToolBar(self.raster_toolbar)
        self.window.addToolBar(self.plugin_toolbar)
        self._submenus: Dict[int, Dict[str, QMenu]] = {}
        self.docks: List[QDockWidget] = []

    # ---- windows -------------------------------------------------------------------------
    def mainWindow(self) -> QMainWindow:  # noqa: N802 - QgisInterface API
        return self.window

    def mapCanvas(self) -> QgsMapCanvas:  # noqa: N802
        return self.canvas

    def messageBar(self) -> QgsMessageBar:  # noqa: N802
        return self.message_bar

    def layerTreeView(self) -> QgsLayerTreeView:  # noqa: N802
        return self.layer_view

    def addDockWidget(self, area, dock: QDockWidget) -> None:  # noqa: N802
        self.window.addDockWidget(area, dock)
        self.docks.append(dock)

    def removeDockWidget(self, dock: QDockWidget) -> None:  # noqa: N802
        self.window.removeDockWidget(dock)
        if dock in self.docks:
            self.docks.remove(dock)

    # ---- layers --------------------------------------------------------------------------
    def activeLayer(self) -> Optional[QgsMapLayer]:  # noqa: N802
        return self.layer_view.currentLayer()

    def setActiveLayer(self, layer: QgsMapLayer) -> bool:  # noqa: N802
        self.layer_view.setCurrentLayer(layer)
        return self.layer_view.currentLayer() is layer

    def _current_layer_changed(self, layer) -> None:
        self.currentLayerChanged.emit(layer)

    def zoomToLayer(self, layer: QgsMapLayer) -> None:  # noqa: N802 - convenience for scripts
        from qgis.core import QgsCoordinateTransform

        transform = QgsCoordinateTransform(layer.crs(), self.canvas.mapSettings().destinationCrs(), self.project)
        self.canvas.setExtent(transform.transformBoundingBox(layer.extent()))
        self.canvas.refresh()

    # ---- menus and toolbars --------------------------------------------------------------
    def _submenu(self, menu: QMenu, name: str) -> QMenu:
        menus = self._submenus.setdefault(id(menu), {})
        if name not in menus:
            menus[name] = menu.addMenu(name)
        return menus[name]

    def _remove_from_submenu(self, menu: QMenu, name: str, action: QAction) -> None:
        menus = self._submenus.get(id(menu), {})
        submenu = menus.get(name)
        if submenu is None:
            return
        submenu.removeAction(action)
        if not submenu.actions():  # QGIS removes a plugin submenu once it is empty
            menu.removeAction(submenu.menuAction())
            del menus[name]

    def addPluginToRasterMenu(self, name: str, action: QAction) -> None:  # noqa: N802
        self._submenu(self.raster_menu, name).addAction(action)

    def removePluginRasterMenu(self, name: str, action: QAction) -> None:  # noqa: N802
        self._remove_from_submenu(self.raster_menu, name, action)

    def addPluginToMenu(self, name: str, action: QAction) -> None:  # noqa: N802
        self._submenu(self.plugins_menu, name).addAction(action)

    def removePluginMenu(self, name: str, action: QAction) -> None:  # noqa: N802
        self._remove_from_submenu(self.plugins_menu, name, action)

    def addRasterToolBarIcon(self, action: QAction) -> None:  # noqa: N802
        self.raster_toolbar.addAction(action)

    def removeRasterToolBarIcon(self, action: QAction) -> None:  # noqa: N802
        self.raster_toolbar.removeAction(action)

    def addToolBarIcon(self, action: QAction) -> None:  # noqa: N802
        self.plugin_toolbar.addAction(action)

    def removeToolBarIcon(self, action: QAction) -> None:  # noqa: N802
        self.plugin_toolbar.removeAction(action)

    # ---- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the window and forget the canvas bridge (call before clearing the project)."""
        self.window.close()
        self.window.deleteLater()
