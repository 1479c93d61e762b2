"""The shapes world: seeded scenes, deterministic renders, exact one-parameter counterfactuals."""

import dataclasses

import numpy as np
import pytest

from featlab.data.shapes import (
    CHANGEABLE,
    CLASSES,
    Scene,
    ShapesSettings,
    counterfactual,
    render,
    render_image_set,
    sample_scenes,
)

SETTINGS = ShapesSettings(image_size=32, n_train=40, n_test=10, seed=5)


def test_the_same_seed_renders_the_same_images():
    first, scenes = render_image_set(SETTINGS)
    second, _ = render_image_set(SETTINGS)
    np.testing.assert_array_equal(first.images, second.images)
    other, _ = render_image_set(dataclasses.replace(SETTINGS, seed=6))
    assert not np.array_equal(first.images, other.images)
    assert first.images.shape == (50, 32, 32, 3)
    assert list(first.splits).count("train") == 40
    assert list(first.labels) == [scene.label for scene in scenes]


def test_every_class_appears_and_labels_name_the_shape():
    scenes, _ = sample_scenes(dataclasses.replace(SETTINGS, n_train=200))
    assert {scene.shape for scene in scenes} == set(CLASSES)
    assert all(CLASSES[scene.label] == scene.shape for scene in scenes)


def test_objects_lie_inside_the_image():
    scenes, _ = sample_scenes(dataclasses.replace(SETTINGS, n_train=300))
    for scene in scenes:
        for coordinate in scene.position:
            assert scene.size < coordinate < 1 - scene.size


def test_the_object_is_drawn_in_its_colour_at_its_position():
    scene = Scene("square", "red", 0.3, (0.5, 0.5), 0.0, ("slate", "sand"))
    image = render(scene, 64)
    np.testing.assert_array_equal(image[32, 32], (220, 40, 40))
    assert tuple(image[2, 2]) != (220, 40, 40)


@pytest.mark.parametrize("change", CHANGEABLE)
def test_a_counterfactual_changes_exactly_one_parameter(change):
    scenes, _ = sample_scenes(SETTINGS)
    field = {"class": "shape", "colour": "colour", "size": "size"}.get(change, change)
    for i, scene in enumerate(scenes[:20]):
        changed = counterfactual(scene, change, np.random.default_rng(i))
        differing = [
            f.name
            for f in dataclasses.fields(Scene)
            if getattr(scene, f.name) != getattr(changed, f.name)
        ]
        assert differing == [field]
        assert not np.array_equal(render(scene, 32), render(changed, 32))


def test_a_class_counterfactual_changes_the_label_and_keeps_the_rest_of_the_image():
    scene = Scene("circle", "blue", 0.2, (0.3, 0.3), 10.0, ("moss", "plum"))
    changed = counterfactual(scene, "class", np.random.default_rng(0))
    assert changed.label != scene.label
    before, after = render(scene, 64), render(changed, 64)
    # Far from the object (bottom-right corner) the two renders are identical.
    np.testing.assert_array_equal(before[48:, 48:], after[48:, 48:])


def test_unknown_change_is_rejected_with_the_choices():
    scene = sample_scenes(SETTINGS)[0][0]
    with pytest.raises(ValueError, match="colour"):
        counterfactual(scene, "texture", np.random.default_rng(0))
