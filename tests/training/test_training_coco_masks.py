"""COCO RLE and polygon decoding against hand-made cases."""

import numpy as np
import pytest

from rrsis_geo.errors import InputError
from training.datasets.coco_masks import decode_rle, decode_segmentation, rle_counts_from_string


def test_compressed_counts_decoded_by_hand():
    # '3', '2', '4' are 3, 2, 4; from the fourth count on a count is stored as the difference to
    # the count two places before: '3' -> 3 + 2 = 5
    assert rle_counts_from_string("3243") == [3, 2, 4, 5]
    # 'O' is 31 = 0b11111: last group (no 0x20), sign bit 0x10 set -> -1; 2 - 1 = 1
    assert rle_counts_from_string("324O") == [3, 2, 4, 1]
    # 'X' = 40 = 0x20 | 8 (continue, low bits 8), '1' = 1 -> 8 + (1 << 5) = 40
    assert rle_counts_from_string("X1") == [40]
    assert rle_counts_from_string(b"X1") == [40]


def test_uncompressed_rle_is_column_major():
    # 2 x 3 mask, column-major order: col0 = (0, 1), col1 = (1, 1), col2 = (0, 0)
    # runs: one 0, three 1s, two 0s
    mask = decode_rle({"size": [2, 3], "counts": [1, 3, 2]})
    assert mask.tolist() == [[False, True, False], [True, True, False]]


def test_compressed_and_uncompressed_agree():
    counts = [3, 2, 4, 5]  # 14 pixels = 2 x 7
    a = decode_rle({"size": [2, 7], "counts": counts})
    b = decode_rle({"size": [2, 7], "counts": "3243"})
    assert np.array_equal(a, b)
    assert a.sum() == 2 + 5


def test_bad_rle_is_reported():
    with pytest.raises(InputError, match="add up to"):
        decode_rle({"size": [2, 2], "counts": [1, 1]})


def test_polygon_covers_pixels_whose_centres_are_inside():
    # the square from (1, 1) to (3, 3) covers pixels 1..2 in both directions: COCO area 4
    mask = decode_segmentation([[1, 1, 3, 1, 3, 3, 1, 3]], height=5, width=5)
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(mask, expected)


def test_several_polygons_are_united():
    polys = [[0, 0, 2, 0, 2, 2, 0, 2], [1, 1, 4, 1, 4, 2, 1, 2]]
    mask = decode_segmentation(polys, height=4, width=4)
    assert mask.sum() == 4 + 3 - 1
    assert mask[1, 3] and not mask[2, 0]


def test_list_of_rles_and_degenerate_polygons():
    rles = [{"size": [2, 2], "counts": [0, 1, 3]}, {"size": [2, 2], "counts": [3, 1]}]
    assert decode_segmentation(rles, 2, 2).tolist() == [[True, False], [False, True]]
    assert not decode_segmentation([[0, 0, 1, 1]], 3, 3).any()  # two points: no area
