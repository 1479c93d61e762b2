"""Fit and evaluate mappings from original to manipulated feature maps of one layer."""

import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np
from safetensors.numpy import save_file

from featlab import metrics
from featlab.data.images import ImageStore
from featlab.geometry import apply_spatial
from featlab.io import atomic_path
from featlab.mapping.closed_form import AffineMap, GramAccumulator, solve_procrustes, solve_ridge
from featlab.store import FeatureStore
from featlab.tables import metric_row

CLOSED_FORM = ("ridge", "procrustes")
BASELINES = ("identity", "spatial")


@dataclasses.dataclass(frozen=True)
class ClosedFormSettings:
    """A closed-form mapping, solved from Gram matrices in one pass over the train split."""

    gamma: float = 1.0  # ridge penalty on the summed squared error (scikit-learn's alpha)
    block_images: int = 256  # images per streamed block


@dataclasses.dataclass
class LayerPair:
    """The original and manipulated features of one layer, with the manipulation's masks."""

    original: FeatureStore
    manipulated: FeatureStore
    images: ImageStore
    layer: str

    @classmethod
    def open(cls, original: str, manipulated: str, images: str, layer: str) -> "LayerPair":
        pair = cls(FeatureStore(original), FeatureStore(manipulated), ImageStore(images), layer)
        a, b = pair.original.layer(layer), pair.manipulated.layer(layer)
        if a.shape != b.shape:
            raise ValueError(
                f"{layer}: {original} holds {a.shape} but {manipulated} holds {b.shape}"
            )
        if pair.original.attrs.get("model") != pair.manipulated.attrs.get("model"):
            raise ValueError(f"{original} and {manipulated} come from different backbones")
        if len(pair.images) != a.shape[0]:
            raise ValueError(f"{images} holds {len(pair.images)} images, the features {a.shape[0]}")
        return pair

    def blocks(self, split: str, block: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(original, manipulated, image indices) of one split, `block` images at a time."""
        indices = self.images.indices(split)
        for start in range(0, len(indices), block):
            chunk = indices[start : start + block]
            yield (
                self.original.read(self.layer, chunk),
                self.manipulated.read(self.layer, chunk),
                chunk,
            )


def fit_closed_form(pair: LayerPair, method: str, settings: ClosedFormSettings) -> AffineMap:
    """Solve ridge or Procrustes from Gram matrices accumulated in fp64 over the train split."""
    if method not in CLOSED_FORM:
        raise ValueError(f"unknown closed-form mapping {method!r}; choose one of {CLOSED_FORM}")
    channels = pair.original.layer(pair.layer).shape[1]
    gram = GramAccumulator(channels, channels)
    for x, y, _ in pair.blocks("train", settings.block_images):
        gram.update_maps(x, y)
    return solve_ridge(gram, settings.gamma) if method == "ridge" else solve_procrustes(gram)


def evaluate(pair: LayerPair, apply: Callable[[np.ndarray], np.ndarray], base: dict) -> list[dict]:
    """Score mapped against true manipulated features on each split: cosine, masked cosine, MSE."""
    rows = []
    for split in ("train", "val", "test"):
        scores: dict[str, list[np.ndarray]] = {"cosine_median": [], "cosine_masked": [], "mse": []}
        for x, y, chunk in pair.blocks(split, 256):
            mapped = apply(x)
            scores["cosine_median"].append(metrics.cosine_median(mapped, y))
            scores["mse"].append(metrics.mse(mapped, y))
            if pair.images.masks is not None:
                masks = pair.images.masks.get_orthogonal_selection((chunk,))
                grid_masks = metrics.pool_mask(masks, y.shape[-2:])
                scores["cosine_masked"].append(metrics.cosine_masked(mapped, y, grid_masks))
        for metric, values in scores.items():
            if values:
                value, n = metrics.summarise(np.concatenate(values))
                rows.append(metric_row(**base, split=split, metric=metric, value=value, n=n))
    return rows


def baseline(name: str, spatial_op: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The identity, or the manipulation's exact spatial op applied to the feature grid."""
    if name == "identity":
        return lambda x: x
    if name == "spatial":
        if spatial_op is None:
            raise ValueError("the spatial baseline needs a geometric manipulation (rotate or flip)")
        return lambda x: apply_spatial(x, spatial_op, axes=(-2, -1))
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def save_affine(path: str | os.PathLike, affine: AffineMap, config: dict) -> None:
    """Save an affine map as safetensors (weight, bias) with its settings in the metadata."""
    tensors = {
        "weight": np.ascontiguousarray(affine.weight),
        "bias": np.ascontiguousarray(affine.bias),
    }
    metadata = {key: str(value) for key, value in config.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
