"""rrsis QGIS plugin: segment a raster by an English referring expression.

In QGIS the plugin is PyQt/PyQGIS code only: the :mod:`rrsis_geo` library (tiling, inference,
polygonising) runs in a worker process (:mod:`rrsis_qgis.worker`, see README.md), which imports
this package too. Importing it is cheap: standard library only, no QGIS needed.
"""

import os
import sys

from .paths import activate_bundled_libraries

activate_bundled_libraries()

# In the worker: idle OpenMP threads must sleep, not spin, next to a desktop application:
# spinning torch threads compete with QGIS's own and made the model several times slower on busy
# CPUs. Only effective before torch is imported (a value the user set is kept).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """QGIS plugin entry point."""
    from .plugin import RRSISPlugin

    return RRSISPlugin(iface)
