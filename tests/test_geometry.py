"""Tests for featlab.geometry: the spatial ops shared by images and feature grids."""

import numpy as np
import pytest
import torch

from featlab.geometry import SPATIAL_OPS, apply_spatial, spatial_op_of

# An asymmetric 2x3 grid: every op gives a different result.
GRID = np.array([[1, 2, 3], [4, 5, 6]])


def _images(n: int = 2, size: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_four_quarter_turns_are_the_identity():
    images = _images()
    turned = images
    for _ in range(4):
        turned = apply_spatial(turned, "rot90", axes=(1, 2))
    np.testing.assert_array_equal(turned, images)


@pytest.mark.parametrize(("op", "inverse"), [("rot90", "rot270"), ("rot270", "rot90")])
def test_opposite_turns_cancel(op, inverse):
    images = _images()
    undone = apply_spatial(apply_spatial(images, op, axes=(1, 2)), inverse, axes=(1, 2))
    np.testing.assert_array_equal(undone, images)


@pytest.mark.parametrize("op", ["rot180", "flip_h", "flip_v"])
def test_half_turn_and_mirrors_are_involutions(op):
    images = _images()
    twice = apply_spatial(apply_spatial(images, op, axes=(1, 2)), op, axes=(1, 2))
    np.testing.assert_array_equal(twice, images)


def test_rot90_is_counter_clockwise():
    turned = apply_spatial(GRID, "rot90")
    # The top-right pixel moves to the top-left, the top-left one to the bottom-left.
    assert turned[0, 0] == GRID[0, -1]
    assert turned[-1, 0] == GRID[0, 0]
    np.testing.assert_array_equal(turned, [[3, 6], [2, 5], [1, 4]])
    np.testing.assert_array_equal(turned, np.rot90(GRID))


def test_rot180_and_rot270_follow_rot90():
    np.testing.assert_array_equal(apply_spatial(GRID, "rot180"), np.rot90(GRID, 2))
    np.testing.assert_array_equal(apply_spatial(GRID, "rot270"), [[4, 1], [5, 2], [6, 3]])


def test_mirrors():
    np.testing.assert_array_equal(apply_spatial(GRID, "flip_h"), [[3, 2, 1], [6, 5, 4]])
    np.testing.assert_array_equal(apply_spatial(GRID, "flip_v"), [[4, 5, 6], [1, 2, 3]])


def test_image_axes_and_feature_axes_agree():
    """Turning (N, H, W, C) images and (N, C, H, W) maps of the same content agrees."""
    images = _images()
    maps = images.transpose(0, 3, 1, 2)
    for op in SPATIAL_OPS:
        from_images = apply_spatial(images, op, axes=(1, 2)).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(apply_spatial(maps, op), from_images)


@pytest.mark.parametrize("op", SPATIAL_OPS)
def test_torch_and_numpy_agree(op):
    maps = np.random.default_rng(1).normal(size=(2, 4, 5, 5)).astype(np.float32)
    result = apply_spatial(torch.from_numpy(maps), op)
    assert isinstance(result, torch.Tensor)
    np.testing.assert_array_equal(result.numpy(), apply_spatial(maps, op))


def test_numpy_result_is_contiguous():
    assert apply_spatial(_images(), "flip_h", axes=(1, 2)).flags.c_contiguous


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="rot45"):
        apply_spatial(GRID, "rot45")
    with pytest.raises(ValueError, match="same axis"):
        apply_spatial(GRID, "rot90", axes=(0, -2))
    with pytest.raises(TypeError):
        apply_spatial([[1, 2]], "rot90")


@pytest.mark.parametrize(
    ("spec", "op"),
    [
        ({"kind": "rotate", "angle": 90}, "rot90"),
        ({"kind": "rotate", "angle": 180}, "rot180"),
        ({"kind": "rotate", "angle": 270}, "rot270"),
        ({"kind": "flip", "axis": "horizontal"}, "flip_h"),
        ({"kind": "flip", "axis": "vertical"}, "flip_v"),
        ({"kind": "hue_shift", "shift": 60}, None),
        ({"kind": "counterfactual", "change": "class", "seed": 0}, None),
    ],
)
def test_spatial_op_of(spec, op):
    assert spatial_op_of(spec) == op


def test_spatial_op_of_rejects_bad_geometry():
    with pytest.raises(ValueError, match="angle"):
        spatial_op_of({"kind": "rotate", "angle": 45})
    with pytest.raises(ValueError, match="axis"):
        spatial_op_of({"kind": "flip", "axis": "diagonal"})
