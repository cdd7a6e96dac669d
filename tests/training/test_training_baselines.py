"""The two image-blind baselines, on masks whose scores are known by hand."""

import json

import numpy as np
import pytest

from training.baselines import main as baselines_main
from training.baselines import run_baselines
from training_testdata import write_geotiff


def _dataset(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    left = np.zeros((16, 16), dtype=np.uint8)
    left[:, :8] = 255  # the buildings always fill the left half
    top = np.zeros((16, 16), dtype=np.uint8)
    top[:4, :] = 255  # the roads fill the top quarter ... or the bottom quarter
    bottom = top[::-1].copy()
    image = np.full((3, 16, 16), 100, dtype=np.uint8)
    entries = {"train": [("0", "building", left), ("1", "building", left), ("2", "road", top), ("3", "road", bottom)],
               "val": [("4", "large building", left), ("5", "road", top), ("6", "tree", top)]}
    for split, rows in entries.items():
        for key, _, mask in rows:
            write_geotiff(root / "images" / f"{key}.tif", image)
            write_geotiff(root / "masks" / f"{key}.tif", mask[None])
        (root / f"output_phrase_{split}.txt").write_text("".join(f"{k} {e}\n" for k, e, _ in rows))
    return root


def test_baselines_by_hand(tmp_path, capsys):
    root = _dataset(tmp_path / "d")
    metrics = run_baselines(root, "val", grid=16)
    whole = metrics["whole image"]
    # IoU of predicting everything = the target's share: 1/2, 1/4, 1/4
    assert whole["mIoU"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    assert whole["oIoU"] == pytest.approx((128 + 64 + 64) / (3 * 256))
    prior = metrics["category mean mask"]
    # thresholds are fitted on the training masks. building: the mean of two identical masks is
    # exact (IoU 1). road: top and bottom average to 0.5 in both quarters; predicting both quarters
    # (IoU 1/2 on train) beats the whole image (1/4) -> 64 / 128 on the val road.
    # tree was never seen: it gets the mean of all four training masks (0.75 in the left half of the
    # top and bottom quarters, 0.5 in the left middle, 0.25 right top/bottom, 0 right middle), whose
    # best training threshold is 0.5 (train mIoU 0.6 vs 0.42 / 0.5 / 0.375): the left half, of which
    # 32 px are in the tree's top quarter (64 px): 32 / 160
    assert prior["per_category"]["building"]["IoU"] == 1.0
    assert prior["per_category"]["road"]["IoU"] == pytest.approx(0.5)
    assert prior["per_category"]["tree"]["IoU"] == pytest.approx(0.2)
    assert prior["thresholds"]["road"] == pytest.approx(0.5) and prior["thresholds"]["*"] == pytest.approx(0.5)

    out = tmp_path / "baselines.md"
    assert baselines_main(["--data-root", str(root), "--split", "val", "--grid", "16", "--out", str(out),
                           "--json", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "baseline 'whole image'" in printed and "baseline 'category mean mask'" in printed
    assert out.read_text() == printed
    assert set(json.loads((tmp_path / "b.json").read_text())) == {"whole image", "category mean mask"}
    assert baselines_main(["--data-root", str(root), "--split", "val", "--out", str(out)]) == 2  # exists
