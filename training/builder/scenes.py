"""Scenes: an image raster and its label raster, checked against each other and the class mapping.

* :func:`inspect_scene` opens both files (metadata only) and checks size, georeference and ground
  sample distance, so that every scene of a build is vetted before any pixel is read.
* :func:`read_class_map` decodes the label raster into a class map (``0`` = ignored/nodata,
  ``i`` = the ``i``-th non-ignored class of ``classes.yaml``), refusing values or colours the
  mapping does not list.
* :func:`read_rgb` reads an image window as RGB ``uint8``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from rrsis_geo.errors import InputError, RasterError
from training.builder.config import SPLITS, BuilderConfig, format_color
from training.builder.tiling import CropWindow

REGION = "region"  # a scene without a split of its own: split by region blocks


@dataclass(frozen=True)
class SceneSpec:
    """One scene to build from: image, labels, which split (or ``"region"``), optional name/GSD."""

    image: Path
    labels: Path
    split: str = REGION
    name: str | None = None
    gsd_m: float | None = None

    def __post_init__(self) -> None:
        if self.split not in (*SPLITS, REGION):
            raise InputError(f"scene {self.image}: split {self.split!r} must be one of "
                             f"{', '.join((*SPLITS, REGION))}")


@dataclass(frozen=True)
class SceneInfo:
    """A vetted scene: its name, size, georeference and ground sample distance."""

    spec: SceneSpec
    name: str
    height: int
    width: int
    crs: CRS | None
    transform: Affine
    georeferenced: bool
    gsd_m: float
    gsd_source: str
    image_stretch: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False)

    def crop_transform(self, window: CropWindow, output_size: int) -> Affine:
        """Affine transform of ``window`` resampled to ``output_size`` × ``output_size`` pixels."""
        base = self.transform @ Affine.translation(window.col_off, window.row_off)
        return base @ Affine.scale(window.width / output_size, window.height / output_size)


def scene_name(text: str) -> str:
    """A name safe inside sample ids (no spaces: ids are the first word of a phrase line)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return name or "scene"


def _open(path: Path, what: str):
    if not path.exists():
        raise RasterError(f"{what} {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(f"{what} {path} cannot be opened as a raster ({exc}); give a GeoTIFF, "
                          "PNG or another GDAL-readable file") from exc


def _is_georeferenced(src) -> bool:
    return src.crs is not None or not src.transform.almost_equals(Affine.identity())


def ground_sample_distance(crs: CRS, transform: Affine, height: int, width: int) -> float:
    """Mean pixel size in metres: projected units converted with their factor; geographic
    degrees converted at the scene's centre latitude."""
    px_x = math.hypot(transform.a, transform.d)
    px_y = math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        lat = transform.d * width / 2 + transform.e * height / 2 + transform.f
        phi = math.radians(lat)
        m_per_deg_lat = 111_132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
        m_per_deg_lon = 111_412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
        return (px_x * m_per_deg_lon + px_y * m_per_deg_lat) / 2
    try:
        factor = crs.linear_units_factor[1]
    except Exception as exc:  # rasterio raises CRSError for CRSs without linear units
        raise RasterError(f"the CRS {crs.to_string()} has no linear unit; give the pixel size "
                          "with --gsd METRES") from exc
    return (px_x + px_y) / 2 * factor


def inspect_scene(spec: SceneSpec, config: BuilderConfig, gsd_m: float | None = None) -> SceneInfo:
    """Check that image and labels exist, match in size and georeference, and that the GSD is
    known (from the CRS, or ``spec.gsd_m`` / ``gsd_m`` which take precedence)."""
    with _open(Path(spec.image), "image") as img, _open(Path(spec.labels), "label raster") as lab:
        if (img.height, img.width) != (lab.height, lab.width):
            raise RasterError(f"image {spec.image} is {img.width}×{img.height} px but labels "
                              f"{spec.labels} are {lab.width}×{lab.height}; they must cover the "
                              "same pixels")
        img_geo, lab_geo = _is_georeferenced(img), _is_georeferenced(lab)
        if img_geo and lab_geo:
            same_crs = (img.crs is None and lab.crs is None) or (
                img.crs is not None and lab.crs is not None and img.crs == lab.crs)
            pixel = max(abs(img.transform.a), abs(img.transform.e), 1e-12)
            same_transform = img.transform.almost_equals(lab.transform, precision=pixel * 1e-3)
            if not (same_crs and same_transform):
                raise RasterError(
                    f"image {spec.image} and labels {spec.labels} have different georeferences "
                    f"(CRS {img.crs} vs {lab.crs}; transform {tuple(img.transform)[:6]} vs "
                    f"{tuple(lab.transform)[:6]}); resample the labels onto the image grid first")
        # A label image without any georeference (e.g. a PNG) is taken as pixel-aligned.
        ref = img if img_geo else lab
        crs, transform, georeferenced = ref.crs, ref.transform, img_geo or lab_geo
        _check_bands(img, lab, spec, config)
        stretch = _stretch_for(img)
        height, width = img.height, img.width

    override = spec.gsd_m if spec.gsd_m is not None else gsd_m
    if override is not None:
        if not override > 0:
            raise InputError(f"scene {spec.image}: the ground sample distance must be > 0 m")
        gsd, source = float(override), "given"
    elif crs is not None:
        gsd, source = ground_sample_distance(crs, transform, height, width), "crs"
        if crs.is_geographic:
            source = "crs (geographic, converted at the centre latitude)"
    else:
        raise RasterError(f"image {spec.image} has no CRS, so its pixel size in metres is unknown "
                          "and relation buffers cannot be converted; pass --gsd METRES (or 'gsd' "
                          "for this scene in the scenes file)")
    name = scene_name(spec.name or Path(spec.image).stem)
    return SceneInfo(spec=spec, name=name, height=height, width=width, crs=crs,
                     transform=transform, georeferenced=georeferenced, gsd_m=gsd,
                     gsd_source=source, image_stretch=stretch)


def _check_bands(img, lab, spec: SceneSpec, config: BuilderConfig) -> None:
    if img.count == 2 or img.count < 1:
        raise RasterError(f"image {spec.image} has {img.count} bands; give an RGB (3+ bands, the "
                          "first three are used) or a single-band image")
    if config.encoding == "rgb":
        palette = lab.count == 1 and lab.colorinterp[0] == ColorInterp.palette
        if lab.count < 3 and not palette:
            raise RasterError(f"labels {spec.labels} have {lab.count} band(s) and no palette, but "
                              f"{config.source} lists colours; give an RGB or palette label image, "
                              "or list classes with 'value:' for integer labels")
    elif lab.count != 1:
        raise RasterError(f"labels {spec.labels} have {lab.count} bands, but {config.source} lists "
                          "integer values; give a single-band label raster, or list classes with "
                          "'color:' for colour-coded labels")
    elif np.dtype(lab.dtypes[0]).kind not in "iu":
        raise RasterError(f"labels {spec.labels} are {lab.dtypes[0]}; class labels must be integers")


def _stretch_for(img) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-band 2–98 % range of a decimated read, for images that are not 8-bit."""
    if img.dtypes[0] == "uint8":
        return None
    bands = [1, 1, 1] if img.count == 1 else [1, 2, 3]
    scale = max(1, max(img.height, img.width) // 1024)
    sample = img.read(bands, out_shape=(3, max(1, img.height // scale), max(1, img.width // scale)),
                      masked=True).astype("float64")
    lo = np.array([np.percentile(b.compressed(), 2) if b.count() else 0.0 for b in sample])
    hi = np.array([np.percentile(b.compressed(), 98) if b.count() else 1.0 for b in sample])
    return lo, np.maximum(hi, lo + 1e-9)


def read_rgb(src, info: SceneInfo, window: CropWindow) -> np.ndarray:
    """The window of an open image dataset as ``H × W × 3`` uint8 (8-bit kept as is, other
    types stretched linearly from the scene's 2–98 % range)."""
    bands = [1, 1, 1] if src.count == 1 else [1, 2, 3]
    data = src.read(bands, window=Window(window.col_off, window.row_off, window.width, window.height))
    if info.image_stretch is not None:
        lo, hi = info.image_stretch
        scaled = (data.astype("float64") - lo[:, None, None]) / (hi - lo)[:, None, None]
        data = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(data, 0, -1))


def open_image(info: SceneInfo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(info.spec.image)


def read_class_map(info: SceneInfo, config: BuilderConfig) -> np.ndarray:
    """Decode the whole label raster into a class map; unknown values/colours are an error."""
    index = config.class_index()
    dtype = np.uint8 if len(index) < 255 else np.uint16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(info.spec.labels) as lab:
            if config.encoding == "rgb":
                keys, nodata = _read_packed_rgb(lab), None
            else:
                keys, nodata = lab.read(1), lab.nodata
    out = np.zeros(keys.shape, dtype=dtype)
    known = np.zeros(keys.shape, dtype=bool)
    for spec in config.classes:
        value = 0 if spec.ignore else index[spec.name]
        for key in (spec.colors if config.encoding == "rgb" else spec.values):
            hit = keys == key
            out[hit] = value
            known |= hit
    if nodata is not None and not math.isnan(nodata):
        known |= keys == nodata  # declared nodata: ignored
    if not known.all():
        values, counts = np.unique(keys[~known], return_counts=True)
        order = np.argsort(counts)[::-1][:8]
        shown = ", ".join(
            f"{format_color(int(values[i])) if config.encoding == 'rgb' else int(values[i])} "
            f"({int(counts[i])} px)" for i in order)
        hint = (" Colour-coded labels must be stored losslessly (PNG/TIFF, not JPEG)."
                if config.encoding == "rgb" else "")
        raise InputError(f"labels {info.spec.labels} contain {len(values)} value(s) not listed in "
                         f"{config.source}: {shown}. Add them to 'classes' (with 'ignore: true' to "
                         f"leave them out of every expression).{hint}")
    return out


def _read_packed_rgb(lab) -> np.ndarray:
    """Label image as packed 0xRRGGBB (palette images expanded through their colour table)."""
    if lab.count == 1:
        indices = lab.read(1)
        colormap = lab.colormap(1)
        table = np.zeros(max(256, int(indices.max()) + 1), dtype=np.uint32)
        for i, (r, g, b, *_rest) in colormap.items():
            if i < len(table):
                table[i] = (r << 16) | (g << 8) | b
        return table[indices]
    rgb = lab.read([1, 2, 3]).astype(np.uint32)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
