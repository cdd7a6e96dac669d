"""A combined build trains with sources drawn by weight, and the checkpoint records what it learned."""

from __future__ import annotations

import json

from test_builder_combined import GROUPS, SCENE
from vehicle_testdata import combined_config, write_source

from rrsis_geo.models.checkpoint import read_config

from training.builder.cli import main as build_main
from training.datasets import RefSegRSDataset
from training.train import main as train_main


def _training_config(root, out):
    import yaml

    cfg = {
        "name": "combined-test",
        "model": {"preset": "tiny-lgce", "load_pretrained": False,
                  "overrides": {"input_size": 64, "decoder_norm": "group",
                                "language": {"tokens": "sentence", "slots": 4, "noise": 0.3}}},
        "data": {"format": "refsegrs", "root": str(root), "train_split": "train", "val_split": "val",
                 "source_weights": {"vehicles": 1.0}, "samples_per_epoch": 8},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "device": "cpu", "log_every": 1},
        "log": {"tensorboard": False},
    }
    path = out / "train.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_checkpoint_records_scales_and_seen_phrasings(tmp_path):
    source = write_source(tmp_path / "src", {"train1": SCENE, "train2": SCENE[::-1][1:], "val1": SCENE[1:]})
    built = tmp_path / "built"
    assert build_main(["--config", str(combined_config(tmp_path, source, GROUPS)), "--out", str(built), "--quiet"]) == 0
    assert train_main(["--config", str(_training_config(built, tmp_path)), "--out", str(tmp_path / "run")]) == 0

    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    knowledge = read_config(tmp_path / "run" / "best")  # the library accepts what training wrote
    assert knowledge["scales"] == config["scales"] and config["gsd_m"] > 0
    assert config["language"]["tokens"] == "sentence"
    train = RefSegRSDataset(built, "train", None, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    val = RefSegRSDataset(built, "val", None, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    stored = train.image_width(0)
    for category, scale in config["scales"].items():
        seen = [s.gsd_m * stored / 64 for s in train.samples if s.category == category]
        assert seen, category  # only categories that were trained
        assert scale["min"] <= scale["gsd_m"] <= scale["max"]
        assert abs(scale["min"] - min(seen)) < 1e-3 and abs(scale["max"] - max(seen)) < 1e-3
    trained = {s.expression for s in train.samples}
    heldout = {s.expression for s in val.samples if s.phrasing == "heldout"}
    phrasings = [p for ps in config["phrasings"].values() for p in ps]
    assert phrasings and set(phrasings) <= trained and not set(phrasings) & heldout
