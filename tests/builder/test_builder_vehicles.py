"""Vehicle facts from pixels and boxes, and referents emitted only where the labels decide them."""

from __future__ import annotations

import numpy as np
from vehicle_testdata import paint_scene

from training.builder.boxes import Box
from training.builder.boxmask import instance_masks
from training.builder.vehicles import VehicleRules, crop_referents, image_facts, instance_colour

CATEGORIES = {"vehicle": frozenset({"car", "bus"}), "car": frozenset({"car"}), "bus": frozenset({"bus"})}
NEXT_TO_BUS = [("next to the bus", "car", "bus")]
GSD = 0.1  # m per px: a car of 45 × 18 px is 4.5 × 1.8 m


def _referents(vehicles, window=None, size=(200, 200), relations=(), medians=None):
    image = paint_scene(size[1], size[0], vehicles)
    boxes = [Box(cls, x0, y0, x1, y1) for cls, _, x0, y0, x1, y1 in vehicles]
    labels = instance_masks(boxes, image, "fill")
    rules = VehicleRules()
    facts = image_facts(boxes, labels, image, GSD, rules)
    window = window or (0, size[0], 0, size[1])
    found = crop_referents(facts, labels, window, CATEGORIES, medians or {}, list(relations), GSD, rules)
    return {(r.referent.category, r.referent.attributes, r.referent.relation): r.mask for r in found}, facts


def _box_mask(shape, x0, y0, x1, y1, window=None):
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    if window:
        r0, r1, c0, c1 = window
        mask = mask[r0:r1, c0:c1]
    return mask


def test_colour_and_position_on_a_crafted_image():
    vehicles = [("car", "red", 10, 20, 55, 38),       # top left
                ("car", "white", 140, 160, 185, 178),  # bottom right
                ("car", "blue", 80, 92, 125, 110)]     # centre
    found, facts = _referents(vehicles)
    assert facts.colour == ["red", "white", "blue"]
    red, white, blue = (_box_mask((200, 200), *v[2:]) for v in vehicles)
    np.testing.assert_array_equal(found[("car", ("red",), None)], red)
    np.testing.assert_array_equal(found[("car", ("white",), None)], white)
    np.testing.assert_array_equal(found[("car", ("left",), None)], red)
    np.testing.assert_array_equal(found[("car", ("top",), None)], red)
    np.testing.assert_array_equal(found[("car", ("right",), None)], white)
    np.testing.assert_array_equal(found[("car", ("bottom",), None)], white)
    np.testing.assert_array_equal(found[("car", ("centre",), None)], blue)
    assert ("car", ("white", "right"), None) not in found  # the same cars as "white car"
    assert ("car", ("black",), None) not in found  # no black car: nothing to refer to
    np.testing.assert_array_equal(found[("car", (), None)], red | white | blue)


def test_ambiguous_colour_is_not_emitted():
    pixels = np.array([(200, 25, 30)] * 30 + [(30, 50, 190)] * 28, dtype=np.uint8)
    assert instance_colour(pixels) is None  # half red, half blue: no colour
    vehicles = [("car", "red", 10, 20, 55, 38), ("car", "white", 140, 160, 185, 178)]
    image = paint_scene(200, 200, vehicles)
    image[20:38, 33:55] = (30, 50, 190)  # the red car is half blue
    boxes = [Box(v[0], *v[2:]) for v in vehicles]
    labels = instance_masks(boxes, image, "fill")
    facts = image_facts(boxes, labels, image, GSD, VehicleRules())
    assert facts.colour == [None, "white"]
    found = crop_referents(facts, labels, (0, 200, 0, 200), CATEGORIES, {}, [], GSD, VehicleRules())
    words = {r.referent.attributes for r in found}
    assert ("red",) not in words and ("blue",) not in words  # the mixed car might be either
    assert ("white",) in words  # but it is clearly not white


def test_relation_emitted_only_where_the_labels_decide_it():
    # a car 1 m from a bus, and a car far from it, both well inside the image
    vehicles = [("bus", "white", 60, 80, 180, 106), ("car", "red", 60, 116, 105, 134),
                ("car", "blue", 30, 30, 75, 48)]
    found, _ = _referents(vehicles, relations=NEXT_TO_BUS)
    np.testing.assert_array_equal(found[("car", (), "next to the bus")],
                                  _box_mask((200, 200), 60, 116, 105, 134))
    # a crop that holds the first car but only a sliver of the bus: whether the car is next to
    # "the bus" cannot be decided from what the crop shows, so the relation is not emitted
    window = (100, 200, 0, 200)
    found, _ = _referents(vehicles, window=window, relations=NEXT_TO_BUS)
    assert ("car", (), None) in found
    assert ("car", (), "next to the bus") not in found


def test_relation_near_the_image_edge_is_not_emitted():
    # the only car lies 0.5 m from the image edge with no bus in sight: a bus could stand just
    # past the edge, unlabelled, so "car next to the bus" (and its absence) is undecidable
    vehicles = [("bus", "white", 60, 80, 180, 106), ("car", "red", 60, 116, 105, 134),
                ("car", "blue", 5, 20, 50, 38)]
    found, _ = _referents(vehicles, relations=NEXT_TO_BUS)
    assert ("car", (), "next to the bus") not in found


def test_row_alone_and_size():
    row = [("car", "red", 10 + 50 * k, 20, 55 + 50 * k, 38) for k in range(3)]  # 0.5 m gaps
    lone = [("car", "white", 100, 120, 145, 138)]
    big = [("bus", "white", 20, 230, 140, 256)]  # 0.4 m from the bottom edge
    found, facts = _referents(row + lone + big, size=(260, 260), medians={"vehicle": 4.5})
    assert facts.in_row == [True, True, True, False, None]  # a row could go on past the edge
    assert facts.alone[3] is True and facts.alone[0] is False
    rows = np.logical_or.reduce([_box_mask((260, 260), *v[2:]) for v in row])
    np.testing.assert_array_equal(found[("car", ("in a row",), None)], rows)
    np.testing.assert_array_equal(found[("vehicle", ("large",), None)],
                                  _box_mask((260, 260), 20, 230, 140, 256))
    assert ("vehicle", ("in a row",), None) not in found  # the bus's row membership is unknown


def test_position_near_a_third_boundary_is_undecided():
    # one car's centre at 0.33 of the width: neither clearly left nor clearly central
    vehicles = [("car", "red", 44, 92, 89, 110), ("car", "white", 140, 160, 185, 178)]
    found, _ = _referents(vehicles)
    assert ("car", ("left",), None) not in found and ("car", ("centre",), None) not in found
    assert ("car", ("right",), None) in found  # the other car is clearly right, the first clearly not
