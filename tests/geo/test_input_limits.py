"""Two inputs that used to escape the one-line discipline: a tile size too large for memory, and
scenes in different CRSs written into one output."""

from __future__ import annotations

import geopandas as gpd
import pyogrio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo_testdata import red_square_scene, snapshot, write_geotiff
from rrsis_geo.cli import main
from rrsis_geo.memory import USABLE_SHARE, check_tile_memory, largest_tile


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_tile_size_that_cannot_fit_is_one_line_before_any_tile(tmp_path, capsys, red_checkpoint, monkeypatch):
    scene = write_geotiff(tmp_path / "scene.tif", red_square_scene(100, 90, slice(10, 40), slice(20, 60)))
    started = []
    monkeypatch.setattr("rrsis_geo.pipeline._run_scenes", lambda *a, **k: started.append(a))
    before = snapshot(tmp_path)
    code, _, err = run(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint,
                        "--tile-size", "99999"], capsys)
    assert code == 2 and started == []
    assert err.count("\n") == 1 and err.startswith("rrsis-geo: error: tile size 99999 px needs about "), err
    assert "GiB available; the largest tile that fits is " in err
    fits = int(err.rsplit("the largest tile that fits is ", 1)[1].split()[0])
    assert fits >= 16 and fits % 32 == 0
    assert snapshot(tmp_path) == before
    # the size it names runs
    monkeypatch.undo()
    code, _, err = run(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint,
                        "--tile-size", str(min(fits, 256)), "-q"], capsys)
    assert code == 0, err


@given(available=st.integers(1, 2**40), batch=st.integers(1, 64), per_pixel=st.integers(1, 10_000))
def test_the_largest_tile_named_fits_and_the_next_one_does_not(available, batch, per_pixel):
    edge = largest_tile(available, batch, per_pixel)
    assert edge % 32 == 0
    if edge >= 16:
        check_tile_memory(edge, batch, per_pixel, available, "here")  # fits: no error
    assert batch * (edge + 32) ** 2 * per_pixel > available * USABLE_SHARE


def test_unknown_memory_is_not_a_reason_to_refuse():
    check_tile_memory(10**6, 64, 10_000, None, "here")


@pytest.fixture()
def two_crs_scenes(tmp_path):
    utm = write_geotiff(tmp_path / "dubai.tif", red_square_scene(100, 90, slice(10, 40), slice(20, 60)))
    wgs84 = write_geotiff(tmp_path / "rio.tif", red_square_scene(100, 90, slice(10, 40), slice(20, 60)),
                          crs="EPSG:4326", origin=(-43.2, -22.9), res=0.000005)
    return utm, wgs84


def test_scenes_in_different_crss_are_refused_without_crs(tmp_path, capsys, red_checkpoint, two_crs_scenes):
    before = snapshot(tmp_path)
    code, _, err = run(["predict", *two_crs_scenes, "-e", "red", "-o", tmp_path / "o.gpkg",
                        "--checkpoint", red_checkpoint], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "the scenes are in different CRSs (dubai.tif: EPSG:32640, rio.tif: EPSG:4326)" in err
    assert "pass --crs" in err
    assert snapshot(tmp_path) == before


def test_crs_reprojects_every_scene_and_areas_stay_true(tmp_path, capsys, red_checkpoint, two_crs_scenes):
    out = tmp_path / "o.gpkg"
    code, _, err = run(["predict", *two_crs_scenes, "-e", "red", "-o", out, "--checkpoint", red_checkpoint,
                        "--crs", "EPSG:4326", "-q"], capsys)
    assert code == 0, err
    frame = pyogrio.read_dataframe(out)
    assert frame.crs.to_epsg() == 4326 and sorted(frame["scene"]) == ["dubai.tif", "rio.tif"]
    # each polygon's area_m2 is its true area (in a local UTM zone), not the area of a reprojection
    for _, row in frame.iterrows():
        local = gpd.GeoSeries([row.geometry], crs=4326)
        true_area = local.to_crs(local.estimate_utm_crs()).area.iloc[0]
        assert row["area_m2"] == pytest.approx(true_area, rel=0.02)


def test_a_bad_crs_is_one_line(tmp_path, capsys, red_checkpoint, two_crs_scenes):
    code, _, err = run(["predict", two_crs_scenes[0], "-e", "red", "-o", tmp_path / "o.gpkg",
                        "--checkpoint", red_checkpoint, "--crs", "EPSG:999999"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--crs 'EPSG:999999' is not a CRS GDAL knows" in err, err
