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

The package by concern: `listing` (entries, splits, `survey`), `decoding` (one file to a fitted
RGB array) and `writer` (`prepare_images`, the store).
"""

from featlab.data.sources.decoding import UnreadableImage, fit_image, load_image, resolve_size
from featlab.data.sources.listing import (
    DEFAULT_SPLIT_FRACTIONS,
    FILELIST_COLUMNS,
    IMAGE_EXTENSIONS,
    REQUIRED_SPLITS,
    SOURCES,
    Entry,
    Survey,
    check_splits,
    count_images,
    list_entries,
    list_folder,
    manifest_of,
    read_filelist,
    survey,
)
from featlab.data.sources.writer import ON_ERROR, prepare_images

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "FILELIST_COLUMNS",
    "IMAGE_EXTENSIONS",
    "ON_ERROR",
    "REQUIRED_SPLITS",
    "SOURCES",
    "Entry",
    "Survey",
    "UnreadableImage",
    "check_splits",
    "count_images",
    "fit_image",
    "list_entries",
    "list_folder",
    "load_image",
    "manifest_of",
    "prepare_images",
    "read_filelist",
    "resolve_size",
    "survey",
]
