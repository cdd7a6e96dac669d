"""Box labels: YOLO, VOC and COCO readers, their errors, and boxes turned into masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from vehicle_testdata import NAMES, paint_scene, yolo_lines

from training.builder.boxes import Box, BoxLabelError, CocoReader, VocReader, YoloReader
from training.builder.boxmask import box_window, instance_masks, oriented_mask


def test_yolo_file_gives_masks_at_the_right_pixels(tmp_path):
    # a 100 × 80 image; a car over columns 10..39 and rows 34..45, a bus over 60..89 × 10..19
    vehicles = [("car", "red", 10, 34, 40, 46), ("bus", "white", 60, 10, 90, 20)]
    image = paint_scene(100, 80, vehicles)
    Image.fromarray(image).save(tmp_path / "scene.png")
    (tmp_path / "scene.txt").write_text("\n".join(yolo_lines(100, 80, vehicles)) + "\n")
    read = np.asarray(Image.open(tmp_path / "scene.png").convert("RGB"))
    boxes = YoloReader(NAMES)(tmp_path / "scene.txt", 100, 80)
    assert [b.cls for b in boxes] == ["car", "bus"]
    for method in ("fill", "oriented"):  # boxes as elongated as the class: the box either way
        labels = instance_masks(boxes, read, method)
        expected = np.zeros((80, 100), dtype=np.int32)
        expected[34:46, 10:40] = 1
        expected[10:20, 60:90] = 2
        np.testing.assert_array_equal(labels, expected)


def test_oriented_mask_follows_a_diagonal_vehicle():
    # a 40 × 16 px car turned 45°, painted white on grey; its box is the bounding square
    yy, xx = np.mgrid[0:60, 0:60] + 0.5
    u = ((xx - 30) + (yy - 30)) / np.sqrt(2)
    v = (-(xx - 30) + (yy - 30)) / np.sqrt(2)
    car = (np.abs(u) <= 20) & (np.abs(v) <= 8)
    image = np.full((60, 60, 3), 100, dtype=np.uint8)
    image[car] = 235
    rows, cols = np.nonzero(car)
    box = Box("car", cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    window = box_window(box, 60, 60)
    r0, r1, c0, c1 = window
    truth = car[r0:r1, c0:c1]
    mask = oriented_mask(box, window, image)
    iou = (mask & truth).sum() / (mask | truth).sum()
    fill_iou = truth.sum() / truth.size
    assert iou > 0.8 and fill_iou < 0.6


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
    ("0 0.5 0.5 0.2 abc", "an integer class and four numbers"),
    ("7 0.5 0.5 0.2 0.2", "unknown class 7"),
    ("0 0.95 0.5 0.2 0.2", "lies outside the image"),
    ("0 0.5 -0.2 0.1 0.1", "lies outside the image"),
    ("0 0.5 0.5 0 0.1", "lies outside the image"),
])
def test_bad_yolo_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"0 0.1 0.1 0.05 0.05\n\n{line}\n")
    with pytest.raises(BoxLabelError) as err:
        YoloReader(NAMES)(path, 100, 100)
    assert f"{path}:3:" in str(err.value) and message in str(err.value)


def test_empty_and_missing_yolo_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(BoxLabelError, match=r"empty\.txt: no boxes \(empty label file\)"):
        YoloReader(NAMES)(empty, 100, 100)
    assert YoloReader(NAMES, allow_empty=True)(empty, 100, 100) == []
    with pytest.raises(BoxLabelError, match="does not exist"):
        YoloReader(NAMES)(tmp_path / "missing.txt", 100, 100)


def test_yolo_box_a_hair_past_the_edge_is_clipped(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text("0 0.9 0.5 0.202 0.1\n")  # right edge at 1.001: annotation rounding
    (box,) = YoloReader(NAMES)(path, 100, 100)
    assert box.x1 == 100 and box.x0 == pytest.approx(79.9)


def test_voc_reader(tmp_path):
    xml = """<annotation><size><width>100</width><height>80</height></size>
      <object><name>bus</name><bndbox><xmin>61</xmin><ymin>11</ymin><xmax>90</xmax><ymax>20</ymax></bndbox></object>
      <object><name>car</name><bndbox><xmin>16</xmin><ymin>31</ymin><xmax>35</xmax><ymax>50</ymax></bndbox></object>
    </annotation>"""
    path = tmp_path / "scene.xml"
    path.write_text(xml)
    boxes = VocReader(NAMES)(path, 100, 80)
    assert boxes == [Box("bus", 60, 10, 90, 20), Box("car", 15, 30, 35, 50)]
    path.write_text(xml.replace("<name>car</name>", "<name>tractor</name>"))
    with pytest.raises(BoxLabelError, match=r"scene\.xml: object 2: unknown class 'tractor'"):
        VocReader(NAMES)(path, 100, 80)
    path.write_text(xml.replace("<xmax>90</xmax>", "<xmax>190</xmax>"))
    with pytest.raises(BoxLabelError, match="object 1: box .* outside the 100×80 px image"):
        VocReader(NAMES)(path, 100, 80)


def test_coco_reader(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "categories": [{"id": 3, "name": "car"}, {"id": 4, "name": "bus"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [15, 30, 20, 20]},
                            {"image_id": 2, "category_id": 4, "bbox": [60, 10, 30, 10]},
                            {"image_id": 1, "category_id": 4, "bbox": [60, 10, 30, 10]}]}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    assert CocoReader(NAMES, "a.png")(path, 100, 80) == [Box("car", 15, 30, 35, 50),
                                                         Box("bus", 60, 10, 90, 20)]
    data["annotations"][2]["bbox"] = [90, 10, 30, 10]
    path.write_text(json.dumps(data))
    with pytest.raises(BoxLabelError, match=r"annotations\[2\]: box .* outside"):
        CocoReader(NAMES, "a.png")(path, 100, 80)
    with pytest.raises(BoxLabelError, match="no image with file_name 'c.png'"):
        CocoReader(NAMES, "c.png")(path, 100, 80)
