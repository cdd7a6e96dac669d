"""Write a shipped vehicle sample (``resources/sample/*_sample.tif``) and its labelled boxes.

Two *validation* images of the combined data set (``training/builder/configs/combined.yaml``), so
no model trained from that config saw them, from ``../shared/data/aerial_vehicles``:

* ``munich`` (default): the Munich street strip ``MunichStreet02-MOS74`` (KIT AIS vehicle data set,
  CC-BY 3.0, © KIT AIS): 33 cars and a minibus; EPSG:32632 (UTM 32N);
* ``minsk``: the drone frame ``DJI_0762-00031`` (CC-BY-SA, © Yauhen Kharuzhy and Minsk OSM
  community): 22 cars, 3 buses, 3 minibuses on a Minsk street; EPSG:32635 (UTM 35N).

Each is wrapped in a GeoTIFF with a nominal georeference: the pixel size the builder estimates for
its series (4.5 m over the median long side of its car boxes), the upper-left corner at a nominal
point of its city. Its labelled boxes go beside it as ``<name>.vehicles.geojson`` (one axis-aligned
box polygon per vehicle, class in ``class``), so that tests can check found vehicles against real
labels without ``../shared``.

    .venv/bin/python scripts/make_vehicle_sample.py [--sample munich|minsk] [--data ../shared/data/aerial_vehicles] [--overwrite]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_sample_scene import refuse_existing, sample_parser, write_rgb_geotiff  # noqa: E402
from training.builder.boxes import YoloReader  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "aerial_vehicles"
NAMES = ["car", "truck", "bus", "minibus", "cyclist"]
CAR_LENGTH_M = 4.5


@dataclass(frozen=True)
class VehicleSample:
    image: str  # file name in the data set's images/
    series: str  # file-name prefix of the images whose cars give the pixel size
    epsg: int
    origin: tuple  # nominal upper-left corner, metres
    out: Path
    attribution: str


SAMPLES = {
    "munich": VehicleSample(
        "MunichStreet02-MOS74.png", "MunichStreet02-", 32632, (691_000.0, 5_335_000.0),  # central Munich
        ROOT / "resources" / "sample" / "munich_street_sample.tif",
        "KIT AIS vehicle data set (Munich), CC-BY 3.0, (c) KIT AIS; via jekhor/aerial-cars-dataset"),
    "minsk": VehicleSample(
        "DJI_0762-00031.jpg", "DJI_0762-", 32635, (536_700.0, 5_973_000.0),  # central Minsk
        ROOT / "resources" / "sample" / "minsk_street_sample.tif",
        "drone photo of Minsk, CC-BY-SA, (c) Yauhen Kharuzhy and Minsk OSM community; via jekhor/aerial-cars-dataset"),
}


def series_gsd(data: Path, series: str) -> float:
    """Metres per pixel of an image series: 4.5 m over the median long side of its car boxes."""
    sides = []
    for image in sorted((data / "images").glob(f"{series}*")):
        width, height = Image.open(image).size
        boxes = YoloReader(NAMES)(data / "labels" / f"{image.stem}.txt", width, height)
        sides += [max(b.width, b.height) for b in boxes if b.cls == "car"]
    return round(CAR_LENGTH_M / statistics.median(sides), 4)


def box_features(boxes, transform, epsg: int, attribution: str) -> dict:
    features = []
    for box in boxes:
        corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1), (box.x0, box.y0)]
        ring = [list(transform * xy) for xy in corners]
        features.append({"type": "Feature", "properties": {"class": box.cls},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
            "attribution": attribution, "features": features}


def main(argv: list[str] | None = None) -> int:
    parser = sample_parser(__doc__, DATA, None)
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="munich")
    args = parser.parse_args(argv)
    sample = SAMPLES[args.sample]
    args.out = args.out or sample.out
    boxes_out = args.out.with_name(args.out.stem + ".vehicles.geojson")
    if refuse_existing([args.out, boxes_out], args.overwrite):
        return 2
    image = np.asarray(Image.open(args.data / "images" / sample.image).convert("RGB"))
    height, width = image.shape[:2]
    gsd = series_gsd(args.data, sample.series)
    transform = from_origin(sample.origin[0], sample.origin[1], gsd, gsd)
    stem = Path(sample.image).stem
    boxes = YoloReader(NAMES)(args.data / "labels" / f"{stem}.txt", width, height)
    tmp_boxes = boxes_out.with_name(f".{boxes_out.name}.partial")
    tmp_boxes.write_text(json.dumps(box_features(boxes, transform, sample.epsg, sample.attribution)), encoding="utf-8")
    write_rgb_geotiff(args.out, image, sample.epsg, transform, {
        "source": f"aerial_vehicles/images/{sample.image}", "attribution": sample.attribution,
        "georeference": f"nominal (EPSG:{sample.epsg}, {gsd} m pixels estimated from car lengths)",
    })
    os.replace(tmp_boxes, boxes_out)
    print(f"{args.out}: {width}×{height} px at {gsd} m, {args.out.stat().st_size / 1024:.0f} KiB; "
          f"{len(boxes)} labelled vehicles -> {boxes_out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
