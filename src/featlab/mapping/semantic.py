"""Semantic consistency: what the classifier makes of mapped features.

The rest of the backbone (the layers after the mapped one, and the head) runs on the mapped
features of the test images (`backbones.forward_from_layer`), and its class probabilities are
compared with those of the original and the manipulated images (METHODS.md, FeatMap evaluation):

- `top1_accuracy`, `top5_accuracy` (the k of `top_k`, written only for a head of more than k
  classes: otherwise it is always 1) and `entropy` (bits) with `comparison` original, manipulated
  or mapped (mapped against the manipulated image's label); rows of the original and the
  manipulated images have an empty `mapping`;
- `jsd` (bits, log2) with comparison original_vs_manipulated and original_vs_mapped;
- `top1_agreement` with comparison mapped_vs_manipulated.

A mapping that applies the exact spatial op first writes `mapped_spatial_first` for `mapped`.

Token models: the mappings map the patch grid, and the class and register tokens ahead of it
must become something too. A mapping that acts on each feature vector alone (identity, additive,
linear, ridge, Procrustes, MLP: `models.POSITIONWISE`) maps them with the same function as every
patch token. A mapping that needs the grid (spatial, local_linear, cnn, transformer) leaves the
original image's prefix tokens in place. At a layer from which the model's output reads no patch
token (the last block of a model that classifies from its class token: nothing after it mixes
tokens) those mappings would score exactly like the original image whatever they map, so their
rows are not written; `grid_reaches_output` detects such a layer by running the rest of the
network on noise in place of the grid.
"""

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from featlab import metrics
from featlab.backbones import forward_from_layer
from featlab.data.images import ImageStore
from featlab.mapping.models import mapping_function, token_function
from featlab.mapping.pairs import SPATIAL_FIRST
from featlab.store import FeatureStore
from featlab.tables import metric_row


@dataclasses.dataclass(frozen=True)
class SemanticSettings:
    """How the rest of the network runs on mapped features."""

    batch_size: int = 128  # test images per forward pass
    max_images: int | None = None  # use the first n test images; None uses all
    top_k: int = 5  # the k of the top-k accuracy besides top-1
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


def logits_of_features(
    model: nn.Module,
    layer: str,
    maps: np.ndarray,
    prefix: np.ndarray | None,
    input_size: tuple[int, int] | None,
    batch_size: int,
) -> np.ndarray:
    """Logits (N, classes) of the model run from `layer` on feature maps (N, C, H, W)."""
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(maps), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(maps[start : start + batch_size]))
        tokens = None
        if prefix is not None:
            tokens = torch.from_numpy(np.ascontiguousarray(prefix[start : start + batch_size]))
        logits = forward_from_layer(model, layer, batch.to(device), tokens, input_size)
        outputs.append(logits.cpu().numpy())
    return np.concatenate(outputs)


def _row(metric: str, values: np.ndarray, comparison: str, base: dict) -> dict:
    value, n = metrics.summarise(values)
    return metric_row("mapping", metric, value, n, comparison=comparison, split="test", **base)


def _accuracy_rows(
    logits: np.ndarray, labels: np.ndarray, top_k: int, name: str, base: dict
) -> list[dict]:
    """Top-1 and top-k accuracy; top-k only below the number of classes, where it is always 1."""
    rows = [_row("top1_accuracy", metrics.top_k_hits(logits, labels, 1), name, base)]
    if top_k < logits.shape[1]:
        rows.append(
            _row(f"top{top_k}_accuracy", metrics.top_k_hits(logits, labels, top_k), name, base)
        )
    return rows


def reference_rows(
    original: np.ndarray,
    manipulated: np.ndarray,
    labels: np.ndarray,
    manipulated_labels: np.ndarray,
    top_k: int,
    base: dict,
) -> list[dict]:
    """Rows of the original and manipulated images themselves (logits (N, K) from the store)."""
    rows = []
    for name, logits, truth in (
        ("original", original, labels),
        ("manipulated", manipulated, manipulated_labels),
    ):
        rows += _accuracy_rows(logits, truth, top_k, name, base)
        rows.append(_row("entropy", metrics.entropy(logits), name, base))
    rows.append(_row("jsd", metrics.jsd(original, manipulated), "original_vs_manipulated", base))
    return rows


def mapped_rows(
    original: np.ndarray,
    manipulated: np.ndarray,
    mapped: np.ndarray,
    manipulated_labels: np.ndarray,
    spatial_first: bool,
    top_k: int,
    base: dict,
) -> list[dict]:
    """Rows of one mapping's mapped features: accuracy, entropy, JSD to the original, agreement."""
    name = f"mapped_{SPATIAL_FIRST}" if spatial_first else "mapped"
    return [
        *_accuracy_rows(mapped, manipulated_labels, top_k, name, base),
        _row("entropy", metrics.entropy(mapped), name, base),
        _row("jsd", metrics.jsd(original, mapped), f"original_vs_{name}", base),
        _row(
            "top1_agreement",
            metrics.top1_agreement(mapped, manipulated),
            f"{name}_vs_manipulated",
            base,
        ),
    ]


@dataclasses.dataclass
class HeldOutFeatures:
    """A layer's test-split inputs of semantic consistency for one image set."""

    maps: np.ndarray | None  # (N, C, H, W) layer features
    prefix: np.ndarray | None  # (N, P, C) prefix tokens of token models
    logits: np.ndarray  # (N, K) the backbone's logits on the images
    labels: np.ndarray  # (N,)


def mapping_rows(
    model: nn.Module,
    layer: str,
    original: HeldOutFeatures,
    manipulated: HeldOutFeatures,
    mapping: Callable[[np.ndarray], np.ndarray],
    tokens: Callable[[np.ndarray], np.ndarray] | None,
    spatial_first: bool,
    input_size: tuple[int, int] | None,
    settings: SemanticSettings,
    base: dict,
) -> list[dict]:
    """Map the original test features, run the rest of the network, score the class outputs.

    Args:
        tokens: The mapping of a token model's prefix (class/register) tokens (N, P, C); None
            keeps the original's prefix tokens in front of the mapped patch tokens.
    """
    mapped = mapping(original.maps)
    prefix = original.prefix
    if prefix is not None and tokens is not None:
        prefix = tokens(prefix)
    logits = logits_of_features(model, layer, mapped, prefix, input_size, settings.batch_size)
    return mapped_rows(
        original.logits,
        manipulated.logits,
        logits,
        manipulated.labels,
        spatial_first,
        settings.top_k,
        base,
    )


def grid_reaches_output(
    model: nn.Module,
    layer: str,
    features: HeldOutFeatures,
    input_size: tuple[int, int] | None,
    images: int = 4,
) -> bool:
    """Whether the model's logits depend on the grid of `layer` (not only on its prefix tokens).

    Runs the rest of the network on the first test images' features and on seeded noise of the
    same scale in place of their grid, with the original prefix tokens both times.
    """
    maps = features.maps[:images].astype(np.float32)
    prefix = None if features.prefix is None else features.prefix[:images]
    noise = np.random.default_rng(0).normal(size=maps.shape).astype(np.float32)
    noise *= maps.std() + 1.0
    logits = logits_of_features(model, layer, maps, prefix, input_size, images)
    changed = logits_of_features(model, layer, noise, prefix, input_size, images)
    return not np.allclose(logits, changed, rtol=1e-5, atol=1e-6)


def read_held_out(
    store: FeatureStore,
    images: ImageStore,
    layer: str,
    indices: np.ndarray,
    with_maps: bool = True,
) -> HeldOutFeatures:
    """Test images' features (unless not asked), prefix tokens, logits and labels of a set."""
    return HeldOutFeatures(
        maps=store.read(layer, indices) if with_maps else None,
        prefix=store.prefix_tokens(layer, indices) if with_maps else None,
        logits=store.logits.get_orthogonal_selection((indices,)).astype(np.float32),
        labels=images.labels[indices],
    )


def semantic_consistency(
    model: nn.Module,
    layer: str,
    original: dict,
    plan: list[dict],
    settings: SemanticSettings,
    backbone: str,
) -> list[dict]:
    """Semantic-consistency rows of every mapping of one layer.

    Args:
        model: The backbone (eval mode) whose features were mapped.
        layer: The mapped layer.
        original: {"features": store path, "images": image store path} of the original images.
        plan: One entry per (manipulation, mapping): {"manipulation", "mapping", "features",
            "images" (the manipulated stores), "map" (map file or None), "spatial_op" (the
            manipulation's, or None)}.
        settings: Batch size, image limit and k.
        backbone: The backbone's name in the table.

    Returns:
        The rows of the original and manipulated images (once per manipulation) and of each
        mapping whose rows can depend on what it maps (module docstring).
    """
    # 1. The original test features, and the image size that produced them
    if settings.threads:
        torch.set_num_threads(settings.threads)
    store, original_images = FeatureStore(original["features"]), ImageStore(original["images"])
    side = store.attrs.get("preprocessing", {}).get("input_size")
    input_size = (side, side) if side else None
    sources = {}  # the original test features, per choice of images
    # 2. Per manipulation: the rows of the images themselves, then of each mapping. The images
    # are the manipulated store's test images: a failed generative edit leaves them all.
    rows, reaches = [], None
    for manipulation in dict.fromkeys(entry["manipulation"] for entry in plan):
        entries = [entry for entry in plan if entry["manipulation"] == manipulation]
        base = dict(backbone=backbone, layer=layer, manipulation=manipulation)
        images = ImageStore(entries[0]["images"])
        indices = images.first_test(settings.max_images)
        key = indices.tobytes()
        if key not in sources:
            sources[key] = read_held_out(store, original_images, layer, indices)
        source = sources[key]
        target = read_held_out(
            FeatureStore(entries[0]["features"]), images, layer, indices, with_maps=False
        )
        rows += reference_rows(
            source.logits, target.logits, source.labels, target.labels, settings.top_k, base
        )
        if reaches is None:  # a property of the layer: probed once
            reaches = grid_reaches_output(model, layer, source, input_size)
        for entry in entries:
            function, first = mapping_function(entry["mapping"], entry["map"], entry["spatial_op"])
            tokens = token_function(entry["mapping"], entry["map"])
            if not reaches and tokens is None:
                continue  # the rows could not depend on what the mapping maps (module docstring)
            rows += mapping_rows(
                model,
                layer,
                source,
                target,
                function,
                tokens,
                first is not None,
                input_size,
                settings,
                {**base, "mapping": entry["mapping"]},
            )
    return rows
