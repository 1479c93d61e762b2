"""Semantic manipulations of photos by generative image editors, one image shard per job.

`edit_shard` loads the editor once and edits a range of an image store into a shard store, with
each edit's change mask; `gather_edits` joins the shards into the manipulation's image store.
Failed edits (see `kept_edits`) stay in their place, so every store keeps the original's image
order, but leave every split.
"""

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featlab.data.images import ImageStore, ImageStoreWriter
from featlab.manipulate.change import MaskSettings, change_mask
from featlab.manipulate.editors import EditSettings, edit_images, load_editor
from featlab.manipulate.spec import check_spec

EDITING_KEYS = ("batch_size", "device", "precision", "offload")  # the study's `editing` section


def edit_settings(spec: Mapping[str, Any], editing: Mapping[str, Any]) -> EditSettings:
    """The editor's settings: the manipulation's edit, run as the study's `editing` says."""
    spec = check_spec(spec)
    if spec["kind"] != "semantic":
        raise ValueError(f"{spec['kind']} is not a generative edit (kind: semantic)")
    edit = {k: v for k, v in spec.items() if k not in ("kind", "region", "filter")}
    return EditSettings(**edit, **{k: editing[k] for k in EDITING_KEYS if k in editing})


def region_masks(region: Sequence[float], image_size: tuple[int, int], n: int) -> np.ndarray:
    """(n, H, W) bool masks of the box [top, left, bottom, right] in fractions of the image."""
    height, width = image_size
    top, left, bottom, right = region
    mask = np.zeros((height, width), bool)
    rows = slice(round(top * height), max(round(bottom * height), round(top * height) + 1))
    columns = slice(round(left * width), max(round(right * width), round(left * width) + 1))
    mask[rows, columns] = True
    return np.broadcast_to(mask, (n, height, width)).copy()


def changed_fractions(masks: np.ndarray) -> np.ndarray:
    """The fraction of each image's pixels that changed, from (N, H, W) change masks."""
    return masks.reshape(len(masks), -1).mean(axis=1)


def kept_edits(changed: np.ndarray, bounds: Mapping[str, float] | None) -> np.ndarray:
    """Which edits count as done: their changed fractions of the image within the bounds.

    An edit that changed almost no pixel ignored its prompt; one that changed almost all of them
    redrew the photo instead of editing one attribute. Either would teach a mapping something
    other than the edit, so the filter keeps the fraction of changed pixels (the change mask
    behind the masked metrics) within [min_changed, max_changed]. None keeps every edit.
    """
    if bounds is None:
        return np.ones(len(changed), bool)
    return (changed >= bounds["min_changed"]) & (changed <= bounds["max_changed"])


def edit_shard(
    original: ImageStore,
    path: str | os.PathLike,
    spec: Mapping[str, Any],
    editing: Mapping[str, Any],
    image_range: tuple[int, int],
    mask_settings: MaskSettings = MaskSettings(),  # noqa: B008 (frozen: safe to share)
) -> None:
    """Edit the images [start, stop) of `original` into a shard store at `path`.

    Image i is edited with the seed (spec seed, i), so a shard's edits do not depend on how the
    set was sharded or batched. The store appears at `path` only when every image was edited.
    """
    spec = check_spec(spec)
    settings = edit_settings(spec, editing)
    start, stop = image_range
    if not 0 <= start <= stop <= len(original):
        raise ValueError(f"image range {image_range} is outside {original.path} ({len(original)})")
    editor = load_editor(settings)
    attrs = {"manipulation": spec, "image_range": [start, stop]}
    writer = ImageStoreWriter(
        path,
        original.splits[start:stop],
        original.image_ids[start:stop],
        original.image_size,
        masks=True,
        attrs=attrs,
    )
    dropped = []
    began = time.perf_counter()
    with writer:
        for first in range(start, stop, settings.batch_size):
            last = min(first + settings.batch_size, stop)
            images = original.images[first:last]
            regions = None
            if spec["region"] is not None:
                regions = region_masks(spec["region"], original.image_size, last - first)
            indices = np.arange(first, last)
            edited = edit_images(editor, settings, images, indices, masks=regions)
            masks = change_mask(images, edited, mask_settings)
            changed = changed_fractions(masks)
            kept = kept_edits(changed, spec["filter"])
            dropped += [
                {"index": int(i), "image_id": str(original.image_ids[i]), "changed": float(c)}
                for i, c, k in zip(indices, changed, kept, strict=True)
                if not k
            ]
            writer.append(edited, original.labels[first:last], masks, kept)
            done, seconds = last - start, time.perf_counter() - began
            print(
                f"edited {done}/{stop - start} images, {seconds / done:.2f} s each", file=sys.stderr
            )
        writer.group.attrs["dropped"] = dropped


def gather_edits(path: str | os.PathLike, shards: Sequence[str | os.PathLike]) -> None:
    """Join edit shards, in order, into one image store at `path` (the manipulation's)."""
    stores = [ImageStore(shard) for shard in shards]
    expected = 0
    for store in stores:
        start, stop = store.attrs["image_range"]
        if start != expected or stop - start != len(store):
            raise ValueError(f"{store.path} holds images {start}..{stop}, expected from {expected}")
        expected = stop
    writer = ImageStoreWriter(
        path,
        np.concatenate([store.splits for store in stores]),
        np.concatenate([store.image_ids for store in stores]),
        stores[0].image_size,
        masks=True,
        attrs={
            "manipulation": stores[0].attrs["manipulation"],
            "dropped": [entry for store in stores for entry in store.attrs["dropped"]],
        },
    )
    with writer:
        for store in stores:
            for first in range(0, len(store), writer.rows):
                last = first + writer.rows
                writer.append(
                    store.images[first:last],
                    store.labels[first:last],
                    store.masks[first:last],
                    store.kept[first:last],
                )
