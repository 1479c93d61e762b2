"""Writing a real source's image store: its entries decoded (in worker processes) and streamed
chunk by chunk into the store, with the files' manifest."""

import collections
import contextlib
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import zarr
from tqdm import tqdm

from featlab.data.images import SPLITS, chunk_length
from featlab.data.manifest import file_stats
from featlab.data.sources.decoding import UnreadableImage, fit_image, load_image
from featlab.data.sources.listing import Entry, check_splits, manifest_of
from featlab.io import atomic_path
from featlab.workers import START_METHOD, main_script_hidden

ON_ERROR = ("stop", "skip")
PENDING_PER_WORKER = 4  # decoded images waiting per worker: bounds the memory of a parallel run


def _decode(
    path: str, size: int, crop_pct: float, min_side: int = 1
) -> tuple[np.ndarray | None, str | None]:
    """One image for the store, or (None, reason): a worker returns the reason, not the error.
    An image with a side under `min_side` pixels is refused rather than upscaled."""
    try:
        image = load_image(path)
    except UnreadableImage as error:
        return None, error.reason
    if min(image.size) < min_side:
        width, height = image.size
        return None, f"it is {width}x{height} pixels, under data.min_side {min_side}"
    return fit_image(image, size, crop_pct), None


def _decoded(
    paths: Sequence[str], size: int, crop_pct: float, workers: int, min_side: int = 1
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Decode the images in order, with `workers` processes (0: in this process)."""
    if workers == 0:
        for path in paths:
            yield _decode(path, size, crop_pct, min_side)
        return
    context = multiprocessing.get_context(START_METHOD)  # see featlab.workers
    with main_script_hidden(), ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = collections.deque()
        try:
            for path in paths:
                pending.append(pool.submit(_decode, path, size, crop_pct, min_side))
                if len(pending) >= PENDING_PER_WORKER * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(cancel_futures=True)


def prepare_images(
    entries: Sequence[Entry],
    path: str | os.PathLike,
    size: int,
    crop_pct: float = 1.0,
    on_error: str = "stop",
    workers: int = 0,
    attrs: dict | None = None,
    min_side: int = 1,
) -> dict:
    """Decode, fit and write the images of `entries` to an image store, streaming chunk by chunk.

    Beside the images, labels, splits and ids, the store records each kept image's file size and
    modification time (`file_size`, `file_mtime_ns`), stat-ed before the file is read.

    The store has the layout of `write_image_store` and appears at `path` only when complete.
    With on_error="stop" the first unreadable image raises UnreadableImage; with "skip" the
    unreadable images are left out and listed in the store's `skipped` attribute. Entries
    without train or test images stop before any image is decoded, and so do kept images
    without them (`check_splits`).

    Args:
        entries: the images, in store order (from list_folder, read_filelist or list_entries).
        path: the store to write.
        size: image side in pixels; crop_pct: timm's crop fraction (see fit_image).
        on_error: stop | skip.
        workers: decoding processes; 0 decodes in this process.
        attrs: written into the store's attributes (class names, source, ...), with size,
            crop_pct, the skipped files and the manifest digest of all entries (`manifest_of`,
            with attrs["classes"]): the one the workflow plans with when the files are the same.
        min_side: an image whose shorter side has fewer pixels is unreadable (stopped or
            skipped as on_error says) instead of being upscaled into the data set.

    Returns:
        n_images, n_skipped, skipped ([{path, reason}]), classes (attrs["classes"], if given),
        n_per_split and manifest (the digest).
    """
    # 1. Check inputs
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}: choose one of {ON_ERROR}")
    if not entries:
        raise ValueError(f"no images to write to {path}")
    if workers < 0:
        raise ValueError(f"workers={workers} must be 0 (decode in this process) or more")
    check_splits(entries)
    n, item_shape = len(entries), (size, size, 3)
    rows = chunk_length(size * size * 3, n)
    with atomic_path(path) as temporary:
        # 2. Create the image array; it is filled one whole chunk at a time
        group = zarr.open_group(temporary, mode="w")
        images = group.create_array(
            "images", shape=(n, *item_shape), chunks=(rows, *item_shape), dtype=np.uint8
        )
        kept, kept_rows, skipped, buffer = [], [], [], []
        # 3. The manifest, stat-ed before the files are read: a file changed while the job runs
        # then differs from it, and the next run sees the change
        paths = [entry.path for entry in entries]
        sizes, mtimes = file_stats(paths)
        manifest = manifest_of(entries, (attrs or {}).get("classes"), (sizes, mtimes))
        # 4. Decode in order and write each chunk as it fills
        decoded = _decoded(paths, size, crop_pct, workers, min_side)
        progress = tqdm(total=n, desc="decode images", unit="img", mininterval=5)
        with contextlib.closing(decoded), progress:
            for index, (entry, (image, reason)) in enumerate(zip(entries, decoded, strict=True)):
                progress.update()
                if image is None:
                    if on_error == "stop":
                        raise UnreadableImage(entry.path, reason)
                    skipped.append({"path": entry.path, "reason": reason})
                    continue
                buffer.append(image)
                kept.append(entry)
                kept_rows.append(index)
                if len(buffer) == rows:
                    images[len(kept) - rows : len(kept)] = np.stack(buffer)  # (rows, H, W, 3)
                    buffer = []
        if not kept:
            raise ValueError(f"none of the {n} images could be read (first: {skipped[0]})")
        if skipped:
            try:
                check_splits(kept)
            except ValueError as error:
                raise ValueError(
                    f"after leaving out {len(skipped)} unreadable images, {error}"
                ) from None
        if buffer:
            images[len(kept) - len(buffer) : len(kept)] = np.stack(buffer)
        if len(kept) < n:
            images.resize((len(kept), *item_shape))
        # 5. Labels, splits and ids of the kept images, and the manifest of their files
        group.create_array("label", data=np.array([e.label for e in kept], dtype=np.int64))
        group.create_array("file_size", data=sizes[kept_rows])
        group.create_array("file_mtime_ns", data=mtimes[kept_rows])
        for name, values in (
            ("split", [e.split for e in kept]),
            ("image_id", [e.image_id for e in kept]),
        ):
            # Variable-length UTF-8, as in write_image_store.
            group.create_array(name, shape=(len(kept),), dtype=str)[:] = np.asarray(
                values, dtype=str
            )
        group.attrs.update(
            {
                **(attrs or {}),
                "size": size,
                "crop_pct": crop_pct,
                "skipped": skipped,
                "manifest": manifest,
            }
        )
    splits = collections.Counter(entry.split for entry in kept)
    return {
        "n_images": len(kept),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "classes": (attrs or {}).get("classes"),
        "n_per_split": {split: splits[split] for split in SPLITS},
        "manifest": manifest,
    }
