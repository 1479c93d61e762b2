"""Listing a real image source: the entries of an image folder or a CSV file list, and what
planning knows of them before any job runs (`survey`).

Listing is fast: it reads directory entries and CSV text only, and opens no image.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from featlab.data.images import SPLITS
from featlab.data.manifest import file_stats, manifest_digest
from featlab.data.shapes import ShapesSettings

SOURCES = ("shapes", "folder", "filelist")
REQUIRED_SPLITS = ("train", "test")  # the splits a study fits on and scores on
# The extensions of the formats Pillow reads that image data sets use; compared in lower case.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
DEFAULT_SPLIT_FRACTIONS = {"val": 0.0, "test": 0.2}  # train gets the rest
FILELIST_COLUMNS = ("path", "label", "split")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image of a source: where it is, its class index, its split and its stable id."""

    path: str  # the file to decode
    label: int  # class index
    split: str  # one of SPLITS
    image_id: str  # the path relative to the folder root or as written in the file list


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _subfolders(folder: str) -> list[str]:
    """Names of the visible subfolders of `folder`, sorted."""
    with os.scandir(folder) as found:
        return sorted(e.name for e in found if not e.name.startswith(".") and e.is_dir())


def _image_files(folder: str) -> list[str]:
    """Paths (relative to `folder`, with `/`) of the image files below it, sorted; hidden files
    and folders are left out."""
    files, stack = [], [("", folder)]
    while stack:
        prefix, current = stack.pop()
        with os.scandir(current) as found:
            for entry in found:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append((f"{prefix}{entry.name}/", entry.path))
                elif _is_image(entry.name):
                    files.append(prefix + entry.name)
    return sorted(files)


def _class_files(folder: str) -> dict[str, list[str]]:
    """The image files of each class folder of `folder`; images outside a class folder are an
    error (they have no class)."""
    with os.scandir(folder) as found:
        loose = sorted(e.name for e in found if _is_image(e.name) and not e.is_dir())
    if loose:
        raise ValueError(
            f"{folder} holds images outside a class folder ({', '.join(loose[:3])}, ...); move "
            "each image into the folder of its class"
        )
    return {name: _image_files(os.path.join(folder, name)) for name in _subfolders(folder)}


def _check_fractions(split_fractions: Mapping[str, float]) -> dict[str, float]:
    fractions = {"val": 0.0, "test": 0.0, **split_fractions}
    if set(fractions) != {"val", "test"}:
        raise ValueError(
            f"split_fractions has keys {sorted(split_fractions)}; give only val and test "
            "(train gets the rest)"
        )
    if min(fractions.values()) < 0 or sum(fractions.values()) >= 1:
        raise ValueError(
            f"split_fractions {fractions} must be at least 0 and add up to less than 1"
        )
    return fractions


def _draw_splits(n: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Split names for the n images of one class: a random test share, then val, then train."""
    n_test, n_val = round(n * fractions["test"]), round(n * fractions["val"])
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return [str(split) for split in rng.permutation(np.array(splits, dtype=str))]


def list_folder(
    root: str | os.PathLike, split_fractions: Mapping[str, float] | None = None, seed: int = 0
) -> tuple[list[Entry], list[str]]:
    """The images of an ImageFolder-style folder, sorted by split, class and relative path.

    Args:
        root: either `root/{train,val,test}/{class}/...` (splits from the folders) or
            `root/{class}/...`; images may sit in subfolders of a class folder. Hidden files and
            folders are ignored, and so are files whose extension is not in IMAGE_EXTENSIONS.
        split_fractions: for the layout without split folders, the shares of each class drawn
            into `val` and `test` (default DEFAULT_SPLIT_FRACTIONS); train gets the rest.
            Ignored where split folders exist.
        seed: the same seed draws the same splits.

    Returns:
        The entries and the class names; a class index is the position of its folder name in the
        sorted names of all class folders.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist; check data.folder.root")
    # 1. Find the layout: the image files of each class, per split folder or (None) all together
    folders = _subfolders(root)
    present = [split for split in SPLITS if split in folders]
    others = sorted(set(folders) - set(SPLITS))
    if present and others:
        raise ValueError(
            f"{root} mixes split folders ({', '.join(present)}) with other folders "
            f"({', '.join(others[:5])}); use root/{{split}}/{{class}}/ or root/{{class}}/"
        )
    if present:
        files = {split: _class_files(os.path.join(root, split)) for split in present}
    else:
        files = {None: _class_files(root)}
        fractions = _check_fractions(split_fractions or DEFAULT_SPLIT_FRACTIONS)
        rng = np.random.default_rng(seed)
    classes = sorted(set().union(*files.values()))
    # 2. Entries; without split folders each class's files are split at random
    entries, prefix = [], os.path.join(root, "")  # the root with a trailing separator
    for split, per_class in files.items():
        for name, paths in per_class.items():  # in sorted order, so that the draws repeat
            if split is None:
                folder, splits = f"{name}/", _draw_splits(len(paths), fractions, rng)
            else:
                folder, splits = f"{split}/{name}/", [split] * len(paths)
            label = classes.index(name)
            for relative, image_split in zip(paths, splits, strict=True):
                image_id = folder + relative
                entries.append(Entry(prefix + image_id, label, image_split, image_id))
    if not entries:
        raise ValueError(
            f"{root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); expected "
            f"{root}/{{class}}/*.jpg or {root}/{{split}}/{{class}}/*.jpg"
        )
    entries.sort(key=lambda e: (SPLITS.index(e.split), e.label, e.image_id))
    return entries, classes


def _first_bad_row(csv: Path, table: pd.DataFrame, bad: pd.Series, what: str, fix: str) -> None:
    """Raise for the first row where `bad` holds, naming the CSV and its line (header = line 1)."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{csv}, line {row + 2}: {what} {table.iloc[row][what]!r} {fix}")


def read_filelist(csv: str | os.PathLike) -> tuple[list[Entry], list[str]]:
    """The images of a CSV file list with the columns `path`, `label`, `split`, in row order.

    Paths are relative to the CSV's folder unless absolute, and the path as written is the image
    id. Labels are either all integers (class indices; the class names are then "0", "1", ...)
    or class names, numbered by their position in the sorted set of names.
    """
    csv = Path(csv)
    if not csv.is_file():
        raise FileNotFoundError(f"file list {csv} does not exist; check data.filelist.path")
    # 1. Read every cell as text, so that labels and paths stay as written
    table = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    missing = [column for column in FILELIST_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(
            f"{csv} has no column {', '.join(missing)} (found: {', '.join(table.columns)}); a "
            "file list needs a header row path,label,split and one row per image"
        )
    if table.empty:
        raise ValueError(f"{csv} lists no images; add one row per image below the header")
    table = table.apply(lambda column: column.str.strip())
    # 2. Check the values, naming the first bad row
    for column in FILELIST_COLUMNS:
        _first_bad_row(csv, table, table[column] == "", column, "is empty; fill in that cell")
    _first_bad_row(
        csv, table, ~table["split"].isin(SPLITS), "split", f"is not one of {', '.join(SPLITS)}"
    )
    _first_bad_row(
        csv, table, table["path"].duplicated(), "path", "is listed twice; keep one row per image"
    )
    # 3. Class indices from integers or from sorted names
    labels = table["label"]
    if labels.str.fullmatch(r"-?\d+").all():
        indices = labels.astype(np.int64)
        _first_bad_row(csv, table, indices < 0, "label", "is negative; use class indices >= 0")
        classes = [str(index) for index in range(int(indices.max()) + 1)]
    else:
        classes = sorted(set(labels))
        indices = labels.map({name: index for index, name in enumerate(classes)})
    prefix = os.path.join(csv.parent, "")
    columns = table["path"].tolist(), indices.tolist(), table["split"].tolist()
    entries = [
        Entry(path if os.path.isabs(path) else prefix + path, int(label), split, path)
        for path, label, split in zip(*columns, strict=True)
    ]
    return entries, classes


def list_entries(data_config: Mapping) -> tuple[list[Entry], list[str]]:
    """The entries and class names of a `folder` or `filelist` data config.

    The keys: `source` (folder | filelist), `folder: {root, split_fractions, seed}` and
    `filelist: {path}`; missing optional keys take the defaults of `list_folder`.
    """
    source = data_config.get("source")
    if source == "folder":
        folder = data_config.get("folder") or {}
        if "root" not in folder:
            raise ValueError("data.source is folder: set data.folder.root")
        return list_folder(folder["root"], folder.get("split_fractions"), folder.get("seed", 0))
    if source == "filelist":
        filelist = data_config.get("filelist") or {}
        if "path" not in filelist:
            raise ValueError("data.source is filelist: set data.filelist.path")
        return read_filelist(filelist["path"])
    raise ValueError(f"data.source {source!r} lists no image files; use folder or filelist")


def check_splits(entries: Sequence[Entry], required: Sequence[str] = REQUIRED_SPLITS) -> None:
    """Stop when a required split has no image: a study fits on train and scores on test."""
    present = {entry.split for entry in entries}
    for split in required:
        if split not in present:
            raise ValueError(
                f"the data set has no {split} images (of {len(entries)}): mappings are fitted on "
                f"train and scored on test. Give it a {split} split: an image folder's "
                f"root/{split}/{{class}}/ folder, or data.folder.split_fractions for a folder "
                f"without split folders, or file-list rows with split {split}"
            )


@dataclasses.dataclass(frozen=True)
class Survey:
    """What planning knows of a data source before any job runs."""

    n_images: int  # the listed images (with data.on_error: skip the store may hold fewer)
    manifest: str | None  # the digest of the listed files (manifest_of); None unless asked for


def manifest_of(
    entries: Sequence[Entry],
    classes: Sequence[str] | None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> str:
    """The manifest digest of a source's entries (featlab.data.manifest): ids, classes, splits,
    and the files' sizes and modification times (`stats`, from file_stats; stat-ed when None)."""
    sizes, mtimes = stats if stats is not None else file_stats([entry.path for entry in entries])
    columns = ([entry.image_id for entry in entries], [entry.label for entry in entries])
    return manifest_digest(*columns, [entry.split for entry in entries], sizes, mtimes, classes)


def survey(
    data_config: Mapping, required_splits: Sequence[str] = (), manifest: bool = False
) -> Survey | None:
    """The number of images of a data config, and with `manifest` their manifest digest, for
    planning the workflow.

    Shapes: n_train + n_test, and no manifest (the scenes are rendered from the config). Folder
    and file list: the listed entries, or None where the folder or CSV is not on this machine.
    Each of `required_splits` must hold a listed image (`check_splits`), so that planning stops on
    a data set without, say, test images.
    """
    source = data_config.get("source", "shapes")
    if source == "shapes":
        settings = ShapesSettings(**(data_config.get("shapes") or {}))
        return Survey(settings.n_train + settings.n_test, None)
    if source not in SOURCES:
        raise ValueError(f"data.source {source!r}: choose one of {SOURCES}")
    location = (data_config.get(source) or {}).get("root" if source == "folder" else "path")
    if location is None or not os.path.exists(location):
        return None
    entries, classes = list_entries(data_config)
    check_splits(entries, required_splits)
    return Survey(len(entries), manifest_of(entries, classes) if manifest else None)


def count_images(data_config: Mapping, required_splits: Sequence[str] = ()) -> int | None:
    """The number of images of a data config (`survey`), None where the data are not here."""
    found = survey(data_config, required_splits)
    return None if found is None else found.n_images
