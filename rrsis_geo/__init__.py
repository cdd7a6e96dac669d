"""rrsis_geo: referring remote sensing image segmentation over georeferenced rasters.

::

    import rrsis_geo
    seg = rrsis_geo.load_model()                 # the default checkpoint, CUDA if available
    gdf = rrsis_geo.predict("scene.tif", ["building along the road"], segmenter=seg,
                            output="buildings.gpkg")
    rrsis_geo.explain("houses").message          # "'houses' understood as building (nearest: ...)"

The heavy modules (torch, rasterio, geopandas) are imported on first use of :func:`predict`,
:func:`load_model` or :class:`Segmenter`, so that importing the package (e.g. when QGIS loads the
plugin) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Cancelled, RRSISError

__version__ = "0.1.0"

__all__ = [
    "Cancelled", "PredictOptions", "RRSISError", "Segmenter", "explain", "load_model", "plan", "predict", "__version__"
]

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PredictOptions, plan, predict
    from .understanding import explain
    from .segmenter import Segmenter, load_model

_LAZY = {
    "predict": ("rrsis_geo.pipeline", "predict"),
    "PredictOptions": ("rrsis_geo.pipeline", "PredictOptions"),
    "plan": ("rrsis_geo.pipeline", "plan"),
    "explain": ("rrsis_geo.understanding", "explain"),
    "load_model": ("rrsis_geo.segmenter", "load_model"),
    "Segmenter": ("rrsis_geo.segmenter", "Segmenter"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rrsis_geo' has no attribute {name!r}")
