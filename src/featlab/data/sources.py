"""Real image sources: an image folder or a CSV file list, decoded into an image store.

The original image store of a real study comes from one of two sources (the `data` config):

- `source: folder`: an image folder in ImageFolder layout, the class being the folder name.
  `data.folder.root` holds either `{train,val,test}/{class}/...` (the splits are the folders;
  any of them may be missing) or `{class}/...` (no split folders: each class is split at random,
  `data.folder.split_fractions` of it going to val and test and the rest to train, drawn with
  `data.folder.seed`).
- `source: filelist`: a CSV at `data.filelist.path` with the columns `path`, `label`, `split`,
  one row per image. Paths are relative to the CSV's folder unless absolute; a label is either a
  class index or a class name (names are numbered in sorted order).

Relative roots and paths in the config are relative to the working directory of the workflow.
Each image is decoded to RGB (`load_image`), resized and centre-cropped with timm's evaluation
geometry (`fit_image`) to `data.image_size` (None: the largest input size of the study's
backbones, `resolve_size`), and streamed into the store (`prepare_images`). An unreadable image
stops the job (`data.on_error: stop`) or is left out and listed (`skip`); `data.workers`
processes decode in parallel. The workflow plans with the digest of the listed files' manifest
(`survey`, featlab.data.manifest), so that a changed data set reruns its image store, and the
store records that digest and each image's file size and modification time.
"""

import collections
import contextlib
import dataclasses
import math
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from PIL import Image, ImageOps
from tqdm import tqdm

from featlab.data.images import SPLITS, chunk_length
from featlab.data.manifest import file_stats, manifest_digest
from featlab.data.shapes import ShapesSettings
from featlab.io import atomic_path
from featlab.workers import START_METHOD, main_script_hidden

SOURCES = ("shapes", "folder", "filelist")
ON_ERROR = ("stop", "skip")
REQUIRED_SPLITS = ("train", "test")  # the splits a study fits on and scores on
# The extensions of the formats Pillow reads that image data sets use; compared in lower case.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
DEFAULT_SPLIT_FRACTIONS = {"val": 0.0, "test": 0.2}  # train gets the rest
FILELIST_COLUMNS = ("path", "label", "split")
# Pillow modes whose values span 16 bits (mode I is how some formats open 16-bit grey).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
PENDING_PER_WORKER = 4  # decoded images waiting per worker: bounds the memory of a parallel run


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; names the file, the reason and what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: cannot read the image ({reason}); replace or remove the file, "
            "or set data.on_error: skip to leave unreadable images out"
        )

    def __reduce__(self):
        return type(self), (self.path, self.reason)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image of a source: where it is, its class index, its split and its stable id."""

    path: str  # the file to decode
    label: int  # class index
    split: str  # one of SPLITS
    image_id: str  # the path relative to the folder root or as written in the file list


# Listing (fast: directory entries and CSV text only, no image is opened)


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


# Decoding


def _to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of a decoded image (see load_image)."""
    if image.mode == "F":
        # Pillow would clip to 0-255: an image scaled to [0, 1] would be stored black.
        raise ValueError(
            "its pixels are 32-bit floats, whose range is not known; save it with 8 or 16 bits"
        )
    if image.mode in SIXTEEN_BIT_MODES:
        # Keep the high byte: Pillow's convert would clip every value above 255 to white.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 0xFFFF)  # (H, W)
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to RGB, upright.

    The EXIF orientation is applied. Transparent pixels (RGBA, LA, PA, and palette, grey or RGB
    images with a transparency entry) are composited on a white background; grey becomes RGB;
    16-bit images keep their high byte (0xABCD reads 0xAB); CMYK is converted by Pillow. Any
    failure (a missing, empty, truncated or non-image file, one past Pillow's decompression bomb
    limit, or one of 32-bit float pixels) raises UnreadableImage naming the file.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that a truncated file fails here
            return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as error:  # Pillow's decoders raise many types: report all of them as one
        raise UnreadableImage(path, f"{type(error).__name__}: {error}") from error


def fit_image(image: Image.Image, size: int, crop_pct: float = 1.0) -> np.ndarray:
    """timm's evaluation geometry: the shorter side resized (bicubic) to floor(size / crop_pct),
    then the centre size x size crop, with timm's and torchvision's rounding.

    Returns:
        uint8 (size, size, 3).
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct {crop_pct} must be in (0, 1]")
    # 1. Resize the shorter side, keeping the aspect ratio (the longer side is truncated)
    short = math.floor(size / crop_pct)
    width, height = image.size
    if width <= height:
        resized = (short, int(short * height / width))
    else:
        resized = (int(short * width / height), short)
    image = image.resize(resized, Image.Resampling.BICUBIC)
    # 2. Centre crop
    left = round((resized[0] - size) / 2)
    top = round((resized[1] - size) / 2)
    return np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"))


def resolve_size(
    size: int | None, crop_pct: float | None, models: Iterable[str]
) -> tuple[int, float]:
    """The image side and crop_pct of the store.

    An explicit size wins. Without one, the largest input size among the pretrained configs that
    timm holds for the model names (a name may carry a tag, "convnext_base.fb_in1k"; nothing is
    downloaded). An explicit crop_pct wins too; without one, the crop_pct of the model with the
    largest input size (timm's default 0.875 when no model is given).
    """
    import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

    import timm
    from timm.data import DEFAULT_CROP_PCT

    best = None  # (side, crop_pct) of the model with the largest input size
    for name in models:
        config = timm.get_pretrained_cfg(name)
        if config is None:
            raise ValueError(
                f"timm has no pretrained config for {name!r}; set data.image_size and data.crop_pct"
            )
        side = max(config.input_size[1:])
        if best is None or side > best[0]:
            best = (side, config.crop_pct or DEFAULT_CROP_PCT)
    if size is None and best is None:
        raise ValueError("no backbone to take the image size from; set data.image_size")
    if crop_pct is None:
        crop_pct = DEFAULT_CROP_PCT if best is None else best[1]
    return (best[0] if size is None else int(size)), float(crop_pct)


# Writing the store


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
