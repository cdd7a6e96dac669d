"""Write the shipped vehicle sample ``resources/sample/munich_street_sample.tif`` and its car boxes.

The Munich street strip ``MunichStreet02-MOS74`` of ``../shared/data/aerial_vehicles`` (KIT AIS
vehicle data set, CC-BY 3.0, © KIT AIS): a *validation* image of the combined data set
(``training/builder/configs/combined.yaml``), so no model trained from that config saw it. Wrapped in
a GeoTIFF with a nominal georeference: EPSG:32632 (UTM 32N, Munich), the pixel size the builder
estimates for the MunichStreet02 strips (4.5 m over the median long side of their car boxes), the
upper-left corner at a nominal point in Munich. Its labelled boxes go beside it as
``munich_street_sample.vehicles.geojson`` (one axis-aligned box polygon per vehicle, class in
``class``), so that tests can check found vehicles against real labels without ``../shared``.

    .venv/bin/python scripts/make_vehicle_sample.py [--data ../shared/data/aerial_vehicles] [--overwrite]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_sample_scene import refuse_existing, sample_arguments, write_rgb_geotiff  # noqa: E402
from training.builder.boxes import YoloReader  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "aerial_vehicles"
NAMES = ["car", "truck", "bus", "minibus", "cyclist"]
STRIP = "MunichStreet02-MOS74"
SERIES = "MunichStreet02-"
CAR_LENGTH_M = 4.5
CRS_EPSG = 32632
ORIGIN = (691_000.0, 5_335_000.0)  # nominal, central Munich
OUT = ROOT / "resources" / "sample" / "munich_street_sample.tif"
ATTRIBUTION = "KIT AIS vehicle data set (Munich), CC-BY 3.0, (c) KIT AIS; via jekhor/aerial-cars-dataset"


def series_gsd(data: Path) -> float:
    """Metres per pixel of the strip series: 4.5 m over the median long side of its car boxes."""
    sides = []
    for image in sorted((data / "images").glob(f"{SERIES}*.png")):
        width, height = Image.open(image).size
        boxes = YoloReader(NAMES)(data / "labels" / f"{image.stem}.txt", width, height)
        sides += [max(b.width, b.height) for b in boxes if b.cls == "car"]
    return round(CAR_LENGTH_M / statistics.median(sides), 4)


def box_features(boxes, transform) -> dict:
    features = []
    for box in boxes:
        corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1), (box.x0, box.y0)]
        ring = [list(transform * xy) for xy in corners]
        features.append({"type": "Feature", "properties": {"class": box.cls},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{CRS_EPSG}"}},
            "attribution": ATTRIBUTION, "features": features}


def main(argv: list[str] | None = None) -> int:
    args = sample_arguments(argv, __doc__, DATA, OUT)
    boxes_out = args.out.with_name(args.out.stem + ".vehicles.geojson")
    if refuse_existing([args.out, boxes_out], args.overwrite):
        return 2
    image = np.asarray(Image.open(args.data / "images" / f"{STRIP}.png").convert("RGB"))
    height, width = image.shape[:2]
    gsd = series_gsd(args.data)
    transform = from_origin(ORIGIN[0], ORIGIN[1], gsd, gsd)
    boxes = YoloReader(NAMES)(args.data / "labels" / f"{STRIP}.txt", width, height)
    tmp_boxes = boxes_out.with_name(f".{boxes_out.name}.partial")
    tmp_boxes.write_text(json.dumps(box_features(boxes, transform)), encoding="utf-8")
    write_rgb_geotiff(args.out, image, CRS_EPSG, transform, {
        "source": f"aerial_vehicles/images/{STRIP}.png", "attribution": ATTRIBUTION,
        "georeference": f"nominal (EPSG:{CRS_EPSG}, {gsd} m pixels estimated from car lengths)",
    })
    os.replace(tmp_boxes, boxes_out)
    print(f"{args.out}: {width}×{height} px at {gsd} m, {args.out.stat().st_size / 1024:.0f} KiB; "
          f"{len(boxes)} labelled vehicles -> {boxes_out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
