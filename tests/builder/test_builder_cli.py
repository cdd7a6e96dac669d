"""``python -m training.builder`` on real GeoTIFF/PNG files: layout, georeference, splits, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from builder_testdata import VALUE, base_config, rgb_image, town, write_raster
from PIL import Image
from rasterio.transform import from_origin

from training.builder import CONFIG_DIR, main
from training.builder.tiling import CropWindow

REPO = Path(__file__).resolve().parents[2]
ORIGIN = (400_000.0, 2_790_000.0)


def phrases(out: Path) -> dict[str, list[tuple[str, str]]]:
    result = {}
    for path in sorted(out.glob("output_phrase_*.txt")):
        split = path.stem.split("_")[-1]
        result[split] = [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]
    return result


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture
def classes_file(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text(yaml.safe_dump(base_config(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def scene(tmp_path):
    """A 256 × 256 town at 1 m in UTM 40N: image and integer labels."""
    labels = town(256)
    image = write_raster(tmp_path / "scene.tif", rgb_image(labels))
    label_path = write_raster(tmp_path / "labels.tif", labels)
    return image, label_path, labels


def test_single_scene_region_split_writes_the_refsegrs_layout(tmp_path, scene, classes_file):
    image, labels_path, _ = scene
    out = tmp_path / "dataset"
    rc = main(["--image", str(image), "--labels", str(labels_path), "--classes", str(classes_file),
               "--out", str(out), "--window", "64", "--stride", "32", "--output-size", "48",
               "--block-size", "128", "--fractions", "train=0.5,val=0.25,test=0.25", "--quiet"])
    assert rc == 0
    lines = phrases(out)
    assert set(lines) == {"train", "val", "test"}
    ids = [i for split in lines.values() for i, _ in split]
    assert len(ids) == len(set(ids)) and " " not in "".join(ids)
    assert sorted(p.stem for p in (out / "images").glob("*.tif")) == sorted(ids)
    assert sorted(p.stem for p in (out / "masks").glob("*.tif")) == sorted(ids)

    crops = json.loads((out / "crops.json").read_text())["crops"]
    split_of = {i: s for s, rows in lines.items() for i, _ in rows}
    expression_of = {i: e for rows in lines.values() for i, e in rows}
    assert sum(len(c["samples"]) for c in crops) == len(ids)
    for crop in crops:
        sample_ids = [s["id"] for s in crop["samples"]]
        assert {split_of[i] for i in sample_ids} == {crop["split"]}
        assert [expression_of[i] for i in sample_ids] == [s["expression"] for s in crop["samples"]]
        # one image file per crop: every id is a hard link to it
        inodes = {os.stat(out / "images" / f"{i}.tif").st_ino for i in sample_ids}
        assert len(inodes) == 1
        # georeference of the resized crop: origin at the window corner, 64/48 m pixels
        win = crop["window"]
        expected = from_origin(ORIGIN[0] + win["col_off"], ORIGIN[1] - win["row_off"],
                               64 / 48, 64 / 48)
        assert crop["crs"] == "EPSG:32640"
        assert np.allclose(crop["transform"], list(expected)[:6])
        with rasterio.open(out / "images" / f"{sample_ids[0]}.tif") as src:
            assert (src.count, src.width, src.height, src.dtypes[0]) == (3, 48, 48, "uint8")
            assert src.crs.to_epsg() == 32640 and src.transform.almost_equals(expected)
        for sample_id in sample_ids:
            with rasterio.open(out / "masks" / f"{sample_id}.tif") as src:
                mask = src.read(1)
            assert set(np.unique(mask)) <= {0, 255} and mask.any()
            assert src.transform.almost_equals(expected)

    # no crop of one split shares a pixel with a crop of another
    windows = {split: [CropWindow(c["window"]["row_off"], c["window"]["col_off"], 64, 64)
                       for c in crops if c["split"] == split] for split in lines}
    for a in windows:
        for b in windows:
            if a < b:
                assert not any(wa.intersects(wb) for wa in windows[a] for wb in windows[b])

    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["triplets"] == len(ids)
    assert {s: row["triplets"] for s, row in stats["splits"].items()} == \
        {s: len(rows) for s, rows in lines.items()}
    assert sum(stats["foreground_share"]["counts"]["all"]) == len(ids)
    assert stats["categories"] == list(base_config()["categories"])
    assert sum(sum(c.values()) for c in stats["per_template"].values()) == len(ids)
    assert stats["vocabulary"]["expression_category"]["light-duty vehicle in the parking area"] == "vehicle"
    assert stats["dropped"]["windows_straddling_splits"] > 0
    assert set(stats["per_template"]) == {"category", "attribute_category", "category_relation",
                                          "attribute_category_relation"}
    assert leftovers(out) == []


def test_masks_and_images_on_disk_are_exact(tmp_path, scene, classes_file):
    """Without resizing, a category mask is exactly the union of its classes in the window and
    the image is exactly the source pixels."""
    image, labels_path, labels = scene
    out = tmp_path / "dataset"
    assert main(["--image", str(image), "--labels", str(labels_path), "--classes", str(classes_file),
                 "--out", str(out), "--split", "train", "--window", "64", "--stride", "64",
                 "--output-size", "64", "--quiet"]) == 0
    config = base_config()
    with rasterio.open(image) as src:
        source = src.read()
    crops = json.loads((out / "crops.json").read_text())["crops"]
    assert len(crops) == 16
    checked = 0
    for crop in crops:
        w = crop["window"]
        rows, cols = slice(w["row_off"], w["row_off"] + 64), slice(w["col_off"], w["col_off"] + 64)
        with rasterio.open(out / "images" / f"{crop['samples'][0]['id']}.tif") as src:
            assert np.array_equal(src.read(), source[:, rows, cols])
        for sample in crop["samples"]:
            if sample["template"] not in ("category", "attribute_category") or \
                    sample["expression"] in ("large building", "small building"):
                continue
            word = sample["expression"]
            if sample["template"] == "category":
                classes = config["categories"][word]
            else:
                attribute, category = word.split(" ", 1)
                classes = config["attributes"][attribute][category]
            classes = [classes] if isinstance(classes, str) else classes
            with rasterio.open(out / "masks" / f"{sample['id']}.tif") as src:
                mask = src.read(1) == 255
            assert np.array_equal(mask, np.isin(labels[rows, cols], [VALUE[c] for c in classes]))
            checked += 1
    assert checked > 50


def test_scenes_file_puts_each_scene_wholly_in_its_split(tmp_path, classes_file):
    entries = []
    for k, split in enumerate(("train", "val")):
        labels = town(128, seed=k)
        write_raster(tmp_path / f"s{k}.tif", rgb_image(labels, k), origin=(400_000.0 + 1000 * k, 2_790_000.0))
        write_raster(tmp_path / f"s{k}_labels.tif", labels, origin=(400_000.0 + 1000 * k, 2_790_000.0))
        entries.append({"image": f"s{k}.tif", "labels": f"s{k}_labels.tif", "split": split,
                        "name": f"scene {k}"})
    (tmp_path / "scenes.yaml").write_text(yaml.safe_dump({"scenes": entries}))
    out = tmp_path / "multi"
    assert main(["--scenes", str(tmp_path / "scenes.yaml"), "--classes", str(classes_file),
                 "--out", str(out), "--quiet"]) == 0
    lines = phrases(out)
    assert set(lines) == {"train", "val"}          # no empty test file
    crops = json.loads((out / "crops.json").read_text())["crops"]
    assert {c["split"] for c in crops if c["scene"] == "scene-0"} == {"train"}
    assert {c["split"] for c in crops if c["scene"] == "scene-1"} == {"val"}
    assert all(i.startswith("scene-0_") for i, _ in lines["train"])
    # 128 px with 64 px windows at a 32 px stride: 3 × 3 windows per scene
    assert len([c for c in crops if c["scene"] == "scene-0"]) == 9
    stats = json.loads((out / "stats.json").read_text())
    assert [s["split"] for s in stats["scenes"]] == ["train", "val"]


def test_same_scene_at_two_gsds_gives_the_same_dataset(tmp_path, classes_file):
    """Buffers and areas are metres: the scene at 1 m and at 0.5 m (pixels repeated, windows
    doubled, same output size) yield the same expressions with the same masks."""
    labels = town(128, seed=4)
    results = []
    for factor in (1, 2):
        fine = np.kron(labels, np.ones((factor, factor), dtype=labels.dtype))
        image = write_raster(tmp_path / f"img{factor}.tif", rgb_image(fine), gsd=1.0 / factor)
        lab = write_raster(tmp_path / f"lab{factor}.tif", fine, gsd=1.0 / factor)
        out = tmp_path / f"out{factor}"
        assert main(["--image", str(image), "--labels", str(lab), "--classes", str(classes_file),
                     "--out", str(out), "--split", "train", "--window", str(64 * factor),
                     "--stride", str(32 * factor), "--output-size", "64", "--quiet"]) == 0
        crops = json.loads((out / "crops.json").read_text())["crops"]
        masks = {}
        for crop in crops:
            for sample in crop["samples"]:
                with rasterio.open(out / "masks" / f"{sample['id']}.tif") as src:
                    masks[(crop["window"]["row_off"] // factor, crop["window"]["col_off"] // factor,
                           sample["expression"])] = src.read(1)
        results.append(masks)
    assert results[0].keys() == results[1].keys()
    assert any(key[2].endswith("along the road") for key in results[0])
    for key, mask in results[0].items():
        assert np.array_equal(mask, results[1][key]), key


def _palette_png(path: Path, rgb: np.ndarray) -> None:
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    image = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), mode="P")
    image.putpalette(colours.astype(np.uint8).ravel().tolist())
    image.save(path)


def dubai_like(size: int = 160) -> np.ndarray:
    """Colour-coded labels with the Dubai colours: land, a road, buildings, a garden, water."""
    colours = {"land": (0x84, 0x29, 0xF6), "road": (0x6E, 0xC1, 0xE4), "building": (0x3C, 0x10, 0x98),
               "vegetation": (0xFE, 0xDD, 0x3A), "water": (0xE2, 0xA9, 0x29), "unlabeled": (0x9B, 0x9B, 0x9B)}
    rgb = np.zeros((size, size, 3), dtype=np.uint8)
    rgb[:] = colours["land"]
    rgb[70:82, :] = colours["road"]
    rgb[40:68, 10:60] = colours["building"]
    rgb[48:58, 20:40] = colours["vegetation"]        # courtyard
    rgb[84:120, 20:140] = colours["building"]
    rgb[130:, :] = colours["water"]
    rgb[0:6, 0:6] = colours["unlabeled"]
    return rgb


def test_colour_coded_palette_labels(tmp_path):
    rgb = dubai_like()
    image = write_raster(tmp_path / "scene.tif", rgb.transpose(2, 0, 1).copy())
    labels = tmp_path / "labels.png"               # a palette PNG without georeference
    _palette_png(labels, rgb)
    out = tmp_path / "dubai"
    assert main(["--image", str(image), "--labels", str(labels), "--classes",
                 str(CONFIG_DIR / "dubai.yaml"), "--out", str(out), "--split", "train",
                 "--window", "80", "--stride", "40", "--output-size", "80", "--quiet"]) == 0
    expressions = {e for _, e in phrases(out)["train"]}
    assert {"building", "road", "water", "unpaved land", "vegetation surrounded by building",
            "building along the road", "large building"} <= expressions
    # the courtyard is the only vegetation, and it is surrounded by the building
    crops = json.loads((out / "crops.json").read_text())["crops"]
    first = crops[0]
    ids = {s["expression"]: s["id"] for s in first["samples"]}
    with rasterio.open(out / "masks" / f"{ids['vegetation surrounded by building']}.tif") as src:
        mask = src.read(1) == 255
    assert np.array_equal(mask, (rgb[:80, :80] == (0xFE, 0xDD, 0x3A)).all(-1))


def test_unknown_colours_are_listed(tmp_path):
    rgb = dubai_like()
    rgb[100:104, 100:104] = (0x12, 0x34, 0x56)
    image = write_raster(tmp_path / "scene.tif", rgb.transpose(2, 0, 1).copy())
    labels = write_raster(tmp_path / "labels.tif", rgb.transpose(2, 0, 1).copy())
    out = tmp_path / "dubai"
    args = ["--image", str(image), "--labels", str(labels), "--classes",
            str(CONFIG_DIR / "dubai.yaml"), "--out", str(out), "--window", "80", "--quiet"]
    assert main(args) == 2
    assert not out.exists() and leftovers(out) == []


def _expect_error(capsys, argv, message, out):
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert leftovers(out) == []


def test_bad_inputs_exit_2_with_a_clear_message_and_write_nothing(tmp_path, scene, classes_file, capsys):
    image, labels_path, labels = scene
    out = tmp_path / "dataset"
    common = ["--classes", str(classes_file), "--out", str(out), "--window", "64", "--split", "train"]
    _expect_error(capsys, ["--image", str(tmp_path / "nope.tif"), "--labels", str(labels_path), *common],
                  "does not exist", out)
    small = write_raster(tmp_path / "small.tif", labels[:100, :100])
    _expect_error(capsys, ["--image", str(image), "--labels", str(small), *common],
                  "must cover the same pixels", out)
    shifted = write_raster(tmp_path / "shifted.tif", labels, origin=(400_010.0, 2_790_000.0))
    _expect_error(capsys, ["--image", str(image), "--labels", str(shifted), *common],
                  "different georeferences", out)
    other_crs = write_raster(tmp_path / "crs.tif", labels, crs=rasterio.crs.CRS.from_epsg(32639))
    _expect_error(capsys, ["--image", str(image), "--labels", str(other_crs), *common],
                  "different georeferences", out)
    bad = labels.copy()
    bad[5:9, 5:9] = 99
    bad_path = write_raster(tmp_path / "bad.tif", bad)
    _expect_error(capsys, ["--image", str(image), "--labels", str(bad_path), *common],
                  "99 (16 px)", out)
    plain_image = write_raster(tmp_path / "plain.tif", rgb_image(labels), georef=False)
    plain_labels = write_raster(tmp_path / "plain_labels.tif", labels, georef=False)
    _expect_error(capsys, ["--image", str(plain_image), "--labels", str(plain_labels), *common],
                  "--gsd METRES", out)
    _expect_error(capsys, ["--image", str(image), "--labels", str(labels_path), *common,
                           "--window", "300"], "no crop window of 300 px fits", out)
    assert not out.exists()
    # with --gsd the non-georeferenced scene builds, and its crops carry no CRS
    assert main(["--image", str(plain_image), "--labels", str(plain_labels), *common,
                 "--gsd", "1", "--quiet"]) == 0
    crops = json.loads((out / "crops.json").read_text())["crops"]
    assert crops[0]["crs"] is None and crops[0]["source_gsd_m"] == 1.0


def test_a_bad_second_scene_leaves_nothing_half_written(tmp_path, scene, classes_file):
    image, labels_path, labels = scene
    bad = labels.copy()
    bad[0, 0] = 77
    bad_path = write_raster(tmp_path / "bad.tif", bad)
    out = tmp_path / "dataset"
    argv = ["--scene", str(image), str(labels_path), "train", "--scene", str(image), str(bad_path),
            "val", "--classes", str(classes_file), "--out", str(out), "--window", "64", "--quiet"]
    assert main(argv) == 2
    assert not out.exists() and leftovers(out) == []


def test_existing_output_needs_overwrite(tmp_path, scene, classes_file, capsys):
    image, labels_path, _ = scene
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    argv = ["--image", str(image), "--labels", str(labels_path), "--classes", str(classes_file),
            "--out", str(out), "--window", "64", "--stride", "64", "--split", "val"]
    _expect_error(capsys, argv, "already exists; pass --overwrite", out)
    assert (out / "keep.txt").read_text() == "precious"
    assert main([*argv, "--overwrite", "--quiet"]) == 0
    assert not (out / "keep.txt").exists() and (out / "output_phrase_val.txt").is_file()
    assert leftovers(out) == []
    # an --out that holds the inputs is refused even with --overwrite
    inside = out / "scene.tif"
    inside.write_bytes(image.read_bytes())
    _expect_error(capsys, ["--image", str(inside), "--labels", str(labels_path), "--classes",
                           str(classes_file), "--out", str(out), "--overwrite"],
                  "lies inside the output", out)
    assert inside.is_file()


def test_module_entry_point(tmp_path, scene, classes_file):
    image, labels_path, _ = scene
    out = tmp_path / "dataset"
    run = subprocess.run([sys.executable, "-m", "training.builder", "--image", str(image),
                          "--labels", str(labels_path), "--classes", str(classes_file), "--out",
                          str(out), "--window", "128", "--stride", "64", "--output-size", "32",
                          "--split", "test", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "triplets from 9 crops" in run.stdout
    assert (out / "output_phrase_test.txt").is_file()


def test_declared_label_nodata_is_ignored(tmp_path, classes_file):
    labels = town(128, seed=2)
    labels[:, :40] = 250                            # outside the surveyed area
    image = write_raster(tmp_path / "scene.tif", rgb_image(labels))
    lab = write_raster(tmp_path / "labels.tif", labels, nodata=250)
    out = tmp_path / "dataset"
    assert main(["--image", str(image), "--labels", str(lab), "--classes", str(classes_file),
                 "--out", str(out), "--split", "train", "--window", "64", "--stride", "64",
                 "--output-size", "64", "--quiet"]) == 0
    crops = json.loads((out / "crops.json").read_text())["crops"]
    # 40 of the 64 columns of the left crops are nodata: over max_ignored_share, skipped
    assert {c["window"]["col_off"] for c in crops} == {64}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped"]["windows_mostly_ignored"] == 2


def test_gsd_from_the_crs_in_metres():
    from training.builder.scenes import ground_sample_distance

    crs = rasterio.crs.CRS
    assert ground_sample_distance(crs.from_epsg(32640), from_origin(0, 0, 0.5, 0.5), 10, 10) == 0.5
    feet = ground_sample_distance(crs.from_epsg(2263), from_origin(0, 0, 1, 1), 10, 10)
    assert feet == pytest.approx(0.3048, abs=1e-4)                 # US survey feet
    # 1e-5° at 25° N: 1.009 m east-west, 1.108 m north-south
    degrees = ground_sample_distance(crs.from_epsg(4326), from_origin(55.0, 25.01, 1e-5, 1e-5),
                                     2000, 2000)
    assert degrees == pytest.approx((1.0091 + 1.1079) / 2, abs=2e-3)
