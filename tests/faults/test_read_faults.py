"""Damaged scenes: a tiled GeoTIFF cut short at many offsets, bit flips in tile data, a VRT
whose source vanished. Fail: one line naming the scene and pixel window, exit 2, nothing
written. ``--on-read-error skip``: exactly the damaged blocks become nodata, listed in a warning
and in the GeoPackage's metadata."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from fault_testdata import BLOCK, block_ranges, flip_bits, listing, textured_scene, truncate_copy
from rrsis_geo.cli import main


def cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def predict_argv(scene, out, checkpoint, *extra):
    return ["predict", scene, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q", *extra]


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rrsis-geo: error: "), err
    for needle in needles:
        assert needle in err, err


def block_window(r: int, c: int) -> str:
    return f"col {c * BLOCK}, row {r * BLOCK}, {BLOCK} x {BLOCK} px"


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    return textured_scene(tmp_path_factory.mktemp("scene") / "scene.tif")


def test_truncated_at_twelve_offsets_fails_cleanly(tmp_path, capsys, intact, checkpoint, record):
    size = intact.stat().st_size
    data_start = min(offset for offset, _ in block_ranges(intact).values())
    offsets = [100, data_start // 2] + [int(x) for x in np.linspace(data_start + 40, size - 1, 10)]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for offset in offsets:
        cut = truncate_copy(intact, tmp_path / f"cut_{offset}.tif", offset)
        code, _, err = cli(predict_argv(cut, out_dir / "o.gpkg", checkpoint), capsys)
        in_header = offset < data_start
        assert_one_line_error(code, err, str(cut), "is not a raster GDAL can read" if in_header else "at pixel window")
        assert listing(out_dir) == []
        record(f"GeoTIFF cut at byte {offset}/{size}", code, err, listing(out_dir) or "nothing")


def test_truncated_file_skipped_blocks_become_nodata(tmp_path, capsys, intact, checkpoint, record):
    ranges = block_ranges(intact)
    cut_at = ranges[(5, 0)][0] + 10  # blocks from row 5 on are gone, the red square (rows 8-40) stays
    cut = truncate_copy(intact, tmp_path / "cut.tif", cut_at)
    expected = sorted((r, c) for (r, c), (o, n) in ranges.items() if o + n > cut_at)
    out = tmp_path / "o.gpkg"
    code, stdout, err = cli(predict_argv(cut, out, checkpoint, "--on-read-error", "skip"), capsys)
    assert code == 0, err
    assert f"rrsis-geo: warning: {len(expected)} unreadable pixel window(s) were treated as nodata" in err
    listed = pyogrio.read_info(out)["dataset_metadata"]["RRSIS_UNREAD_WINDOWS"].split("; ")
    assert listed == [f"cut.tif: {block_window(r, c)}" for r, c in expected]
    frame = pyogrio.read_dataframe(out)
    assert len(frame) == 1 and frame.area.iloc[0] == pytest.approx(32 * 32 * 0.25)
    if shutil.which("ogrinfo"):  # the GDAL QGIS uses shows the item too
        shown = subprocess.run(["ogrinfo", "-so", str(out)], capture_output=True, text=True).stdout
        assert f"RRSIS_UNREAD_WINDOWS=cut.tif: {block_window(*expected[0])}; " in shown
    record(f"GeoTIFF cut at byte {cut_at}, --on-read-error skip", code, err.splitlines()[0][:160] + " ...",
           [f"o.gpkg (1 polygon, RRSIS_UNREAD_WINDOWS lists {len(expected)} blocks)"])


def test_bit_flips_in_tile_data(tmp_path, capsys, intact, checkpoint, record):
    offset, count = block_ranges(intact)[(1, 1)]  # inside the red square (rows, cols 8-40)
    damaged = flip_bits(intact, tmp_path / "flipped.tif", [offset + count // 3, offset + count // 2, offset + count // 2 + 1])
    out = tmp_path / "o.gpkg"
    code, _, err = cli(predict_argv(damaged, out, checkpoint), capsys)
    assert_one_line_error(code, err, str(damaged), f"at pixel window {block_window(1, 1)}:")
    assert not out.exists() and listing(tmp_path) == ["flipped.tif"]
    record("3 bytes flipped in one tile's DEFLATE data", code, err, "nothing")

    code, _, err = cli(predict_argv(damaged, out, checkpoint, "--on-read-error", "skip"), capsys)
    assert code == 0, err
    assert pyogrio.read_info(out)["dataset_metadata"]["RRSIS_UNREAD_WINDOWS"] == f"flipped.tif: {block_window(1, 1)}"
    frame = pyogrio.read_dataframe(out)
    polygon = frame.geometry.iloc[0]
    # the unreadable block is nodata: the square keeps its outline and gets a 16 x 16 px hole
    assert len(frame) == 1 and polygon.area == pytest.approx((32 * 32 - 16 * 16) * 0.25)
    assert len(polygon.interiors) == 1
    record("same, --on-read-error skip", code, err.splitlines()[0], ["o.gpkg (square with the damaged block as a hole)"])


def test_vrt_whose_source_vanished(tmp_path, capsys, intact, checkpoint, record):
    source = shutil.copy(intact, tmp_path / "source.tif")
    vrt = tmp_path / "mosaic.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">source.tif'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    vrt.write_text(
        f'<VRTDataset rasterXSize="128" rasterYSize="128"><SRS>EPSG:32640</SRS>'
        f"<GeoTransform>500000, 0.5, 0, 2800000, 0, -0.5</GeoTransform>{bands}</VRTDataset>"
    )
    Path(source).unlink()
    out = tmp_path / "o.gpkg"
    code, _, err = cli(predict_argv(vrt, out, checkpoint), capsys)
    assert_one_line_error(code, err, str(vrt), "No such file or directory (a file it refers to is missing)")
    assert listing(tmp_path) == ["mosaic.vrt"]
    record("VRT whose source file was deleted", code, err, "nothing")


def test_skip_with_resampling(tmp_path, capsys, intact, tokenizer_for_faults, record):
    from geo_testdata import make_checkpoint

    coarse = make_checkpoint(tmp_path / "coarse", "test-red", tokenizer_for_faults, gsd_m=1.0)  # scene is 0.5 m
    offset, count = block_ranges(intact)[(1, 1)]
    damaged = flip_bits(intact, tmp_path / "flipped.tif", [offset + count // 3, offset + count // 2, offset + count // 2 + 1])
    out = tmp_path / "o.gpkg"
    code, _, err = cli(predict_argv(damaged, out, coarse, "--on-read-error", "skip"), capsys)
    assert code == 0, err
    assert pyogrio.read_info(out)["dataset_metadata"]["RRSIS_UNREAD_WINDOWS"] == f"flipped.tif: {block_window(1, 1)}"
    polygon = pyogrio.read_dataframe(out).geometry.iloc[0]
    # at half the resolution the hole's edges blur by a pixel or so, but it is there
    assert len(polygon.interiors) == 1
    assert (32 * 32 - 16 * 16) * 0.25 * 0.8 < polygon.area < (32 * 32 - 16 * 16) * 0.25 * 1.2
    record("bit flips, --on-read-error skip, resampled to the model's 1 m GSD", code, err.splitlines()[0],
           ["o.gpkg (hole where the damaged block was)"])


def test_library_errors_are_one_line():
    from rrsis_geo.errors import OutputBusyError, RRSISError, WindowReadError

    error = WindowReadError("cannot read a.tif at pixel window col 0, row 0, 16 x 16 px: TIFF\nsays\r\n  this", "a.tif")
    assert str(error) == "cannot read a.tif at pixel window col 0, row 0, 16 x 16 px: TIFF says this"
    assert isinstance(error, RRSISError) and isinstance(OutputBusyError("x"), RRSISError)


def test_skip_with_nothing_readable(tmp_path, capsys, intact, checkpoint, record):
    data_start = min(offset for offset, _ in block_ranges(intact).values())
    cut = truncate_copy(intact, tmp_path / "cut.tif", data_start + 40)  # the directory survives, no block does
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = cli(predict_argv(cut, out_dir / "o.gpkg", checkpoint, "--on-read-error", "skip"), capsys)
    assert_one_line_error(code, err, f"no pixel of {cut} could be read (64 damaged blocks)")
    assert listing(out_dir) == []
    record("GeoTIFF cut right after its directory, --on-read-error skip", code, err, "nothing")
