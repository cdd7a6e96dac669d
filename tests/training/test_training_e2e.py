"""End to end on CPU: tiny LGCE overfits a small real RefSegRS-format dataset, its checkpoint serves
``rrsis-geo predict``, and ``training.evaluate`` prints the papers' table."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import yaml
from shapely.geometry import box

from rrsis_geo.cli import main as rrsis_geo_main
from rrsis_geo.models import load_checkpoint
from training.evaluate import main as evaluate_main
from training.train import main as train_main
from training_testdata import write_config, write_shapes_dataset

TINY_LGCE = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny_lgce.yaml"


@pytest.mark.slow
def test_tiny_lgce_overfits_predicts_and_evaluates(tmp_path, capsys):
    root = write_shapes_dataset(tmp_path / "data", {"train": 6}, size=64, large=True)
    cfg = yaml.safe_load(TINY_LGCE.read_text())  # the shipped tiny config, scored on its training split
    cfg["data"].update(val_split="train", gsd_m=0.5)
    cfg["optim"].update(lr=3e-3, encoder_lr=3e-3)
    cfg["train"].update(epochs=40, val_every=10, log_every=100)
    config = write_config(tmp_path / "tiny_lgce.yaml", cfg)

    assert train_main(["--config", str(config), "--data-root", str(root), "--out", str(tmp_path / "run")]) == 0
    best = tmp_path / "run" / "best"
    metrics = json.loads((best / "config.json").read_text())["metrics"]
    assert metrics["split"] == "train" and metrics["samples"] == 12
    assert metrics["mIoU"] > 0.9, metrics

    # the checkpoint is in the library's format ...
    model, config_json = load_checkpoint(best)
    assert config_json["architecture"] == "lgce" and config_json["gsd_m"] == 0.5
    # ... and `rrsis-geo predict` takes it directly: the red square of a training scene, in map coordinates
    scene = root / "images" / "0.tif"
    out = tmp_path / "pred.gpkg"
    argv = ["predict", str(scene), "-e", "red building", "-o", str(out), "--checkpoint", str(best), "--device", "cpu", "-q"]
    assert rrsis_geo_main(argv) == 0
    (layer,) = [name for name, _ in pyogrio.list_layers(out)]
    polygons = gpd.read_file(out, layer=layer)
    with rasterio.open(root / "masks" / "0.tif") as src:
        truth = src.read(1) > 0
        transform, crs = src.transform, src.crs
    rows, cols = np.nonzero(truth)
    (x0, y0), (x1, y1) = transform @ (cols.min(), rows.max() + 1), transform @ (cols.max() + 1, rows.min())
    square = box(x0, y0, x1, y1)
    assert polygons.crs == crs and len(polygons) >= 1
    predicted = polygons.geometry.union_all()
    assert predicted.intersection(square).area / predicted.union(square).area > 0.8

    # evaluation prints the table and agrees with what training measured
    capsys.readouterr()
    table_path = tmp_path / "table.md"
    argv = ["--checkpoint", str(best), "--data-root", str(root), "--split", "train", "--out", str(table_path),
            "--json", str(tmp_path / "metrics.json"), "--device", "cpu"]
    assert evaluate_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| samples | Pr@0.5 | Pr@0.6 | Pr@0.7 | Pr@0.8 | Pr@0.9 | oIoU | mIoU |" in printed
    assert "| building | 6 |" in printed and "| vehicle | 6 |" in printed
    assert table_path.read_text() in printed
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-6)
    assert evaluated["per_category"] == metrics["per_category"]
