"""Templates, inclusion masks (exact unions), minimum areas, and the shipped configurations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from builder_testdata import VALUE, base_config, context, town, write_raster

from rrsis_geo.errors import InputError
from training.builder import CONFIG_DIR, load_config, main, parse_config, plan_expressions
from training.builder.expressions import ExpressionMasker, crop_expressions


def test_templates_compose_category_attribute_relation(config):
    texts = [e.text for e in plan_expressions(config)]
    assert texts[:8] == ["road", "vehicle", "car", "building", "vegetation", "tree",
                         "road marking", "water"]
    for text in ("light-duty vehicle", "large building", "vehicle in the parking area",
                 "building along the road", "vegetation surrounded by building",
                 "light-duty vehicle in the parking area", "heavy-duty vehicle driving on the road",
                 "small building along the road"):
        assert text in texts
    by_text = {e.text: e for e in plan_expressions(config)}
    assert by_text["light-duty vehicle in the parking area"].category == "vehicle"
    assert by_text["light-duty vehicle in the parking area"].template == "attribute_category_relation"


def test_category_and_attribute_masks_are_exact_unions_of_classes(config):
    labels = np.random.default_rng(3).integers(0, len(VALUE) + 1, size=(70, 90)).astype(np.uint8)
    masker = ExpressionMasker(context(labels, config))
    plan = {e.text: e for e in plan_expressions(config)}
    expected = {
        "vehicle": ["car", "van", "truck"], "road": ["road", "lane marking"], "car": ["car"],
        "light-duty vehicle": ["car", "van"], "heavy-duty vehicle": ["truck"],
        "road marking": ["lane marking"],
    }
    for text, classes in expected.items():
        union = np.isin(labels, [VALUE[c] for c in classes])
        assert np.array_equal(masker.mask(plan[text]), union), text
    # ignored pixels (value 0) never belong to any mask
    assert not any(masker.mask(e)[labels == 0].any() for e in plan.values())


def test_masks_below_the_minimum_area_or_share_are_not_emitted(config):
    labels = town(64)
    ctx = context(labels, config)
    plan = plan_expressions(config)
    everything = dict((e.text, m.sum()) for e, m in crop_expressions(ctx, plan))
    assert "vehicle" in everything and "water" in everything
    assert all(area > 0 for area in everything.values())  # empty masks never
    limit = 40.0
    kept = dict((e.text, m.sum()) for e, m in crop_expressions(ctx, plan, min_area_m2=limit))
    assert set(kept) == {t for t, a in everything.items() if a >= limit}
    assert set(kept) < set(everything)
    # the same limit as a share of the 64 × 64 crop
    shared = dict((e.text, m.sum()) for e, m in crop_expressions(ctx, plan, min_share=limit / 4096))
    assert shared == kept
    # the area limit is in m²: with 2 m pixels every category mask is four times larger
    categories = [e for e in plan if e.template == "category"]
    coarse = dict((e.text, m.sum()) for e, m in
                  crop_expressions(context(labels, config, 2.0), categories, min_area_m2=limit))
    assert set(coarse) == {e.text for e in categories if 4 * everything.get(e.text, 0) >= limit}
    assert set(coarse) > {e.text for e in categories if e.text in kept}


def test_repeated_expression_is_a_config_error():
    cfg = parse_config(base_config(categories={"car": "car", "large car": "van"},
                                   attributes={"large": {"car": {"min_area_m2": 5}}},
                                   relations=[]))
    with pytest.raises(InputError, match="'large car' would be generated twice"):
        plan_expressions(cfg)


def test_skyscapes_config_is_the_papers_table_one():
    cfg = load_config(CONFIG_DIR / "skyscapes.yaml")
    assert len(cfg.classes) == 20 and not any(c.ignore for c in cfg.classes)
    assert list(cfg.categories) == ["road", "vehicle", "car", "van", "building", "truck",
                                    "trailer", "bus", "road marking", "bikeway", "sidewalk",
                                    "tree", "low vegetation", "impervious surface"]
    assert sorted({a.word for a in cfg.attributes}) == ["heavy-duty", "light-duty", "long",
                                                        "paved", "unpaved"]
    assert [r.phrase for r in cfg.relations] == [
        "in the parking area", "with a parking lot", "driving on the road", "along the road",
        "along with tree", "on the road", "surrounded by building"]
    assert cfg.categories["vehicle"] == {"car", "van", "truck", "large truck", "bus", "trailer"}
    light = next(a for a in cfg.attributes if a.word == "light-duty")
    assert light.classes == {"car", "van"}
    assert (cfg.tiling.window, cfg.tiling.stride, cfg.tiling.output_size) == (1200, 600, 512)
    assert "light-duty vehicle in the parking area" in {e.text for e in plan_expressions(cfg)}


def test_dubai_config_matches_the_real_mask_colours():
    cfg = load_config(CONFIG_DIR / "dubai.yaml")
    assert cfg.encoding == "rgb"
    colours = {c.name: c.colors for c in cfg.classes}
    assert colours["building"] == (0x3C1098,) and colours["road"] == (0x6EC1E4,)
    assert colours["vegetation"] == (0xFEDD3A,) and colours["water"] == (0xE2A929,)
    assert colours["land"] == (0x8429F6,)
    unlabeled = next(c for c in cfg.classes if c.name == "unlabeled")
    assert unlabeled.ignore and set(unlabeled.colors) == {0x9B9B9B, 0x000000}
    assert list(cfg.categories) == ["building", "road", "vegetation", "water", "unpaved land"]
    texts = {e.text for e in plan_expressions(cfg)}
    assert {"building along the road", "vegetation surrounded by building",
            "road along the water", "large building"} <= texts


@pytest.mark.parametrize("change, message", [
    ({"categories": {"vehicle": ["car", "plane"]}}, "unknown class 'plane'"),
    ({"categories": {"nothing": "unlabeled"}}, "ignored class 'unlabeled'"),
    ({"classes": [{"name": "a", "value": 1}, {"name": "b", "color": "#FFFFFF"}]}, "mix 'value' and 'color'"),
    ({"classes": [{"name": "a", "value": 1}, {"name": "b", "value": 1}]}, "given to both"),
    ({"classes": [{"name": "a", "color": "red"}]}, "'#RRGGBB'"),
    ({"relations": [{"phrase": "on the road", "object": "road", "subjects": ["road marking"]}]},
     "shares classes"),
    ({"relations": [{"phrase": "next to the road", "object": "road", "subjects": ["car"]}]},
     "unknown rule 'next_to_the_road'"),
    ({"relations": [{"phrase": "along the road", "object": "road", "subjects": ["car"],
                     "buffer_m": -1}]}, "buffer_m must be a number >= 0"),
    ({"attributes": {"red": {"car": ["van"]}}}, "not part of the category 'car'"),
    ({"tiling": {"window": 64, "stride": 128, "output_size": 64}}, "larger than the window"),
    ({"templates": ["category", "sentence"]}, "'templates' must be"),
    ({"categories": {"Vehicle": "car"}}, "lower case"),
    ({"tilling": {}}, "unknown key"),
])
def test_config_mistakes_are_named(change, message):
    data = base_config(**change)
    if "classes" in change and "categories" not in change:
        data.update(categories={"a": "a"}, objects={}, attributes={}, relations=[])
    with pytest.raises(InputError, match=message):
        parse_config(data, source="classes.yaml")


def test_skyscapes_config_builds_all_seven_relations(tmp_path):
    """A street drawn in SkyScapes label values at 13 cm: each of the paper's relations fires
    where it should and not where it should not."""
    v = {"low vegetation": 0, "paved road": 1, "paved parking place": 3, "sidewalk": 6,
         "lane marking": 9, "building": 10, "car": 11, "trailer": 12, "van": 13, "truck": 14,
         "large truck": 15, "bus": 16, "impervious surface": 18, "tree": 19}
    labels = np.full((800, 800), v["impervious surface"], dtype=np.uint8)

    def draw(name, rows, cols):
        labels[rows[0]:rows[1], cols[0]:cols[1]] = v[name]

    draw("paved road", (300, 360), (0, 800))
    for c in range(0, 800, 60):
        draw("lane marking", (328, 332), (c, c + 30))
    draw("car", (305, 320), (100, 135))               # driving
    draw("large truck", (335, 355), (450, 560))       # driving
    draw("bus", (305, 325), (600, 740))               # driving
    draw("paved parking place", (380, 520), (0, 300))  # 2.6 m below the road
    for c in (20, 50):
        draw("car", (400, 435), (c, c + 14))          # parked
    draw("van", (450, 485), (100, 116))               # parked
    draw("trailer", (440, 470), (200, 260))           # parked
    draw("building", (380, 700), (320, 700))          # 2.5 m from the lot and the road
    draw("low vegetation", (480, 600), (450, 600))    # courtyard
    draw("low vegetation", (720, 780), (100, 200))    # in the open
    draw("tree", (250, 293), (400, 700))              # 0.9 m from the road
    draw("sidewalk", (292, 300), (0, 380))            # along the road, 2.6 m from the trees
    image = write_raster(tmp_path / "scene.tif", np.stack([labels * 12] * 3), gsd=0.13)
    lab = write_raster(tmp_path / "labels.tif", labels, gsd=0.13)
    out = tmp_path / "skyscapes"
    assert main(["--image", str(image), "--labels", str(lab), "--out", str(out), "--split", "test",
                 "--window", "800", "--stride", "800", "--output-size", "256", "--quiet"]) == 0
    expressions = {line.split(" ", 1)[1] for line in
                   (out / "output_phrase_test.txt").read_text().splitlines()}
    assert {"vehicle in the parking area", "light-duty vehicle in the parking area",
            "trailer in the parking area", "building with a parking lot", "car driving on the road",
            "long truck driving on the road", "bus driving on the road", "building along the road",
            "tree along the road", "sidewalk along the road", "road along with tree",
            "paved road along with tree", "road marking on the road",
            "low vegetation surrounded by building", "paved road", "heavy-duty vehicle",
            "long truck"} <= expressions
    assert not {"sidewalk along with tree", "tree surrounded by building", "van driving on the road",
                "truck in the parking area", "unpaved road"} & expressions
    crop = json.loads((out / "crops.json").read_text())["crops"][0]
    ids = {s["expression"]: s["id"] for s in crop["samples"]}
    with rasterio.open(out / "masks" / f"{ids['low vegetation surrounded by building']}.tif") as src:
        mask = src.read(1) == 255                     # 800 px → 256 px: × 0.32
    assert mask[160:190, 148:190].all() and not mask[225:255, :].any()
    with rasterio.open(out / "masks" / f"{ids['vehicle in the parking area']}.tif") as src:
        parked = src.read(1) == 255
    assert parked[120:160, :100].any() and not parked[90:120, :].any()  # none on the road
