"""The calibration's arithmetic: counting pixels per offset, choosing an offset, the typed field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rrsis_geo.calibration import Calibration
from rrsis_geo.checkpoint_config import CheckpointConfig
from rrsis_geo.errors import CheckpointError
from training.calibrate import GRID, Counts, choose_offset


def test_counts_per_offset_match_thresholding_each_offset():
    rng = np.random.default_rng(0)
    margin = rng.normal(-1.0, 2.0, (32, 32))
    truth = rng.random((32, 32)) < 0.3
    counts = Counts()
    counts.add(margin, truth)
    for k, g in enumerate(GRID):
        marked = margin + g >= 0
        assert counts.tp[k] == np.count_nonzero(marked & truth)
        assert counts.fp[k] == np.count_nonzero(marked & ~truth)
    assert counts.positives == 1 and counts.negatives == 0


def test_an_under_confident_category_gets_a_positive_offset_and_a_right_one_none():
    rng = np.random.default_rng(1)
    truth = np.zeros((64, 64), bool)
    truth[16:48, 16:48] = True
    # the target's margins sit between -1.5 and -0.5: the model ranks right but says "no"
    shy = np.where(truth, rng.uniform(-1.5, -0.5, truth.shape), rng.uniform(-6, -2.5, truth.shape))
    counts = Counts()
    counts.add(shy, truth)
    counts.add(rng.uniform(-6, -2.5, truth.shape), np.zeros_like(truth))  # a crop without it
    offset = choose_offset(counts)
    assert 1.5 <= offset <= 2.5 and counts.iou()[list(GRID).index(offset)] == pytest.approx(1.0)
    sure = np.where(truth, 3.0, -3.0)
    right = Counts()
    right.add(sure, truth)
    assert choose_offset(right) == 0.0  # every offset in (-3, 3) is as good: the nearest 0 wins


def test_calibration_field_round_trips_and_bad_values_are_named():
    config = {"architecture": "lgce", "calibration": {"offsets": {"bus": 1.5, "water": -0.25}, "fitted_on": "train"}}
    card = CheckpointConfig.from_dict(config)
    assert card.calibration == Calibration((("bus", 1.5), ("water", -0.25)), "train")
    assert CheckpointConfig.from_dict(card.to_dict()) == card
    assert card.calibration.offset_for(["bus", "road"]) == 1.5 and card.calibration.offset_for([]) == 0.0
    assert card.calibration.offset("road") == 0.0
    # a category's effective threshold on the model's own probability
    assert card.calibration.raw_threshold("bus") == pytest.approx(1 / (1 + math.exp(1.5)))
    assert card.calibration.raw_threshold("road", 0.3) == pytest.approx(0.3)
    for bad in ({"offsets": {"bus": "high"}}, {"offsets": {"bus": 9.0}}, {"offsets": [1.0]}, "x"):
        with pytest.raises(CheckpointError, match="calibration"):
            CheckpointConfig.from_dict({"architecture": "lgce", "calibration": bad})


def test_the_plan_says_from_which_model_probability_a_calibrated_expression_is_marked(capsys):
    from rrsis_geo.cli import say_plan
    from rrsis_geo.pipeline import PredictionPlan
    from rrsis_geo.scaleplan import ExpressionPlan
    from rrsis_geo.understanding import Explanation

    def expression(text, categories, offset):
        explanation = Explanation(text, tuple(categories), tuple(categories), (), True, 0.5)
        return ExpressionPlan(text, explanation, None, offset)

    plan = PredictionPlan([expression("greenery", ["vegetation"], 1.5), expression("houses", ["building"], 0.0)],
                          [], 256, "m", threshold=0.5)
    assert plan.marked_from(plan.expressions[0]) == pytest.approx(1 / (1 + math.exp(1.5)))
    assert plan.to_dict()["threshold"] == 0.5 and plan.to_dict()["expressions"][0]["calibration_offset"] == 1.5
    say_plan(plan)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("; calibrated: vegetation marked from the model's 0.18")
    assert "calibrated" not in lines[1]
    plan.threshold = 0.7  # --threshold moves it too
    assert plan.marked_from(plan.expressions[0]) == pytest.approx(1 / (1 + math.exp(1.5 - math.log(0.7 / 0.3))))


def test_the_crop_evaluation_moves_each_sample_by_its_offset():
    import torch

    from training.evaluate import predict_masks

    # background logit 0, target logit -1 everywhere: probability 0.27, unmarked at 0.5 ...
    logits = torch.stack([torch.zeros(2, 4, 4), torch.full((2, 4, 4), -1.0)], dim=1)
    plain = predict_masks(logits, [(4, 4), (4, 4)])
    moved = predict_masks(logits, [(4, 4), (4, 4)], offsets=[1.5, 0.0])
    assert not plain[0].any() and not plain[1].any()
    assert moved[0].all() and not moved[1].any()  # ... marked once its sample's offset lifts it past 0


def test_calibrations_compare_equal_whatever_order_they_were_built_in():
    a = Calibration((("water", -0.25), ("bus", 1.5)))
    assert a == Calibration((("bus", 1.5), ("water", -0.25)))
    card = CheckpointConfig.from_dict({"architecture": "lgce"})
    from dataclasses import replace

    made = replace(card, calibration=a)
    assert CheckpointConfig.from_dict(made.to_dict()) == made
    with pytest.raises(CheckpointError, match="twice"):
        Calibration((("bus", 1.0), ("bus", 2.0)))
