"""scripts/evaluate_scenes.py on a miniature labels source and box source, scored with the
``test-brightness`` checkpoint (target = bright pixels), so that every IoU is known."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DARK, BRIGHT = 30, 220  # the brightness model's target: mean(R, G, B) > 127.5
COLOURS = {"building": (0x3C, 0x10, 0x98), "road": (0x6E, 0xC1, 0xE4), "water": (0xE2, 0xA9, 0x29),
           "unlabeled": (0x9B, 0x9B, 0x9B)}  # as in training/builder/configs/dubai.yaml
NAMES = ["car", "truck", "bus", "minibus", "cyclist"]


def load_script():
    if "evaluate_scenes" in sys.modules:
        return sys.modules["evaluate_scenes"]
    spec = importlib.util.spec_from_file_location("evaluate_scenes", REPO / "scripts" / "evaluate_scenes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluate_scenes"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_labels_image(root: Path, tile: int, part: int, classes: list[tuple[str, slice, slice]],
                       bright: tuple[slice, slice], size: int = 96) -> None:
    """``tile_T/images/image_part_P.png`` (dark, bright in ``bright``) and its colour mask (land,
    then each ``(class, rows, cols)`` painted in order)."""
    mask = np.zeros((size, size, 3), dtype=np.uint8)
    mask[:] = (0x84, 0x29, 0xF6)  # land
    for name, rows, cols in classes:
        mask[rows, cols] = COLOURS[name]
    image = np.full((size, size, 3), DARK, dtype=np.uint8)
    image[bright] = BRIGHT
    for folder, pixels in (("images", image), ("masks", mask)):
        (root / f"tile_{tile}" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / f"tile_{tile}" / folder / f"image_part_{part:03d}.png")


def write_boxes_image(root: Path, name: str, boxes: list[tuple[str, int, int, int, int]],
                      bright: list[tuple[int, int, int, int]], width: int = 200, height: int = 120) -> None:
    """``images/NAME.png`` (dark; bright in each ``(x0, y0, x1, y1)``) and its YOLO labels."""
    image = np.full((height, width, 3), DARK, dtype=np.uint8)
    for x0, y0, x1, y1 in bright:
        image[y0:y1, x0:x1] = BRIGHT
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    lines = [f"{NAMES.index(c)} {(x0 + x1) / 2 / width} {(y0 + y1) / 2 / height} {(x1 - x0) / width} "
             f"{(y1 - y0) / height}" for c, x0, y0, x1, y1 in boxes]
    (root / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")


def write_sources(tmp: Path) -> Path:
    """Both sources and a combined config over them; returns the config's path."""
    dubai, vehicles = tmp / "dubai", tmp / "vehicles"
    s = slice
    # val 1: bright pixels are exactly the building; the bright unlabeled strip must not count
    write_labels_image(dubai, 7, 1, [("building", s(0, 80), s(0, 48)), ("road", s(0, 80), s(48, 96)),
                                     ("unlabeled", s(80, 96), s(0, 96))], (s(0, 96), s(0, 48)))
    # val 2: building, road, water in bands across; the left quarter is bright
    write_labels_image(dubai, 7, 2, [("building", s(0, 48), s(None)), ("road", s(48, 80), s(None)),
                                     ("water", s(80, 96), s(None))], (s(None), s(0, 24)))
    write_labels_image(dubai, 1, 1, [("road", s(0, 10), s(None))], (s(0, 10), s(None)), size=32)  # train
    # cars 60 px long in training, 30 px in validation: the GSD is the median over all, 4.5 / 60
    write_boxes_image(vehicles, "train1", [("car", 10 + 70 * k, 10, 70 + 70 * k, 34) for k in range(2)]
                      + [("car", 10, 60, 70, 84)], [])
    write_boxes_image(vehicles, "val_a", [("car", 20, 20, 50, 32), ("bus", 80, 60, 170, 80)],
                      [(20, 20, 50, 32), (80, 60, 170, 80)])
    write_boxes_image(vehicles, "val_b", [("car", 100, 50, 130, 62)], [(10, 80, 40, 110)])
    config = {"name": "test", "sources": [
        {"name": "dubai", "kind": "labels", "classes": str(REPO / "training/builder/configs/dubai.yaml"),
         "root": str(dubai), "images": "tile_*/images/image_part_*.png", "labels": "{dir}/../masks/{stem}.png",
         "gsd_m": 1.0, "groups": [{"match": "^tile_7/", "split": "val"}, {"match": ".", "split": "train"}]},
        {"name": "vehicles", "kind": "boxes", "root": str(vehicles), "images": "images/*",
         "labels": "{dir}/../labels/{stem}.txt", "format": "yolo", "names": NAMES, "box_mask": "fill",
         "categories": {"vehicle": ["car", "truck", "bus", "minibus"], "light-duty vehicle": ["car", "minibus"],
                        "car": ["car"], "bus": ["bus"]},
         "groups": [{"match": "^images/val", "split": "val"}, {"match": ".", "split": "train"}],
         "reference_class": "car", "reference_length_m": 4.5, "gsd": [{"match": "."}]},
    ]}
    path = tmp / "combined.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bright_checkpoint(tmp_path_factory):
    """The ``test-brightness`` checkpoint, its architecture registered in this process."""
    qgis_tests = str(REPO / "tests" / "qgis")
    if qgis_tests not in sys.path:
        sys.path.append(qgis_tests)
    import make_checkpoints

    return make_checkpoints.bright(tmp_path_factory.mktemp("ckpt") / "bright", {})


@pytest.fixture(scope="module")
def scored(tmp_path_factory, bright_checkpoint):
    """One run of the script: its exit code, JSON, Markdown."""
    tmp = tmp_path_factory.mktemp("scenes")
    config = write_sources(tmp)
    phrases = tmp / "output_phrase_train.txt"
    phrases.write_text("a_00 all the buildings\na_01 building\nb_00 car\nb_01 find the vehicles\n")
    code = load_script().main(["--config", str(config), "--checkpoint", str(bright_checkpoint), "--quiet",
                               "--train-phrases", str(phrases), "--out", str(tmp / "r.md"),
                               "--json", str(tmp / "r.json")])
    return code, json.loads((tmp / "r.json").read_text()), (tmp / "r.md").read_text()


def test_labels_source_ious_and_baseline(scored):
    code, result, _ = scored
    assert code == 0
    dubai = result["sources"]["dubai"]
    c = dubai["categories"]
    assert dubai["images"] == 2
    # building: 1 (image 1) and 48*24 / (48*96 + 48*24) = 0.2 (image 2)
    assert c["building"]["words"] == c["building"]["everyday"] == pytest.approx(60.0)
    assert c["building"]["whole image"] == pytest.approx(50.0)
    # road: 0 and 32*24 / (32*96 + 64*24) = 1/6; baseline 0.5 and 1/3
    assert c["road"]["words"] == pytest.approx(100 / 12, abs=0.01)
    assert c["road"]["whole image"] == pytest.approx(250 / 6, abs=0.01)
    # water only in image 2: 16*24 / (16*96 + 80*24) = 1/9
    assert (c["water"]["words"], c["water"]["images"], c["water"]["skipped"]) == (pytest.approx(11.11), 1, 1)
    assert {k: c["vegetation"][k] for k in ("images", "skipped", "words", "everyday", "whole image")} == {
        "images": 0, "skipped": 2, "words": None, "everyday": None, "whole image": None}
    assert c["vegetation"]["words precision"] is None and c["vegetation"]["words recall"] is None
    # pooled over both images (image 1: the prediction is the target, IoU 1)
    rows = [r for im in result["images"] for r in im["scores"] if r["category"] == "building" and r["set"] == "words"]
    assert first_building_exact(result)
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    assert 0 < fp and 0 < fn
    assert c["building"]["words precision"] == pytest.approx(100 * tp / (tp + fp), abs=0.01)
    assert c["building"]["words recall"] == pytest.approx(100 * tp / (tp + fn), abs=0.01)
    assert dubai["mean"]["words"] == pytest.approx((60 + 100 / 12 + 100 / 9) / 3, abs=0.01)
    assert dubai["everyday_over_words"] == 1.0
    first = next(im for im in result["images"] if im["image"] == "tile_7/images/image_part_001.png")
    assert {r["expression"]: r["iou"] for r in first["scores"] if r["category"] == "building"} == {
        "building": 1.0, "houses": 1.0, "the buildings": 1.0, None: 0.5}
    assert sorted(first["skipped"]) == ["vegetation", "water"]


def first_building_exact(result) -> bool:
    """Image 1's building row has no false pixel (its IoU is 1)."""
    first = next(im for im in result["images"] if im["image"] == "tile_7/images/image_part_001.png")
    row = next(r for r in first["scores"] if r["expression"] == "building")
    return row["fp"] == row["fn"] == 0 and row["tp"] > 0


def test_box_source_ious_baseline_and_builder_gsd(scored):
    _, result, _ = scored
    vehicles = result["sources"]["vehicles"]
    c = vehicles["categories"]
    assert vehicles["images"] == 2
    assert {im["gsd_m"] for im in result["images"] if im["source"] == "vehicles"} == {0.075}
    # val_a: car 360 px of 2160 bright, vehicle = car + bus = every bright pixel; val_b: car not bright
    assert c["car"]["words"] == pytest.approx(100 / 12, abs=0.01)
    assert c["light-duty vehicle"]["everyday"] == pytest.approx(100 / 12, abs=0.01)
    assert c["vehicle"]["words"] == pytest.approx(50.0)
    assert c["vehicle"]["whole image"] == pytest.approx((9 + 1.5) / 2)
    assert c["car"]["whole image"] == pytest.approx(1.5)


def test_report_tables_and_seen_phrasings(scored):
    _, result, markdown = scored
    assert "Dubai single-class mIoU: words 26.5, everyday 26.5, whole image" in markdown
    assert "vehicles mIoU: words 22.2" in markdown
    building = result["sources"]["dubai"]["categories"]["building"]
    assert (f"| building | 60.0 | 60.0 | 50.0 | {building['words precision']:.1f} | {building['words recall']:.1f} | "
            f"{building['everyday precision']:.1f} | {building['everyday recall']:.1f} | 2 | 0 |") in markdown
    assert "| vegetation | — | — | — | — | — | — | — | 0 | 2 |" in markdown
    seen = result["seen_in_training"]
    assert (seen["building"], seen["the buildings"], seen["houses"], seen["the vehicles"]) == (
        "yes", "within", "no", "within")
    assert "| houses | everyday | building | 60.0 | no |" in markdown


def test_pooled_precision_recall_and_counts():
    script = load_script()
    pred = np.zeros((4, 4), bool)
    pred[:2] = True  # 8 pixels
    target = np.zeros((4, 4), bool)
    target[1:3] = True  # 8 pixels, 4 of them predicted
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False  # one false positive does not count
    assert script.counts(pred, target, valid) == {"tp": 4, "fp": 3, "fn": 4}
    rows = [script.counts(pred, target, valid), {"tp": 6, "fp": 7, "fn": 0}]
    assert script.pooled_precision_recall(rows) == (pytest.approx(50.0), pytest.approx(71.43, abs=0.01))
    assert script.pooled_precision_recall([]) == (None, None)


def test_existing_output_is_kept(tmp_path, capsys):
    out = tmp_path / "r.md"
    out.write_text("keep")
    code = load_script().main(["--config", str(REPO / "training/builder/configs/combined.yaml"),
                               "--out", str(out), "--quiet"])
    assert code != 0 and out.read_text() == "keep"
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and err.count("\n") == 1


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    script = load_script()
    assert script.main(["--config", str(tmp_path / "none.yaml"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    config = write_sources(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["root"] = str(tmp_path / "missing")
    config.write_text(yaml.safe_dump(data))
    assert script.main(["--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"source folder {tmp_path / 'missing'} does not exist" in err and err.count("\n") == 1
