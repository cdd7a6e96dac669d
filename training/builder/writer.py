"""The RefSegRS on-disk layout, written atomically.

::

    DIR/images/{id}.tif            RGB uint8 GeoTIFF (every id of one crop is a hard link to one file)
    DIR/masks/{id}.tif             uint8 0/255 GeoTIFF
    DIR/output_phrase_{split}.txt  "{id} {expression}" per line, one line per triplet
    DIR/crops.json                 georeference of every crop and the ids cut from it
    DIR/stats.json                 counts, foreground histogram, vocabulary

Everything is written into a temporary directory beside ``DIR`` and renamed into place only when
complete; on any error the temporary directory is removed and an existing ``DIR`` is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from rrsis_geo.errors import OutputError

_PROFILE = {"driver": "GTiff", "dtype": "uint8", "compress": "deflate", "interleave": "pixel"}


def check_output(out: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Refuse an existing ``out`` without ``overwrite``, and an ``out`` that holds an input."""
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it or choose "
                          "another --out")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory; choose another --out")
    for path in inputs:
        path = Path(path).absolute()
        if path == out or out in path.parents:
            raise OutputError(f"input {path} lies inside the output {out}, which would be replaced; "
                              "choose an --out outside the input folders")
    if not out.parent.exists():
        raise OutputError(f"the parent folder of {out} does not exist; create it first")


class DatasetWriter:
    """Context manager that collects the triplets in a temporary folder and publishes them."""

    def __init__(self, out: Path, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.phrases: dict[str, list[str]] = {}
        self.links = 0
        self.copies = 0

    def __enter__(self) -> "DatasetWriter":
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        try:
            (self.tmp / "images").mkdir(parents=True)
            (self.tmp / "masks").mkdir()
        except OSError as exc:
            raise OutputError(f"cannot create {self.tmp}: {exc}") from exc
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write_crop(self, ids: list[str], image: np.ndarray, masks: list[np.ndarray],
                   crs: CRS | None, transform: Affine | None) -> None:
        """One crop image under every id (hard links to the first) and one mask per id."""
        first = self.tmp / "images" / f"{ids[0]}.tif"
        _write_tif(first, np.moveaxis(image, -1, 0), crs, transform, photometric="RGB")
        for sample_id in ids[1:]:
            target = self.tmp / "images" / f"{sample_id}.tif"
            try:
                os.link(first, target)
                self.links += 1
            except OSError:  # file systems without hard links
                shutil.copyfile(first, target)
                self.copies += 1
        for sample_id, mask in zip(ids, masks):
            _write_tif(self.tmp / "masks" / f"{sample_id}.tif",
                       (mask.astype(np.uint8) * 255)[None], crs, transform)

    def add_phrase(self, split: str, sample_id: str, expression: str) -> None:
        self.phrases.setdefault(split, []).append(f"{sample_id} {expression}")

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        (self.tmp / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")

    def publish(self) -> Path:
        """Write the phrase files and move the finished folder to ``out``."""
        for split, lines in self.phrases.items():
            (self.tmp / f"output_phrase_{split}.txt").write_text("\n".join(lines) + "\n",
                                                                 encoding="utf-8")
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            if not self.overwrite:
                raise OutputError(f"output {self.out} appeared while building; pass --overwrite")
            os.replace(self.out, old)
        try:
            os.replace(self.tmp, self.out)
        except OSError:
            if old.exists():
                os.replace(old, self.out)
            raise
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        return self.out


def _write_tif(path: Path, bands: np.ndarray, crs: CRS | None, transform: Affine | None,
               **extra: Any) -> None:
    profile = dict(_PROFILE, count=bands.shape[0], height=bands.shape[1], width=bands.shape[2],
                   **extra)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(bands)
