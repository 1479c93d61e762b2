"""Fit and evaluate mappings from original to manipulated feature maps of one layer."""

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from safetensors.numpy import save_file

from featlab import metrics
from featlab.geometry import apply_spatial
from featlab.io import atomic_path
from featlab.mapping.closed_form import (
    AffineMap,
    GramAccumulator,
    direction_weights,
    solve_procrustes,
    solve_ridge,
)
from featlab.mapping.pairs import FeaturePair
from featlab.tables import metric_row

CLOSED_FORM = ("ridge", "procrustes", "ridge_relative", "procrustes_relative")
BASELINES = ("identity", "spatial")


@dataclasses.dataclass(frozen=True)
class ClosedFormSettings:
    """A closed-form mapping, solved from Gram matrices in one pass over the train split."""

    gamma: float = 1.0  # ridge penalty on the summed squared error (scikit-learn's alpha)
    block_images: int = 256  # images per streamed block
    # The relative fits (ridge_relative, procrustes_relative):
    norm_floor: float = 0.1  # position norms floored at this share of their image's RMS norm
    passes: int = 2  # reweighted passes after the first (more gained under 0.001 where measured)
    robust_delta: float = 1e-3  # relative errors below this count as this in the reweighting
    memory_gb: float = 2.0  # keep the train split in memory between passes up to this size


def fit_closed_form(pair: FeaturePair, method: str, settings: ClosedFormSettings) -> AffineMap:
    """Solve a closed-form map from Gram matrices accumulated in fp64 over the train split.

    ridge and procrustes take one pass over the data, minimising the squared error in raw units.
    ridge_relative and procrustes_relative minimise the sum of relative errors instead (see
    `fit_relative`), in 1 + `settings.passes` passes.
    """
    if method not in CLOSED_FORM:
        raise ValueError(f"unknown closed-form mapping {method!r}; choose one of {CLOSED_FORM}")
    if method.endswith("_relative"):
        return fit_relative(pair, method.removesuffix("_relative"), settings)
    gram = accumulate((x, y) for x, y, _ in pair.blocks("train", settings.block_images))
    return solve_ridge(gram, settings.gamma) if method == "ridge" else solve_procrustes(gram)


class TrainBlocks:
    """The train split of a pair in blocks of images, read once and kept in memory while it fits
    in `memory_gb` (each pass after the first then costs no reading), else read at every pass."""

    def __init__(self, pair: FeaturePair, block_images: int, memory_gb: float) -> None:
        self.pair, self.block_images, self.budget = pair, block_images, memory_gb * 2**30
        self.kept: list[tuple[np.ndarray, np.ndarray]] | None = None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.kept is not None:
            yield from self.kept
            return
        kept, size = [], 0
        for x, y, _ in self.pair.blocks("train", self.block_images):
            size += x.nbytes + y.nbytes
            if kept is not None and size <= self.budget:
                kept.append((x, y))
            else:
                kept = None
            yield x, y
        self.kept = kept


def accumulate(
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    weigh: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> GramAccumulator:
    """The Gram sums of (x, y) blocks, each position weighted by `weigh(x, y)` (N, H, W)."""
    gram = None
    for x, y in blocks:
        if gram is None:
            gram = GramAccumulator(x.shape[1], y.shape[1])
        gram.update_maps(x, y, None if weigh is None else weigh(x, y))
    if gram is None:
        raise ValueError("the train split is empty")
    return gram


def fit_relative(pair: FeaturePair, kind: str, settings: ClosedFormSettings) -> AffineMap:
    """An affine (ridge) or orthogonal (Procrustes) map that minimises sum_i |r_i| / |y_i|.

    r_i = y_i - W x_i - b is the residual at position i and |y_i| the norm of the true
    manipulated vector there (floored, see `direction_weights`). Relative errors track
    direction, not norm (|r_i| / |y_i| bounds the angle between W x_i + b and y_i), so every
    position weighs alike, as in the per-position cosine; and their plain sum, not the sum of
    their squares, lets the positions that no shared affine map fits (an edited object among a
    background that stays) cost no more than their share, as in the per-position median.
    Solved by iteratively reweighted least squares: the first pass minimises the squared
    relative errors (weights 1 / |y_i|^2), each further pass divides those weights by the
    relative error of the previous pass's map (at least `robust_delta`).

    Args:
        pair: The feature pairs; their train split is read once if it fits in
            `settings.memory_gb`, else streamed 1 + `settings.passes` times.
        kind: "ridge" (affine; gamma as a ridge on standardised inputs) or "procrustes".
        settings: The penalty, the norm floor, the passes and the smallest relative error.

    Returns:
        The map of the last pass.
    """
    if settings.passes < 0 or settings.robust_delta <= 0:
        raise ValueError(
            f"passes must be >= 0 and robust_delta > 0, got {settings.passes} and "
            f"{settings.robust_delta}"
        )

    def solve(gram: GramAccumulator) -> AffineMap:
        if kind == "procrustes":
            return solve_procrustes(gram)
        return solve_ridge(gram, settings.gamma, standardised=True)

    def relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return direction_weights(y, settings.norm_floor)

    # 1. Least squares of the relative errors
    blocks = TrainBlocks(pair, settings.block_images, settings.memory_gb)
    affine = solve(accumulate(blocks, relative))
    # 2. Reweighted passes: the sum of relative errors
    for _ in range(settings.passes):

        def reweighted(x: np.ndarray, y: np.ndarray, previous: AffineMap = affine) -> np.ndarray:
            weights = relative(x, y)  # (N, H, W)
            residual = np.sum(np.square(previous.apply_maps(x) - y), axis=1)  # (N, H, W)
            error = np.sqrt(residual * weights)  # relative error of the previous map
            return weights / np.maximum(error, settings.robust_delta)

        affine = solve(accumulate(blocks, reweighted))
    return affine


def evaluate(
    pair: FeaturePair, apply: Callable[[np.ndarray], np.ndarray], base: dict
) -> list[dict]:
    """Score mapped against true manipulated features on each split: cosine, masked cosine, MSE."""
    rows = []
    for split in ("train", "val", "test"):
        scores: dict[str, list[np.ndarray]] = {"cosine_median": [], "cosine_masked": [], "mse": []}
        for x, y, chunk in pair.blocks(split, 256):
            mapped = apply(x)
            scores["cosine_median"].append(metrics.cosine_median(mapped, y))
            scores["mse"].append(metrics.mse(mapped, y))
            if pair.images.masks is not None:
                masks = pair.images.masks.get_orthogonal_selection((chunk,))
                grid_masks = metrics.pool_mask(masks, y.shape[-2:])
                scores["cosine_masked"].append(metrics.cosine_masked(mapped, y, grid_masks))
        for metric, values in scores.items():
            if values:
                # A test image that did not change has no masked positions (NaN by definition).
                undefined_ok = metric == "cosine_masked"
                value, n = metrics.summarise(np.concatenate(values), undefined_ok)
                rows.append(metric_row(**base, split=split, metric=metric, value=value, n=n))
    return rows


def baseline(name: str, spatial_op: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The identity, or the manipulation's exact spatial op applied to the feature grid."""
    if name == "identity":
        return lambda x: x
    if name == "spatial":
        if spatial_op is None:
            raise ValueError("the spatial baseline needs a geometric manipulation (rotate or flip)")
        return lambda x: apply_spatial(x, spatial_op, axes=(-2, -1))
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def save_affine(path: str | os.PathLike, affine: AffineMap, config: dict) -> None:
    """Save an affine map as safetensors (weight, bias) with its settings in the metadata."""
    tensors = {
        "weight": np.ascontiguousarray(affine.weight),
        "bias": np.ascontiguousarray(affine.bias),
    }
    metadata = {key: str(value) for key, value in config.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
