"""Dataset readers on real files: RefSegRS layout (GeoTIFF/TIFF), RRSIS-D refcoco layout (JPEG + pickle)."""

import json
import pickle

import numpy as np
import pytest
import rasterio
import torch

from rrsis_geo.errors import InputError
from training.datasets import CategoryMatcher, RefSegRSDataset, RRSISDDataset, build_dataset, collate, detect_format
from training.datasets.categories import REFSEGRS_CATEGORIES, OTHER
from training_testdata import write_geotiff

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.mark.parametrize(
    "expression, category",
    [
        ("car on the road", "car"),
        ("road marking on the road", "road marking"),
        ("road along the building", "road"),
        ("low vegetation surrounded by building", "low vegetation"),
        ("light-duty vehicle in the parking area", "vehicle"),
        ("paved road", "road"),
        ("buses", "bus"),
        ("carpet", OTHER),  # whole words only
        ("impervious   surface", "impervious surface"),
    ],
)
def test_category_is_the_earliest_longest_phrase(expression, category):
    assert CategoryMatcher(REFSEGRS_CATEGORIES)(expression) == category


def _write_refsegrs(root, size=(40, 48)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = size
    image = np.zeros((3, h, w), dtype=np.uint8)
    image[0] = 255  # pure red
    write_geotiff(root / "images" / "17.tif", image)
    mask = np.zeros((1, h, w), dtype=np.uint8)
    mask[0, :10, :] = 255
    mask[0, 10:12, :] = 40  # edge values at or below 50 are background, as the reference loader
    mask[0, 12:14, :] = 60  # above 50: foreground
    write_geotiff(root / "masks" / "17.tif", mask)
    # a plain, non-georeferenced TIFF works as well
    with rasterio.open(root / "images" / "18.tif", "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8") as dst:
        dst.write(np.full((3, h, w), 128, dtype=np.uint8))
    with rasterio.open(root / "masks" / "18.tif", "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, h, w), dtype=np.uint8))
    (root / "output_phrase_val.txt").write_text("17 car on the road\n\n18 road marking\n", encoding="utf-8")
    (root / "georef_sidecar.json").write_text("{}")  # extra files are ignored
    return root


def test_refsegrs_items(tmp_path, tokenizer):
    root = _write_refsegrs(tmp_path / "rs")
    ds = RefSegRSDataset(root, "val", tokenizer, input_size=32, mean=MEAN, std=STD, max_tokens=8, return_gt=True)
    assert len(ds) == 2
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    # red channel (1 - 0.5) / 0.25 = 2, the others (0 - 0.5) / 0.25 = -2
    assert torch.allclose(item["image"][:, 5, 5], torch.tensor([2.0, -2.0, -2.0]))
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.long
    assert set(item["mask"].unique().tolist()) == {0, 1}
    gt = item["gt_mask"]
    assert gt.shape == (40, 48) and gt.dtype == torch.bool
    assert gt[:10].all() and not gt[10:12].any() and gt[12:14].all() and not gt[14:].any()
    assert item["input_ids"].shape == (8,) and item["attention_mask"].sum() == 6  # [CLS] car on the road [SEP]
    assert (item["expression"], item["category"], item["index"]) == ("car on the road", "car", 0)
    assert ds.categories == ["car", "road marking"]
    assert np.array_equal(ds.gt_mask(0), gt.numpy())

    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["index"].tolist() == [0, 1]
    assert isinstance(batch["gt_mask"], list) and batch["category"] == ["car", "road marking"]


def test_refsegrs_categories_from_builder_stats(tmp_path, tokenizer):
    root = _write_refsegrs(tmp_path / "rs")
    stats = {"categories": ["road", "car"], "vocabulary": {"expression_category": {"road marking": "road"}}}
    (root / "stats.json").write_text(json.dumps(stats))
    ds = RefSegRSDataset(root, "val", tokenizer, input_size=16, mean=MEAN, std=STD)
    assert ds.vocabulary == ["road", "car"]
    assert ds.categories == ["car", "road"]  # recorded by the builder beats the lookup


def test_refsegrs_errors_say_what_is_wrong(tmp_path, tokenizer):
    root = _write_refsegrs(tmp_path / "rs")
    with pytest.raises(InputError, match="output_phrase_test.txt does not exist"):
        RefSegRSDataset(root, "test", tokenizer, input_size=16, mean=MEAN, std=STD)
    (root / "output_phrase_val.txt").write_text("19 tree\n")
    ds = RefSegRSDataset(root, "val", tokenizer, input_size=16, mean=MEAN, std=STD)
    with pytest.raises(InputError, match="no file 19"):
        ds[0]
    (root / "output_phrase_val.txt").write_text("20\n")
    with pytest.raises(InputError, match="expected '<id> <expression>'"):
        RefSegRSDataset(root, "val", tokenizer, input_size=16, mean=MEAN, std=STD)


def _write_rrsisd(root):
    from PIL import Image

    ann_dir = root / "rrsisd"
    img_dir = root / "images" / "rrsisd" / "JPEGImages"
    ann_dir.mkdir(parents=True)
    img_dir.mkdir(parents=True)
    for name in ("00001.jpg", "00002.jpg"):
        Image.fromarray(np.full((20, 30, 3), 200, dtype=np.uint8)).save(img_dir / name, quality=95)
    instances = {
        "images": [
            {"id": 1, "file_name": "00001.jpg", "height": 20, "width": 30},
            {"id": 2, "file_name": "00002.jpg", "height": 20, "width": 30},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
            # uncompressed RLE: all of column 0 (20 px), nothing else
            {"id": 11, "image_id": 2, "category_id": 6, "segmentation": {"size": [20, 30], "counts": [0, 20, 580]}},
        ],
        "categories": [{"id": 5, "name": "storage tank"}, {"id": 6, "name": "bridge"}],
    }
    (ann_dir / "instances.json").write_text(json.dumps(instances))
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "test", "category_id": 5,
         "sentences": [{"raw": "the storage tank", "sent": "the storage tank", "sent_id": 0},
                       {"raw": "a grey tank", "sent": "a grey tank", "sent_id": 1}]},
        {"ref_id": 1, "ann_id": 11, "image_id": 2, "split": "train", "category_id": 6,
         "sentences": [{"raw": "the bridge", "sent": "the bridge", "sent_id": 2}]},
    ]
    (ann_dir / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


def test_rrsisd_items(tmp_path, tokenizer):
    root = _write_rrsisd(tmp_path / "rrsisd_root")
    assert detect_format(root, "test") == "rrsisd"
    ds = RRSISDDataset(root, "test", tokenizer, input_size=16, mean=MEAN, std=STD, return_gt=True)
    assert len(ds) == 2  # one sample per sentence
    assert [ds[i]["expression"] for i in range(2)] == ["the storage tank", "a grey tank"]
    assert ds.categories == ["storage tank", "storage tank"]
    gt = ds[0]["gt_mask"]
    assert gt.shape == (20, 30) and gt.sum() == 10 * 6 and gt[2:8, 2:12].all()
    train = RRSISDDataset(root / "rrsisd", "train", tokenizer, input_size=16, mean=MEAN, std=STD,
                          image_dir=root / "images" / "rrsisd" / "JPEGImages")
    mask = train.gt_mask(0)
    assert mask[:, 0].all() and mask.sum() == 20
    assert train[0]["image"].shape == (3, 16, 16)


def test_build_dataset_from_config_sections(tmp_path, tokenizer):
    root = _write_rrsisd(tmp_path / "r")
    model_config = {"input_size": 24, "mean": MEAN, "std": STD, "max_tokens": 10}
    ds = build_dataset({"root": str(root), "format": "rrsisd"}, "test", tokenizer, model_config)
    assert ds[0]["image"].shape == (3, 24, 24) and ds[0]["input_ids"].shape == (10,)
    with pytest.raises(InputError, match="no dataset root"):
        build_dataset({"root": None}, "test", tokenizer, model_config)
    with pytest.raises(InputError, match="neither a RefSegRS-format"):
        detect_format(tmp_path, "val")


def test_builder_metadata_gsd_and_vocabulary(tmp_path):
    from training.datasets.stats import model_gsd, read_stats, training_gsd, vocabulary_words

    crops = {"crops": [
        {"split": "train", "gsd_m": 1.0, "size": [128, 128]},
        {"split": "train", "gsd_m": 1.5, "size": [128, 128]},
        {"split": "train", "gsd_m": 2.0, "size": [128, 128]},
        {"split": "val", "gsd_m": 9.0, "size": [128, 128]},
    ]}
    (tmp_path / "crops.json").write_text(json.dumps(crops))
    # the median crop (1.5 m at 128 px) seen by a 64 px model: 3 m per model pixel
    assert training_gsd(tmp_path, "train", 64) == 3.0
    assert training_gsd(tmp_path, "test", 64) is None
    assert model_gsd(0.3046875, 512, 512) == 0.304688
    stats = {"categories": ["road", "car"], "vocabulary": {
        "categories": ["road", "car"], "attributes": ["paved"], "relations": ["along the road"],
        "expression_category": {"paved road": "road"}}}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert vocabulary_words(read_stats(tmp_path)) == ["road", "car", "paved", "along the road"]
    assert read_stats(tmp_path / "missing") == {}
