"""Tests for featlab.manipulate: each manipulation, the change masks and spec checking."""

import numpy as np
import pytest
from PIL import Image

from featlab.data.images import ImageSet, ImageStore, write_image_store
from featlab.data.shapes import ShapesSettings, render, sample_scenes
from featlab.geometry import apply_spatial
from featlab.manipulate import (
    MaskSettings,
    change_mask,
    check_spec,
    manipulate,
    manipulate_store,
    square_slice,
)

NOISE = {"kind": "gaussian_noise", "sigma": 40, "seed": 0}
EDIT = {"kind": "semantic", "editor": "instruct_pix2pix", "model": "editors/p2p", "prompt": "blue"}


def _images(n: int = 4, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _labels(n: int = 4) -> np.ndarray:
    return np.arange(n) % 3


def _scenes_and_images(n: int = 6, size: int = 32):
    scenes, _ = sample_scenes(ShapesSettings(image_size=size, n_train=n, n_test=0, seed=3))
    images = np.stack([render(scene, size) for scene in scenes])
    labels = np.array([scene.label for scene in scenes])
    return scenes, images, labels


@pytest.mark.parametrize(
    ("spec", "op"),
    [
        ({"kind": "rotate", "angle": 90}, "rot90"),
        ({"kind": "rotate", "angle": 270}, "rot270"),
        ({"kind": "flip", "axis": "vertical"}, "flip_v"),
    ],
)
def test_geometric_kinds_use_the_shared_spatial_op(spec, op):
    images, labels = _images(), _labels()
    result = manipulate(images, labels, spec)
    np.testing.assert_array_equal(result.images, apply_spatial(images, op, axes=(1, 2)))
    np.testing.assert_array_equal(result.labels, labels)
    assert result.labels.dtype == np.int64
    assert result.masks.shape == images.shape[:3]
    assert result.masks.dtype == bool


def test_flip_horizontal_mirrors_left_right():
    images = _images()
    result = manipulate(images, _labels(), {"kind": "flip", "axis": "horizontal"})
    np.testing.assert_array_equal(result.images, images[:, :, ::-1])


def test_hue_shift_zero_is_near_identity_and_256_wraps():
    images, labels = _images(), _labels()
    unshifted = manipulate(images, labels, {"kind": "hue_shift", "shift": 0}).images
    # Pillow's RGB -> HSV -> RGB round trip rounds, but only slightly.
    error = np.abs(unshifted.astype(int) - images)
    assert error.max() <= 8
    assert error.mean() < 1.5
    wrapped = manipulate(images, labels, {"kind": "hue_shift", "shift": 256}).images
    np.testing.assert_array_equal(wrapped, unshifted)
    forward = manipulate(images, labels, {"kind": "hue_shift", "shift": 60}).images
    backward = manipulate(images, labels, {"kind": "hue_shift", "shift": 60 - 256}).images
    np.testing.assert_array_equal(forward, backward)


def test_hue_shift_turns_red_towards_green():
    red = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    shifted = manipulate(red, _labels(1), {"kind": "hue_shift", "shift": 60}).images
    # 60 / 256 of a turn is about 84 degrees: a yellowish green.
    assert (shifted[..., 1] > shifted[..., 0]).all()
    assert (shifted[..., 2] < 10).all()


def test_grayscale_has_equal_channels_equal_to_pillow_luminance():
    images = _images()
    gray = manipulate(images, _labels(), {"kind": "grayscale"}).images
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(
        gray[0, ..., 0], np.asarray(Image.fromarray(images[0]).convert("L"))
    )


def test_noise_does_not_depend_on_chunking():
    images, labels = _images(n=5), _labels(n=5)
    whole = manipulate(images, labels, NOISE).images
    head = manipulate(images[:2], labels[:2], NOISE).images
    tail = manipulate(images[2:], labels[2:], NOISE, first_index=2).images
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    # Each image gets its own noise, and the seed matters.
    same = np.full((2, 16, 16, 3), 128, dtype=np.uint8)
    noisy = manipulate(same, _labels(2), NOISE).images
    assert not np.array_equal(noisy[0], noisy[1])
    reseeded = manipulate(images, labels, {**NOISE, "seed": 1}).images
    assert not np.array_equal(reseeded, whole)


def test_noise_std_is_about_sigma():
    grey = np.full((2, 64, 64, 3), 128, dtype=np.uint8)  # far from 0 and 255: little clipping
    noisy = manipulate(grey, _labels(2), NOISE).images
    difference = noisy.astype(np.float64) - grey
    assert abs(difference.std() - 40) < 1.5
    assert abs(difference.mean()) < 1.5


def test_red_square_at_288_covers_exactly_26_to_103():
    grey = np.full((1, 288, 288, 3), 128, dtype=np.uint8)
    exact = MaskSettings(blur_sigma=0.0)
    result = manipulate(
        grey, _labels(1), {"kind": "mask_square", "colour": "red"}, mask_settings=exact
    )
    expected = np.zeros((288, 288), dtype=bool)
    expected[26:104, 26:104] = True
    np.testing.assert_array_equal(result.images[0][expected], np.tile([255, 0, 0], (78 * 78, 1)))
    np.testing.assert_array_equal(result.images[0][~expected], grey[0][~expected])
    np.testing.assert_array_equal(result.masks[0], expected)


def test_blurred_change_mask_widens_the_square_by_a_few_pixels():
    grey = np.full((1, 288, 288, 3), 128, dtype=np.uint8)
    masks = manipulate(grey, _labels(1), {"kind": "mask_square", "colour": "green"}).masks[0]
    square = np.zeros((288, 288), dtype=bool)
    square[180:271, 180:271] = True
    widened = np.zeros((288, 288), dtype=bool)
    widened[177:274, 177:274] = True
    assert masks[square].all()
    assert not masks[~widened].any()


def test_squares_scale_with_the_image_size():
    assert square_slice("red", 288) == slice(26, 104)
    assert square_slice("red", 576) == slice(52, 208)
    assert square_slice("yellow", 288) == slice(116, 155)
    small = square_slice("yellow", 16)
    assert small.stop > small.start


def test_counterfactual_class_changes_every_label():
    scenes, images, labels = _scenes_and_images()
    spec = {"kind": "counterfactual", "change": "class", "seed": 0}
    result = manipulate(images, labels, spec, scenes=scenes)
    assert (result.labels != labels).all()
    assert result.images.shape == images.shape
    assert result.masks.any(axis=(1, 2)).all()


def test_counterfactual_colour_keeps_labels_and_is_chunk_independent():
    scenes, images, labels = _scenes_and_images()
    spec = {"kind": "counterfactual", "change": "colour", "seed": 0}
    whole = manipulate(images, labels, spec, scenes=scenes)
    np.testing.assert_array_equal(whole.labels, labels)
    assert not np.array_equal(whole.images, images)
    tail = manipulate(images[3:], labels[3:], spec, scenes=scenes[3:], first_index=3)
    np.testing.assert_array_equal(tail.images, whole.images[3:])


def test_counterfactual_needs_one_scene_per_image():
    scenes, images, labels = _scenes_and_images(n=3)
    spec = {"kind": "counterfactual", "change": "size", "seed": 0}
    with pytest.raises(ValueError, match="scenes"):
        manipulate(images, labels, spec)
    with pytest.raises(ValueError, match="2 scenes for 3 images"):
        manipulate(images, labels, spec, scenes=scenes[:2])


def test_change_mask_is_empty_for_identical_images():
    images = _images()
    assert not change_mask(images, images.copy()).any()
    assert not change_mask(images, images, MaskSettings(blur_sigma=0.0)).any()


def test_change_mask_does_not_blur_across_images():
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    changed = images.copy()
    changed[0, 4, 4] = 255
    masks = change_mask(images, changed, MaskSettings(blur_sigma=1.0))
    assert masks[0, 4, 4]
    assert not masks[1].any()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "solarize"}, "solarize"),
        ({"angle": 90}, "kind"),
        ({"kind": "rotate", "angle": 45}, "angle"),
        ({"kind": "flip"}, "axis"),
        ({"kind": "gaussian_noise", "sigma": 40}, "seed"),
        ({"kind": "gaussian_noise", "sigma": -1, "seed": 0}, "sigma"),
        ({"kind": "hue_shift", "shift": 60, "shfit": 1}, "shfit"),
        ({"kind": "mask_square", "colour": "purple"}, "purple"),
        ({"kind": "counterfactual", "change": "rotation", "seed": 0}, "change"),
        ({**EDIT, "editor": "dall-e"}, "editor"),
        ({**EDIT, "prompt": " "}, "prompt"),
        ({**EDIT, "steps": 0}, "steps"),
        ({**EDIT, "filter": {"min_changed": 0.5, "max_changed": 0.1}}, "filter"),
        ({**EDIT, "filter": {"min_changed": 0.1}}, "filter"),
        ({**EDIT, "region": [0.2, 0.2, 0.8, 0.8]}, "region"),
        ({**EDIT, "editor": "inpaint"}, "region"),
        ({**EDIT, "editor": "inpaint", "region": [0.8, 0.2, 0.2, 0.8]}, "region"),
        (EDIT, "generative editor"),
    ],
)
def test_bad_specs_raise_naming_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        manipulate(_images(), _labels(), spec)


def test_a_semantic_spec_gets_the_papers_settings_by_default():
    spec = check_spec({**EDIT, "editor": "qwen_image_edit"})
    assert spec["steps"] == 10
    assert spec["guidance"] == 4.5
    assert spec["distilled_guidance"] == 1.0
    assert spec["negative_prompt"] == " "
    assert spec["seed"] == 42
    assert spec["region"] is None
    assert spec["filter"] is None
    # A given value wins over the default, and the other kinds keep their keys as given.
    assert check_spec({**EDIT, "steps": 3})["steps"] == 3
    assert check_spec(NOISE) == NOISE


def test_bad_images_raise():
    with pytest.raises(ValueError, match="uint8"):
        manipulate(_images().astype(np.float32), _labels(), NOISE)
    with pytest.raises(ValueError, match="labels"):
        manipulate(_images(), _labels(3), NOISE)
    with pytest.raises(ValueError, match="square"):
        manipulate(_images()[:, :, :8], _labels(), {"kind": "rotate", "angle": 90})


@pytest.mark.parametrize("spec", [NOISE, {"kind": "counterfactual", "change": "class", "seed": 0}])
def test_a_store_manipulated_in_blocks_equals_one_call(tmp_path, spec):
    scenes, images, labels = _scenes_and_images(n=13, size=32)
    splits = np.array(["train"] * 9 + ["test"] * 4)
    ids = np.array([f"image{i}" for i in range(13)])
    write_image_store(tmp_path / "original.zarr", ImageSet(images, labels, splits, ids))
    original = ImageStore(tmp_path / "original.zarr")
    # Blocks of 5 images (the chunk holds all 13): three blocks, the last one short.
    manipulate_store(original, tmp_path / "m.zarr", spec, scenes=scenes, block_images=5)
    whole = manipulate(images, labels, spec, scenes=scenes)
    stored = ImageStore(tmp_path / "m.zarr").read()
    np.testing.assert_array_equal(stored.images, whole.images)
    np.testing.assert_array_equal(stored.labels, whole.labels)
    np.testing.assert_array_equal(stored.masks, whole.masks)
    np.testing.assert_array_equal(stored.splits, splits)
    np.testing.assert_array_equal(stored.image_ids, ids)


def test_a_failed_manipulation_leaves_no_store(tmp_path):
    _, images, labels = _scenes_and_images(n=4, size=32)
    splits, ids = np.array(["train"] * 4), np.array(list("abcd"))
    write_image_store(tmp_path / "original.zarr", ImageSet(images, labels, splits, ids))
    spec = {"kind": "counterfactual", "change": "class", "seed": 0}
    with pytest.raises(ValueError, match="scenes"):
        manipulate_store(ImageStore(tmp_path / "original.zarr"), tmp_path / "m.zarr", spec)
    assert not (tmp_path / "m.zarr").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["original.zarr"]
