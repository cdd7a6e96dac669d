"""Raster input: open any GDAL raster, choose bands, stretch to 0..1, nodata, ground sample distance.

:class:`RasterSource` describes a scene (it holds no open file handle, so that each reader thread
opens its own: rasterio dataset handles are not thread-safe). Pixels are only ever read by
windows; the whole scene is never loaded.

The stretch maps raw values to 0..1 per band as ``clip((value - low) / (high - low), 0, 1)``:
8-bit bands are used as is (low 0, high 255; without nodata or a mask nothing is read to open
them); other types use the 2nd and 98th percentile of the band's valid pixels, estimated on a
decimated read (an overview when the file has one; else the whole region decimated to 1024 px
when it is at most 2048 px, and a grid of small windows spread over larger ones). Applying it is
the engine's job (on the device).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import Fix, InputError, RasterError, WindowReadError
from .read_faults import block_windows, check_policy, guarded

PathLike = Union[str, "os.PathLike[str]"]
BBox = Tuple[float, float, float, float]

#: value types handed to the engine as is; anything else is converted to float32 by the reader
NATIVE_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")

STRETCH_PERCENTILES = (2.0, 98.0)
FULL_BYTE_RANGE = ((0.0, 255.0),) * 3  # the stretch of 8-bit bands
_SAMPLE_TARGET = 1024  # longer side of the decimated read used for statistics

#: GDAL virtual file systems and URL schemes that reach over a network
_REMOTE = re.compile(r"^(/vsi(curl|curl_streaming|s3|gs|az|adls|oss|swift|webhdfs|hdfs)(_streaming)?/|(https?|ftp|s3|gs|az)://)")
_COLLAPSED_URL = re.compile(r"^((?:/vsicurl(?:_streaming)?/)?(?:https?|ftp)):/(?!/)")


def scene_uri(path: PathLike) -> str:
    """The name to give GDAL for ``path``: a URL squeezed by ``pathlib`` (``http:/host``) gets
    its second slash back, so ``Path('/vsicurl/http://host/a.tif')`` still reaches the host."""
    return _COLLAPSED_URL.sub(r"\1://", os.fspath(path))


def is_remote(uri: str) -> bool:
    """Whether GDAL reads ``uri`` over a network (reads are then retried with backoff)."""
    return bool(_REMOTE.match(uri))


@dataclass(frozen=True)
class Window:
    """A pixel window ``[row_off, row_off+height) x [col_off, col_off+width)`` of the scene."""

    col_off: int
    row_off: int
    width: int
    height: int

    def to_rasterio(self):
        from rasterio.windows import Window as RioWindow

        return RioWindow(self.col_off, self.row_off, self.width, self.height)


@dataclass
class RasterSource:
    """What the pipeline knows about one scene (see :func:`open_raster`)."""

    path: Path
    width: int
    height: int
    count: int
    dtypes: Tuple[str, ...]
    crs: object  # pyproj.CRS or None
    transform: object  # affine.Affine
    nodata: Optional[float]
    bands: Tuple[int, ...]  # 1-based band indexes fed to the model (3 of them)
    colorinterp: Tuple[str, ...]
    driver: str
    overviews: Tuple[int, ...]
    has_mask: bool  # nodata, alpha or mask band present: masks must be read
    region: Window  # the part of the scene to process (all of it unless a bbox was given)
    gsd: Optional[Tuple[float, float]]  # metres per pixel along columns, rows; None without CRS
    stretch: Optional[Tuple[Tuple[float, float], ...]] = field(default=None)  # per band (low, high)
    uri: str = ""  # the name GDAL opens (differs from str(path) for URLs); "" = str(path)
    block: Tuple[int, int] = (256, 256)  # rows, cols of the first model band's blocks

    @property
    def remote(self) -> bool:
        return is_remote(self.uri or str(self.path))

    # ---- derived ---------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.dtypes[self.bands[0] - 1]

    @property
    def read_dtype(self) -> str:
        """dtype of the arrays the reader hands to the engine."""
        dtype = self.dtype
        return dtype if dtype in NATIVE_DTYPES else "float32"

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs is not None and self.crs.is_geographic)

    @property
    def region_transform(self):
        """Affine transform of the processed region's pixel grid."""
        from affine import Affine

        return self.transform @ Affine.translation(self.region.col_off, self.region.row_off)

    def open(self):
        """A new rasterio dataset handle (one per thread)."""
        import rasterio

        if self.remote:
            return RemoteDataset(self.uri)
        return rasterio.open(self.uri or self.path)

    def describe_crs(self) -> str:
        if self.crs is None:
            return "none"
        code = self.crs.to_authority()
        return f"{code[0]}:{code[1]} - {self.crs.name}" if code else self.crs.name


def to_pyproj(crs):
    """A pyproj CRS for a rasterio CRS (by EPSG code when it has one, so it prints as such)."""
    import pyproj

    if crs is None:
        return None
    code = crs.to_epsg(confidence_threshold=100)  # only an exact match, never a look-alike
    if code is not None:
        return pyproj.CRS.from_epsg(code)
    return pyproj.CRS.from_wkt(crs.to_wkt())


def ground_sample_distance(crs, transform, center: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    """Metres per pixel along columns and rows at map position ``center``.

    Projected CRSs use their linear unit; geographic CRSs measure the pixel's sides on the
    ellipsoid (pyproj geodesic) at ``center``. ``None`` when there is no CRS.
    """
    if crs is None:
        return None
    col_vec = (transform.a, transform.d)  # map displacement of one column step
    row_vec = (transform.b, transform.e)
    pcrs = crs if hasattr(crs, "get_geod") else to_pyproj(crs)
    if pcrs.is_geographic:
        geod = pcrs.get_geod()
        lon, lat = center
        out = []
        for dx, dy in (col_vec, row_vec):
            _, _, dist = geod.inv(lon - dx / 2, lat - dy / 2, lon + dx / 2, lat + dy / 2)
            out.append(abs(dist))
        return out[0], out[1]
    factor = 1.0
    try:
        factor = float(pcrs.axis_info[0].unit_conversion_factor)
    except (IndexError, AttributeError, TypeError):
        pass
    return math.hypot(*col_vec) * factor, math.hypot(*row_vec) * factor


def _pick_bands(count: int, colorinterp: Sequence[str], bands: Optional[Sequence[int]], path: Path) -> Tuple[int, ...]:
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) != 3:
            raise InputError(f"give exactly three bands (red, green, blue order), got {len(chosen)}",
                             fix=Fix("bands", example=(4, 3, 2)))
        for band in chosen:
            if not 1 <= band <= count:
                raise InputError(f"band {band} does not exist: {path} has bands 1 to {count}", fix=Fix("bands"))
        return chosen
    if count < 3:
        raise RasterError(
            f"{path} has {count} band{'s' if count != 1 else ''}; the model needs three (RGB)",
            fix=Fix("bands", example=(1, 1, 1), effect="for a grey image"),
        )
    names = [c.lower() for c in colorinterp]
    if all(c in names for c in ("red", "green", "blue")):
        return tuple(names.index(c) + 1 for c in ("red", "green", "blue"))
    return (1, 2, 3)


def window_from_bbox(transform, width: int, height: int, bbox: BBox) -> Optional[Window]:
    """The pixel window covering ``bbox`` (map units), clipped to the scene; None if disjoint."""
    minx, miny, maxx, maxy = bbox
    inverse = ~transform
    cols, rows = [], []
    for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)):
        col, row = inverse @ (x, y)
        cols.append(col)
        rows.append(row)
    eps = 1e-6  # a bbox edge exactly on a pixel edge must not grab the neighbouring pixel
    c0 = max(0, math.floor(min(cols) + eps))
    r0 = max(0, math.floor(min(rows) + eps))
    c1 = min(width, math.ceil(max(cols) - eps))
    r1 = min(height, math.ceil(max(rows) - eps))
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def open_raster(
    path: PathLike,
    *,
    bands: Optional[Sequence[int]] = None,
    bbox: Optional[BBox] = None,
    allow_no_crs: bool = False,
    compute_stretch: bool = True,
    on_read_error: str = "fail",
) -> RasterSource:
    """Open and validate a scene; compute its stretch unless told not to.

    Raises :class:`RasterError` for a missing file, a file GDAL cannot read, a scene without a
    CRS (unless ``allow_no_crs``: coordinates are then the file's own, pixel/line when it has no
    geotransform), fewer than three bands without ``bands``, or a scene whose pixels are all
    nodata; :class:`InputError` for bands that do not exist or a bbox outside the scene. A read
    failure while computing the stretch raises :class:`WindowReadError` (``on_read_error``
    'fail'), or leaves the unreadable windows out of the statistics ('skip').
    """
    # The statistics read each sampled block once: no reason to let GDAL keep hundreds of MB of
    # them. (The cap must be set before the dataset is opened, or rasterio does not restore it.)
    with bounded_block_cache(32 << 20):
        return _open_raster(
            path, bands=bands, bbox=bbox, allow_no_crs=allow_no_crs, compute_stretch=compute_stretch,
            skip=check_policy(on_read_error) == "skip",
        )


def _open_raster(
    path: PathLike,
    *,
    bands: Optional[Sequence[int]],
    bbox: Optional[BBox],
    allow_no_crs: bool,
    compute_stretch: bool,
    skip: bool = False,
) -> RasterSource:
    import rasterio
    from rasterio.enums import MaskFlags

    uri = scene_uri(path)
    remote = is_remote(uri)
    scene = Path(path).expanduser()
    if remote or uri.startswith("/vsi"):
        pass  # not a local path: GDAL says below whether it can be read
    elif not scene.exists():
        raise RasterError(f"scene {scene} does not exist; check the path")
    elif scene.is_dir():
        raise RasterError(f"scene {scene} is a directory; give a raster file (GeoTIFF, JPEG2000, VRT, ...)")
    else:
        uri = str(scene)

    def _open():
        with warnings.catch_warnings():  # a missing CRS is reported below, in our words
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return RemoteDataset(uri) if remote else rasterio.open(uri)

    try:
        ds = guarded(_open, scene=uri, window=None, remote=remote, what="open") if remote else _open()
    except WindowReadError as exc:
        raise RasterError(f"cannot open {uri} ({exc.__cause__}); check the URL and the network") from exc
    except rasterio.errors.RasterioIOError as exc:
        raise RasterError(
            f"{scene} is not a raster GDAL can read ({exc}); give a GeoTIFF or another GDAL raster format"
        ) from exc
    with ds:
        if ds.count == 0:
            raise RasterError(f"{scene} holds no raster bands (is it a container of subdatasets?)")
        crs = ds.crs
        if crs is not None and not crs.to_wkt():
            crs = None
        if crs is None and not allow_no_crs:
            raise RasterError(
                f"{scene} has no coordinate reference system, so polygons cannot be placed on a map. "
                "Assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX)",
                fix=Fix("allow_no_crs", effect="to get polygons in the file's own (pixel) coordinates", alternative=True),
            )
        colorinterp = tuple(ci.name for ci in ds.colorinterp)
        chosen = _pick_bands(ds.count, colorinterp, bands, scene)
        flags = [ds.mask_flag_enums[b - 1] for b in chosen]
        has_mask = any(MaskFlags.all_valid not in f for f in flags) or any(
            np.dtype(ds.dtypes[b - 1]).kind == "f" for b in chosen
        )
        region = Window(0, 0, ds.width, ds.height)
        if bbox is not None:
            found = window_from_bbox(ds.transform, ds.width, ds.height, bbox)
            if found is None:
                b = ds.bounds
                raise InputError(
                    f"the bbox {tuple(bbox)} does not overlap the scene, which covers "
                    f"({b.left:.6g}, {b.bottom:.6g}, {b.right:.6g}, {b.top:.6g}) in its CRS; "
                    "give the bbox in the scene's CRS as minx,miny,maxx,maxy"
                )
            region = found
        crs = to_pyproj(crs)
        cx, cy = ds.transform @ (region.col_off + region.width / 2, region.row_off + region.height / 2)
        source = RasterSource(
            path=scene if remote or uri.startswith("/vsi") else scene.absolute(),
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtypes=tuple(ds.dtypes),
            crs=crs,
            transform=ds.transform,
            nodata=ds.nodata,
            bands=chosen,
            colorinterp=colorinterp,
            driver=ds.driver,
            overviews=tuple(ds.overviews(chosen[0])),
            has_mask=has_mask,
            region=region,
            gsd=ground_sample_distance(crs, ds.transform, (cx, cy)),
            uri=uri,
            block=tuple(ds.block_shapes[chosen[0] - 1]),
        )
        if compute_stretch:
            source.stretch = _compute_stretch(ds, source, skip)
    return source


def _guard(ds, source: RasterSource, window: Window, action):
    # After a remote read failed all its retries, later ones are tried once until one succeeds:
    # a server that is down would otherwise cost the whole backoff for every window.
    failing = bool(getattr(ds, "failing", False))
    try:
        result = guarded(
            action, scene=source.uri or str(source.path), window=window, remote=source.remote and not failing,
            recover=getattr(ds, "reopen", None),
        )
    except WindowReadError:
        if isinstance(ds, RemoteDataset):
            ds.failing = True
        raise
    if failing:
        ds.failing = False
    return result


class RemoteDataset:
    """A rasterio dataset read over a network that can be reopened after a failed read.

    GDAL keeps what a dropped connection delivered (cut short) in the handle and in its
    ``/vsicurl/`` cache, so retrying on the same handle fails again; :meth:`reopen` opens a
    fresh handle with ``CPL_VSIL_CURL_NON_CACHED`` set for this file, which drops its cache.
    Everything else is the dataset's own.
    """

    def __init__(self, uri: str) -> None:
        import rasterio

        self.uri = uri
        self.failing = False  # the last read failed all its retries (see _guard)
        self._ds = rasterio.open(uri)

    def reopen(self) -> None:
        import rasterio

        self._ds.close()
        # GDAL knows a URL given as such by its /vsicurl/ name
        name = f"/vsicurl/{self.uri}" if re.match(r"^(https?|ftp)://", self.uri) else self.uri
        with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=name):
            self._ds = rasterio.open(self.uri)

    def close(self) -> None:
        self._ds.close()

    def __getattr__(self, name: str):
        return getattr(self._ds, name)

    def __enter__(self) -> "RemoteDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sample(ds, source: RasterSource, skip: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """A decimated read of the region: (values[3, N], valid[N])."""
    region = source.region
    longest = max(region.width, region.height)
    if longest <= 2 * _SAMPLE_TARGET or source.overviews:
        try:
            values, valid = _decimated_sample(ds, source)
        except WindowReadError:
            # a damaged block (or overview): the grid below names it, skips it, or misses it
            values, valid = _grid_sample(ds, source, skip)
    else:
        # No overview of a large scene: read a grid of small windows instead of every block.
        values, valid = _grid_sample(ds, source, skip)
    if values.dtype.kind == "f":
        valid = valid & np.isfinite(values).all(axis=0)
    return values, valid


def _decimated_sample(ds, source: RasterSource) -> Tuple[np.ndarray, np.ndarray]:
    from rasterio.enums import Resampling

    region = source.region
    bands = list(source.bands)
    # GDAL serves a decimated read from the best overview when there is one
    scale = min(1.0, _SAMPLE_TARGET / max(region.width, region.height))
    shape = (max(1, round(region.height * scale)), max(1, round(region.width * scale)))
    win = region.to_rasterio()
    data = _guard(ds, source, region, lambda: ds.read(bands, window=win, out_shape=(3, *shape), resampling=Resampling.nearest))
    if source.has_mask:
        masks = _guard(
            ds, source, region, lambda: ds.read_masks(bands, window=win, out_shape=(3, *shape), resampling=Resampling.nearest)
        )
    else:
        masks = np.full(data.shape, 255, np.uint8)
    return data.reshape(3, -1), (masks > 0).any(axis=0).reshape(-1)


def _grid_sample(ds, source: RasterSource, skip: bool, grid: int = 8, size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """Values and validity of a grid of small windows spread over the region; with ``skip``,
    windows that cannot be read are left out."""
    region = source.region
    bands = list(source.bands)
    h, w = min(size, region.height), min(size, region.width)
    windows = []
    for i in range(grid):
        for j in range(grid):
            r = region.row_off + int((region.height - h) * (i + 0.5) / grid)
            c = region.col_off + int((region.width - w) * (j + 0.5) / grid)
            if Window(c, r, w, h) not in windows:
                windows.append(Window(c, r, w, h))
    parts, vparts = [], []
    for window in windows:
        win = window.to_rasterio()
        try:
            data = _guard(ds, source, window, lambda win=win: ds.read(bands, window=win))
            if source.has_mask:
                valid = (_guard(ds, source, window, lambda win=win: ds.read_masks(bands, window=win)) > 0).any(axis=0).reshape(-1)
            else:
                valid = np.ones(h * w, bool)
        except WindowReadError as exc:
            if not skip:
                raise_for_damaged_block(ds, source, window, exc)
            data, valid, _ = read_skipping_damage(ds, source, window)
            valid = valid.reshape(-1)
        parts.append(data.reshape(3, -1))
        vparts.append(valid)
    return np.concatenate(parts, axis=1), np.concatenate(vparts)


def _compute_stretch(ds, source: RasterSource, skip: bool = False) -> Optional[Tuple[Tuple[float, float], ...]]:
    if source.dtype == "uint8" and not source.has_mask:
        # Fixed stretch and every pixel valid: nothing to learn from the pixels, so none are read
        # (a full decode of scenes up to 2048 px, ~1 % of their run). A damaged block then ends
        # the run when the reader meets it, as it always did in larger scenes without overviews,
        # whose opening read is only a grid of small windows.
        return FULL_BYTE_RANGE
    values, valid = _sample(ds, source, skip)
    if not valid.any():
        if not region_has_valid_pixels(ds, source, skip=skip):
            raise RasterError(
                f"every pixel of {source.path}{' inside the bbox' if source.region != Window(0, 0, source.width, source.height) else ''} "
                "is nodata; there is nothing to segment. Check the nodata value (gdalinfo) or the bbox"
            )
        # valid pixels exist but the decimated read missed them: fall back to the type's range
        valid = np.ones(values.shape[1], bool)
    if source.dtype == "uint8":
        return FULL_BYTE_RANGE
    out = []
    picked = values[:, valid].astype(np.float64)
    for band in picked:
        low, high = np.percentile(band, STRETCH_PERCENTILES)
        if not high > low:
            high = low + 1.0
        out.append((float(low), float(high)))
    return tuple(out)


def region_has_valid_pixels(ds, source: RasterSource, block: int = 1024, *, skip: bool = False) -> bool:
    """Whether any pixel of the region is valid, reading the masks block by block (with
    ``skip``, blocks that cannot be read count as nodata)."""
    if not source.has_mask:
        return True
    region = source.region
    for r in range(region.row_off, region.row_off + region.height, block):
        for c in range(region.col_off, region.col_off + region.width, block):
            h = min(block, region.row_off + region.height - r)
            w = min(block, region.col_off + region.width - c)
            try:
                valid = read_valid(ds, source, Window(c, r, w, h))
            except WindowReadError:
                if not skip:
                    raise
                continue
            if valid is None or valid.any():
                return True
    return False


def read_pixels(
    ds,
    source: RasterSource,
    window: Window,
    out: Optional[np.ndarray] = None,
    out_shape: Optional[Tuple[int, int]] = None,
) -> np.ndarray:
    """Read the model bands of ``window`` as ``[3, h, w]`` in ``source.read_dtype``.

    ``out_shape`` resamples (bilinear) to that size; ``out`` (C-contiguous, of the read dtype
    and the output size) receives the pixels without a copy. Non-finite floats become 0 (they
    are masked as nodata by :func:`read_valid`). A failed read raises :class:`WindowReadError`.
    """
    from rasterio.enums import Resampling

    win = window.to_rasterio()
    bands = list(source.bands)
    shape = (3, window.height, window.width) if out_shape is None else (3, *out_shape)
    resampling = Resampling.bilinear if out_shape is not None else Resampling.nearest
    direct = out is not None and source.read_dtype == source.dtype and out.shape == shape
    if direct:
        _guard(ds, source, window, lambda: ds.read(bands, window=win, out=out, resampling=resampling))
        data = out
    else:
        data = _guard(ds, source, window, lambda: ds.read(bands, window=win, out_shape=shape, resampling=resampling))
        if data.dtype.name != source.read_dtype:
            data = data.astype(source.read_dtype)
    if data.dtype.kind == "f":
        np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if out is not None and not direct:
        out[...] = data
        data = out
    return data


def read_valid(ds, source: RasterSource, window: Window) -> Optional[np.ndarray]:
    """Valid-data mask ``[h, w]`` (bool) of ``window`` at the scene's resolution; ``None`` when
    every pixel is valid. A pixel is valid when any model band holds data there (GDAL's mask
    semantics: nodata values, alpha and mask bands), and for float bands is finite."""
    if not source.has_mask:
        return None
    win = window.to_rasterio()
    bands = list(source.bands)
    valid = (_guard(ds, source, window, lambda: ds.read_masks(bands, window=win)) > 0).any(axis=0)
    if np.dtype(source.dtype).kind == "f" and valid.any():
        valid &= np.isfinite(_guard(ds, source, window, lambda: ds.read(bands, window=win))).all(axis=0)
    if valid.all():
        return None
    return valid


def read_skipping_damage(
    ds, source: RasterSource, window: Window, out_shape: Optional[Tuple[int, int]] = None
) -> Tuple[np.ndarray, np.ndarray, List[Window]]:
    """Read ``window`` block by block after a failed read: ``(pixels[3, ...], valid[h, w],
    unread)``, where the blocks that cannot be read are nodata (invalid, zero) and listed in
    ``unread`` (whole blocks, clipped to the scene). ``out_shape`` resamples the pixels
    (bilinear) as :func:`read_pixels` does. A remote window (already retried) is not probed
    block by block: all of it is nodata."""
    pixels = np.zeros((3, window.height, window.width), source.read_dtype)
    valid = np.zeros((window.height, window.width), bool)
    unread: List[Window] = []
    blocks = list(block_windows(window, source.block, source.width, source.height))
    if source.remote:  # the window was retried already; block by block would retry each again
        unread = [whole for whole, _ in blocks]
        blocks = []
    for whole, part in blocks:
        try:
            part_valid = read_valid(ds, source, part)
            part_pixels = read_pixels(ds, source, part)
        except WindowReadError:
            unread.append(whole)
            continue
        rows = slice(part.row_off - window.row_off, part.row_off - window.row_off + part.height)
        cols = slice(part.col_off - window.col_off, part.col_off - window.col_off + part.width)
        pixels[:, rows, cols] = part_pixels
        valid[rows, cols] = True if part_valid is None else part_valid
    if out_shape is not None and tuple(out_shape) != (window.height, window.width):
        pixels = _resize_bilinear(pixels, out_shape)
    return pixels, valid, unread


def raise_for_damaged_block(ds, source: RasterSource, window: Window, error: WindowReadError) -> None:
    """Re-raise ``error`` (a failed read of ``window``) naming the first block that cannot be
    read, so the message points at the damage and not at a large window around it. Remote
    scenes are not probed block by block (each block would be retried): ``error`` as is."""
    if not source.remote:
        for whole, _ in block_windows(window, source.block, source.width, source.height):
            try:
                read_valid(ds, source, whole)
                read_pixels(ds, source, whole)
            except WindowReadError as precise:
                raise precise from error.__cause__
    raise error


def _resize_bilinear(pixels: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(pixels.astype(np.float32))[None]
    y = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)[0].numpy()
    if np.dtype(pixels.dtype).kind != "f":
        info = np.iinfo(pixels.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(pixels.dtype)


def block_cache_budget(source: RasterSource, footprint_rows: int) -> int:
    """Bytes of GDAL block cache a sliding-window pass needs: the decoded blocks under two rows
    of tiles (overlapping tile rows re-read them), plus slack."""
    itemsize = np.dtype(source.dtype).itemsize
    rows = footprint_rows + 512  # + up to one block row on each side
    return int(2 * source.region.width * rows * source.count * itemsize + (16 << 20))


@contextlib.contextmanager
def bounded_block_cache(nbytes: int) -> Iterator[None]:
    """Cap GDAL's (process-wide) block cache at ``nbytes`` while the block runs.

    GDAL keeps decoded blocks up to ``GDAL_CACHEMAX`` (by default 5 % of RAM), so without a cap
    the resident memory of a run would grow with the scene until that limit. A cap the user set
    with the ``GDAL_CACHEMAX`` environment variable is left alone; the previous value is
    restored afterwards, provided no dataset was opened in this thread before entering (rasterio
    then keeps the new value): enter it first, open datasets inside.
    """
    if os.environ.get("GDAL_CACHEMAX"):
        yield
        return
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=int(nbytes)):
        yield


def scene_bounds(source: RasterSource) -> Tuple[float, float, float, float]:
    """Map bounds (minx, miny, maxx, maxy) of the processed region."""
    r = source.region
    t = source.transform
    xs, ys = [], []
    for c, row in ((r.col_off, r.row_off), (r.col_off + r.width, r.row_off), (r.col_off, r.row_off + r.height), (r.col_off + r.width, r.row_off + r.height)):
        x, y = t @ (c, row)
        xs.append(x)
        ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def band_summary(source: RasterSource) -> List[str]:
    """One line per band: index, colour interpretation, dtype, and whether the model uses it."""
    lines = []
    for i in range(source.count):
        use = f" -> model {'RGB'[source.bands.index(i + 1)]}" if (i + 1) in source.bands else ""
        if (i + 1) in source.bands and source.bands.count(i + 1) > 1:
            use = " -> model " + "".join("RGB"[k] for k, b in enumerate(source.bands) if b == i + 1)
        lines.append(f"{i + 1}: {source.colorinterp[i]} {source.dtypes[i]}{use}")
    return lines
