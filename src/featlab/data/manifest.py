"""The manifest of a real data set: the files an original image store is made from.

A study's images are its first input, so the workflow tracks them. Each image of a folder or
file list is one manifest row: its id (the path relative to the folder root, or as the file list
writes it), class index, split, size in bytes and modification time in nanoseconds. The digest of
the rows and the class names is a param of the image store's job: changing, adding or removing an
image, or a row of the file list, changes it, and the store and everything after it rerun. Paths
enter only relative to the data set, so a data set moved or copied with its modification times
(`mv`, `cp -a`, `rsync -a`) keeps its digest and reruns nothing.

The files are stat-ed, not read: a stat costs microseconds where hashing the contents would read
the whole data set each time the workflow plans (140 GB for ImageNet).
"""

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

MISSING = -1  # the size and modification time of a listed file that is not there


def file_stats(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each file's size in bytes and modification time in ns (int64), MISSING where the file
    cannot be stat-ed (the job that decodes it names it)."""
    sizes = np.full(len(paths), MISSING, dtype=np.int64)
    mtimes = np.full(len(paths), MISSING, dtype=np.int64)
    for index, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        sizes[index], mtimes[index] = stat.st_size, stat.st_mtime_ns
    return sizes, mtimes


def manifest_digest(
    image_ids: Sequence[str],
    labels: Sequence[int],
    splits: Sequence[str],
    sizes: Sequence[int],
    mtimes: Sequence[int],
    classes: Sequence[str] | None,
) -> str:
    """sha256 (hex) of the manifest rows, in order, and the class names.

    Fields are separated by NUL, which no path contains, so that no two manifests share a text.
    """
    rows = zip(image_ids, labels, splits, sizes, mtimes, strict=True)
    text = "".join(
        f"{i}\0{label}\0{split}\0{size}\0{mtime}\0\n" for i, label, split, size, mtime in rows
    )
    digest = hashlib.sha256(json.dumps(None if classes is None else list(classes)).encode())
    digest.update(text.encode())
    return digest.hexdigest()
