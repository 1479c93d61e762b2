"""Feature-space edits: magnified and truncated edits of a toy whose edit is a known shift."""

import dataclasses

import numpy as np
import pytest
import torch

from featlab.backbones import BackboneSpec, build_backbone
from featlab.edits.lens import feature_lens, target_gradient
from featlab.edits.operators import EditDirections, edit_of, extrapolate, matched_noise
from featlab.edits.readings import CellInputs, edited_maps
from featlab.edits.settings import EditSettings
from featlab.mapping.closed_form import GramAccumulator, feature_rows, solve_ridge

CHANNELS, GRID = 6, 4


def _toy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A linear toy model's features F(x) = A x (per pixel) of images x and of x + c (a colour
    added to every pixel): the manipulation shifts every feature vector by d = A c."""
    weight = rng.normal(size=(CHANNELS, 3))
    colour = np.array([0.3, -0.2, 0.5])
    images = rng.uniform(size=(n, 3, GRID, GRID))

    def features(pixels: np.ndarray) -> np.ndarray:
        return np.einsum("oc,nchw->nohw", weight, pixels)

    return features(images), features(images + colour[:, None, None]), weight @ colour


def _inputs(original: np.ndarray, manipulated: np.ndarray) -> CellInputs:
    n = len(original)
    labels = np.zeros(n, dtype=np.int64)
    return CellInputs(
        original=original,
        prefix=None,
        manipulated=manipulated,
        original_logits=np.zeros((n, 2)),
        manipulated_logits=np.zeros((n, 2)),
        source=labels,
        target=labels,
        reference=original,
        images=np.zeros((n, 8, 8, 3), np.uint8),
        manipulated_images=np.zeros((n, 8, 8, 3), np.uint8),
        indices=np.arange(n),
    )


def test_a_fitted_shift_doubles_exactly_and_keeps_its_direction_when_truncated():
    rng = np.random.default_rng(0)
    original, manipulated, shift = _toy(rng, 32)
    # The FeatMap ridge map, fitted in closed form (gamma 0: the toy has no noise)
    accumulator = GramAccumulator(CHANNELS, CHANNELS)
    accumulator.update(feature_rows(original), feature_rows(manipulated))
    ridge = solve_ridge(accumulator, gamma=0.0)
    settings = EditSettings(alphas=(-1.0, 0.0, 1.0, 2.0), ranks=(1, 3))
    edited = edited_maps(_inputs(original, manipulated), ridge.apply_maps, None, settings)
    shifted = original + 2 * shift[None, :, None, None]
    np.testing.assert_allclose(edited.maps["extrapolated_x2"], shifted, atol=1e-4)
    np.testing.assert_allclose(edited.maps["extrapolated_x1"], manipulated, atol=1e-4)
    np.testing.assert_allclose(edited.maps["extrapolated_x0"], original, atol=1e-6)
    np.testing.assert_allclose(
        edited.maps["extrapolated_x-1"], original - shift[None, :, None, None], atol=1e-4
    )
    # A shift has one direction: the rank-1 truncation is the whole edit
    np.testing.assert_allclose(edited.maps["truncated_k1"], manipulated, atol=1e-4)
    assert edited.energy[1] == pytest.approx(1.0, abs=1e-9)


def test_directions_lead_with_the_shift_and_truncate_a_rank_two_edit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, CHANNELS, GRID, GRID))
    d = np.zeros(CHANNELS)
    d[2] = 3.0
    directions = EditDirections.of(np.broadcast_to(d[None, :, None, None], x.shape))
    assert abs(directions.vectors[2, 0]) == pytest.approx(1.0)
    # An edit of rank 2 (a shift plus a scaling of channel 0): exact at k = 2, not at k = 1
    edit = edit_of(
        lambda m: m + d[None, :, None, None] + np.eye(CHANNELS)[0][None, :, None, None] * m
    )
    displacement = edit(x)
    directions = EditDirections.of(displacement)
    np.testing.assert_allclose(directions.truncate(displacement, 2), displacement, atol=1e-9)
    assert not np.allclose(directions.truncate(displacement, 1), displacement)
    assert directions.energy.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rank k=7"):
        directions.truncate(displacement, 7)


def test_matched_noise_has_the_norm_of_the_scaled_edit_and_is_seeded():
    edit = np.random.default_rng(2).normal(size=(3, CHANNELS, GRID, GRID))
    noise = matched_noise(edit, -2.0, seed=0)
    norms = np.sqrt(np.square(noise).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, 2 * np.sqrt(np.square(edit).sum(axis=(1, 2, 3))))
    np.testing.assert_array_equal(noise, matched_noise(edit, -2.0, seed=0))
    assert extrapolate(edit, noise, 0.0).dtype == np.float32


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (dict(alphas=()), "edits.alphas"),
        (dict(ranks=(0,)), "edits.ranks"),
        (dict(invert_images=20), "edits.invert_images"),
    ],
)
def test_bad_settings_name_their_key(change, key):
    with pytest.raises(ValueError, match=key):
        dataclasses.replace(EditSettings(), **change)


def test_the_feature_lens_gradient_is_the_heads_at_the_last_layer():
    """After a ResNet's last stage come average pooling and a linear head, so the gradient of
    log p(t) at every position is (W[t] - sum_k p_k W[k]) / (H W)."""
    spec = BackboneSpec(
        model="resnet18",
        layers=("layer4",),
        model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
        num_classes=3,
    )
    model = build_backbone(spec)
    torch.nn.init.normal_(model.get_classifier().weight)
    maps = np.random.default_rng(0).normal(size=(2, 8, 2, 2)).astype(np.float32)
    target = np.array([2, 0])
    gradient = target_gradient(model, "layer4", maps, None, target, (64, 64))
    weight = model.get_classifier().weight.detach().double().numpy()  # (3, 8)
    logits = maps.mean(axis=(2, 3)) @ weight.T + model.get_classifier().bias.detach().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = (weight[target] - p @ weight) / 4  # (2, 8), the same at every position
    np.testing.assert_allclose(
        gradient, np.broadcast_to(expected[..., None, None], maps.shape), rtol=1e-4, atol=1e-7
    )
    frames = feature_lens(maps, gradient, np.array([1.0, 3.0]), (0.0, 2.0))
    np.testing.assert_array_equal(frames["feature_lens_x0"], maps)
    moved = np.sqrt(np.square(frames["feature_lens_x2"] - maps).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(moved, [2.0, 6.0], rtol=1e-5)
