"""Edit operators: a mapping's edit E(x) = f(x) - x, magnified, truncated, or replaced by noise.

For an affine map f(x) = W x + b (ridge, the trained linear map) the edit is the affine map
E(x) = (W - I) x + b. Everything here works position by position on feature maps (N, C, H, W):

- `extrapolate`: x + alpha E(x). alpha = 1 is the mapping itself, alpha = 0 the original,
  alpha = 2 doubles the edit, a negative alpha reverses it.
- `EditDirections`: the edit cut to its leading k directions, P_k E(x), where P_k projects on
  the k leading left singular vectors of the edit's displacements E(x_i) over the positions of
  reference maps (uncentred: a constant shift is a direction too). P_k E is the best rank-k
  approximation of E on those positions in squared error; it is exact for an edit of rank k.
  A pure shift x + d has one direction, d / |d|, and its rank-1 truncation is itself.
- `matched_noise`: the control, Gaussian noise with, per image, the norm of the change it stands
  for (||alpha E(x)||).
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from featlab.mapping.closed_form import feature_rows, rows_to_maps

Function = Callable[[np.ndarray], np.ndarray]


def edit_of(mapping: Function) -> Function:
    """The edit E(x) = f(x) - x of a mapping f of feature maps (N, C, H, W)."""

    def edit(x: np.ndarray) -> np.ndarray:
        return np.asarray(mapping(x), dtype=np.float64) - x

    return edit


def extrapolate(x: np.ndarray, edit: np.ndarray, alpha: float) -> np.ndarray:
    """x + alpha E(x), given the edit's displacement E(x) of the same shape."""
    if x.shape != edit.shape:
        raise ValueError(f"features {x.shape} and their edit {edit.shape} differ in shape")
    return (x + alpha * edit).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class EditDirections:
    """The output directions of an edit, leading first, and the share of its energy each holds."""

    vectors: np.ndarray  # (C, C) columns: left singular vectors of the displacements
    energy: np.ndarray  # (C,) s_i^2 / sum s^2

    @classmethod
    def of(cls, displacements: np.ndarray) -> "EditDirections":
        """From the edit's displacements E(x) (N, C, H, W) of reference maps."""
        rows = feature_rows(displacements).astype(np.float64)  # (N*H*W, C)
        # The C x C second moment's eigenvectors are the left singular vectors of rows.T
        values, vectors = np.linalg.eigh(rows.T @ rows)
        order = np.argsort(values)[::-1]
        values = np.clip(values[order], 0.0, None)
        total = values.sum()
        energy = values / total if total > 0 else np.zeros_like(values)
        return cls(vectors=vectors[:, order], energy=energy)

    def truncate(self, edit: np.ndarray, k: int) -> np.ndarray:
        """P_k E(x): the displacements (N, C, H, W) projected on the k leading directions."""
        channels = self.vectors.shape[0]
        if not 1 <= k <= channels:
            raise ValueError(f"rank k={k} must be between 1 and the {channels} channels")
        n, _, h, w = edit.shape
        leading = self.vectors[:, :k]  # (C, k)
        rows = feature_rows(edit) @ leading @ leading.T  # (N*H*W, C)
        return rows_to_maps(rows, (n, h, w))


def matched_noise(edit: np.ndarray, alpha: float, seed: int) -> np.ndarray:
    """Gaussian noise (N, C, H, W) with, per image, the norm of alpha E(x)."""
    noise = np.random.default_rng(seed).standard_normal(edit.shape)
    axes = tuple(range(1, edit.ndim))
    target = abs(alpha) * np.sqrt(np.square(edit).sum(axis=axes))
    scale = target / np.maximum(np.sqrt(np.square(noise).sum(axis=axes)), 1e-12)
    return noise * scale.reshape(-1, *([1] * (edit.ndim - 1)))
