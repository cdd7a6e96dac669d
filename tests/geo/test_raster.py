"""Opening scenes: band choice, stretch, nodata, ground sample distance, validation."""

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from rrsis_geo.errors import InputError, RasterError
from rrsis_geo.options import CLI, describe
from rrsis_geo.raster import Window, open_raster, read_pixels, read_valid

from geo_testdata import UTM, red_square_scene, write_geotiff


def test_utm_scene_is_described_as_gdal_sees_it(tmp_path):
    path = write_geotiff(tmp_path / "a.tif", red_square_scene(120, 90, slice(10, 20), slice(10, 20)), res=0.3)
    src = open_raster(path)
    assert (src.width, src.height, src.count) == (90, 120, 3)
    assert src.crs.to_epsg() == 32640
    assert src.bands == (1, 2, 3)
    assert src.gsd == pytest.approx((0.3, 0.3))
    assert src.stretch == ((0.0, 255.0),) * 3  # 8-bit: used as is
    assert not src.has_mask
    assert src.region == Window(0, 0, 90, 120)


def test_geographic_scene_gsd_is_measured_on_the_ellipsoid(tmp_path):
    import pyproj

    lon0, lat0, res = 55.3, 25.2, 1e-5
    path = write_geotiff(tmp_path / "g.tif", np.zeros((3, 100, 100), np.uint8), crs="EPSG:4326", origin=(lon0, lat0), res=res)
    src = open_raster(path, compute_stretch=False)
    geod = pyproj.Geod(ellps="WGS84")
    lat_c, lon_c = lat0 - 50 * res, lon0 + 50 * res
    expected_x = geod.inv(lon_c - res / 2, lat_c, lon_c + res / 2, lat_c)[2]
    expected_y = geod.inv(lon_c, lat_c - res / 2, lon_c, lat_c + res / 2)[2]
    assert src.gsd == pytest.approx((expected_x, expected_y), rel=1e-6)
    assert 1.00 < src.gsd[0] < 1.02 and 1.10 < src.gsd[1] < 1.11  # metres, not degrees


def test_gsd_converts_feet_to_metres(tmp_path):
    path = write_geotiff(tmp_path / "ft.tif", np.zeros((3, 20, 20), np.uint8), crs="EPSG:2229", origin=(6400000.0, 1900000.0), res=1.0)
    assert open_raster(path, compute_stretch=False).gsd == pytest.approx((0.3048006, 0.3048006), rel=1e-5)


def test_rgb_bands_are_found_by_colour_interpretation(tmp_path):
    data = np.zeros((4, 20, 20), np.uint8)
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    path = write_geotiff(tmp_path / "bgrn.tif", data, colorinterp=interp)
    assert open_raster(path).bands == (3, 2, 1)
    assert open_raster(path, bands=[4, 3, 2]).bands == (4, 3, 2)


def test_fewer_than_three_bands_needs_bands(tmp_path):
    path = write_geotiff(tmp_path / "grey.tif", np.zeros((1, 20, 20), np.uint8))
    with pytest.raises(RasterError, match=r"has 1 band; the model needs three .* bands=\[1, 1, 1\]") as caught:
        open_raster(path)
    assert describe(caught.value, CLI).endswith("needs three (RGB); pass --bands (e.g. --bands 1,1,1) for a grey image")
    assert open_raster(path, bands=[1, 1, 1]).bands == (1, 1, 1)
    with pytest.raises(InputError, match="band 2 does not exist"):
        open_raster(path, bands=[1, 2, 1])
    with pytest.raises(InputError, match="exactly three bands"):
        open_raster(path, bands=[1])


def test_16_bit_stretch_uses_2_and_98_percentiles_of_valid_pixels(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 3001, size=(3, 200, 200)).astype(np.uint16)
    data[:, :50, :] = 0  # nodata: must not drag the low percentile down
    path = write_geotiff(tmp_path / "u16.tif", data, nodata=0)
    src = open_raster(path)
    assert src.has_mask and src.dtype == "uint16"
    for low, high in src.stretch:
        assert low == pytest.approx(1040, abs=15)
        assert high == pytest.approx(2960, abs=15)


def test_8_bit_scenes_are_read_at_opening_only_when_nodata_can_hide_pixels(tmp_path, monkeypatch):
    # the stretch of 8-bit bands is fixed: without nodata there is nothing to learn from a read
    from rrsis_geo import raster

    sampled = []
    real_sample = raster._sample
    monkeypatch.setattr(raster, "_sample", lambda *a, **k: sampled.append(1) or real_sample(*a, **k))
    data = np.full((3, 40, 40), 100, np.uint8)
    assert open_raster(write_geotiff(tmp_path / "plain.tif", data)).stretch == raster.FULL_BYTE_RANGE
    assert sampled == []
    data[:, :, :10] = 0
    assert open_raster(write_geotiff(tmp_path / "nodata.tif", data, nodata=0)).stretch == raster.FULL_BYTE_RANGE
    assert sampled == [1]  # the valid pixels are checked (an all-nodata scene is refused)


def test_nodata_pixels_are_masked_when_reading_windows(tmp_path):
    data = np.full((3, 40, 40), 100, np.uint8)
    data[:, :, :10] = 0
    path = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    src = open_raster(path)
    with src.open() as ds:
        valid = read_valid(ds, src, Window(0, 0, 20, 20))
        pixels = read_pixels(ds, src, Window(0, 0, 20, 20))
        assert read_valid(ds, src, Window(20, 0, 20, 20)) is None  # fully valid: no mask
    assert pixels.shape == (3, 20, 20) and pixels.dtype == np.uint8
    assert not valid[:, :10].any() and valid[:, 10:].all()


def test_resampled_read_has_the_requested_shape(tmp_path):
    path = write_geotiff(tmp_path / "r.tif", red_square_scene(64, 64, slice(0, 32), slice(0, 64)))
    src = open_raster(path)
    with src.open() as ds:
        out = np.empty((3, 32, 32), np.uint8)
        pixels = read_pixels(ds, src, Window(0, 0, 64, 64), out=out, out_shape=(32, 32))
    assert pixels is out
    assert (out[0, :15] == 255).all() and (out[0, 17:] == 40).all()


def test_all_nodata_scene_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 50, 50), np.uint8), nodata=0)
    with pytest.raises(RasterError, match="is nodata; there is nothing to segment"):
        open_raster(path)


def test_sparse_valid_pixels_missed_by_the_decimated_read_still_count(tmp_path):
    data = np.zeros((3, 3000, 40), np.uint8)
    data[:, 1501, 21] = 200  # one valid pixel the 1024-px decimated read skips
    path = write_geotiff(tmp_path / "sparse.tif", data, nodata=0)
    assert open_raster(path).stretch == ((0.0, 255.0),) * 3


def test_missing_directory_and_non_raster_inputs(tmp_path):
    with pytest.raises(RasterError, match="does not exist"):
        open_raster(tmp_path / "nope.tif")
    with pytest.raises(RasterError, match="is a directory"):
        open_raster(tmp_path)
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(RasterError, match="not a raster GDAL can read"):
        open_raster(text)


def test_scene_without_crs_needs_allow_no_crs(tmp_path):
    path = write_geotiff(tmp_path / "nocrs.tif", np.zeros((3, 20, 20), np.uint8), crs=None, geotransform=False)
    with pytest.raises(RasterError, match="no coordinate reference system.*allow_no_crs=True") as caught:
        open_raster(path)
    assert "-a_srs EPSG:XXXX), or pass --allow-no-crs to get polygons in the file's own" in describe(caught.value, CLI)
    src = open_raster(path, allow_no_crs=True)
    assert src.crs is None and src.gsd is None


def test_bbox_selects_the_pixel_window_and_outside_bbox_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "b.tif", np.zeros((3, 100, 80), np.uint8), res=0.5)  # x 500000..500040
    src = open_raster(path, bbox=(500010.0, 2799980.0, 500020.0, 2799990.0))
    assert src.region == Window(20, 20, 20, 20)
    clipped = open_raster(path, bbox=(499990.0, 2799990.0, 500005.0, 2800010.0))  # partly outside: clipped
    assert clipped.region == Window(0, 0, 10, 20)
    with pytest.raises(InputError, match="does not overlap the scene"):
        open_raster(path, bbox=(0.0, 0.0, 10.0, 10.0))


def test_crs_is_kept_exactly(tmp_path):
    path = write_geotiff(tmp_path / "c.tif", np.zeros((3, 20, 20), np.uint8), crs=UTM)
    src = open_raster(path)
    assert src.describe_crs() == "EPSG:32640 - WGS 84 / UTM zone 40N"


def test_alpha_band_masks_pixels_and_is_not_fed_to_the_model(tmp_path):
    data = np.full((4, 40, 40), 120, np.uint8)
    data[3] = 255
    data[3, :, 30:] = 0  # transparent
    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    path = write_geotiff(tmp_path / "rgba.tif", data, colorinterp=interp)
    src = open_raster(path)
    assert src.bands == (1, 2, 3) and src.has_mask
    with src.open() as ds:
        valid = read_valid(ds, src, Window(0, 0, 40, 40))
    assert valid[:, :30].all() and not valid[:, 30:].any()
