"""The combined build: box-labelled sources through the paraphrase grammar, held-out phrasings,
split by image group, per-triplet source/GSD/phrasing read back by the training reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from builder_testdata import base_config, rgb_image, town, write_raster
from vehicle_testdata import combined_config, grammar, write_source

from training.builder.cli import main
from training.builder.paraphrase import Referent, parse_grammar
from training.datasets import RefSegRSDataset
from training.evaluate import breakdown, breakdown_table
from training.metrics import SampleResult

SCENE = [("car", "red", 20, 30, 65, 48), ("car", "white", 120, 40, 165, 58),
         ("car", "blue", 60, 150, 105, 168), ("bus", "white", 40, 100, 160, 126),
         ("car", "black", 40, 130, 85, 148)]
GROUPS = [{"match": "^images/val", "split": "val"}, {"match": "^images/skip", "split": "exclude"},
          {"match": ".", "split": "train"}]


@pytest.fixture
def built(tmp_path):
    source = write_source(tmp_path / "src", {"train1": SCENE, "train2": SCENE[::-1][1:],
                                             "val1": SCENE[1:], "skip1": SCENE})
    config = combined_config(tmp_path, source, GROUPS)
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def test_heldout_phrasings_never_in_train(built):
    g = parse_grammar(grammar())
    crops = json.loads((built / "crops.json").read_text())["crops"]
    assert {c["scene"] for c in crops} == {"vehicles-train1", "vehicles-train2", "vehicles-val1"}
    train = [s for c in crops if c["split"] == "train" for s in c["samples"]]
    val = [s for c in crops if c["split"] == "val" for s in c["samples"]]
    assert train and val
    for sample in train:  # recomputed from the grammar, not trusted from the record
        assert sample["phrasing"] == "seen"
        assert not g.is_heldout(sample["expression"], sample["canonical"])
        assert "automobile" not in sample["expression"]
    train_text = {line.split(" ", 1)[1] for line in (built / "output_phrase_train.txt").read_text().splitlines()}
    held = [s for s in val if s["phrasing"] == "heldout"]
    assert held and [s for s in val if s["phrasing"] == "seen"]
    for sample in held:
        assert g.is_heldout(sample["expression"], sample["canonical"])
        assert sample["expression"] not in train_text
    stats = json.loads((built / "stats.json").read_text())
    assert stats["per_phrasing"]["heldout"] == {"val": len(held)}
    assert "train" not in stats["per_phrasing"]["heldout"]


def test_reader_exposes_source_gsd_and_phrasing(built):
    ds = RefSegRSDataset(built, "val", None, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    assert set(ds.sources) == {"vehicles"}
    assert {s.phrasing for s in ds.samples} == {"seen", "heldout"}
    assert all(s.gsd_m == pytest.approx(0.1 * 200 / 64) for s in ds.samples)
    assert {s.category for s in ds.samples} <= {"vehicle", "car", "bus", "light-duty vehicle",
                                                "heavy-duty vehicle"}
    # the mask of a plain "bus" referent is the bus box, resized to 64 px
    index = next(i for i, s in enumerate(ds.samples) if s.canonical == "bus")
    mask = ds.gt_mask(index)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (32, 40, 13, 51)
    results = [SampleResult(i, s.category, 1, 2 if s.phrasing == "seen" else 4)
               for i, s in enumerate(ds.samples)]
    groups = breakdown(results, ds.samples)
    assert groups["phrasing"]["seen"]["mIoU"] == 0.5 and groups["phrasing"]["heldout"]["mIoU"] == 0.25
    assert set(groups["source"]) == {"vehicles"}
    table = breakdown_table(groups)
    assert "| vehicles / heldout |" in table and "| seen | " in table
    assert "precision" not in groups["source"]["vehicles"]  # rows without predicted areas: no P/R
    assert {key.split(" / ")[1] for key in groups["source / template"]} <= {
        "category", "attribute_category", "category_relation", "attribute_category_relation", "attribute_attribute_category"}
    # with the predicted areas: pooled precision (intersection / predicted) and recall (/ target)
    scored = breakdown([SampleResult(i, s.category, 1, 3, predicted=2) for i, s in enumerate(ds.samples)], ds.samples)
    assert scored["source"]["vehicles"]["precision"] == 0.5 and scored["source"]["vehicles"]["recall"] == 0.5


def test_single_source_builds_still_read_without_the_new_fields(tmp_path):
    # the classic builder (one phrasing per meaning, no sources): read as before, fields None
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump(base_config(), sort_keys=False))
    labels = town(96, seed=1)
    write_raster(tmp_path / "s.tif", rgb_image(labels))
    write_raster(tmp_path / "s_labels.tif", labels)
    out = tmp_path / "old"
    assert main(["--scene", str(tmp_path / "s.tif"), str(tmp_path / "s_labels.tif"), "train",
                 "--classes", str(tmp_path / "classes.yaml"), "--out", str(out), "--window", "96",
                 "--stride", "96", "--output-size", "64", "--quiet"]) == 0
    ds = RefSegRSDataset(out, "train", None, input_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    assert len(ds) and set(ds.sources) == {None} and {s.phrasing for s in ds.samples} == {None}
    assert "vehicle" in ds.categories and all(s.gsd_m == 1.5 for s in ds.samples)
    assert breakdown([SampleResult(0, ds.samples[0].category, 1, 1)], ds.samples) == {}


def test_bad_label_file_is_a_clear_error(tmp_path, capsys):
    source = write_source(tmp_path / "src", {"train1": SCENE})
    label = source / "labels" / "train1.txt"
    lines = label.read_text().splitlines()
    lines[1] = "9 0.5 0.5 0.1 0.1"
    label.write_text("\n".join(lines) + "\n")
    config = combined_config(tmp_path, source, GROUPS)
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{label}:2: unknown class 9" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))


def test_undecidable_group_regex_is_an_error(tmp_path, capsys):
    source = write_source(tmp_path / "src", {"train1": SCENE})
    config = combined_config(tmp_path, source, [{"match": "^nothing", "split": "train"}])
    assert main(["--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "no group matches 'images/train1.png'" in capsys.readouterr().err


def test_grammar_renders_number_and_sizes():
    g = parse_grammar(yaml.safe_load("""
nouns: {water: [water, {form: pool/pools, max_area_m2: 100}], car: [car/cars], tree: [/trees]}
attributes: {white: {pre: [white], post: [that is white]}}
frames: {any: ["{np}"], singular: ["the {np}"], plural: ["all {np}"]}
"""))
    assert "pool" not in " ".join(g.phrasings(Referent("water", count=1)))  # size unknown
    assert "the pool" in g.phrasings(Referent("water", count=1, extent_m2=50))
    many = g.phrasings(Referent("car", ("white",), count=3))
    assert "all cars that are white" in many and "all white cars" in many
    assert "the white car" not in many and "the white car" in g.phrasings(Referent("car", ("white",)))
    assert g.phrasings(Referent("tree", count=1)) == ("tree", "trees", "all trees")  # plural-only noun


def test_misspelt_source_key_is_an_error(tmp_path, capsys):
    source = write_source(tmp_path / "src", {"train1": SCENE})
    config = combined_config(tmp_path, source, GROUPS, box_mesk="fill")
    assert main(["--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "sources[0]: unknown key(s) ['box_mesk']" in capsys.readouterr().err


def test_coco_source_builds_like_yolo(tmp_path):
    # the same scene labelled in one COCO json instead of YOLO files gives the same masks
    source = write_source(tmp_path / "src", {"train1": SCENE, "val1": SCENE[1:]})
    images, annotations = [], []
    for k, (name, vehicles) in enumerate((("train1.png", SCENE), ("val1.png", SCENE[1:]))):
        images.append({"id": k, "file_name": name})
        annotations += [{"image_id": k, "category_id": ["car", "bus"].index(c),
                         "bbox": [x0, y0, x1 - x0, y1 - y0]} for c, _, x0, y0, x1, y1 in vehicles]
    (source / "boxes.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 0, "name": "car"}, {"id": 1, "name": "bus"}]}))
    yolo = combined_config(tmp_path, source, GROUPS)
    assert main(["--config", str(yolo), "--out", str(tmp_path / "yolo"), "--quiet"]) == 0
    coco = combined_config(tmp_path, source, GROUPS, format="coco")
    text = coco.read_text().replace("labels: '{dir}/../labels/{stem}.txt'", f"labels: {source / 'boxes.json'}")
    coco.write_text(text)
    assert main(["--config", str(coco), "--out", str(tmp_path / "coco"), "--quiet"]) == 0
    a = json.loads((tmp_path / "yolo" / "crops.json").read_text())["crops"]
    b = json.loads((tmp_path / "coco" / "crops.json").read_text())["crops"]
    assert a == b
