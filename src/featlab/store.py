"""Feature stores: `features/{backbone}/{imageset}.zarr`, one (N, C, H, W) array per layer.

Arrays are named after the timm module, hold float16 unless configured, and are chunked along N
in chunks of at least 1 MB (grouped into Zarr shards when configured). Token models keep their
class and register tokens apart from the grid, in `class_tokens/{layer}` (N, 1, C) and
`register_tokens/{layer}` (N, R, C). `logits` holds the classifier output. Attributes record the
provenance: featlab version, timm model and pretrained config, weights sha256, preprocessing, and
layer shapes.

A large image set is extracted in image shards, each its own complete store of a contiguous
range of images (`image_range` in its attributes). `gather_shards` then writes the store at the
set's path as a small manifest of its shards; `FeatureStore` reads a manifest exactly as it reads
a single store, so the stages after extraction never see the shards.
"""

import math
import os
import warnings
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import ZarrUserWarning

from featlab.data.images import chunk_length
from featlab.io import atomic_path

FLOAT16_MAX = float(np.finfo(np.float16).max)
TOKEN_KINDS = ("class_tokens", "register_tokens")
# zstd: Zarr's default codec, 8% smaller Gaussian float16 features and 41% after a ReLU, written
# 1.2-3.4x slower than raw chunks (none) in bench/RESULTS.md (bench_extract_pipeline.py).
COMPRESSIONS = {"zstd": "auto", "none": None}


class FeatureStoreWriter:
    """Append feature batches in image order; writes whole chunks, renames into place on close.

    Use as a context manager: the store appears at `path` only when every image was written.
    With `shard_chunks` set, the arrays use Zarr's sharding codec: that many chunks along N in one
    shard file, and the writer writes whole shards, so each shard has one writer. `compression`
    is zstd (Zarr's default codec) or none.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_images: int,
        layer_shapes: dict[str, tuple[int, ...]],
        n_logits: int,
        dtype: str = "float16",
        token_shapes: dict[str, tuple[int, int]] | None = None,
        attrs: dict | None = None,
        shard_chunks: int | None = None,
        compression: str = "zstd",
    ):
        self.path = Path(path)
        self.n_images = n_images
        self.dtype = np.dtype(dtype)
        self.shard_chunks = shard_chunks
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression={compression!r}: choose one of {list(COMPRESSIONS)}")
        self.compressors = COMPRESSIONS[compression]
        self.shapes = {name: tuple(shape) for name, shape in layer_shapes.items()}
        self.shapes["logits"] = (n_logits,)
        for name, shape in (token_shapes or {}).items():
            if name.split("/")[0] not in TOKEN_KINDS:
                raise ValueError(f"token array {name!r} must start with one of {TOKEN_KINDS}")
            self.shapes[name] = tuple(shape)
        self.attrs = {**(attrs or {}), "layers": {k: list(v) for k, v in layer_shapes.items()}}
        self._buffer: dict[str, list[np.ndarray]] = {name: [] for name in self.shapes}
        self._buffered = 0
        self._written = 0

    def __enter__(self) -> "FeatureStoreWriter":
        self._atomic = atomic_path(self.path)
        temporary = self._atomic.__enter__()
        self.group = zarr.open_group(temporary, mode="w")
        self.group.attrs.update(self.attrs)
        self.arrays = {}
        for name, shape in self.shapes.items():
            dtype = np.float32 if name == "logits" else self.dtype
            rows = chunk_length(int(np.prod(shape)) * np.dtype(dtype).itemsize, self.n_images)
            shards = None
            if self.shard_chunks:
                shards = (min(rows * self.shard_chunks, max(self.n_images, 1)), *shape)
                rows = min(rows, shards[0])
            self.arrays[name] = self.group.create_array(
                name,
                shape=(self.n_images, *shape),
                chunks=(rows, *shape),
                shards=shards,
                dtype=dtype,
                compressors=self.compressors,
            )
        return self

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Add the next images' arrays (one entry per layer, `logits`, and token arrays)."""
        sizes = {len(values) for values in batch.values()}
        if set(batch) != set(self.shapes) or len(sizes) != 1:
            raise ValueError(
                f"a batch needs {sorted(self.shapes)} with one length, got {sorted(batch)}"
            )
        for name, values in batch.items():
            if values.shape[1:] != self.shapes[name]:
                raise ValueError(f"{name}: expected (B, {self.shapes[name]}), got {values.shape}")
            self._check_finite(name, values)
            self._buffer[name].append(_as_dtype(values, self.arrays[name].dtype))
        self._buffered += sizes.pop()
        self._flush(final=False)

    def _check_finite(self, name: str, values: np.ndarray) -> None:
        if not values.size:
            return
        if values.dtype == np.float16:
            # All exponent bits set is Inf or NaN: integer ops, far faster than float16 math.
            finite = not ((values.view(np.uint16) & 0x7C00) == 0x7C00).any()
        else:
            finite = bool(np.isfinite(values).all())
        if not finite:
            bad = self._written + self._buffered + int(np.argwhere(~np.isfinite(values))[0][0])
            raise ValueError(
                f"{name}: NaN or Inf features at image {bad}; check the model and input"
            )
        if values.dtype == np.float16:
            return  # finite float16 values are in float16's range
        peak = max(float(values.max()), -float(values.min()))
        if name != "logits" and self.dtype == np.float16 and peak > FLOAT16_MAX:
            raise OverflowError(
                f"{name}: |feature| reaches {peak:.4g}, beyond float16's {FLOAT16_MAX}; "
                "set extraction.dtype to float32 in the config"
            )

    def _flush(self, final: bool) -> None:
        # The write unit: the largest chunk (or Zarr shard), so every write covers whole ones.
        rows = max((array.shards or array.chunks)[0] for array in self.arrays.values())
        while self._buffered >= rows or (final and self._buffered):
            take = min(self._buffered, rows)
            for name, parts in self._buffer.items():
                block = np.concatenate(parts)
                self.arrays[name][self._written : self._written + take] = block[:take]
                self._buffer[name] = [block[take:]]
            self._written += take
            self._buffered -= take

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            self._flush(final=True)
            if self._written != self.n_images:
                error = ValueError(f"{self.path}: wrote {self._written} of {self.n_images} images")
                self._atomic.__exit__(ValueError, error, None)  # removes the temporary store
                raise error
        return self._atomic.__exit__(kind, value, traceback)


def _as_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`values` in the stored dtype; torch converts float32 to float16 several times faster
    than numpy, whose conversion would take most of a store's write time."""
    if values.dtype == dtype:
        return values
    if values.dtype == np.float32 and dtype == np.float16:
        import torch  # here: a job that only reads stores (a closed-form fit) never imports torch

        return torch.from_numpy(np.ascontiguousarray(values)).to(torch.float16).numpy()
    return values.astype(dtype)


class ShardedArray:
    """One array of every shard store, read as a single (N, ...) array along N.

    It offers what the stages use of a Zarr array: `shape`, `dtype`, `len`, slicing along N and
    `get_orthogonal_selection((indices,))` with indices in any order.
    """

    def __init__(self, parts: list[zarr.Array]):
        self.parts = parts
        self.offsets = np.cumsum([0, *(part.shape[0] for part in parts)])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if key is Ellipsis:
            key = slice(None)
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a sharded array is read by a slice along N or by indices")
        start, stop, _ = key.indices(len(self))
        return self.get_orthogonal_selection((np.arange(start, stop),))

    def get_orthogonal_selection(self, selection: tuple) -> np.ndarray:
        indices = np.asarray(selection[0], dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} images")
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, indices, side="right") - 1
        for k, part in enumerate(self.parts):
            chosen = np.flatnonzero(shard == k)
            if len(chosen):
                local = indices[chosen] - self.offsets[k]
                # Contiguous runs read as slices: whole chunks instead of a fancy selection.
                if np.array_equal(local, np.arange(local[0], local[0] + len(local))):
                    out[chosen] = part[int(local[0]) : int(local[0]) + len(local)]
                else:
                    out[chosen] = part.get_orthogonal_selection((local,))
        return out


def gather_shards(
    path: str | os.PathLike, shards: list[str | os.PathLike], n_images: int | None = None
) -> None:
    """Write the store at `path` as a manifest of shard stores that cover its images in order.

    The shards must hold the same arrays and shapes from the same model and preprocessing, and
    their image ranges must follow each other from 0 (to `n_images`, when given). Paths are
    stored relative to the manifest's folder, so a results folder can move.
    """
    path = Path(path)
    if not shards:
        raise ValueError(f"{path}: no shard stores to gather")
    opened = [FeatureStore(shard) for shard in shards]
    first = opened[0].attrs
    expected = 0
    for shard in opened:
        start, stop = shard.attrs.get("image_range", (0, len(shard)))
        if start != expected or stop - start != len(shard):
            raise ValueError(
                f"{shard.path} holds images [{start}, {stop}) but the next shard must start at "
                f"{expected}; rerun its extraction"
            )
        expected = stop
        for key in ("layers", "model", "spec", "preprocessing", "weights_sha256"):
            if shard.attrs.get(key) != first.get(key):
                raise ValueError(
                    f"{shard.path} differs from {opened[0].path} in {key!r}; rerun extraction"
                )
        if shard.arrays != opened[0].arrays:
            raise ValueError(f"{shard.path} holds other arrays than {opened[0].path}")
    if n_images is not None and expected != n_images:
        raise ValueError(f"the shards hold {expected} images of {n_images}; rerun extraction")
    attrs = {key: value for key, value in first.items() if key != "image_range"}
    attrs["shards"] = [os.path.relpath(Path(shard), path.parent) for shard in shards]
    attrs["shard_images"] = [len(shard) for shard in opened]
    with atomic_path(path) as temporary:
        zarr.open_group(temporary, mode="w").attrs.update(attrs)


class FeatureStore:
    """Read access to a feature store, a single store or a manifest of shard stores alike."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a feature store (no zarr.json); rerun extraction"
            )
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs = dict(self.group.attrs)
        self.layers = list(self.attrs["layers"])
        self._shards = None
        if "shards" in self.attrs:
            self._shards = [
                FeatureStore(self.path.parent / shard).group for shard in self.attrs["shards"]
            ]
            self.arrays = sorted(_array_names(self._shards[0]))
        else:
            self.arrays = sorted(_array_names(self.group))
        self._arrays: dict[str, zarr.Array | ShardedArray | np.ndarray] = {}
        self.logits = self.array("logits")

    def __len__(self) -> int:
        return self.logits.shape[0]

    def array(self, name: str) -> zarr.Array | ShardedArray | np.ndarray:
        """Any array of the store by name, read across its shards; opened once (each opening reads
        the array's metadata from disk)."""
        if name not in self._arrays:
            if self._shards is None:
                self._arrays[name] = self.group[name]
            else:
                self._arrays[name] = ShardedArray([shard[name] for shard in self._shards])
        return self._arrays[name]

    def hold(self, name: str, max_bytes: float) -> bool:
        """Read an array into memory once, as stored, where it takes at most `max_bytes`: later
        reads index memory instead of Zarr (a job that fits several mappings of one layer reads
        the disk once). Returns whether it did."""
        array = self.array(name)
        if isinstance(array, np.ndarray):  # held already
            return True
        if math.prod(array.shape) * array.dtype.itemsize > max_bytes:
            return False
        self._arrays[name] = array[:]
        return True

    def layer(self, name: str) -> zarr.Array | ShardedArray | np.ndarray:
        if name not in self.layers:
            raise KeyError(f"{self.path} has no layer {name!r}; it holds {self.layers}")
        return self.array(name)

    def read(self, layer: str, indices: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """Load a layer's features (optionally a subset of images, in the given order)."""
        return _select(self.layer(layer), indices).astype(dtype, copy=False)

    def prefix_tokens(self, layer: str, indices: np.ndarray | None = None) -> np.ndarray | None:
        """The class then register tokens (N, P, C) of a token model's layer, as the model
        orders them in front of the patch tokens; None when the layer has none."""
        names = [f"{kind}/{layer}" for kind in TOKEN_KINDS if f"{kind}/{layer}" in self.arrays]
        if not names:
            return None
        parts = [_select(self.array(name), indices).astype(np.float32) for name in names]
        return np.concatenate(parts, axis=1)


def _select(array, indices: np.ndarray | None) -> np.ndarray:
    if indices is None:
        return array[:]
    if isinstance(array, np.ndarray):  # held in memory (FeatureStore.hold)
        return array[indices]
    return array.get_orthogonal_selection((indices,))


def _array_names(group: zarr.Group, prefix: str = "") -> list[str]:
    """Names of every array in a group and its subgroups, as paths ("class_tokens/blocks.1")."""
    with warnings.catch_warnings():
        # Snakemake marks a directory output with this file; it is no part of the store.
        warnings.filterwarnings("ignore", "Object at .snakemake_timestamp", ZarrUserWarning)
        names = [f"{prefix}{name}" for name in group.array_keys()]
        children = list(group.groups())
    for name, child in children:
        names += _array_names(child, f"{prefix}{name}/")
    return names
