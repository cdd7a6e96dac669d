"""The papers' metrics against hand-computed cases."""

import numpy as np
import pytest
import torch

from training.evaluate import predict_masks, resize_mask
from training.metrics import (
    EMPTY_IOU,
    PAPER_CODE_SCORING,
    SampleResult,
    Scoring,
    markdown_table,
    score_sample,
    summarize,
)


def masks(*rows):
    return np.array(rows, dtype=bool)


def test_perfect_prediction_has_iou_one():
    gt = masks([1, 1, 0], [0, 1, 0])
    r = score_sample(gt.copy(), gt)
    assert (r.intersection, r.union, r.iou) == (3, 3, 1.0)


def test_half_overlap():
    # prediction covers 2 of 4 target pixels and nothing else: I = 2, U = 4
    gt = masks([1, 1, 1, 1])
    pred = masks([1, 1, 0, 0])
    r = score_sample(pred, gt)
    assert (r.intersection, r.union) == (2, 4)
    assert r.iou == pytest.approx(0.5)


def test_empty_prediction_scores_zero():
    gt = masks([0, 1], [1, 1])
    r = score_sample(np.zeros_like(gt), gt)
    assert (r.intersection, r.union, r.iou) == (0, 3, 0.0)


def test_empty_ground_truth_with_prediction_scores_zero():
    gt = np.zeros((2, 2), dtype=bool)
    r = score_sample(masks([1, 0], [0, 0]), gt)
    assert (r.intersection, r.union, r.iou) == (0, 1, 0.0)


def test_empty_prediction_of_empty_ground_truth_counts_as_one():
    empty = np.zeros((3, 3), dtype=bool)
    assert score_sample(empty, empty).iou == EMPTY_IOU == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        score_sample(np.zeros((2, 2)), np.zeros((2, 3)))


def test_summary_by_hand():
    results = [
        SampleResult(0, "road", intersection=9, union=10),  # 0.9
        SampleResult(1, "road", intersection=5, union=10),  # 0.5 (not above 0.5)
        SampleResult(2, "car", intersection=0, union=4),  # 0.0
        SampleResult(3, "car", intersection=0, union=0),  # both empty: 1.0
        SampleResult(4, "building", intersection=70, union=100),  # 0.7
    ]
    m = summarize(results)
    assert m["samples"] == 5
    assert m["mIoU"] == pytest.approx((0.9 + 0.5 + 0.0 + 1.0 + 0.7) / 5)
    assert m["oIoU"] == pytest.approx((9 + 5 + 0 + 0 + 70) / (10 + 10 + 4 + 0 + 100))
    # IoU strictly above t: {0.9, 1.0, 0.7} > 0.5 and > 0.6; {0.9, 1.0} > 0.7 (0.7 itself is not above)
    assert m["Pr@0.5"] == pytest.approx(3 / 5)
    assert m["Pr@0.6"] == pytest.approx(3 / 5)
    assert m["Pr@0.7"] == pytest.approx(2 / 5)
    assert m["Pr@0.8"] == pytest.approx(2 / 5)
    assert m["Pr@0.9"] == pytest.approx(1 / 5)  # only the empty/empty sample (0.9 is not above 0.9)
    assert m["per_category"]["road"] == {"IoU": pytest.approx(0.7), "samples": 2}
    assert m["per_category"]["car"] == {"IoU": pytest.approx(0.5), "samples": 2}
    assert m["per_category"]["building"] == {"IoU": pytest.approx(0.7), "samples": 1}
    assert m["category_average"] == pytest.approx((0.7 + 0.5 + 0.7) / 3)


def test_markdown_table_shows_percentages():
    m = summarize([SampleResult(0, "road", 1, 2), SampleResult(1, "tree", 1, 1)])
    table = markdown_table(m, title="demo", categories_order=["tree", "road"])
    lines = table.splitlines()
    assert lines[0] == "**demo**"
    assert lines[2] == "| samples | Pr@0.5 | Pr@0.6 | Pr@0.7 | Pr@0.8 | Pr@0.9 | oIoU | mIoU |"
    assert lines[4] == "| 2 | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 | 66.67 | 75.00 |"
    assert lines.index("| tree | 1 | 100.00 |") < lines.index("| road | 1 | 50.00 |")
    assert "| *average over categories* | 2 | 75.00 |" in lines


def test_predictions_are_scored_at_ground_truth_resolution():
    # 2x2 logits saying "target" (channel 1) in the left column, resized to a 4x6 ground truth
    target = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    logits = torch.stack([-target, target])[None]
    (pred,) = predict_masks(logits, [(4, 6)])
    assert pred.shape == (4, 6)
    assert pred[:, :3].all() and not pred[:, 3:].any()


def test_reference_code_conventions_are_switches():
    # IoUs 1/2 (exactly on the 0.5 threshold), 1 and an empty prediction of an empty truth
    results = [SampleResult(0, "a", 1, 2), SampleResult(1, "a", 3, 3), SampleResult(2, "b", 0, 0)]
    default = summarize(results)
    assert default["Pr@0.5"] == pytest.approx(2 / 3) and default["mIoU"] == pytest.approx(2.5 / 3)
    code = summarize(results, PAPER_CODE_SCORING)
    assert code["Pr@0.5"] == pytest.approx(2 / 3)  # 0.5 passes (>=), the empty sample fails (IoU 0)
    assert code["mIoU"] == pytest.approx(1.5 / 3)
    assert summarize(results, Scoring(pr_inclusive=True))["Pr@0.5"] == 1.0
    with pytest.raises(ValueError, match="score_size"):
        Scoring(score_size="native")


def test_truth_resized_to_the_input_size_by_nearest_neighbour():
    truth = torch.zeros(8, 12, dtype=torch.bool)
    truth[:, :6] = True
    small = resize_mask(truth, (4, 4))
    assert small.dtype == torch.bool and small[:, :2].all() and not small[:, 2:].any()
