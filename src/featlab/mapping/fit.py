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
    feature_rows,
    solve_procrustes,
    solve_ridge,
)
from featlab.mapping.pairs import FeaturePair
from featlab.tables import metric_row

CLOSED_FORM = ("ridge", "procrustes", "ridge_relative", "procrustes_relative")
BASELINES = ("identity", "spatial")
# The trained mappings (featlab.mapping.models builds them); named here, without torch, so that
# a job that fits no trained mapping can tell the kinds apart without importing torch.
TRAINED = ("additive", "linear", "local_linear", "mlp", "cnn", "transformer")


@dataclasses.dataclass(frozen=True)
class ClosedFormSettings:
    """A closed-form mapping, solved from Gram matrices in one pass over the train split."""

    gamma: float = 1.0  # ridge penalty on the summed squared error (scikit-learn's alpha)
    block_images: int = 256  # images per streamed block
    # The relative fits (ridge_relative, procrustes_relative):
    norm_floor: float = 0.1  # position norms floored at this share of their image's RMS norm
    passes: int = 5  # trimmed passes after the first (bench/RESULTS.md: rotations need about 5)
    keep: float = 0.7  # share of each image's positions that a trimmed pass fits (median: 0.5)
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
    gram = None
    for x, y, _ in pair.blocks("train", settings.block_images):
        if gram is None:
            gram = GramAccumulator(x.shape[1], y.shape[1])
        gram.update_maps(x, y)
    if gram is None:
        raise ValueError("the train split is empty")
    return solve_ridge(gram, settings.gamma) if method == "ridge" else solve_procrustes(gram)


class TrainRows:
    """The train split of a pair as rows, one per position (`feature_rows`), in float32 blocks,
    each row with its direction weight (`direction_weights` of y, floored at `norm_floor`).

    Read once and kept in memory while it fits in `memory_gb` (each pass after the first then
    costs neither reading nor reshaping), else read again at every pass.
    """

    def __init__(self, pair: FeaturePair, settings: ClosedFormSettings) -> None:
        self.pair, self.settings = pair, settings
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self.kept is not None:
            yield from self.kept
            return
        kept, size, budget = [], 0, self.settings.memory_gb * 2**30
        for x, y, _ in self.pair.blocks("train", self.settings.block_images):
            weights = direction_weights(y, self.settings.norm_floor).reshape(-1)  # (N*H*W,)
            block = feature_rows(x), feature_rows(y), weights.astype(np.float32)
            size += sum(part.nbytes for part in block)
            if kept is not None and size <= budget:
                kept.append(block)
            else:
                kept = None
            yield block
        self.kept = kept


def accumulate_rows(
    rows: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    reweigh: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> GramAccumulator:
    """The weighted Gram sums of float32 (x, y, weights) row blocks, products in float32.

    `reweigh(x, y, weights)` replaces the weights of a block when given. The sums are float64
    (`GramAccumulator`); float32 products of rows shifted to their mean err by about 1e-6 of
    the sums, well under what a pass of reweighting changes, and take a third of the time.
    """
    gram = None
    for x, y, weights in rows:
        if gram is None:
            gram = GramAccumulator(x.shape[1], y.shape[1], products=np.float32)
        gram.update(x, y, weights if reweigh is None else reweigh(x, y, weights))
    if gram is None:
        raise ValueError("the train split is empty")
    return gram


def fit_relative(pair: FeaturePair, kind: str, settings: ClosedFormSettings) -> AffineMap:
    """An affine (ridge) or orthogonal (Procrustes) map fitted to the relative errors
    |r_i| / |y_i| of the positions where it fits best, for the median cosine.

    r_i = y_i - W x_i - b is the residual at position i and |y_i| the norm of the true
    manipulated vector there (floored, see `direction_weights`). Relative errors track
    direction, not norm (|r_i| / |y_i| bounds the angle between W x_i + b and y_i), so every
    position weighs alike, as in the per-position cosine. The FeatMap metric is each image's
    median over positions of that cosine, which the positions that no shared affine map fits
    (an edited object, content that a rotation moved) do not reach as long as they are fewer
    than half; least squares over all positions lets them pull the map away from the rest.
    So: a first pass minimises the squared relative errors of every position (weights
    1 / |y_i|^2); each of `settings.passes` trimmed passes then refits on each image's `keep`
    share of positions of smallest relative error under the previous map (least trimmed
    squares, per image), the others weighted 0.

    Args:
        pair: The feature pairs; their train split is read once if it fits in
            `settings.memory_gb`, else streamed 1 + `settings.passes` times.
        kind: "ridge" (affine; gamma as a ridge on standardised inputs) or "procrustes".
        settings: The penalty, the norm floor, the passes and the kept share.

    Returns:
        The map of the last pass.
    """
    if settings.passes < 0 or not 0 < settings.keep <= 1:
        raise ValueError(
            f"passes must be >= 0 and keep in (0, 1], got {settings.passes} and {settings.keep}"
        )
    positions = pair.shape[1] * pair.shape[2]
    kept = max(1, int(np.ceil(settings.keep * positions)))

    def solve(gram: GramAccumulator) -> AffineMap:
        if kind == "procrustes":
            return solve_procrustes(gram)
        return solve_ridge(gram, settings.gamma, standardised=True)

    # 1. Least squares of the relative errors of every position
    rows = TrainRows(pair, settings)
    affine = solve(accumulate_rows(rows))
    # 2. Trimmed passes: each image's best-fitting positions only
    for _ in range(settings.passes):
        weight_t = affine.weight.T.astype(np.float32)  # (c_in, c_out)
        bias = affine.bias.astype(np.float32)

        def trimmed(x, y, weights, weight_t=weight_t, bias=bias) -> np.ndarray:
            residual = np.sum(np.square(x @ weight_t + bias - y), axis=1)  # (n,)
            error = (residual * weights).reshape(-1, positions)  # (N, H*W), squared relative
            cut = np.partition(error, kept - 1, axis=1)[:, kept - 1 : kept]  # (N, 1)
            return np.where((error <= cut).reshape(-1), weights, 0.0)

        affine = solve(accumulate_rows(rows, trimmed))
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
