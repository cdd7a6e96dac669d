"""Each expression at its own GSD: the plan on real GeoTIFFs at 0.1, 1, 10 and 300 m/px, the
refusal of coarse scenes (before any tile is read), one reader pass per scale, results on the
scene's grid, checkpoints without scale metadata as before, the checkpoint format's checks."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

import rrsis_geo
from rrsis_geo.cli import main
from rrsis_geo.engine import EngineOptions, run_scene
from rrsis_geo.grid import plan_tiles
from rrsis_geo.errors import CheckpointError, ScaleError
from rrsis_geo.pipeline import PredictOptions, plan_prediction
from rrsis_geo.raster import RasterSource, open_raster
from rrsis_geo.rasterout import GeoTiffStripWriter

from geo_testdata import UTM_ORIGIN, make_checkpoint, red_square_scene, snapshot, write_geotiff

X0, Y0 = UTM_ORIGIN
REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "resources" / "models" / "default"

SCALES = {
    "building": {"gsd_m": 1.0, "min": 0.8, "max": 1.5},
    "car": {"gsd_m": 0.1, "min": 0.06, "max": 0.13},
}
PHRASINGS = {"building": ["building", "house"], "car": ["car", "vehicle"]}


@pytest.fixture(scope="module")
def scaled_segmenter(tmp_path_factory, tokenizer):
    ckpt = make_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "scaled", "test-red", tokenizer, gsd_m=1.0, scales=SCALES,
        phrasings=PHRASINGS, vocabulary=["red", "dark", "next to"],
    )
    return rrsis_geo.load_model(ckpt, device="cpu")


def scene_at(tmp_path, res, size=200):
    rows, cols = slice(size // 4, size // 2), slice(size // 5, size // 2)
    return write_geotiff(tmp_path / f"s{res:g}.tif", red_square_scene(size, size, rows, cols), res=res), rows, cols


def map_box(res, rows, cols):
    return box(X0 + cols.start * res, Y0 - rows.stop * res, X0 + cols.stop * res, Y0 - rows.start * res)


@pytest.fixture
def count_opens(monkeypatch):
    """How often tiles are read: each reader pass opens its own dataset handle."""
    calls = []
    original = RasterSource.open

    def counting(self):
        calls.append(self.path.name)
        return original(self)

    monkeypatch.setattr(RasterSource, "open", counting)
    return calls


TEXTS = ["car", "building", "car next to the building", "red"]


def plan_for(segmenter, path, **options):
    return rrsis_geo.plan(path, TEXTS, segmenter=segmenter, **options)


def test_plan_per_expression_at_0_1_1_10_and_300_m(tmp_path, scaled_segmenter):
    fine = plan_for(scaled_segmenter, scene_at(tmp_path, 0.1)[0])
    assert [e.gsd_m for e in fine.expressions] == [0.1, 1.0, 0.1, 1.0]  # mixed: the finer; none named: gsd_m
    assert fine.expressions[2].explanation.categories == ("car", "building")
    car, building = fine.scenes[0].passes
    assert car.expressions == ("car", "car next to the building") and not car.tiles.resample
    assert building.expressions == ("building", "red") and building.tiles.footprint == (640, 640)  # 64 px at 1 m
    assert json.loads(json.dumps(fine.to_dict()))["scenes"][0]["passes"][1]["resampled"] is True

    one_m = scene_at(tmp_path, 1.0)[0]
    with pytest.raises(ScaleError, match=r"'car' needs a scene of 0\.26 m/px or finer \(learned at 0\.06-0\.13 m/px\) "
                                         r"but s1\.tif has 1 m/px"):
        plan_for(scaled_segmenter, one_m)
    forced = plan_for(scaled_segmenter, one_m, force_gsd=True).scenes[0].passes
    assert [p.gsd_m for p in forced] == [0.1, 1.0] and forced[0].tiles.footprint == (6, 6)
    assert not forced[1].tiles.resample  # the scene is at the building scale already

    with pytest.raises(ScaleError, match="'car' needs"):
        plan_for(scaled_segmenter, scene_at(tmp_path, 10.0)[0])
    forced = plan_for(scaled_segmenter, scene_at(tmp_path, 10.0)[0], force_gsd=True).scenes[0].passes
    assert [(p.gsd_m, p.tiles.footprint) for p in forced] == [(0.1, (1, 1)), (1.0, (6, 6))]  # upsampled x100, x10
    with pytest.raises(ScaleError, match=r"'building' needs a scene of 3 m/px or finer .* has 300 m/px"):
        plan_prediction([open_raster(scene_at(tmp_path, 300.0)[0])], ["building"], scaled_segmenter, PredictOptions())


def test_10_m_scene_is_refused_for_building_too(tmp_path, scaled_segmenter):
    with pytest.raises(ScaleError, match=r"'house' \(building\) needs a scene of 3 m/px or finer .* has 10 m/px"):
        plan_prediction([open_raster(scene_at(tmp_path, 10.0)[0])], ["house"], scaled_segmenter, PredictOptions())


def test_300_m_scene_refused_in_one_line_before_any_tile_is_read(tmp_path, scaled_segmenter, capsys, count_opens, monkeypatch):
    predicted = []  # models loaded: the refusal comes before any
    monkeypatch.setattr("rrsis_geo.segmenter.load_model", lambda *a, **k: predicted.append(a))
    path = write_geotiff(tmp_path / "landsat.tif", np.full((3, 2400, 2400), 90, np.uint8), res=300.0)
    out = tmp_path
    before = snapshot(tmp_path)
    code = main([
        "predict", str(path), "-e", "building", "-e", "red car", "-o", str(out / "o.gpkg"), "--prob-out",
        str(out / "p.tif"), "--checkpoint", str(scaled_segmenter.checkpoint), "-q",
    ])
    _, err = capsys.readouterr()
    assert code == 2 and predicted == [], (code, predicted)
    assert err.count("\n") == 1 and err.startswith("rrsis-geo: error: 'building' needs a scene of 3 m/px or finer"), err
    assert "landsat.tif has 300 m/px" in err and "--force-gsd" in err
    assert count_opens == [] and snapshot(tmp_path) == before
    # the shipped default: refused before its model is even loaded (no window read, no weights)
    code = main(["predict", str(path), "-e", "houses", "-o", str(out / "o.gpkg"), "--checkpoint", str(DEFAULT)])
    _, err = capsys.readouterr()
    assert code == 2 and predicted == [], (code, predicted)
    assert err == (
        "rrsis-geo: error: 'houses' needs a scene of 3.75 m/px or finer (learned at 1.2-1.875 m/px) but landsat.tif has "
        "300 m/px; "
        "use finer imagery, or pass --force-gsd to run it anyway\n"
    )
    assert count_opens == [] and snapshot(tmp_path) == before


def test_one_reader_pass_per_scale_results_on_the_scene_grid(tmp_path, scaled_segmenter, count_opens):
    path, rows, cols = scene_at(tmp_path, 0.1)
    prob, mask = tmp_path / "p.tif", tmp_path / "m.tif"
    texts = ["car", "building", "house", "vehicle"]
    gdf = rrsis_geo.predict(
        path, texts, segmenter=scaled_segmenter, output=tmp_path / "o.gpkg", prob_out=prob, mask_out=mask, readers=1
    )
    assert count_opens == ["s0.1.tif", "s0.1.tif"]  # car+vehicle at 0.1 m, building+house at 1 m
    passes = gdf.attrs["rrsis"]["scenes"][0]["passes"]
    assert [(p["gsd_m"], p["expressions"]) for p in passes] == [(0.1, ["car", "vehicle"]), (1.0, ["building", "house"])]
    truth = map_box(0.1, rows, cols)
    by_text = {t: gdf[gdf.expression == t].geometry.union_all() for t in texts}
    assert by_text["car"].equals(truth) and by_text["vehicle"].equals(truth)  # at the scene's own pixels
    for text in ("building", "house"):  # through the 1 m model grid: within a model pixel
        assert np.abs(np.subtract(by_text[text].bounds, truth.bounds)).max() <= 1.0
    with rasterio.open(path) as scene, rasterio.open(prob) as p, rasterio.open(mask) as m:
        for ds in (p, m):
            assert ds.descriptions == tuple(texts) and ds.transform == scene.transform and ds.shape == scene.shape
            assert ds.crs == scene.crs
        masks = m.read()
    expected = np.zeros(masks.shape[1:], np.uint8)
    expected[rows, cols] = 1
    assert (masks[0] == expected).all() and (masks[3] == expected).all()
    assert (masks[1] == masks[2]).all() and 0 < np.abs(masks[1].astype(int) - expected).sum() < 0.1 * expected.sum()
    assert not list(tmp_path.glob(".*tmp*"))  # the per-pass parts are gone


def test_checkpoint_without_scale_metadata_runs_as_before(tmp_path, tokenizer, count_opens):
    ckpt = make_checkpoint(tmp_path / "single", "test-smooth", tokenizer, gsd_m=1.0)
    seg = rrsis_geo.load_model(ckpt, device="cpu")
    assert not seg.knowledge.per_category and seg.knowledge.scale_of("anything").gsd_m == 1.0
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(150, 130, slice(30, 90), slice(20, 70)), res=0.5)
    rrsis_geo.predict(path, ["red", "dark red"], segmenter=seg, prob_out=tmp_path / "new.tif", readers=1)
    assert len(count_opens) == 1
    # the way every expression ran before: one plan at the checkpoint's gsd_m, one run_scene
    source = open_raster(path)
    plan = plan_tiles(source, seg.input_size, 0.25, model_gsd=1.0)
    geo = dict(width=source.width, height=source.height, transform=source.region_transform, crs=source.crs)
    writer = GeoTiffStripWriter(tmp_path / "old.tif", descriptions=["red", "dark red"], **geo)
    run_scene(source, seg, [seg.encode("red"), seg.encode("dark red")], plan, [writer], options=EngineOptions(batch_size=2))
    with rasterio.open(tmp_path / "new.tif") as new, rasterio.open(tmp_path / "old.tif") as old:
        assert (new.read() == old.read()).all()


def test_scale_metadata_is_checked_when_the_checkpoint_loads(tmp_path, tokenizer):
    bad = {
        "min above gsd": dict(gsd_m=1.0, scales={"car": {"gsd_m": 0.1, "min": 0.2}}),
        "no top-level gsd": dict(gsd_m=None, scales={"car": {"gsd_m": 0.1}}),
        "typo": dict(gsd_m=1.0, scales={"car": {"gsd": 0.1}}),
        "negative": dict(gsd_m=1.0, scales={"car": {"gsd_m": -1}}),
        "phrasings not a list": dict(gsd_m=1.0, phrasings={"car": "car"}),
    }
    messages = {
        "min above gsd": "needs min <= gsd_m <= max",
        "no top-level gsd": "needs a top-level gsd_m",
        "typo": "must be {\"gsd_m\"",
        "negative": "must be a positive number",
        "phrasings not a list": "must be a non-empty list",
    }
    good = make_checkpoint(tmp_path / "good", "test-red", tokenizer, gsd_m=1.0)
    for name, overrides in bad.items():
        with pytest.raises(CheckpointError, match=messages[name]):  # refused when written...
            make_checkpoint(tmp_path / name.replace(" ", "_"), "test-red", tokenizer, **overrides)
        assert not (tmp_path / name.replace(" ", "_")).exists()
        edited = tmp_path / f"edited_{name.replace(' ', '_')}"  # ...and when read, after a hand edit
        shutil.copytree(good, edited)
        config = json.loads((edited / "config.json").read_text())
        config.update({k: v for k, v in overrides.items() if v is not None})
        for key in [k for k, v in overrides.items() if v is None]:
            config.pop(key, None)
        (edited / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=messages[name]):
            rrsis_geo.load_model(edited, device="cpu")


def test_vocabulary_words_only_strict_and_quiet(tmp_path, scaled_segmenter, capsys):
    path = scene_at(tmp_path, 0.1, size=64)[0]
    ckpt = str(scaled_segmenter.checkpoint)
    args = ["predict", str(path), "-e", "dragon", "-e", "parked vehicles", "-o", str(tmp_path / "o.gpkg"), "--checkpoint", ckpt]
    assert main(args + ["--strict-vocabulary"]) == 2
    _, err = capsys.readouterr()
    assert err == "rrsis-geo: error: 'dragon' names nothing this model lists in its vocabulary (refused by --strict-vocabulary)\n"
    assert not (tmp_path / "o.gpkg").exists()
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "rrsis-geo: warning: 'dragon' names nothing this model lists in its vocabulary; runs at 1 m/px" in err
    # "parked" is in none of this model's phrasings: said, and the run goes on
    assert "'parked vehicles' understood as car (from: 'vehicle'); 'parked' is not understood and was ignored; runs at 0.1 m/px" in out
    assert main(args + ["-q", "--overwrite"]) == 0
    out, err = capsys.readouterr()
    assert "understood" not in out and err == ""


def test_info_shows_the_plan_per_expression(tmp_path, scaled_segmenter, capsys):
    ckpt = str(scaled_segmenter.checkpoint)
    path = scene_at(tmp_path, 0.1)[0]
    assert main(["info", str(path), "--checkpoint", ckpt, "-e", "car", "-e", "house"]) == 0
    out = capsys.readouterr().out
    assert "knows:        categories: building (1 m/px, learned 0.8-1.5); car (0.1 m/px, learned 0.06-0.13)" in out
    assert "expression:   'car' understood as car (from: 'car')\n              runs at 0.1 m/px; refused on scenes coarser than 0.26 m/px" in out
    assert "pass 1:       runs at 0.1 m/px: 16 tiles (scene pixels as they are) for car" in out
    assert "pass 2:       runs at 1 m/px: 1 tile (footprint 640 x 640 px, resampled) for house" in out
    assert main(["info", str(scene_at(tmp_path, 10.0)[0]), "--checkpoint", ckpt, "-e", "car"]) == 0
    assert "plan:         refused: 'car' needs a scene of 0.26 m/px or finer" in capsys.readouterr().out


def test_info_summarises_what_the_model_knows_and_verbose_lists_it_all(tmp_path, capsys):
    path = scene_at(tmp_path, 1.0)[0]
    assert main(["info", str(path), "--checkpoint", str(DEFAULT)]) == 0
    summary = capsys.readouterr().out
    assert main(["info", str(path), "--checkpoint", str(DEFAULT), "--verbose"]) == 0
    full = capsys.readouterr().out
    phrasings = [p for ps in rrsis_geo.load_model(DEFAULT, device="cpu").knowledge.phrasings.values() for p in ps]
    assert "known phrasings; --verbose lists them all" in summary and len(summary) < len(full) / 3
    assert all(f"{p}," in full or f"{p};" in full or full.count(p) for p in phrasings)
    assert sum(1 for p in set(phrasings) if p in summary) < len(set(phrasings)) / 4


@pytest.mark.slow
def test_the_default_model_runs_each_paraphrase_at_its_categorys_scale(tmp_path):
    """The shipped model's own knowledge: "houses" at the land-cover scale, "parked vehicles" at
    the vehicles' (both unseen wordings), "solar panels" far from anything it learned."""
    seg = rrsis_geo.load_model(DEFAULT, device="cpu")
    source = open_raster(write_geotiff(tmp_path / "s.tif", red_square_scene(64, 64, slice(0, 9), slice(0, 9)), res=0.1))
    plan = plan_prediction([source], ["houses", "parked vehicles", "solar panels"], seg, PredictOptions())
    houses, vehicles, panels = plan.expressions
    assert houses.explanation.categories == ("building",) and houses.gsd_m == 1.5
    assert houses.explanation.nearest[0].similarity > 0.5
    assert "vehicle" in vehicles.explanation.categories and 0.1 < vehicles.gsd_m < 0.25
    assert not panels.explanation.known
    assert panels.explanation.message.startswith("'solar panels' is far from anything this model learned; nearest: ")
    assert rrsis_geo.explain("greenery", segmenter=seg).to_dict()["categories"] == ["vegetation"]


def test_cancel_between_passes_leaves_nothing(tmp_path, scaled_segmenter):
    path = scene_at(tmp_path, 0.1)[0]
    before = snapshot(tmp_path)
    messages = []

    def progress(done, total, message):
        messages.append(message)

    def cancel():  # once the second pass (1 m) has started
        return any("resampling to 1.0 m/px" in m for m in messages)

    with pytest.raises(rrsis_geo.Cancelled):
        rrsis_geo.predict(
            path, ["car", "building"], segmenter=scaled_segmenter, output=tmp_path / "o.gpkg", prob_out=tmp_path / "p.tif",
            progress=progress, cancel=cancel,
        )
    assert any(m.startswith("tile ") for m in messages)  # the first pass ran
    assert snapshot(tmp_path) == before  # no output, no per-pass part


def test_a_fresh_command_refuses_a_300_m_scene_before_torch_loads(tmp_path):
    import subprocess
    import sys

    path = write_geotiff(tmp_path / "landsat.tif", np.full((3, 600, 600), 90, np.uint8), res=300.0)
    code = (
        "import sys; from rrsis_geo.cli import main; "
        f"c = main(['predict', {str(path)!r}, '-e', 'water', '-o', {str(tmp_path / 'o.gpkg')!r}, '--checkpoint', {str(DEFAULT)!r}]); "
        "print(c, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], (result.stdout, result.stderr)
    assert "rrsis-geo: error: 'water' needs a scene of 3.75 m/px or finer" in result.stderr


def test_forced_coarse_scene_upsamples_each_pass_back_onto_the_scene_grid(tmp_path, scaled_segmenter):
    path, rows, cols = scene_at(tmp_path, 1.0, size=60)
    prob = tmp_path / "p.tif"
    gdf = rrsis_geo.predict(path, ["car", "building"], segmenter=scaled_segmenter, prob_out=prob, force_gsd=True)
    passes = gdf.attrs["rrsis"]["scenes"][0]["passes"]
    assert [(p["gsd_m"], p["footprint"], p["resampled"]) for p in passes] == [(0.1, (6, 6), True), (1.0, (64, 64), False)]
    truth = map_box(1.0, rows, cols)
    car, building = (gdf[gdf.expression == t].geometry.union_all() for t in ("car", "building"))
    assert building.equals(truth)  # at the scene's own pixels
    assert car.symmetric_difference(truth).area < 0.05 * truth.area  # through the 0.1 m model grid and back
    with rasterio.open(path) as scene, rasterio.open(prob) as p:
        assert p.transform == scene.transform and p.shape == scene.shape and p.descriptions == ("car", "building")
