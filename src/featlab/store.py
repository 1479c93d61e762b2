"""Feature stores: `features/{backbone}/{imageset}.zarr`, one (N, C, H, W) array per layer.

Arrays are named after the timm module, hold float16 unless configured, and are chunked along N
in chunks of at least 1 MB. Token models keep their class and register tokens in
`prefix_tokens/{layer}` (N, P, C). `logits` holds the classifier output. Attributes record the
provenance: featlab version, timm model and pretrained config, weights sha256, preprocessing, and
layer shapes.
"""

import os
from pathlib import Path

import numpy as np
import zarr

from featlab.data.images import chunk_length
from featlab.io import atomic_path

FLOAT16_MAX = float(np.finfo(np.float16).max)


class FeatureStoreWriter:
    """Append feature batches in image order; writes whole chunks, renames into place on close.

    Use as a context manager: the store appears at `path` only when every image was written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_images: int,
        layer_shapes: dict[str, tuple[int, ...]],
        n_logits: int,
        dtype: str = "float16",
        prefix_shapes: dict[str, tuple[int, int]] | None = None,
        attrs: dict | None = None,
    ):
        self.path = Path(path)
        self.n_images = n_images
        self.dtype = np.dtype(dtype)
        self.shapes = {name: tuple(shape) for name, shape in layer_shapes.items()}
        self.shapes["logits"] = (n_logits,)
        for layer, shape in (prefix_shapes or {}).items():
            self.shapes[f"prefix_tokens/{layer}"] = tuple(shape)
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
            self.arrays[name] = self.group.create_array(
                name, shape=(self.n_images, *shape), chunks=(rows, *shape), dtype=dtype
            )
        return self

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Add the next images' arrays (one entry per layer, `logits`, and prefix tokens)."""
        sizes = {len(values) for values in batch.values()}
        if set(batch) != set(self.shapes) or len(sizes) != 1:
            raise ValueError(
                f"a batch needs {sorted(self.shapes)} with one length, got {sorted(batch)}"
            )
        for name, values in batch.items():
            if values.shape[1:] != self.shapes[name]:
                raise ValueError(f"{name}: expected (B, {self.shapes[name]}), got {values.shape}")
            self._check_finite(name, values)
            self._buffer[name].append(values)
        self._buffered += sizes.pop()
        self._flush(final=False)

    def _check_finite(self, name: str, values: np.ndarray) -> None:
        first = self._written + self._buffered
        if not np.isfinite(values).all():
            bad = first + int(np.argwhere(~np.isfinite(values))[0][0])
            raise ValueError(
                f"{name}: NaN or Inf features at image {bad}; check the model and input"
            )
        peak = float(np.abs(values).max()) if values.size else 0.0
        if name != "logits" and self.dtype == np.float16 and peak > FLOAT16_MAX:
            raise OverflowError(
                f"{name}: |feature| reaches {peak:.4g}, beyond float16's {FLOAT16_MAX}; "
                "set extraction.dtype to float32 in the config"
            )

    def _flush(self, final: bool) -> None:
        rows = min(array.chunks[0] for array in self.arrays.values())
        while self._buffered >= rows or (final and self._buffered):
            take = self._buffered if final else rows
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


class FeatureStore:
    """Read access to a feature store."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a feature store (no zarr.json); rerun extraction"
            )
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs = dict(self.group.attrs)
        self.layers = list(self.attrs["layers"])
        self.logits = self.group["logits"]

    def __len__(self) -> int:
        return self.logits.shape[0]

    def layer(self, name: str) -> zarr.Array:
        if name not in self.layers:
            raise KeyError(f"{self.path} has no layer {name!r}; it holds {self.layers}")
        return self.group[name]

    def read(self, layer: str, indices: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """Load a layer's features (optionally a subset of images, in the given order)."""
        array = self.layer(layer)
        values = array[:] if indices is None else array.get_orthogonal_selection((indices,))
        return values.astype(dtype, copy=False)
