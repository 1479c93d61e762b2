"""What a mapping is fitted on: a layer's feature pairs seen through splits and a spatial op.

A `FeaturePair` holds the original and manipulated feature stores of one layer and the image
store (splits, masks) of the manipulated set; `open_pair` checks that they belong together.

Image stores hold train and test splits only, so a trained mapping carves its validation images
out of the train split (a seeded 5% in the FeatMap recipe). For geometric manipulations a mapping
can apply the manipulation's exact spatial op to the original features first; it then learns only
what remains of the change, and its table rows say so in the `comparison` column.
"""

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from featlab.data.images import SPLITS, ImageStore
from featlab.geometry import apply_spatial
from featlab.store import FeatureStore

COMPARISON = "mapped_vs_manipulated"
SPATIAL_FIRST = "spatial_first"
# What a feature store records of the backbone that wrote it (featlab.extract): the original and
# manipulated stores of a fit must agree on all of it.
BACKBONE_ATTRS = ("model", "spec", "weights_sha256", "preprocessing")


def comparison_of(spatial_op: str | None) -> str:
    """The `comparison` word of a mapping that does (or does not) apply a spatial op first."""
    return f"{COMPARISON}_{SPATIAL_FIRST}" if spatial_op else COMPARISON


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


def carve_splits(images: ImageStore, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Image indices per split, with a validation split drawn from train when the store has none.

    Args:
        images: The image store whose `split` array assigns the images.
        val_fraction: Share of the train images to hold out (rounded, at least one image) when
            the store has no val split; 0 keeps the store's splits as they are.
        seed: Seed of the draw, so that the same seed holds out the same images.

    Returns:
        {"train", "val", "test"} -> sorted indices into the store.
    """
    splits = {split: images.indices(split) for split in SPLITS}
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 or len(splits["val"]):
        return splits
    train = splits["train"]
    n_val = max(1, round(val_fraction * len(train)))
    if n_val >= len(train):
        raise ValueError(f"{len(train)} train images are too few to hold out {n_val} for val")
    held_out = np.random.default_rng(seed).permutation(len(train))[:n_val]
    chosen = np.zeros(len(train), dtype=bool)
    chosen[held_out] = True
    return {**splits, "train": train[~chosen], "val": train[chosen]}


@dataclasses.dataclass
class FeaturePair:
    """The original and manipulated features of one layer, read through chosen splits, with an
    optional spatial op applied to the originals first; the image store gives the masks.

    The closed-form fits, the trained mappings, the baselines and the analysis all read it.
    """

    original: FeatureStore
    manipulated: FeatureStore
    images: ImageStore
    layer: str
    splits: dict[str, np.ndarray]  # split -> sorted image indices (see carve_splits)
    spatial_op: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the layer's feature maps."""
        return tuple(self.original.layer(self.layer).shape[1:])

    @property
    def comparison(self) -> str:
        return comparison_of(self.spatial_op)

    def read(self, indices: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Original (spatial op applied, if any) and manipulated features of some images."""
        x = read_finite(self.original, self.layer, indices, dtype)
        if self.spatial_op is not None:
            x = apply_spatial(x, self.spatial_op)
        return x, read_finite(self.manipulated, self.layer, indices, dtype)

    def blocks(self, split: str, block: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(x, y, image indices) of one split, `block` images at a time, in store order."""
        indices = self.splits[split]
        for start in range(0, len(indices), block):
            chunk = indices[start : start + block]
            yield (*self.read(chunk), chunk)

    def nbytes(self, split: str, itemsize: int) -> int:
        """Bytes that x and y of one split take in memory at `itemsize` bytes per value."""
        return 2 * len(self.splits[split]) * math.prod(self.shape) * itemsize


def open_pair(
    original: str,
    manipulated: str,
    images: str,
    layer: str,
    spatial_op: str | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> FeaturePair:
    """Open a layer's feature pair from the stores' paths (see `pair_of`)."""
    stores = FeatureStore(original), FeatureStore(manipulated), ImageStore(images)
    return pair_of(*stores, layer, spatial_op, val_fraction, seed)


def pair_of(
    original: FeatureStore,
    manipulated: FeatureStore,
    images: ImageStore,
    layer: str,
    spatial_op: str | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> FeaturePair:
    """A layer's feature pair of open stores, checking that they come from one backbone and
    image set, viewed through the store's splits (a val split carved from train with
    `val_fraction` > 0, see `carve_splits`)."""
    stores = original, manipulated
    rerun = "rerun the extraction of both image sets with the same backbone config"
    for key in BACKBONE_ATTRS:
        a, b = (store.attrs.get(key) for store in stores)
        if a != b:
            raise ValueError(
                f"{original.path} and {manipulated.path} come from different backbones ({key} "
                f"{a} and {b}); {rerun}"
            )
    for store in stores:
        if layer not in store.layers:
            raise ValueError(f"{store.path} has no layer {layer!r} (it holds {store.layers})")
    a, b = (store.layer(layer).shape for store in stores)
    if a != b:
        raise ValueError(
            f"{layer}: {original.path} holds {a} but {manipulated.path} holds {b}; {rerun}"
        )
    if len(images) != a[0]:
        raise ValueError(
            f"{images.path} holds {len(images)} images but {original.path} the features of "
            f"{a[0]}; rerun the extraction of this image set"
        )
    splits = carve_splits(images, val_fraction, seed)
    return FeaturePair(*stores, images, layer, splits, spatial_op)


def channel_statistics(
    view: FeaturePair, block_images: int = 256, std_floor: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (C,) of the original train features, streamed in float64.

    The std is floored at `std_floor` times the median channel std, so that a channel that is
    (nearly) constant in the originals neither blows up the standardised features nor dominates
    a loss or a spectrum. A spatial op moves positions only, so the statistics are the same with
    or without it. Trained mappings normalise with these, and the linear-structure analysis
    standardises every affine map with them.
    """
    channels = view.shape[0]
    count, total, squares = 0, np.zeros(channels), np.zeros(channels)
    for x, _, _ in view.blocks("train", block_images):
        count += x.shape[0] * x.shape[2] * x.shape[3]
        total += x.sum(axis=(0, 2, 3), dtype=np.float64)
        squares += np.square(x, dtype=np.float64).sum(axis=(0, 2, 3))
    if count == 0:
        raise ValueError("the train split is empty")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean, np.maximum(std, std_floor * np.median(std) + 1e-12)
