"""End to end through rrsis_geo.predict with real GeoTIFFs and GeoPackages."""

import math
import sqlite3
import threading
import time

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from shapely.geometry import Polygon, box

import rrsis_geo
from rrsis_geo.errors import Cancelled, InputError

from geo_testdata import UTM_ORIGIN, make_checkpoint, red_square_scene, snapshot, write_geotiff

X0, Y0 = UTM_ORIGIN


def utm_box(res, rows, cols):
    """Map box of pixel rows x cols in a north-up scene at UTM_ORIGIN."""
    return box(X0 + cols.start * res, Y0 - rows.stop * res, X0 + cols.stop * res, Y0 - rows.start * res)


@pytest.mark.parametrize(
    "height,width,rows,cols",
    [
        (203, 171, slice(100, 150), slice(60, 120)),  # not a multiple of the 48-px stride
        (40, 50, slice(5, 20), slice(10, 30)),  # smaller than one 64-px tile: padded and cropped back
        (203, 40, slice(150, 190), slice(0, 40)),  # narrower than a tile, square touching the edges
    ],
)
def test_a_red_square_lands_exactly_on_its_map_coordinates(tmp_path, red_segmenter, height, width, rows, cols):
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(height, width, rows, cols), res=0.5)
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter)
    assert list(gdf.columns) == ["expression", "score", "area_m2", "model", "geometry"]
    assert len(gdf) == 1
    expected = utm_box(0.5, rows, cols)
    assert gdf.geometry.iloc[0].equals(expected)  # exact to the vertex
    assert gdf.crs.to_epsg() == 32640
    row = gdf.iloc[0]
    assert row.expression == "red" and row.model == "test-red model"
    assert row.score == pytest.approx(1 / (1 + math.exp(-20 * (255 / 255 - 0.5))), rel=1e-4)
    # geodesic area: the UTM map area divided by the scale factor squared near the central meridian
    assert row.area_m2 == pytest.approx(expected.area / 0.9996**2, rel=2e-4)


def test_geographic_scene_gives_degrees_and_geodesic_area(tmp_path, red_segmenter):
    import pyproj

    lon0, lat0, res = 55.3, 25.2, 1e-5
    path = write_geotiff(
        tmp_path / "g.tif", red_square_scene(120, 100, slice(30, 60), slice(20, 70)), crs="EPSG:4326", origin=(lon0, lat0), res=res
    )
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter)
    assert gdf.crs.to_epsg() == 4326
    geom = gdf.geometry.iloc[0]
    np.testing.assert_allclose(geom.bounds, (lon0 + 20 * res, lat0 - 60 * res, lon0 + 70 * res, lat0 - 30 * res), rtol=0, atol=1e-12)
    area, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(box(*geom.bounds))
    assert gdf.area_m2.iloc[0] == pytest.approx(abs(area), rel=1e-9)
    assert 1500 < gdf.area_m2.iloc[0] < 1700  # ~50 m x ~33 m: square metres, not square degrees


def test_16_bit_scene_with_nodata_never_yields_nodata_polygons(tmp_path, red_segmenter):
    data = red_square_scene(150, 130, slice(20, 60), slice(20, 60), dtype="uint16")
    data[:, 100:, :] = 65535  # nodata strip: brightest red of all, must still give no polygon
    data[0, 100:, :] = 65535
    path = write_geotiff(tmp_path / "u16.tif", data, nodata=65535)
    prob = tmp_path / "p.tif"
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter, prob_out=prob)
    assert len(gdf) == 1
    assert gdf.geometry.iloc[0].equals(utm_box(0.5, slice(20, 60), slice(20, 60)))
    with rasterio.open(prob) as ds:
        p = ds.read(1)
        assert ds.nodata == -1
    assert (p[100:] == -1).all()
    assert (p[:100] >= 0).all()


def test_several_expressions_give_one_layer_each_in_the_geopackage(tmp_path, red_segmenter):
    rows, cols = slice(40, 80), slice(30, 90)
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(150, 140, rows, cols))
    out = tmp_path / "out.gpkg"
    gdf = rrsis_geo.predict(path, ["red", "  dark   red ", "red"], segmenter=red_segmenter, output=out)
    assert sorted(gdf.expression.unique()) == ["dark red", "red"]  # cleaned, de-duplicated
    layers = {name: kind for name, kind in pyogrio.list_layers(out)}
    assert layers == {"red": "Polygon", "dark_red": "Polygon"}
    red = gpd.read_file(out, layer="red")
    dark = gpd.read_file(out, layer="dark_red")
    assert red.crs.to_epsg() == 32640 and dark.crs.to_epsg() == 32640
    assert set(red.columns) == {"expression", "score", "area_m2", "model", "geometry"}
    assert red.geometry.iloc[0].equals(utm_box(0.5, rows, cols))
    # "dark" flips the model: everything but the square, i.e. the scene with a hole
    scene = box(X0, Y0 - 150 * 0.5, X0 + 140 * 0.5, Y0)
    assert len(dark) == 1
    assert dark.geometry.iloc[0].equals(Polygon(scene.exterior, [utm_box(0.5, rows, cols).exterior]).normalize()) or \
        dark.geometry.iloc[0].symmetric_difference(scene.difference(utm_box(0.5, rows, cols))).area == 0
    assert pyogrio.read_info(out, layer="dark_red")["layer_metadata"]["IDENTIFIER"] == "dark red"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpkg", "s.tif"]  # no temp files left
    with sqlite3.connect(out) as db:  # GeoPackage 1.2, which QGIS 3.22 opens without a warning
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200


def test_probability_and_mask_geotiffs_match_the_scene_grid(tmp_path, red_segmenter):
    rows, cols = slice(10, 30), slice(20, 50)
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(70, 90, rows, cols))
    prob, mask = tmp_path / "p.tif", tmp_path / "m.tif"
    rrsis_geo.predict(path, ["red", "dark red"], segmenter=red_segmenter, prob_out=prob, mask_out=mask)
    with rasterio.open(path) as src, rasterio.open(prob) as p, rasterio.open(mask) as m:
        for ds in (p, m):
            assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
            assert ds.count == 2 and ds.descriptions == ("red", "dark red")
            assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        assert p.dtypes[0] == "float32" and m.dtypes[0] == "uint8" and m.nodata == 255
        probs, masks = p.read(), m.read()
    expected = np.zeros((70, 90), np.uint8)
    expected[rows, cols] = 1
    np.testing.assert_array_equal(masks[0], expected)
    np.testing.assert_array_equal(masks[1], 1 - expected)
    assert probs[0][rows, cols].min() > 0.999 and probs[0][expected == 0].max() < 0.01


def test_bbox_limits_the_run_and_the_output_grid(tmp_path, red_segmenter):
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(200, 200, slice(20, 60), slice(20, 60)))
    bbox = (X0 + 15.0, Y0 - 25.0, X0 + 50.0, Y0 - 5.0)  # cols 30..100, rows 10..50
    prob = tmp_path / "p.tif"
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter, bbox=bbox, prob_out=prob)
    assert gdf.geometry.iloc[0].equals(utm_box(0.5, slice(20, 50), slice(30, 60)))
    with rasterio.open(prob) as ds:
        assert ds.shape == (40, 70)
        assert ds.transform.c == X0 + 15.0 and ds.transform.f == Y0 - 5.0


def test_blending_is_seamless_tiled_versus_untiled(tmp_path, smooth_checkpoint):
    """A model with a 9x9 receptive field (zero padded at tile borders) over a smooth scene:
    64-px tiles blended must give the same mask as one 192-px tile."""
    size = 192
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    red = 0.5 + 0.35 * np.sin(xx / 19.0 + 0.3) * np.cos(yy / 23.0 - 0.2) + 0.1 * np.sin((xx + yy) / 41.0)
    data = np.stack([np.round(red * 255), np.full_like(red, 60), np.full_like(red, 60)]).astype(np.uint8)
    path = write_geotiff(tmp_path / "smooth.tif", data)
    seg = rrsis_geo.load_model(smooth_checkpoint, device="cpu")
    masks, probs = {}, {}
    for name, tile in (("tiled", 64), ("untiled", size)):
        m, p = tmp_path / f"{name}_m.tif", tmp_path / f"{name}_p.tif"
        gdf = rrsis_geo.predict(path, "red", segmenter=seg, tile_size=tile, mask_out=m, prob_out=p)
        stats = gdf.attrs["rrsis"]["scenes"][0]
        assert stats["tiles"] == (16 if name == "tiled" else 1)
        with rasterio.open(m) as ds:
            masks[name] = ds.read(1).astype(bool)
        with rasterio.open(p) as ds:
            probs[name] = ds.read(1)
    a, b = masks["tiled"], masks["untiled"]
    iou = (a & b).sum() / (a | b).sum()
    assert iou >= 0.999
    assert 0.2 < a.mean() < 0.8  # a real boundary runs through the tiles
    interior = (slice(8, -8), slice(8, -8))  # away from the scene edge (same zero padding in both)
    assert np.abs(probs["tiled"][interior] - probs["untiled"][interior]).max() < 0.02


def test_memory_stays_one_tile_tall_as_the_scene_grows(tmp_path, red_segmenter):
    held = {}
    for height in (600, 2400):
        path = write_geotiff(tmp_path / f"tall{height}.tif", red_square_scene(height, 50, slice(10, height - 10), slice(5, 45)))
        gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter, batch_size=4)
        stats = gdf.attrs["rrsis"]["scenes"][0]
        assert stats["accumulator_rows"] == 64  # the ring is one tile footprint tall
        assert stats["accumulator_max_rows_in_flight"] <= 64
        held[height] = stats["accumulator_bytes"]
        # the tall square crosses every strip seam: still one polygon
        assert len(gdf) == 1 and gdf.geometry.iloc[0].equals(utm_box(0.5, slice(10, height - 10), slice(5, 45)))
    assert held[600] == held[2400] == 50 * 64 * (4 + 4 + 1)


def test_objects_crossing_strip_seams_merge_with_holes_and_scores(tmp_path, red_segmenter):
    data = red_square_scene(300, 120, slice(30, 270), slice(20, 100))
    data[0, 100:200, 40:80] = 40  # a big hole straddling several seams
    data[0, 130:160, 30:90] = 180  # a less confident band (prob of red=180/255) bridging the hole
    path = write_geotiff(tmp_path / "s.tif", data)
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter)
    assert len(gdf) == 1
    geom = gdf.geometry.iloc[0]
    outer = utm_box(0.5, slice(30, 270), slice(20, 100))
    expected = outer.difference(utm_box(0.5, slice(100, 130), slice(40, 80))).difference(utm_box(0.5, slice(160, 200), slice(40, 80)))
    assert geom.symmetric_difference(expected).area == 0
    assert len(geom.interiors) == 2
    p_hi, p_mid = 1 / (1 + math.exp(-10)), 1 / (1 + math.exp(-20 * (180 / 255 - 0.5)))
    n_mid = 30 * 60
    n_all = 240 * 80 - 30 * 40 - 40 * 40  # the square minus both holes
    assert gdf.score.iloc[0] == pytest.approx((p_mid * n_mid + p_hi * (n_all - n_mid)) / n_all, rel=1e-5)


def test_fill_holes_min_area_and_simplify(tmp_path, red_segmenter):
    data = red_square_scene(120, 120, slice(10, 70), slice(10, 70))
    data[0, 20:22, 20:22] = 40  # 1 m2 hole: filled with fill_holes=4
    data[0, 40:46, 40:46] = 40  # 9 m2 hole: kept
    data[0, 90:93, 90:93] = 255  # 2.25 m2 speck: dropped with min_area=5
    for i in range(20):  # a staircase: many vertices that simplify removes
        data[0, 95 + i // 2, 10 : 12 + i] = 255
    path = write_geotiff(tmp_path / "s.tif", data)
    raw = rrsis_geo.predict(path, "red", segmenter=red_segmenter)
    assert len(raw) == 3
    assert sorted(len(g.interiors) for g in raw.geometry) == [0, 0, 2]
    cleaned = rrsis_geo.predict(path, "red", segmenter=red_segmenter, fill_holes=4.0, min_area=5.0, simplify=1.0)
    assert len(cleaned) == 2
    square = cleaned.loc[cleaned.area_m2.idxmax()].geometry
    assert len(square.interiors) == 1
    stairs_raw = max((g for g in raw.geometry if g.bounds[1] < Y0 - 90 * 0.5), key=lambda g: len(g.exterior.coords))
    stairs = min(cleaned.geometry, key=lambda g: g.area)
    assert len(stairs.exterior.coords) < len(stairs_raw.exterior.coords) / 3
    assert stairs.hausdorff_distance(stairs_raw) <= 1.0


def test_a_plain_module_without_the_contract_split_works(tmp_path, plain_checkpoint, red_segmenter):
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(100, 90, slice(10, 50), slice(20, 70)))
    seg = rrsis_geo.load_model(plain_checkpoint, device="cpu")
    assert not seg.uses_contract and red_segmenter.uses_contract
    gdf = rrsis_geo.predict(path, "red", segmenter=seg, batch_size=3)
    assert gdf.geometry.iloc[0].equals(utm_box(0.5, slice(10, 50), slice(20, 70)))


def test_resampling_to_the_model_gsd_keeps_map_coordinates(tmp_path, tokenizer):
    ckpt = make_checkpoint(tmp_path / "gsd1", "test-red", tokenizer, gsd_m=1.0)
    seg = rrsis_geo.load_model(ckpt, device="cpu")
    rows, cols = slice(60, 140), slice(40, 120)
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(200, 180, rows, cols), res=0.5)
    gdf = rrsis_geo.predict(path, "red", segmenter=seg)
    stats = gdf.attrs["rrsis"]["scenes"][0]
    assert stats["resampled"] and stats["footprint"] == (128, 128)
    truth = utm_box(0.5, rows, cols)
    geom = gdf.geometry.iloc[0]
    assert len(gdf) == 1
    assert np.abs(np.subtract(geom.bounds, truth.bounds)).max() <= 1.0  # within the model's 1 m pixel
    assert geom.intersection(truth).area / geom.union(truth).area > 0.95
    off = rrsis_geo.predict(path, "red", segmenter=seg, resample=False)
    assert not off.attrs["rrsis"]["scenes"][0]["resampled"] and off.geometry.iloc[0].equals(truth)


def test_several_scenes_share_layers_and_reproject_to_the_crs_asked_for(tmp_path, red_segmenter):
    a = write_geotiff(tmp_path / "a.tif", red_square_scene(80, 80, slice(10, 30), slice(10, 30)))
    b = write_geotiff(
        tmp_path / "b.tif", red_square_scene(80, 80, slice(10, 30), slice(10, 30)), crs="EPSG:4326", origin=(57.0, 25.3), res=1e-5
    )
    with pytest.raises(InputError, match=r"\{scene\}"):
        rrsis_geo.predict([a, b], "red", segmenter=red_segmenter, crs="EPSG:32640", prob_out=tmp_path / "p.tif")
    out = tmp_path / "both.gpkg"
    with pytest.raises(InputError, match=r"different CRSs \(a.tif: EPSG:32640, b.tif: EPSG:4326\)"):
        rrsis_geo.predict([a, b], "red", segmenter=red_segmenter, output=out)  # never reprojected silently
    assert not out.exists()
    gdf = rrsis_geo.predict([a, b], "red", segmenter=red_segmenter, output=out, crs="EPSG:32640",
                            prob_out=tmp_path / "{scene}_p.tif")
    assert sorted(gdf.scene) == ["a.tif", "b.tif"]
    assert gdf.crs.to_epsg() == 32640
    back = gpd.read_file(out, layer="red")
    assert back.crs.to_epsg() == 32640 and sorted(back.scene) == ["a.tif", "b.tif"]
    b_geom = back[back.scene == "b.tif"].geometry.iloc[0]
    assert 500000 < b_geom.centroid.x < 500200  # 57 E is zone 40's central meridian: easting ~500 km
    assert (tmp_path / "a_p.tif").exists() and (tmp_path / "b_p.tif").exists()


def test_scene_without_crs_in_pixel_coordinates(tmp_path, red_segmenter):
    path = write_geotiff(tmp_path / "n.tif", red_square_scene(50, 60, slice(5, 15), slice(20, 40)), crs=None, geotransform=False)
    gdf = rrsis_geo.predict(path, "red", segmenter=red_segmenter, allow_no_crs=True)
    assert gdf.crs is None
    assert gdf.geometry.iloc[0].equals(box(20, 5, 40, 15))  # columns, rows
    assert math.isnan(gdf.area_m2.iloc[0])
    with pytest.raises(InputError, match="need a scene with a CRS"):
        rrsis_geo.predict(path, "red", segmenter=red_segmenter, allow_no_crs=True, min_area=1.0)


def test_progress_reports_every_tile_and_cancel_leaves_nothing(tmp_path, red_segmenter):
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(200, 200, slice(20, 60), slice(20, 60)))
    calls = []
    rrsis_geo.predict(path, "red", segmenter=red_segmenter, batch_size=2, progress=lambda d, t, m: calls.append((d, t, m)))
    tile_calls = [c for c in calls if c[1] > 0]
    assert tile_calls[-1][0] == tile_calls[-1][1] == 16
    assert [c[0] for c in tile_calls] == sorted(c[0] for c in tile_calls)

    out = tmp_path / "out.gpkg"
    out.write_bytes(b"an existing file the run must not touch")
    before = snapshot(tmp_path)
    seen = []

    def cancel():
        seen.append(1)
        return len(seen) > 3  # cancel between batches, mid-run

    with pytest.raises(Cancelled):
        rrsis_geo.predict(
            path, "red", segmenter=red_segmenter, batch_size=2, output=out, overwrite=True,
            prob_out=tmp_path / "p.tif", mask_out=tmp_path / "m.tif", cancel=cancel,
        )
    assert snapshot(tmp_path) == before
    assert out.read_bytes() == b"an existing file the run must not touch"


def test_keyboard_interrupt_mid_run_leaves_nothing(tmp_path, red_segmenter):
    path = write_geotiff(tmp_path / "s.tif", red_square_scene(200, 200, slice(20, 60), slice(20, 60)))
    before = snapshot(tmp_path)

    def interrupt(done, total, message):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rrsis_geo.predict(path, "red", segmenter=red_segmenter, batch_size=2, output=tmp_path / "o.gpkg",
                          mask_out=tmp_path / "m.tif", progress=interrupt)
    assert snapshot(tmp_path) == before


def test_a_model_that_fails_mid_run_stops_the_readers_at_once(tmp_path, red_segmenter, monkeypatch):
    from rrsis_geo import engine

    path = write_geotiff(tmp_path / "s.tif", red_square_scene(400, 400, slice(20, 60), slice(20, 60)))
    before = snapshot(tmp_path)
    calls = []
    model = red_segmenter.probabilities

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the model failed")
        return model(*args, **kwargs)

    def slow_read(*args, **kwargs):
        time.sleep(0.005)  # so that a reader is inside a batch, between tiles, when the model fails
        return read(*args, **kwargs)

    read = engine.read_pixels
    monkeypatch.setattr(engine, "read_pixels", slow_read)
    monkeypatch.setattr(red_segmenter, "probabilities", failing)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="the model failed"):
        rrsis_geo.predict(path, "red", segmenter=red_segmenter, batch_size=4, output=tmp_path / "o.gpkg")
    # the readers stop with the run (they are joined with a 10 s timeout), nothing is left behind
    assert time.perf_counter() - started < 5
    assert not [t for t in threading.enumerate() if t.name.startswith("rrsis-reader")]
    assert snapshot(tmp_path) == before


def test_load_model_exposes_what_the_plugin_needs(red_segmenter, red_checkpoint, monkeypatch):
    seg = red_segmenter
    assert seg.name == "test-red model" and seg.input_size == 64 and seg.threshold == 0.5
    assert seg.vocabulary == ["red", "dark"] and str(seg.device) == "cpu"
    assert seg.config["architecture"] == "test-red"
    text = seg.encode("  red  ")
    assert seg.encode("red") is text  # cached per expression
    assert set(text.state) == {"gain"}
    monkeypatch.setenv("RRSIS_CHECKPOINT", str(red_checkpoint))
    assert rrsis_geo.load_model(device="cpu").checkpoint == red_checkpoint
