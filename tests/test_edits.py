"""Feature-space edits: magnified and truncated edits of a toy whose edit is a known shift."""

import dataclasses

import numpy as np
import pytest
import torch

from featlab.backbones import BackboneSpec, build_backbone, capture_layers
from featlab.data.images import ImageStore, write_image_store
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.edits.lens import feature_lens, target_gradient
from featlab.edits.lenses import lens_pair, logits_of, morph_settings, reader_of
from featlab.edits.operators import EditDirections, edit_of, extrapolate, matched_noise
from featlab.edits.readings import CellInputs, compare_lenses, edit_cell, edited_maps
from featlab.edits.settings import EditSettings
from featlab.extract import ExtractSettings, extract_features
from featlab.mapping.closed_form import GramAccumulator, feature_rows, solve_ridge
from featlab.store import FeatureStore

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
        (dict(lens_budget=0.0), "edits.lens_budget"),
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


def _tiny_resnet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = BackboneSpec(
        model="resnet18",
        layers=("layer3",),
        model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
        num_classes=3,
    )
    model = build_backbone(spec)
    torch.nn.init.normal_(model.get_classifier().weight)
    return model


def _lens_inputs(driver, images: np.ndarray) -> CellInputs:
    """Two smooth test images; the manipulation flips them; each goes toward its least likely
    class under the driver."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    flipped = np.ascontiguousarray(images[:, :, ::-1])
    with torch.no_grad(), capture_layers(driver.model, ("layer3",)) as outputs:
        logits = driver.logits(pixels).numpy()
        original = outputs["layer3"].double().numpy()
        manipulated_logits = driver.logits(pixels.flip(-1)).numpy()
        manipulated = outputs["layer3"].double().numpy()
    n = len(images)
    return CellInputs(
        original=original,
        prefix=None,
        manipulated=manipulated,
        original_logits=logits,
        manipulated_logits=manipulated_logits,
        source=logits.argmax(1),
        target=logits.argmin(1),
        reference=original,
        images=images,
        manipulated_images=flipped,
        indices=np.arange(n),
    )


def _smooth_images(n: int, side: int = 32) -> np.ndarray:
    coarse = torch.rand(n, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    image = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic")
    pixels = (0.2 + 0.6 * image.clamp(0, 1)) * 255
    return pixels.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_the_two_lenses_move_the_features_equally_far_and_transfer_reads_its_own():
    preprocessing = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 32}
    driver = reader_of(_tiny_resnet(0), preprocessing)
    other = reader_of(_tiny_resnet(1), preprocessing)
    inputs = _lens_inputs(driver, _smooth_images(2))
    gradient = target_gradient(
        driver.model, "layer3", inputs.original, None, inputs.target, (32, 32)
    )
    lens = morph_settings({"max_steps": 10}, 1.5)
    # The morph meets its budget; the feature lens moves x exactly as far as the morph did
    pair = lens_pair(
        driver, "layer3", inputs.images, inputs.original, gradient, inputs.target, lens
    )
    np.testing.assert_allclose(pair.l2, 1.5, rtol=lens.budget_tolerance)
    with torch.no_grad(), capture_layers(driver.model, ("layer3",)) as outputs:
        driver.logits(pair.morphs)
    moved = np.sqrt(np.square(outputs["layer3"].double().numpy() - inputs.original).sum((1, 2, 3)))
    lens_moved = np.sqrt(np.square(pair.matched - inputs.original).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(lens_moved, moved, rtol=1e-5)
    assert not np.allclose(moved[0], moved[1], rtol=1e-3)  # matched per image, not in bulk
    # Rows: the driver's and the other backbone's, which differ
    base = dict(backbone="cnn", layer="layer3", manipulation="flip")
    rows, images = compare_lenses(
        driver, "layer3", inputs, gradient, lens, base, None, {"vit": other}
    )
    value = {(r["comparison"], r["metric"]): r["value"] for r in rows}
    assert value[("input_lens", "l2_distance")] == pytest.approx(1.5, rel=lens.budget_tolerance)
    assert value[("feature_lens_matched", "feature_norm")] == pytest.approx(
        value[("input_lens", "feature_norm")], rel=1e-5
    )
    assert ("feature_lens_matched", "target_probability") in value
    driven = value[("input_lens", "target_probability")]
    assert driven != pytest.approx(value[("input_lens_read_by_vit", "target_probability")])
    assert ("manipulated_read_by_vit", "entropy") in value
    assert ("input_lens_read_by_vit_vs_manipulated", "top1_agreement") in value
    assert images["input_lens"].shape == inputs.images.shape
    assert images["input_lens"].dtype == np.uint8
    # The morph raised the driver's target probability above the original's
    probability = images["target_probability.input_lens"]
    assert np.all(probability > images["target_probability.original"])


def test_an_unreachable_lens_budget_names_its_key():
    preprocessing = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 32}
    driver = reader_of(_tiny_resnet(0), preprocessing)
    inputs = _lens_inputs(driver, _smooth_images(1))
    gradient = target_gradient(
        driver.model, "layer3", inputs.original, None, inputs.target, (32, 32)
    )
    # a 32-pixel image in [0, 1] is at most sqrt(3 * 32 * 32) ~ 55 from any other
    lens = morph_settings({"max_steps": 2}, 1000.0)
    with pytest.raises(ValueError, match=r"edits\.lens_budget"):
        lens_pair(driver, "layer3", inputs.images, inputs.original, gradient, inputs.target, lens)


def test_a_cell_sets_the_two_lenses_side_by_side_from_its_stores(tmp_path):
    """The edits job's path without mappings: stores in, the driver and a ViT reading each image
    as its own store did, the lens rows and images out."""
    image_set, _ = render_image_set(ShapesSettings(image_size=32, n_train=4, n_test=3, seed=2))
    swapped = dataclasses.replace(image_set, labels=(image_set.labels + 1) % 5)  # new targets
    stores = {"original_images": tmp_path / "o.zarr", "manipulated_images": tmp_path / "m.zarr"}
    write_image_store(stores["original_images"], image_set)
    write_image_store(stores["manipulated_images"], swapped)
    specs = {
        "cnn": BackboneSpec(
            model="resnet18",
            layers=("layer3",),
            model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
            num_classes=5,
        ),
        "vit": BackboneSpec(
            model="vit_tiny_patch16_224",
            layers=("blocks.1",),
            model_args={
                "img_size": 32,
                "patch_size": 8,
                "embed_dim": 16,
                "depth": 2,
                "num_heads": 2,
            },
            num_classes=5,
        ),
    }
    models, readers = {}, {}
    for name, spec in specs.items():
        torch.manual_seed(0)
        models[name] = build_backbone(spec)
        path = tmp_path / f"{name}.zarr"
        for kind, images in (
            ("original", "original_images"),
            ("manipulated", "manipulated_images"),
        ):
            store = path if kind == "original" else tmp_path / f"{name}_m.zarr"
            extract_features(
                models[name], spec, ImageStore(stores[images]), store, ExtractSettings(), {}
            )
        readers[name] = reader_of(models[name], FeatureStore(path).attrs["preprocessing"])
    stores.update(original=tmp_path / "cnn.zarr", manipulated=tmp_path / "cnn_m.zarr")
    # The driver reads images as extraction did: its logits are the store's
    first_three = ImageStore(stores["original_images"]).first_test(3)
    stored = FeatureStore(stores["original"]).logits.get_orthogonal_selection((first_three,))
    images = ImageStore(stores["original_images"]).images.get_orthogonal_selection((first_three,))
    np.testing.assert_allclose(logits_of(readers["cnn"], images), stored, atol=2e-2)
    settings = EditSettings(n_images=3, invert_images=2, direction_images=4, lens_budget=1.0)
    base = dict(backbone="cnn", layer="layer3", manipulation="swap_class")
    rows, images, _ = edit_cell(
        models["cnn"],
        "layer3",
        stores,
        {},
        settings,
        True,
        base,
        lens=morph_settings({"max_steps": 10}, settings.lens_budget),
        readers={"vit": readers["vit"]},
    )
    found = {(r["comparison"], r["metric"]): r for r in rows}
    assert found[("input_lens", "l2_distance")]["value"] == pytest.approx(1.0, rel=0.01)
    assert found[("input_lens", "target_probability")]["n"] == 2  # the shown images
    assert found[("feature_lens_matched", "feature_norm")]["value"] == pytest.approx(
        found[("input_lens", "feature_norm")]["value"], rel=1e-5
    )
    assert ("input_lens_read_by_vit", "target_probability") in found
    assert all(r["mapping"] == "" for r in rows)
    assert images["input_lens"].shape == (2, 32, 32, 3)
    assert set(images) >= {"target_probability.input_lens", "target_probability.original"}
    # a head whose classes are not the data's drives no morph
    rows, images, _ = edit_cell(models["cnn"], "layer3", stores, {}, settings, False, base)
    assert "input_lens" not in images
