"""rrsis QGIS plugin: segment a raster by an English referring expression.

The plugin drives the :mod:`rrsis_geo` library (tiling, inference and polygonising live there).
Importing this package is cheap and never needs torch: the heavy packages are imported only
when a run starts, so the plugin loads (and explains what is missing) without them.
"""

from .paths import activate_bundled_libraries

activate_bundled_libraries()


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """QGIS plugin entry point."""
    from .plugin import RRSISPlugin

    return RRSISPlugin(iface)
