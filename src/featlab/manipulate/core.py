"""`manipulate`: apply one manipulation spec to a batch of images and record what changed."""

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from featlab.data.images import ImageStore, ImageStoreWriter
from featlab.data.shapes import Scene
from featlab.geometry import spatial_op_of
from featlab.manipulate import geometric, masking, photometric, semantic
from featlab.manipulate.change import MaskSettings, change_mask
from featlab.manipulate.spec import GEOMETRIC_KINDS, check_spec


@dataclasses.dataclass
class Manipulated:
    """A manipulated batch, in the order of the input batch."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64; equal to the input labels unless the class changed
    masks: np.ndarray  # (N, H, W) bool: where the image changed (for masked metrics)


def manipulate(
    images: np.ndarray,
    labels: np.ndarray,
    spec: Mapping[str, Any],
    *,
    scenes: list[Scene] | None = None,
    first_index: int = 0,
    mask_settings: MaskSettings = MaskSettings(),  # noqa: B008 (frozen: safe to share)
) -> Manipulated:
    """Apply the manipulation `spec` (see featlab.manipulate.spec) to a batch of images.

    Args:
        images: (N, H, W, 3) uint8 images.
        labels: (N,) class labels of the images.
        spec: the manipulation, e.g. `{"kind": "rotate", "angle": 90}`.
        scenes: the shapes-world scene of each image; needed by "counterfactual" only.
        first_index: the index of images[0] in the whole image set. Random manipulations seed each
            image by (seed, index), so chunks processed separately give the result of one call.
        mask_settings: how the change masks are computed.
    """
    # 1. Check inputs. One batch may be left unchanged (a hue shift by a whole turn is still a
    # hue shift); a manipulated image set may not (manipulate_store).
    spec = check_spec(spec, allow_no_op=True)
    if spec["kind"] == "semantic":
        raise ValueError(
            "semantic edits load a generative editor: use featlab.manipulate.generative.edit_shard"
        )
    _check_batch(images, labels, first_index)
    # 2. Manipulate.
    new_images, new_labels = _apply(images, np.asarray(labels), spec, scenes, first_index)
    # 3. Where the images changed.
    masks = change_mask(images, new_images, mask_settings)
    return Manipulated(images=new_images, labels=new_labels.astype(np.int64), masks=masks)


def manipulate_store(
    original: ImageStore,
    path: str | os.PathLike,
    spec: Mapping[str, Any],
    *,
    scenes: list[Scene] | None = None,
    mask_settings: MaskSettings = MaskSettings(),  # noqa: B008 (frozen: safe to share)
    block_images: int = 256,
) -> None:
    """Manipulate a whole image store into a new one at `path`, in the same image order.

    The images stream through in blocks of about `block_images` (whole chunks where a chunk is
    smaller), so a set larger than memory works; random manipulations seed each image by its
    index, so the result equals one call on the whole set. The store appears at `path` only when
    complete: a manipulation that leaves every image (and label) as it was stops instead, as its
    parameters do where they are known to change nothing (`check_spec`).
    """
    spec = check_spec(spec)
    if scenes is not None and len(scenes) != len(original):
        raise ValueError(f"got {len(scenes)} scenes for the {len(original)} images")
    writer = ImageStoreWriter(
        path,
        original.splits,
        original.image_ids,
        original.image_size,
        masks=True,
        attrs={"manipulation": spec},
    )
    with writer:
        rows = writer.rows  # whole chunks per block, where a chunk is smaller than a block
        block = block_images if block_images < rows else block_images // rows * rows
        changed = False
        for start in range(0, len(original), block):
            stop = min(start + block, len(original))
            images, labels = original.images[start:stop], original.labels[start:stop]
            result = manipulate(
                images,
                labels,
                spec,
                scenes=None if scenes is None else scenes[start:stop],
                first_index=start,
                mask_settings=mask_settings,
            )
            changed = changed or not (
                np.array_equal(result.images, images) and np.array_equal(result.labels, labels)
            )
            writer.append(result.images, result.labels, result.masks)
        if not changed:  # raised inside the writer's block: no store appears
            raise ValueError(
                f"{path}: {spec} leaves all {len(original)} images of {original.path} unchanged, "
                "so every mapping would fit it perfectly; choose parameters that change the "
                "images, or remove the manipulation"
            )


def _apply(
    images: np.ndarray,
    labels: np.ndarray,
    spec: dict[str, Any],
    scenes: list[Scene] | None,
    first_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch a checked spec to its manipulation; returns the new images and labels."""
    kind = spec["kind"]
    if kind in GEOMETRIC_KINDS:
        return geometric.spatial_transform(images, spatial_op_of(spec)), labels
    if kind == "hue_shift":
        return photometric.hue_shift(images, spec["shift"]), labels
    if kind == "grayscale":
        return photometric.grayscale(images), labels
    if kind == "gaussian_noise":
        noisy = photometric.gaussian_noise(images, spec["sigma"], spec["seed"], first_index)
        return noisy, labels
    if kind == "mask_square":
        return masking.mask_square(images, spec["colour"]), labels
    # kind == "counterfactual"
    _check_scenes(scenes, images)
    return semantic.counterfactual_images(
        scenes, spec["change"], spec["seed"], images.shape[1], first_index
    )


def _check_batch(images: np.ndarray, labels: np.ndarray, first_index: int) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be an (N, H, W, 3) array, got {getattr(images, 'shape', images)}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if np.shape(labels) != images.shape[:1]:
        raise ValueError(f"labels must have shape ({len(images)},), got {np.shape(labels)}")
    if first_index < 0:
        raise ValueError(f"first_index must be >= 0, got {first_index}")


def _check_scenes(scenes: list[Scene] | None, images: np.ndarray) -> None:
    if scenes is None:
        raise ValueError("a counterfactual needs `scenes`, one Scene per image")
    if len(scenes) != len(images):
        raise ValueError(f"got {len(scenes)} scenes for {len(images)} images; need one per image")
    if not all(isinstance(scene, Scene) for scene in scenes):
        raise ValueError("scenes must be featlab.data.shapes.Scene objects")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"counterfactuals render square images, got {images.shape[1:3]}")
