"""What a mapping is fitted on: a layer's feature pairs seen through splits and a spatial op.

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
from featlab.mapping.fit import LayerPair, read_finite

COMPARISON = "mapped_vs_manipulated"
SPATIAL_FIRST = "spatial_first"


def comparison_of(spatial_op: str | None) -> str:
    """The `comparison` word of a mapping that does (or does not) apply a spatial op first."""
    return f"{COMPARISON}_{SPATIAL_FIRST}" if spatial_op else COMPARISON


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
class PairView:
    """A `LayerPair` read through chosen splits, with an optional spatial op applied to x first.

    It offers what `fit_closed_form` and `evaluate` use of a LayerPair (original, manipulated,
    images, layer, blocks), so the same fitting and scoring code serves every variant.
    """

    pair: LayerPair
    splits: dict[str, np.ndarray]
    spatial_op: str | None = None

    @property
    def original(self):
        return self.pair.original

    @property
    def manipulated(self):
        return self.pair.manipulated

    @property
    def images(self) -> ImageStore:
        return self.pair.images

    @property
    def layer(self) -> str:
        return self.pair.layer

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


def open_view(
    original: str,
    manipulated: str,
    images: str,
    layer: str,
    spatial_op: str | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> PairView:
    """Open a layer's feature pair and view it through (possibly carved) splits."""
    pair = LayerPair.open(original, manipulated, images, layer)
    return PairView(pair, carve_splits(pair.images, val_fraction, seed), spatial_op)


def channel_statistics(
    view: PairView, block_images: int = 256, std_floor: float = 0.01
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
