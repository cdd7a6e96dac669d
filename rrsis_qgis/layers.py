"""QGIS layers in and out of the library.

In: a raster layer becomes a file the library can read. A layer backed by a GDAL file is read from
its source; any other layer (WMS, XYZ, virtual raster, ...) is exported for the chosen extent to a
temporary GeoTIFF first (:class:`RasterExport`), rendered to RGB(A) when the provider only delivers
rendered images (WMS/XYZ), raw values otherwise.

Out: the GeoPackage the library wrote (one layer per expression) is loaded as vector layers named
after the expressions, styled with ``resources/styles/result.qml``, into a layer-tree group. A
*temporary* result is copied into memory layers (QGIS's own notion of a temporary layer, with its
"make permanent" button) so that no file is left behind.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsFeatureRequest,
    QgsMapLayerType,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from .paths import style_path

#: Largest export the plugin attempts (pixels); a bigger one needs a smaller extent or a coarser
#: resolution. 8192² RGBA is 256 MiB on disk, the size of a large aerial scene.
MAX_EXPORT_PIXELS = 8192 * 8192

#: Fill colours of successive result layers (the QML's alpha is kept).
PALETTE = ("#ff7f00", "#1f78b4", "#e31a1c", "#33a02c", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99")

_RENDERED_TYPES = {Qgis.ARGB32, Qgis.ARGB32_Premultiplied}


class LayerInputError(Exception):
    """A layer or extent the plugin cannot turn into a scene; the message says what to do."""


# --------------------------------------------------------------------------------------------- in


def file_source(layer: QgsRasterLayer) -> Optional[str]:
    """The GDAL dataset name a file-backed raster layer reads, else ``None``.

    QGIS appends provider options after ``|`` (e.g. ``scene.tif|option:...``); GDAL does not know
    them. GDAL virtual file systems (``/vsizip/...``) and subdataset strings are kept as they are:
    the worker's rasterio opens them just as GDAL does.
    """
    provider = layer.dataProvider()
    if provider is None or provider.name() != "gdal":
        return None
    source = layer.source().split("|", 1)[0]
    if os.path.isfile(source) or source.startswith("/vsi") or (":" in source and not os.path.isabs(source)):
        return source
    return None


def parse_bands(text: str, front_end: str = "dock") -> Optional[List[int]]:
    """``"4,3,2"`` -> ``[4, 3, 2]``; empty -> ``None`` (the library chooses); the library's
    schema parses it, the error is worded for ``front_end`` (dock or processing)."""
    from rrsis_geo.errors import InputError
    from rrsis_geo.options import describe
    from rrsis_geo.options import parse_bands as parse

    try:
        return parse(text)
    except InputError as exc:
        raise LayerInputError(describe(exc, front_end)) from None


def extent_in_layer_crs(
    rect: QgsRectangle,
    rect_crs: QgsCoordinateReferenceSystem,
    layer: QgsRasterLayer,
    project: Optional[QgsProject] = None,
) -> QgsRectangle:
    """``rect`` (in ``rect_crs``) as a rectangle in the layer's CRS, clipped to the layer extent."""
    project = project or QgsProject.instance()
    if rect_crs.isValid() and layer.crs().isValid() and rect_crs != layer.crs():
        transform = QgsCoordinateTransform(rect_crs, layer.crs(), project.transformContext())
        try:
            rect = transform.transformBoundingBox(rect)
        except QgsCsException as exc:
            raise LayerInputError(
                f"the chosen extent cannot be expressed in the CRS of layer '{layer.name()}' ({exc}); "
                "zoom in on the layer or choose 'whole layer'"
            ) from exc
    clipped = rect.intersect(layer.extent())
    if clipped.isEmpty() or clipped.width() <= 0 or clipped.height() <= 0:
        raise LayerInputError(
            f"the chosen extent does not overlap layer '{layer.name()}'; pan the map over the layer "
            "or choose 'whole layer'"
        )
    return clipped


def _is_rendered(provider: QgsRasterDataProvider) -> bool:
    """WMS/XYZ-like providers deliver rendered ARGB images, not data values."""
    return provider.bandCount() >= 1 and provider.dataType(1) in _RENDERED_TYPES


def native_resolution(provider: QgsRasterDataProvider, extent: QgsRectangle) -> Optional[float]:
    """Map units per pixel at which exporting ``extent`` keeps the provider's own detail.

    A provider with a size (GDAL, virtual raster) has one resolution. A tiled service (XYZ, WMTS)
    has a list: the finest one whose export stays under :data:`MAX_EXPORT_PIXELS` is chosen.
    """
    if provider.capabilities() & QgsRasterDataProvider.Size and provider.xSize() > 0:
        return provider.extent().width() / provider.xSize()
    resolutions = sorted(r for r in provider.nativeResolutions() if r > 0)
    for resolution in resolutions:
        if (extent.width() / resolution) * (extent.height() / resolution) <= MAX_EXPORT_PIXELS:
            return resolution
    return resolutions[-1] if resolutions else None


def _snap_to_grid(extent: QgsRectangle, origin: QgsRectangle, resolution: float) -> QgsRectangle:
    """Grow ``extent`` outwards to whole pixels of the grid anchored at ``origin``'s top left."""
    x0 = origin.xMinimum() + math.floor((extent.xMinimum() - origin.xMinimum()) / resolution + 1e-9) * resolution
    x1 = origin.xMinimum() + math.ceil((extent.xMaximum() - origin.xMinimum()) / resolution - 1e-9) * resolution
    y1 = origin.yMaximum() - math.floor((origin.yMaximum() - extent.yMaximum()) / resolution + 1e-9) * resolution
    y0 = origin.yMaximum() - math.ceil((origin.yMaximum() - extent.yMinimum()) / resolution - 1e-9) * resolution
    return QgsRectangle(x0, y0, x1, y1).intersect(origin)


@dataclass
class RasterExport:
    """Everything needed to write a layer's extent to GeoTIFF off the main thread.

    Built on the main thread by :func:`plan_raster_input` (the provider and renderer are cloned
    there, as QGIS requires); :meth:`write` may run in a worker thread. The clones are QGIS objects
    of the main thread, so they are also destroyed there: :meth:`write` keeps the pipe that owns
    them, and :meth:`release` (main thread, e.g. a task's ``finished()``) lets them go. Left to
    Python, they would be deleted by whichever thread dropped the last reference (or collected a
    reference cycle holding it): a provider deleted on a task thread while the GUI thread may still
    deliver its events.
    """

    provider: QgsRasterDataProvider
    renderer: object  # QgsRasterRenderer clone when rendered, else None
    extent: QgsRectangle
    width: int
    height: int
    crs: QgsCoordinateReferenceSystem
    transform_context: QgsCoordinateTransformContext
    layer_name: str
    #: the pipe of a written export (it owns the clones), until :meth:`release`
    pipe: Optional[QgsRasterPipe] = field(default=None, repr=False)

    @property
    def rendered(self) -> bool:
        return self.renderer is not None

    def release(self) -> None:
        """Let the clones go (main thread only; the export cannot be written afterwards)."""
        self.pipe = self.provider = self.renderer = None

    def write(self, path: str, feedback: Optional[QgsRasterBlockFeedback] = None) -> str:
        """Write the GeoTIFF; raise :class:`LayerInputError` if QGIS cannot."""
        if self.provider is None or self.pipe is not None:
            raise RuntimeError("RasterExport.write() can run only once, before release()")
        self.pipe = pipe = QgsRasterPipe()  # kept: destroyed on the main thread by release()
        provider, self.provider = self.provider, None  # the pipe takes ownership
        if not pipe.set(provider):
            raise LayerInputError(f"layer '{self.layer_name}' cannot be read for export")
        if self.renderer is not None and not pipe.set(self.renderer):
            raise LayerInputError(f"layer '{self.layer_name}' cannot be rendered for export")
        self.renderer = None
        writer = QgsRasterFileWriter(path)
        writer.setOutputFormat("GTiff")
        writer.setCreateOptions(["TILED=YES", "BIGTIFF=IF_SAFER"])
        status = writer.writeRaster(
            pipe, self.width, self.height, self.extent, self.crs, self.transform_context, feedback
        )
        if feedback is not None and feedback.isCanceled():
            return path
        if status != QgsRasterFileWriter.NoError:
            raise LayerInputError(
                f"exporting layer '{self.layer_name}' to GeoTIFF failed (QGIS writer error {int(status)}); "
                "check that the service answers, or save the layer as a GeoTIFF and use that"
            )
        return path


@dataclass
class RasterInput:
    """A layer as the library will read it: a file path, or an export to do first.

    ``bbox`` is the extent to process in the scene's CRS (``None``: all of it).
    """

    layer_name: str
    path: Optional[str] = None
    export: Optional[RasterExport] = None
    bbox: Optional[tuple] = None

    @property
    def needs_export(self) -> bool:
        return self.export is not None


def plan_raster_input(
    layer: QgsRasterLayer,
    extent: Optional[QgsRectangle] = None,
    resolution: Optional[float] = None,
    fallback_resolution: Optional[float] = None,
) -> RasterInput:
    """Decide how the library gets ``layer`` (main thread only).

    ``extent`` is in the layer's CRS (``None``: whole layer). ``resolution`` (map units per pixel)
    applies to exported layers only; ``None`` means native, then ``fallback_resolution`` (e.g. the
    canvas's) for services that have no native resolution.
    """
    if layer is None or not layer.isValid():
        raise LayerInputError("choose a valid raster layer")
    path = file_source(layer)
    if path is not None:
        bbox = None
        if extent is not None:
            bbox = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        return RasterInput(layer.name(), path=path, bbox=bbox)

    provider = layer.dataProvider()
    full = layer.extent()
    wanted = QgsRectangle(full) if extent is None else extent.intersect(full)
    if wanted.isEmpty():
        raise LayerInputError(f"the chosen extent does not overlap layer '{layer.name()}'")
    res = resolution or native_resolution(provider, wanted) or fallback_resolution
    if not res or res <= 0:
        raise LayerInputError(
            f"layer '{layer.name()}' has no native resolution; set an export resolution in map units per pixel"
        )
    rendered = _is_rendered(provider)
    if not rendered and provider.capabilities() & QgsRasterDataProvider.Size and resolution is None:
        wanted = _snap_to_grid(wanted, full, res)  # native grid: no resampling of the values
    width = max(1, int(round(wanted.width() / res)))
    height = max(1, int(round(wanted.height() / res)))
    if width * height > MAX_EXPORT_PIXELS:
        raise LayerInputError(
            f"exporting layer '{layer.name()}' at {res:g} map units/pixel would give {width}×{height} "
            "pixels; choose a smaller extent or a coarser export resolution"
        )
    export = RasterExport(
        provider=provider.clone(),
        renderer=layer.renderer().clone() if rendered and layer.renderer() else None,
        extent=wanted,
        width=width,
        height=height,
        crs=layer.crs(),
        transform_context=QgsProject.instance().transformContext(),
        layer_name=layer.name(),
    )
    return RasterInput(layer.name(), export=export)


# -------------------------------------------------------------------------------------------- out


def gpkg_layer_names(path: str) -> List[str]:
    """Names of the vector layers in a GeoPackage, in file order."""
    details = QgsProviderRegistry.instance().querySublayers(path)
    return [d.name() for d in details if d.type() == QgsMapLayerType.VectorLayer]


def _expression_of(layer: QgsVectorLayer) -> Optional[str]:
    index = layer.fields().indexOf("expression")
    if index < 0:
        return None
    for feature in layer.getFeatures(QgsFeatureRequest().setLimit(1)):
        value = feature[index]
        return str(value) if value is not None else None
    return None


def open_result_layers(
    path: str, expressions: Sequence[str] = (), layer_expressions: Optional[Dict[str, str]] = None
) -> List[QgsVectorLayer]:
    """Open every layer of the library's GeoPackage, named after its expression.

    The expression is read from the layer's ``expression`` attribute; an empty layer (nothing
    found) takes it from ``layer_expressions`` (GeoPackage layer name -> expression, as the
    worker's ``result`` message lists them), else keeps its own name. Layers come back in the
    order of ``expressions``.
    """
    by_name = dict(layer_expressions or {})
    layers = []
    for name in gpkg_layer_names(path):
        layer = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
        if not layer.isValid():
            continue
        layer.setName(_expression_of(layer) or by_name.get(name, name))
        layers.append(layer)
    order = {e: i for i, e in enumerate(expressions)}
    layers.sort(key=lambda lyr: order.get(lyr.name(), len(order)))
    return layers


def apply_result_style(layer: QgsVectorLayer, index: int = 0) -> None:
    """The plugin's QML style (semi-transparent fill, outline), coloured by result index."""
    message, ok = layer.loadNamedStyle(str(style_path()))
    if not ok:
        raise LayerInputError(f"the result style {style_path()} cannot be loaded: {message}")
    renderer = layer.renderer()
    symbol = renderer.symbol() if renderer is not None and hasattr(renderer, "symbol") else None
    if symbol is None:
        return
    colour = QColor(PALETTE[index % len(PALETTE)])
    fill = QColor(colour)
    fill.setAlpha(symbol.color().alpha())
    symbol.setColor(fill)
    outline = symbol.symbolLayer(0)
    if hasattr(outline, "setStrokeColor"):
        outline.setStrokeColor(colour.darker(130))
    layer.triggerRepaint()


def add_results(
    gpkg_path: str,
    expressions: Sequence[str],
    *,
    temporary: bool,
    project: Optional[QgsProject] = None,
    group_name: str = "rrsis results",
    layer_expressions: Optional[Dict[str, str]] = None,
) -> List[QgsVectorLayer]:
    """Load the library's GeoPackage into ``project`` as styled layers; return them.

    ``temporary``: copy the features into memory layers so that ``gpkg_path`` can be deleted.
    ``layer_expressions``: see :func:`open_result_layers`.
    """
    project = project or QgsProject.instance()
    loaded = []
    for index, layer in enumerate(open_result_layers(gpkg_path, expressions, layer_expressions)):
        if temporary:
            copy = layer.materialize(QgsFeatureRequest())
            copy.setName(layer.name())
            layer = copy
        apply_result_style(layer, index)
        loaded.append(layer)
    if loaded:
        root = project.layerTreeRoot()
        group = root.findGroup(group_name)
        created = group is None
        if created:
            group = root.insertGroup(0, group_name)
        for position, layer in enumerate(loaded):
            project.addMapLayer(layer, False)
            group.insertLayer(position, layer)
        # a layer tree view may not have followed the node's (unchanged) expanded flag while the
        # group was empty; flipping it makes every view show the new results
        group.setExpanded(False)
        group.setExpanded(True)
    return loaded
