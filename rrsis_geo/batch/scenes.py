"""The scenes of a batch run: from paths and globs, text files of paths or URLs, VRT mosaics and
STAC ItemCollections / Catalogs (read with pystac).

Each scene gets a stable ``id`` (its file name and a short hash of where it is), under which the
run directory records its state and its part, and a ``label``, the ``scene`` attribute of its
polygons in the merged result.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from ..errors import Fix, InputError

_URL = re.compile(r"^(https?|ftp|s3|gs)://|^/vsi[a-z0-9_]+/")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Suffixes read as a list of scenes, one path or URL per line
LIST_SUFFIXES = (".txt", ".lst", ".list")
#: Files of a folder given as a source that are taken as scenes
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".png", ".jpg", ".vrt")
#: Suffixes read as STAC JSON
STAC_SUFFIXES = (".json", ".geojson")


@dataclass(frozen=True)
class Scene:
    """One scene of a batch run."""

    id: str  # file-name safe, unique in the run
    uri: str  # a path, a GDAL /vsi… name or a URL
    label: str  # the ``scene`` attribute of its polygons

    def to_dict(self) -> dict:
        return {"id": self.id, "uri": self.uri, "label": self.label}


def is_remote(uri: str) -> bool:
    return bool(_URL.match(uri))


def _gdal_name(uri: str) -> str:
    """URLs become GDAL /vsicurl/ (http, ftp) or /vsis3/, /vsigs/ names."""
    for scheme, prefix in (("s3://", "/vsis3/"), ("gs://", "/vsigs/")):
        if uri.startswith(scheme):
            return prefix + uri[len(scheme):]
    if re.match(r"^(https?|ftp)://", uri):
        return "/vsicurl/" + uri
    return uri


def scene_id(uri: str) -> str:
    """``name-1a2b3c4d``: the file name, made safe, and 8 hex digits of the whole name."""
    stem = _UNSAFE.sub("_", Path(uri.rstrip("/")).name)[:60] or "scene"
    return f"{stem}-{hashlib.sha1(uri.encode('utf-8')).hexdigest()[:8]}"


def _from_list(path: Path) -> List[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(_gdal_name(line) if is_remote(line) else line if Path(line).is_absolute() else str(path.parent / line))
    return out


def _from_vrt(path: Path) -> List[str]:
    """The source files of a VRT mosaic, each one a scene."""
    import rasterio

    with rasterio.open(path) as ds:
        files = [f for f in ds.files if Path(f).resolve() != path.resolve()]
    if not files:
        raise InputError(f"{path} is a VRT without source files; give its scenes instead")
    return files


def _from_stac(path: Path, asset: Optional[str]) -> List[str]:
    """The asset ``asset`` (default: the first GeoTIFF-like one) of each item."""
    try:
        import pystac
    except ImportError as exc:
        from ..errors import DependencyError

        raise DependencyError(f"reading STAC needs pystac ({exc}); pip install 'rrsis[batch]'") from exc
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as JSON: {' '.join(str(exc).split())}") from exc
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        return _stac_hrefs(pystac, data, kind, path, asset)
    except InputError:
        raise
    except Exception as exc:  # pystac's STACTypeError, KeyError on an incomplete item, ...
        raise InputError(f"{path} is not valid STAC: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc


def _stac_hrefs(pystac, data: dict, kind: Optional[str], path: Path, asset: Optional[str]) -> List[str]:
    if kind == "FeatureCollection":
        items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
    elif kind == "Feature":
        items = [pystac.Item.from_file(str(path))]
    elif kind in ("Catalog", "Collection"):
        items = list(pystac.read_file(str(path)).get_items(recursive=True))
    else:
        raise InputError(f"{path} is JSON but no STAC ItemCollection, Item, Catalog or Collection (type {kind!r})")
    out = []
    for item in items:
        out.append(_asset_href(item, asset, path))
    if not out:
        raise InputError(f"{path} holds no STAC items")
    return out


def _asset_href(item, asset: Optional[str], path: Path) -> str:
    if asset is not None:
        if asset not in item.assets:
            raise InputError(
                f"STAC item {item.id!r} in {path} has no asset {asset!r} (it has: {', '.join(item.assets) or 'none'})",
                fix=Fix("asset", example="KEY", effect="to choose the asset to segment"),
            )
        chosen = item.assets[asset]
    else:
        rasters = [a for a in item.assets.values() if "tiff" in (a.media_type or "") or a.href.lower().endswith((".tif", ".tiff"))]
        if not rasters:
            raise InputError(f"STAC item {item.id!r} in {path} has no GeoTIFF asset; name one with the asset option",
                             fix=Fix("asset", example="KEY", effect="to choose the asset to segment"))
        chosen = rasters[0]
    href = chosen.get_absolute_href() or chosen.href
    if href.startswith("file://"):
        href = href[len("file://"):]
    if not is_remote(href) and not Path(href).is_absolute():  # relative to the STAC file, as STAC says
        href = str(path.parent / href)
    return _gdal_name(href)


def _expand(source: str, asset: Optional[str]) -> List[str]:
    if is_remote(source):
        return [_gdal_name(source)]
    path = Path(source).expanduser()
    if any(ch in source for ch in "*?["):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise InputError(f"no file matches {source}")
        return [m for m in matches if Path(m).is_file()]
    if not path.exists():
        raise InputError(f"{source} does not exist")
    if path.is_dir():  # its rasters, sorted (not its subfolders: name them with a glob, 'dir/**/*.tif')
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if not found:
            raise InputError(f"folder {source} holds no raster ({', '.join(RASTER_SUFFIXES)})")
        return found
    suffix = path.suffix.lower()
    if suffix in LIST_SUFFIXES:
        return _from_list(path)
    if suffix in STAC_SUFFIXES:
        return _from_stac(path, asset)
    if suffix == ".vrt":
        return _from_vrt(path)
    return [str(path)]


def collect_scenes(sources: Sequence[str], asset: Optional[str] = None) -> List[Scene]:
    """The scenes named by ``sources``, in order, each once; :class:`InputError` when none."""
    uris: List[str] = []
    for source in sources:
        uris.extend(_expand(str(source), asset))
    seen, unique = set(), []
    for uri in uris:
        key = uri if is_remote(uri) else str(Path(uri).absolute())
        if key not in seen:
            seen.add(key)
            unique.append(key)
    if not unique:
        raise InputError("no scene to run: give files, globs, a list (.txt), a VRT or a STAC JSON")
    return [Scene(scene_id(uri), uri, label) for uri, label in zip(unique, _labels(unique))]


def _labels(uris: Iterable[str]) -> List[str]:
    """File names when they are unique in the run, else the whole names (as ``predict`` does)."""
    uris = list(uris)
    names = [Path(u).name for u in uris]
    return names if len(set(names)) == len(names) else uris
