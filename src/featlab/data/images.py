"""Image stores: `images/{imageset}.zarr`, uint8 (N, H, W, 3) chunked along N.

Beside the images a store holds `image_id`, `label` and `split` arrays (one entry per image, in
the same order as the original store) and, for manipulated sets, a `mask` array (N, H, W) of the
pixels that changed.
"""

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import zarr

from featlab.io import atomic_path

SPLITS = ("train", "val", "test")
MIN_CHUNK_BYTES = 1 << 20  # chunks of at least 1 MB along N


def chunk_length(bytes_per_item: int, n_items: int) -> int:
    """Items per chunk along N so that a chunk holds at least MIN_CHUNK_BYTES."""
    return max(1, min(n_items, math.ceil(MIN_CHUNK_BYTES / max(1, bytes_per_item))))


def shard_range(shard: int, images_per_shard: int, n_images: int) -> tuple[int, int]:
    """The images [start, stop) of shard k: [k * S, (k + 1) * S), cut to the set's length (a set
    with skipped unreadable files may be shorter than planned, leaving a last shard short or
    empty)."""
    start = min(shard * images_per_shard, n_images)
    return start, min(start + images_per_shard, n_images)


@dataclasses.dataclass
class ImageSet:
    """An image set held in memory."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) str, each one of SPLITS
    image_ids: np.ndarray  # (N,) str, stable across the original and its manipulations
    masks: np.ndarray | None = None  # (N, H, W) bool, where a manipulation changed the image

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        for name in ("labels", "splits", "image_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")
        unknown = set(np.unique(self.splits)) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; use {SPLITS}")
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise ValueError(
                f"masks must be (N, H, W) = {self.images.shape[:3]}, got {self.masks.shape}"
            )


class ImageStoreWriter:
    """Write an image store block by block in image order, for sets larger than memory.

    Use as a context manager: the store appears at `path` only when every image was written.
    Blocks of `rows` images (a chunk) or a multiple of it write whole chunks.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        splits: np.ndarray,
        image_ids: np.ndarray,
        image_size: tuple[int, int],
        masks: bool = False,
        attrs: dict | None = None,
    ):
        self.path = Path(path)
        self.splits, self.image_ids = np.asarray(splits), np.asarray(image_ids)
        self.n = len(self.splits)
        self.height, self.width = image_size
        self.with_masks, self.attrs = masks, attrs or {}
        self.rows = chunk_length(self.height * self.width * 3, self.n)
        self._labels: list[np.ndarray] = []
        self._kept: list[np.ndarray] = []
        self._written = 0

    def __enter__(self) -> "ImageStoreWriter":
        self._atomic = atomic_path(self.path)
        self.group = zarr.open_group(self._atomic.__enter__(), mode="w")
        self.group.attrs.update(self.attrs)
        shape = (self.n, self.height, self.width)
        self.images = self.group.create_array(
            "images", shape=(*shape, 3), chunks=(self.rows, self.height, self.width, 3), dtype="u1"
        )
        if self.with_masks:
            self.masks = self.group.create_array(
                "mask", shape=shape, chunks=(self.rows, self.height, self.width), dtype=bool
            )
        return self

    def append(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray | None = None,
        kept: np.ndarray | None = None,
    ):
        """Add the next images (B, H, W, 3) uint8, their labels (B,) and change masks (B, H, W).

        `kept` (B,) bool marks the images that downstream stages use (all by default): a failed
        generative edit stays in the store, in its place, but leaves every split.
        """
        block = ImageSet(
            images,
            np.asarray(labels),
            self.splits[self._written : self._written + len(images)],
            self.image_ids[self._written : self._written + len(images)],
            masks,
        )
        if block.images.shape[1:3] != (self.height, self.width):
            raise ValueError(f"images of {block.images.shape[1:3]} in a store of {self.height}")
        if kept is not None and np.shape(kept) != (len(images),):
            raise ValueError(f"kept must have shape ({len(images)},), got {np.shape(kept)}")
        if (masks is None) == self.with_masks:
            raise ValueError(f"{self.path}: every block needs masks, or none does")
        end = self._written + len(images)
        self.images[self._written : end] = block.images
        if self.with_masks:
            self.masks[self._written : end] = block.masks
        self._labels.append(block.labels.astype(np.int64))
        self._kept.append(np.ones(len(images), bool) if kept is None else np.asarray(kept, bool))
        self._written = end

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            if self._written != self.n:
                error = ValueError(f"{self.path}: wrote {self._written} of {self.n} images")
                self._atomic.__exit__(ValueError, error, None)  # removes the temporary store
                raise error
            labels = np.concatenate([np.zeros(0, np.int64), *self._labels])
            self.group.create_array("label", data=labels)
            kept = np.concatenate([np.ones(0, bool), *self._kept])
            if not kept.all():
                self.group.create_array("kept", data=kept)
            for name, values in (("split", self.splits), ("image_id", self.image_ids)):
                # Variable-length UTF-8: the string type with a Zarr v3 specification.
                array = self.group.create_array(name, shape=(self.n,), dtype=str)
                array[:] = np.asarray(values, dtype=str)
        return self._atomic.__exit__(kind, value, traceback)


def write_image_store(
    path: str | os.PathLike, image_set: ImageSet, attrs: dict | None = None
) -> None:
    """Write an image set to a Zarr store atomically (nothing at `path` until it is complete)."""
    _, height, width, _ = image_set.images.shape
    masks = image_set.masks is not None
    with ImageStoreWriter(
        path, image_set.splits, image_set.image_ids, (height, width), masks, attrs
    ) as writer:
        writer.append(image_set.images, image_set.labels, image_set.masks)


class ImageStore:
    """Read access to an image store; arrays are read lazily, chunk by chunk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not an image store (no zarr.json); rerun the stage that writes it"
            )
        self.group = zarr.open_group(self.path, mode="r")
        self.images = self.group["images"]
        self.labels = self.group["label"][:]
        # Variable-length strings come back as numpy's StringDType; fixed-width is simpler to use.
        self.splits = np.array(self.group["split"][:].tolist(), dtype=str)
        self.image_ids = np.array(self.group["image_id"][:].tolist(), dtype=str)
        self.masks = self.group.get("mask")
        # Images left out of every split (failed generative edits); absent when all are kept.
        kept = self.group.get("kept")
        self.kept = np.ones(len(self.labels), bool) if kept is None else kept[:]
        self.attrs = dict(self.group.attrs)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])

    def indices(self, split: str) -> np.ndarray:
        """Positions of the kept images of one split, in store order."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        return np.flatnonzero((self.splits == split) & self.kept)

    def first_test(self, n_images: int | None) -> np.ndarray:
        """Positions of the first `n_images` kept test images (all of them for None); a store
        without any stops here, since every scoring stage reads the test split."""
        indices = self.indices("test")[:n_images]
        if not len(indices):
            raise ValueError(f"{self.path} has no test images")
        return indices

    def read(self) -> ImageSet:
        """Load the whole set into memory."""
        return ImageSet(
            images=self.images[:],
            labels=self.labels,
            splits=self.splits,
            image_ids=self.image_ids,
            masks=None if self.masks is None else self.masks[:],
        )
