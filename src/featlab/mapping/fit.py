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
# What a feature store records of the backbone that wrote it (featlab.extract): the original and
# manipulated stores of a fit must agree on all of it.
BACKBONE_ATTRS = ("model", "spec", "weights_sha256", "preprocessing")


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
        """Open the stores of a fit, checking that they come from one backbone and image set."""
        pair = cls(FeatureStore(original), FeatureStore(manipulated), ImageStore(images), layer)
        rerun = "rerun the extraction of both image sets with the same backbone config"
        for key in BACKBONE_ATTRS:
            a, b = pair.original.attrs.get(key), pair.manipulated.attrs.get(key)
            if a != b:
                raise ValueError(
                    f"{original} and {manipulated} come from different backbones ({key} {a} "
                    f"and {b}); {rerun}"
                )
        for store in (pair.original, pair.manipulated):
            if layer not in store.layers:
                raise ValueError(f"{store.path} has no layer {layer!r} (it holds {store.layers})")
        a, b = pair.original.layer(layer).shape, pair.manipulated.layer(layer).shape
        if a != b:
            raise ValueError(f"{layer}: {original} holds {a} but {manipulated} holds {b}; {rerun}")
        if len(pair.images) != a[0]:
            raise ValueError(
                f"{images} holds {len(pair.images)} images but {original} the features of "
                f"{a[0]}; rerun the extraction of this image set"
            )
        return pair

    def blocks(self, split: str, block: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(original, manipulated, image indices) of one split, `block` images at a time."""
        indices = self.images.indices(split)
        for start in range(0, len(indices), block):
            chunk = indices[start : start + block]
            yield (
                read_finite(self.original, self.layer, chunk),
                read_finite(self.manipulated, self.layer, chunk),
                chunk,
            )


def read_finite(
    store: FeatureStore, layer: str, indices: np.ndarray, dtype=np.float32
) -> np.ndarray:
    """A layer's features of some images; NaN or Inf stops the fit, whose weights and scores
    it would otherwise turn into NaN (extraction refuses them, so the store was written some
    other way or damaged)."""
    values = store.read(layer, indices, dtype)
    if not np.isfinite(values).all():
        image = int(indices[np.argwhere(~np.isfinite(values))[0][0]])
        raise ValueError(
            f"{store.path}, layer {layer}: NaN or Inf features at image {image}; delete the "
            "store and rerun its extraction"
        )
    return values


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
                # A test image that did not change has no masked positions (NaN by definition).
                undefined_ok = metric == "cosine_masked"
                value, n = metrics.summarise(np.concatenate(values), undefined_ok)
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
