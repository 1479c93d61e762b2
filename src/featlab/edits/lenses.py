"""The two lenses side by side: the input-space steerable lens and the feature-space lens, matched
in feature-space size.

For the first `invert_images` test images of a cell, the lens stage's main morph (the iterative
steerable-phase method, `featlab.lens`) moves each original image toward its target class, the
manipulated image's, to the image-space L2 budget `edits.lens_budget`, driven by the edited
backbone. Its change at the layer, Δ_i = F(morph_i) - x_i, sets the size of the feature-space
lens: the original features x_i moved along the gradient of the target's log-probability with
respect to x_i by ||Δ_i|| (`edits.lens.feature_lens`). The two lenses then move the features
equally far and differ only in where to. The driving backbone reads the morph, the matched
feature maps and FeatInv's reconstruction of them; every other backbone of the study whose classes
are the data's reads the images (transfer). The comparison words are in `edits.readings`.
"""

import dataclasses

import numpy as np
import torch
from torch import nn

from featlab.backbones import BackboneSpec, build_backbone, capture_layers, to_grid
from featlab.edits.lens import feature_lens
from featlab.lens import Classifier, LensSettings, iterative, make_edit, objective_of
from featlab.store import FeatureStore

METHOD = "steerable_phase"  # the lens stage's main method, with its iterative variant


def morph_settings(lens: dict, budget: float) -> LensSettings:
    """The lens stage's settings (its `lens` section's keys but budgets, methods and variants)
    for the one morph the edits stage makes: iterative steerable phase at `budget`."""
    return LensSettings(**lens, budgets=(budget,), methods=(METHOD,), variants=("iterative",))


def reader_of(model: nn.Module, preprocessing: dict) -> Classifier:
    """A backbone reading images in [0, 1] as its feature store's `preprocessing` attribute says
    its images were read (normalisation and input size)."""
    side = int(preprocessing["input_size"])
    return Classifier(model.eval(), preprocessing["mean"], preprocessing["std"], side)


def open_reader(spec: dict, weights: str | None, store: str) -> Classifier:
    """A configured backbone (`BackboneSpec` fields) reading images as it did for its original
    feature store `store`."""
    model = build_backbone(BackboneSpec(**spec), weights or None)
    return reader_of(model, FeatureStore(store).attrs["preprocessing"])


def logits_of(reader: Classifier, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits (N, classes) of images: float (N, 3, H, W) in [0, 1], or uint8 (N, H, W, 3)."""
    if isinstance(images, np.ndarray):  # (N, H, W, 3) uint8 -> (N, 3, H, W) in [0, 1]
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return reader.logits(images).float().numpy()


@dataclasses.dataclass
class LensPair:
    """Both lenses of the same images and targets, at the same feature-space norm."""

    morphs: torch.Tensor  # (n, 3, H, W) in [0, 1]: the input-space lens's final frames
    l2: np.ndarray  # (n,) ||morph - image||_2, pixels in [0, 1] (the budget)
    logits: np.ndarray  # (n, classes) the driver's reading of the morphs
    features: np.ndarray  # (n, C, h, w) the layer's features of the morphs
    norms: np.ndarray  # (n,) ||features - x||, the feature-space lens's norms
    matched: np.ndarray | None  # (n, C, h, w) the feature-space lens; None: the gradient is zero


def lens_pair(
    driver: Classifier,
    layer: str,
    images: np.ndarray,
    original: np.ndarray,
    gradient: np.ndarray,
    target: np.ndarray,
    settings: LensSettings,
) -> LensPair:
    """Morph each image toward its target, and move its features as far along the gradient.

    Args:
        driver: The edited backbone, reading images as its feature store did.
        layer: The edited layer.
        images: uint8 (n, H, W, 3) original images.
        original: (n, C, h, w) their features x, as the store holds them.
        gradient: (n, C, h, w) d log p(target | x) / dx (`edits.lens.target_gradient`).
        target: (n,) the class each image is morphed toward.
        settings: The morph's settings (`morph_settings`): one budget, one method and variant.
    """
    # 1. The input-space lens: the lens stage's iterative morph, one image at a time.
    budget = settings.budgets[-1]
    finals = []
    for i, image in enumerate(images):
        # (H, W, 3) uint8 -> (1, 3, H, W) in [0, 1]
        source = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        edit = make_edit(METHOD, source / 255, settings)
        objective = objective_of(driver, int(target[i]), settings.objective)
        by_budget = iterative(
            edit, objective, settings, f"edits lens image {i}", "edits.lens_budget"
        )
        finals.append(by_budget[budget])
    morphs = torch.cat([morph.frames[-1:] for morph in finals])  # (n, 3, H, W)
    # 2. The morphs' features at the layer, and how far they moved from the originals.
    with torch.no_grad(), capture_layers(driver.model, (layer,)) as outputs:
        logits = driver.logits(morphs).float().numpy()
    side = driver.input_size
    features = to_grid(driver.model, outputs[layer], side and (side, side))[0].double().numpy()
    norms = np.sqrt(np.square(features - original).sum(axis=(1, 2, 3)))
    # 3. The feature-space lens at those norms (none where the grid does not reach the output).
    matched = None
    if np.all(np.abs(gradient).sum(axis=(1, 2, 3)) > 0):
        matched = feature_lens(original, gradient, norms, (1.0,))["feature_lens_x1"]
    l2 = np.array([morph.l2 for morph in finals])
    return LensPair(morphs, l2, logits, features.astype(np.float32), norms, matched)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3)."""
    pixels = (images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255)
    return pixels.to(torch.uint8).numpy()
