"""Augmentation that never contradicts the expression: what changes, what moves together."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.errors import InputError
from training.augment import Augmentation, Invariance, gaussian_blur, invariance, rotate_hue


def scene(size: int = 32):
    """An image with a red square in the top-left quarter, and its mask."""
    image = torch.full((3, size, size), 0.2)
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    image[0, 2:10, 3:12] = 0.9
    mask[0, 2:10, 3:12] = 1
    return image, mask


@pytest.mark.parametrize("expression, dihedral, zoom, colour", [
    ("cars", True, True, True),
    ("the car on the left", False, False, True),
    ("buildings at the top", False, False, True),
    ("the car in the centre", True, False, True),
    ("red car", True, True, False),
    ("show me the green areas", True, True, False),
    ("light-duty vehicles", True, True, True),  # "light" is no colour
])
def test_what_an_expression_allows(expression, dihedral, zoom, colour):
    assert invariance(expression) == Invariance(dihedral, zoom, colour)


def test_flips_turns_and_zooms_move_image_and_masks_together():
    image, mask = scene()
    augment = Augmentation(dihedral=True, scale=(0.8, 1.25))
    allowed = invariance("cars")
    moved = 0
    for seed in range(16):
        out, masks = augment(image, mask, allowed, torch.Generator().manual_seed(seed))
        assert out.shape == image.shape and masks.shape == mask.shape and masks.dtype == torch.uint8
        inside = out[0][masks[0].bool()]
        outside = out[0][~masks[0].bool()]
        # the red square is where the mask is, after any flip, turn or zoom (edges blur in a zoom)
        assert inside.numel() and inside.mean() > 0.6 and outside.mean() < 0.35
        moved += not torch.equal(masks, mask)
    assert moved >= 12  # most draws change the view


def test_a_placed_referent_is_never_moved_and_a_colour_keeps_its_hue():
    image, mask = scene()
    augment = Augmentation(dihedral=True, scale=(0.8, 1.25), hue=0.5, saturation=0.9)
    for seed in range(8):
        out, masks = augment(image, mask, invariance("the red car on the left"), torch.Generator().manual_seed(seed))
        assert torch.equal(masks, mask) and torch.equal(out, image)


def test_photometric_changes_keep_the_geometry_and_stay_in_range():
    image, mask = scene()
    augment = Augmentation(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, gamma=0.2, blur=1.0, noise=0.05)
    out, masks = augment(image, mask, invariance("cars"), torch.Generator().manual_seed(3))
    assert torch.equal(masks, mask) and not torch.equal(out, image)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_the_same_seed_draws_the_same_view():
    image, mask = scene()
    augment = Augmentation(dihedral=True, scale=(0.8, 1.25), brightness=0.2, noise=0.02)
    a = augment(image, mask, invariance("cars"), torch.Generator().manual_seed(7))
    b = augment(image, mask, invariance("cars"), torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hue_rotation_keeps_grey_and_a_full_turn_is_identity():
    grey = torch.full((3, 4, 4), 0.5)
    assert torch.allclose(rotate_hue(grey, 0.3), grey, atol=1e-6)
    colour = torch.rand(3, 4, 4)
    assert torch.allclose(rotate_hue(colour, 1.0), colour, atol=1e-5)
    assert not torch.allclose(rotate_hue(colour, 1 / 3), colour, atol=1e-3)


def test_blur_keeps_the_mean():
    image = torch.rand(3, 16, 16)
    assert torch.allclose(gaussian_blur(image, 1.0).mean(), image.mean(), atol=0.02)


@pytest.mark.parametrize("section, message", [
    ({"flip": True}, "unknown setting data.augment.flip"),
    ({"scale": [1.2, 1.5]}, "data.augment.scale"),
    ({"brightness": 1.5}, "data.augment.brightness"),
    ({"blur": 2}, "data.augment.blur is a probability"),
])
def test_bad_settings_are_refused(section, message):
    with pytest.raises(InputError, match=message):
        Augmentation.from_config(section)
    assert Augmentation.from_config(None) is None and Augmentation.from_config({}) is None
