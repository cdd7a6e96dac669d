"""QGIS entry point: the toolbar button and menu entry, the dock, the Processing provider."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .paths import icon_path

MENU = "&Referring segmentation"


class RRSISPlugin:
    """Created by QGIS through :func:`rrsis_qgis.classFactory`."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: Optional[QAction] = None
        self.dock = None
        self.provider = None

    def initProcessing(self) -> None:
        """Register the Processing provider (QGIS also calls this for qgis_process, without a GUI)."""
        if self.provider is not None:
            return
        from .processing.provider import RRSISProvider

        self.provider = RRSISProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Add the action (raster toolbar + Raster menu) and the hidden dock."""
        from .dock import SegmentDock

        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.action = QAction(QIcon(str(icon_path())), "Referring segmentation", main_window)
        self.action.setObjectName("rrsisShowDock")
        self.action.setToolTip("Segment a raster by an English expression (rrsis)")
        self.action.setCheckable(True)
        self.iface.addRasterToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

        self.dock = SegmentDock(self.iface, main_window)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.action.toggled.connect(self.dock.setUserVisible)
        self.dock.visibilityChanged.connect(self.action.setChecked)

    def unload(self) -> None:
        """Remove everything initGui/initProcessing added."""
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
