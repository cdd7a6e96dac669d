"""Each relation keeps exactly the instances it should; buffers are metres, not pixels."""

from __future__ import annotations

import numpy as np
import pytest
from builder_testdata import base_config, box, context, paint

from training.builder import RULES, parse_config
from training.builder.expressions import ExpressionMasker, plan_expressions
from training.builder.geometry import CropContext


def expression_mask(labels, cfg, text, gsd_m=1.0):
    ctx = context(labels, cfg, gsd_m)
    plan = {e.text: e for e in plan_expressions(cfg)}
    return ExpressionMasker(ctx).mask(plan[text])


def only(labels, name, rows, cols):
    """The mask of one drawn rectangle."""
    mask = np.zeros(labels.shape, dtype=bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def test_every_rule_has_a_docstring_saying_what_it_keeps():
    for name in ("in_the_parking_area", "with_a_parking_lot", "driving_on_the_road",
                 "along_the_road", "along_with_tree", "on_the_road", "surrounded_by_building",
                 "adjacent_to", "enclosed_by"):
        assert RULES[name].description.startswith("Keeps"), name
        assert RULES[name].kind in ("adjacency", "containment")


def test_driving_on_the_road_keeps_the_car_on_the_road_only(config):
    labels = paint((60, 60))
    box(labels, "road", (20, 40), (0, 60))
    box(labels, "car", (28, 32), (10, 12))        # on the carriageway
    box(labels, "car", (45, 49), (10, 12))        # on land, 5 m from the road edge (row 40)
    box(labels, "parking", (40, 50), (30, 45))    # lot beside the road …
    box(labels, "car", (40, 44), (34, 36))        # … a car parked in it touches the road on one end
    kept = expression_mask(labels, config, "car driving on the road")
    assert np.array_equal(kept, only(labels, "car", (28, 32), (10, 12)))


def test_driving_on_the_road_buffer_is_in_metres(config):
    labels = paint((60, 60))
    box(labels, "road", (20, 40), (0, 60))
    box(labels, "car", (43, 46), (30, 32))  # on land, 3 px below the road edge
    # at 1 m the gap is 3 m, far beyond the 0.5 m buffer
    assert not expression_mask(labels, config, "car driving on the road", gsd_m=1.0).any()
    # with 0.1 m pixels the same 3 px are 0.3 m: every boundary pixel is within 0.5 m
    assert expression_mask(labels, config, "car driving on the road", gsd_m=0.1)[43:46, 30:32].all()


def test_in_the_parking_area_keeps_parked_not_adjacent(config):
    labels = paint((50, 50))
    box(labels, "parking", (10, 30), (10, 30))
    box(labels, "car", (15, 19), (15, 17))      # inside the lot
    box(labels, "van", (30, 34), (15, 17))      # on land just below the lot, touching it
    box(labels, "car", (40, 44), (40, 42))      # far away
    kept = expression_mask(labels, config, "vehicle in the parking area")
    assert np.array_equal(kept, only(labels, "car", (15, 19), (15, 17)))
    light = expression_mask(labels, config, "light-duty vehicle in the parking area")
    assert np.array_equal(light, kept)


def test_with_a_parking_lot_keeps_buildings_within_3_m(config):
    labels = paint((60, 60))
    box(labels, "parking", (20, 40), (20, 40))
    box(labels, "building", (20, 40), (5, 18))     # gap of 2 columns = 2 m: kept
    box(labels, "building", (20, 40), (46, 58))    # gap of 6 m: dropped
    kept = expression_mask(labels, config, "building with a parking lot")
    assert np.array_equal(kept, only(labels, "building", (20, 40), (5, 18)))


def test_along_the_road_keeps_what_lines_the_road(config):
    labels = paint((80, 80))
    box(labels, "road", (30, 40), (0, 50))
    box(labels, "building", (18, 29), (5, 20))    # long side 1 m from the road: kept
    box(labels, "building", (50, 60), (5, 20))    # 10 m away: dropped
    box(labels, "building", (44, 60), (54, 70))   # off the road's end, 6 m diagonally: dropped
    box(labels, "tree", (41, 44), (20, 40))       # trees right along the road: kept
    kept = expression_mask(labels, config, "building along the road")
    assert np.array_equal(kept, only(labels, "building", (18, 29), (5, 20)))
    trees = expression_mask(labels, config, "tree along the road")
    assert np.array_equal(trees, only(labels, "tree", (41, 44), (20, 40)))


def test_along_the_road_corner_contact_is_not_along():
    cfg = parse_config(base_config(relations=[
        {"phrase": "along the road", "object": "road", "subjects": ["building"],
         "buffer_m": 0, "min_contact_m": 2}]))
    labels = paint((40, 40))
    box(labels, "road", (0, 20), (0, 20))
    box(labels, "building", (20, 30), (19, 30))   # shares one pixel of edge with the road
    box(labels, "building", (20, 30), (0, 10))    # shares a 10 m edge with the road
    kept = expression_mask(labels, cfg, "building along the road")
    assert np.array_equal(kept, only(labels, "building", (20, 30), (0, 10)))


def test_along_with_tree_keeps_the_tree_lined_road(config):
    labels = paint((60, 60))
    box(labels, "road", (10, 16), (0, 60))        # road 1, trees along its north side
    box(labels, "tree", (5, 9), (5, 50))          # 1 m gap
    box(labels, "road", (40, 46), (0, 60))        # road 2, no trees near
    box(labels, "tree", (52, 56), (5, 50))        # 6 m away
    kept = expression_mask(labels, config, "road along with tree")
    assert np.array_equal(kept, only(labels, "road", (10, 16), (0, 60)))


def test_on_the_road_keeps_markings_on_the_road(config):
    labels = paint((40, 40))
    box(labels, "road", (5, 15), (0, 40))
    box(labels, "lane marking", (9, 10), (2, 30))  # painted on the road
    box(labels, "parking", (25, 35), (0, 40))
    box(labels, "lane marking", (29, 30), (2, 30))  # a line painted in the parking lot
    kept = expression_mask(labels, config, "road marking on the road")
    assert np.array_equal(kept, only(labels, "lane marking", (9, 10), (2, 30)))


def test_surrounded_by_building_keeps_the_courtyard_not_the_half_open_patch(config):
    labels = paint((60, 60))
    box(labels, "building", (5, 25), (5, 25))
    box(labels, "vegetation", (10, 20), (10, 20))   # courtyard: building on all four sides
    box(labels, "building", (35, 55), (5, 25))
    box(labels, "vegetation", (40, 50), (15, 35))   # cuts through the east wall: half open
    box(labels, "vegetation", (30, 33), (45, 55))   # in the open
    kept = expression_mask(labels, config, "vegetation surrounded by building")
    assert np.array_equal(kept, only(labels, "vegetation", (10, 20), (10, 20)))


def test_the_crop_edge_neither_supports_nor_breaks_containment(config):
    labels = paint((30, 30))
    box(labels, "building", (0, 15), (0, 15))
    box(labels, "vegetation", (0, 10), (0, 10))     # courtyard cut by the crop's corner
    kept = expression_mask(labels, config, "vegetation surrounded by building")
    assert np.array_equal(kept, only(labels, "vegetation", (0, 10), (0, 10)))
    # an instance that fills the crop has no known surroundings: never "surrounded"
    full = paint((10, 10), fill="vegetation")
    assert not expression_mask(full, config, "vegetation surrounded by building").any()


def test_generic_rules_with_thresholds_from_the_config():
    cfg = parse_config(base_config(relations=[
        {"phrase": "along the water", "rule": "adjacent_to", "object": "water",
         "subjects": ["building"], "buffer_m": 5},
        {"phrase": "surrounded by vegetation", "rule": "enclosed_by", "object": "vegetation",
         "subjects": ["building"], "buffer_m": 0, "min_share": 0.5}]))
    labels = paint((60, 60))
    box(labels, "water", (0, 10), (0, 60))
    box(labels, "building", (15, 20), (5, 10))      # 5 m from the water: kept
    box(labels, "building", (16, 20), (20, 25))     # 6 m: dropped
    box(labels, "vegetation", (30, 60), (30, 60))
    box(labels, "building", (40, 45), (30, 36))     # west side open: 3 of 4 sides green
    box(labels, "building", (40, 45), (10, 16))     # no vegetation near
    assert np.array_equal(expression_mask(labels, cfg, "building along the water"),
                          only(labels, "building", (15, 20), (5, 10)))
    assert np.array_equal(expression_mask(labels, cfg, "building surrounded by vegetation"),
                          only(labels, "building", (40, 45), (30, 36)))


def test_area_attributes_and_their_relations(config):
    labels = paint((60, 60))
    box(labels, "road", (28, 32), (0, 60))
    box(labels, "building", (10, 25), (5, 20))    # 225 m²: large, along the road
    box(labels, "building", (35, 40), (5, 11))    # 30 m²: small, along the road
    box(labels, "building", (50, 55), (40, 47))   # 35 m²: small, far from the road
    assert np.array_equal(expression_mask(labels, config, "large building"),
                          only(labels, "building", (10, 25), (5, 20)))
    small = expression_mask(labels, config, "small building")
    assert small.sum() == 30 + 35
    assert np.array_equal(expression_mask(labels, config, "small building along the road"),
                          only(labels, "building", (35, 40), (5, 11)))
    # the same buildings with 2 m pixels are four times larger: none is small any more
    assert not expression_mask(labels, config, "small building", gsd_m=2.0).any()


def test_tiny_components_are_left_out_of_instance_masks():
    cfg = parse_config(base_config(filters={"min_instance_area_m2": 3}))
    labels = paint((30, 30))
    box(labels, "road", (10, 20), (0, 30))
    box(labels, "car", (12, 16), (5, 7))          # 8 m²: a car
    box(labels, "car", (12, 13), (20, 22))        # 2 m²: label noise
    kept = expression_mask(labels, cfg, "car driving on the road")
    assert np.array_equal(kept, only(labels, "car", (12, 16), (5, 7)))
    assert expression_mask(labels, cfg, "car").sum() == 10  # class masks stay exact unions


@pytest.mark.parametrize("factor", [2, 3])
def test_same_scene_at_another_gsd_gives_the_same_decisions(config, factor):
    """A scene drawn at 1 m and the same scene at 1/factor m (each pixel repeated) keep the same
    instances for every relation, because buffers and areas are metres."""
    labels = paint((64, 64))
    box(labels, "road", (20, 28), (0, 64))
    box(labels, "lane marking", (23, 24), (2, 60))
    box(labels, "car", (21, 23), (5, 9))          # on the road
    box(labels, "car", (33, 35), (5, 9))          # 5 m off the road
    box(labels, "parking", (40, 52), (2, 30))
    box(labels, "van", (44, 47), (6, 8))          # parked
    box(labels, "van", (53, 56), (10, 12))        # beside the lot
    box(labels, "building", (30, 38), (40, 60))   # 2 m from the road
    box(labels, "building", (44, 60), (34, 40))   # 4 m from the lot, 16 m from the road
    box(labels, "building", (44, 60), (46, 62))
    box(labels, "vegetation", (48, 56), (50, 58))  # courtyard
    box(labels, "vegetation", (50, 54), (40, 46))  # between two buildings, open above/below
    box(labels, "tree", (10, 19), (10, 30))       # along the road (1 m gap)
    box(labels, "tree", (2, 6), (40, 50))         # 14 m from the road
    coarse = context(labels, config, gsd_m=1.0)
    fine = context(np.kron(labels, np.ones((factor, factor), dtype=labels.dtype)), config,
                   gsd_m=1.0 / factor)
    coarse_masker, fine_masker = ExpressionMasker(coarse), ExpressionMasker(fine)
    decided = 0
    for expression in plan_expressions(config):
        a = coarse_masker.mask(expression)
        b = fine_masker.mask(expression)[::factor, ::factor]
        assert np.array_equal(a, b), expression.text
        decided += expression.relation is not None and a.any()
    assert decided >= 8


def test_buffers_convert_with_the_gsd_not_pixel_counts(config):
    """Same pixels, different declared GSD: a 4-px gap is 4 m at 1 m but 2 m at 0.5 m."""
    labels = paint((40, 40))
    box(labels, "road", (20, 30), (0, 40))
    box(labels, "building", (5, 16), (5, 30))     # 4 px above the road
    assert not expression_mask(labels, config, "building along the road", gsd_m=1.0).any()
    assert expression_mask(labels, config, "building along the road", gsd_m=0.5).any()


def test_near_counts_gap_metres_between_pixels():
    labels = np.zeros((1, 12), dtype=np.uint8)
    labels[0, 0] = 1
    ctx = CropContext(labels, {"road": 1}, gsd_m=0.5)
    near = ctx.near(["road"], buffer_m=1.0)  # up to 2 px between
    assert near.tolist() == [[True, True, True, True] + [False] * 8]
