"""Which scenes a batch run takes from its sources (no cluster needed)."""

from __future__ import annotations

import json

import pytest

from geo_testdata import red_square_scene, write_geotiff
from rrsis_geo.batch.scenes import collect_scenes, scene_id
from rrsis_geo.errors import InputError


def test_globs_folders_lists_and_urls_give_each_scene_once_in_order(tmp_path):
    (tmp_path / "d").mkdir()
    a, b = (write_geotiff(tmp_path / "d" / n, red_square_scene(8, 8, slice(1, 3), slice(1, 3))) for n in ("a.tif", "b.tif"))
    listing = tmp_path / "scenes.txt"
    listing.write_text("# scenes\nd/b.tif\n\nhttps://example.org/c.tif\ns3://bucket/d.tif\n")
    scenes = collect_scenes([str(tmp_path / "d" / "*.tif"), str(tmp_path / "d"), str(listing)])
    assert [s.uri for s in scenes] == [str(a), str(b), "/vsicurl/https://example.org/c.tif", "/vsis3/bucket/d.tif"]
    assert [s.label for s in scenes] == ["a.tif", "b.tif", "c.tif", "d.tif"]
    assert len({s.id for s in scenes}) == 4 and scenes[0].id.startswith("a.tif-")
    assert scene_id("/x/a.tif") != scene_id("/y/a.tif")  # same name, other place: other id


def test_same_names_in_two_folders_are_labelled_by_their_paths(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_geotiff(tmp_path / folder / "tile.tif", red_square_scene(8, 8, slice(1, 3), slice(1, 3)))
    scenes = collect_scenes([str(tmp_path / "*" / "tile.tif")])
    assert [s.label for s in scenes] == [str(tmp_path / "x" / "tile.tif"), str(tmp_path / "y" / "tile.tif")]


def test_sources_that_name_nothing_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no file matches"):
        collect_scenes([str(tmp_path / "*.tif")])
    with pytest.raises(InputError, match="does not exist"):
        collect_scenes([str(tmp_path / "missing.tif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no raster"):
        collect_scenes([str(tmp_path / "empty")])
    stac = tmp_path / "cat.json"
    stac.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(InputError, match="no STAC ItemCollection"):
        collect_scenes([str(stac)])


def test_a_vrt_mosaic_gives_its_source_files(tmp_path):
    sources = [write_geotiff(tmp_path / f"{n}.tif", red_square_scene(8, 8, slice(1, 3), slice(1, 3))) for n in "pq"]
    bands = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="1">{s.name}</SourceFilename><SourceBand>1</SourceBand>'
        f'<DstRect xOff="{8 * k}" yOff="0" xSize="8" ySize="8"/></SimpleSource>' for k, s in enumerate(sources))
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="16" rasterYSize="8"><VRTRasterBand dataType="Byte" band="1">{bands}'
                   "</VRTRasterBand></VRTDataset>")
    assert [s.uri for s in collect_scenes([str(vrt)])] == [str(p) for p in sources]
