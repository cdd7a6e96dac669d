"""rrsis QGIS plugin: segment a raster by an English referring expression.

The plugin drives the :mod:`rrsis_geo` library (tiling, inference and polygonising live there).
Importing this package is cheap and never needs torch: the heavy packages are imported only
when a run starts, so the plugin loads (and explains what is missing) without them.
"""

import os
import sys

from .paths import activate_bundled_libraries

activate_bundled_libraries()

# Idle OpenMP threads must sleep, not spin, inside a desktop application: spinning torch threads
# compete with QGIS's own and made the model several times slower on busy CPUs. Only effective
# before torch is imported (a value the user set is kept).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """QGIS plugin entry point."""
    from .plugin import RRSISPlugin

    return RRSISPlugin(iface)
