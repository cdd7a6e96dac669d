"""The ``rrsis`` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import icon_path


class RRSISProvider(QgsProcessingProvider):
    """Holds the algorithms of the plugin (one for now: ``rrsis:segment``)."""

    def id(self) -> str:  # noqa: D401 - QGIS API
        return "rrsis"

    def name(self) -> str:
        return "Referring segmentation"

    def longName(self) -> str:
        return "Referring remote sensing image segmentation (rrsis)"

    def icon(self) -> QIcon:
        return QIcon(str(icon_path()))

    def loadAlgorithms(self) -> None:
        from .algorithm import SegmentAlgorithm

        self.addAlgorithm(SegmentAlgorithm())
