"""Closed-form mappings between feature spaces: affine ridge regression and orthogonal Procrustes.

Both treat every position of every feature map as one sample: a C_in-vector x that should map to
the C_out-vector y at the same position of the other map, through one affine map shared by all
positions (a 1x1 convolution with bias), y ≈ W x + b. Both need only second moments of the data,
so `GramAccumulator` streams blocks of rows once and the solvers work from its sums; a data set
far larger than memory costs one pass.

Plain least squares minimises the squared error in raw feature units, which the positions of
large norm dominate; the FeatMap metric is the median over positions of the cosine, which counts
every position alike. Weighting each row by its inverse squared norm (`direction_weights`) turns
the squared error into a relative one, so that the fit tracks direction rather than norm at
every position; the sums stay second moments, weighted.
"""

import dataclasses
import warnings

import numpy as np


def feature_rows(maps: np.ndarray) -> np.ndarray:
    """Turn feature maps into rows, one per position, so positions become samples.

    Args:
        maps: Feature maps (N, C, H, W).

    Returns:
        Array (N*H*W, C); row n*H*W + h*W + w is maps[n, :, h, w].
    """
    if maps.ndim != 4:
        raise ValueError(f"feature maps must be (N, C, H, W), got shape {maps.shape}")
    # (N, C, H, W) -> (N, H, W, C) -> (N*H*W, C)
    return maps.transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])


def rows_to_maps(rows: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Inverse of `feature_rows`: rows back to feature maps.

    Args:
        rows: Array (N*H*W, C).
        grid: (N, H, W) of the maps the rows came from.

    Returns:
        Array (N, C, H, W).
    """
    n, h, w = grid
    if rows.ndim != 2 or rows.shape[0] != n * h * w:
        raise ValueError(f"rows must be (N*H*W, C) = ({n * h * w}, C), got shape {rows.shape}")
    # (N*H*W, C) -> (N, H, W, C) -> (N, C, H, W)
    return rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


@dataclasses.dataclass
class AffineMap:
    """An affine map y = W x + b applied to every feature vector: y ≈ x @ weight.T + bias."""

    weight: np.ndarray  # (c_out, c_in), float64
    bias: np.ndarray  # (c_out,), float64

    @property
    def c_in(self) -> int:
        return self.weight.shape[1]

    @property
    def c_out(self) -> int:
        return self.weight.shape[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map rows (n, c_in) to rows (n, c_out), computed in float64.

        The result keeps the input's float dtype (float64 for integer input).
        """
        if x.ndim != 2 or x.shape[1] != self.c_in:
            raise ValueError(f"rows must be (n, c_in={self.c_in}), got shape {x.shape}")
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        y = np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias
        return y.astype(out_dtype, copy=False)

    def apply_maps(self, features: np.ndarray) -> np.ndarray:
        """Map feature maps (N, c_in, H, W) to (N, c_out, H, W), position by position."""
        if features.ndim != 4:
            raise ValueError(f"feature maps must be (N, C, H, W), got shape {features.shape}")
        n, _, h, w = features.shape
        return rows_to_maps(self.apply(feature_rows(features)), (n, h, w))


def direction_weights(maps: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Per-position weights 1 / |v|^2 that make a squared error relative to the norm of v.

    A residual r at a position of norm |v| then counts |r|^2 / |v|^2, which bounds the position's
    1 - cosine between v + r and v from above (for small r, 1 - cos ≈ |r_perp|^2 / (2 |v|^2)):
    every position weighs alike, whatever its norm, as in the per-position median cosine. Norms
    are floored at `floor` times the root-mean-square norm of their image, so that a nearly zero
    vector (whose direction is noise) cannot take the fit over; an image of zero vectors gets
    weight 0.

    Args:
        maps: Feature maps (N, C, H, W) whose positions' norms set the weights.
        floor: The norm floor, as a share of each image's root-mean-square position norm.

    Returns:
        Float64 array (N, H, W).
    """
    if maps.ndim != 4:
        raise ValueError(f"feature maps must be (N, C, H, W), got shape {maps.shape}")
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, got {floor}")
    norms = np.linalg.norm(np.asarray(maps, dtype=np.float64), axis=1)  # (N, H, W)
    rms = np.sqrt(np.mean(np.square(norms), axis=(1, 2), keepdims=True))  # (N, 1, 1)
    floored = np.maximum(norms, floor * rms)
    weights = np.zeros_like(floored)
    np.divide(1.0, np.square(floored), out=weights, where=floored > 0)
    return weights


class GramAccumulator:
    """Streams pairs of row blocks and keeps the sums an affine least-squares fit needs.

    Rows are accumulated in float64 after subtracting a fixed reference offset (the mean of the
    first block): centring with X^T X - n m m^T cancels catastrophically when the channel means are
    large against their spread, which shifting by a rough mean first avoids. Centred statistics do
    not depend on the offset, so the fit is the same as from the raw rows. Rows may carry weights
    (a weighted least-squares fit); every sum is then weighted, and unweighted rows count 1.

    Attributes:
        c_in: Channels of x.
        c_out: Channels of y.
        n: Rows of positive weight seen so far (rows of weight 0 add nothing and are skipped).
        seen: Rows given so far, those of weight 0 included.
        weight_sum: Sum of the rows' weights (n when no weights were given).
        xtx: (c_in, c_in) weighted sum of outer products of the shifted x rows.
        xty: (c_in, c_out) weighted sum of outer products of the shifted x and y rows.
        x_sum: (c_in,) weighted column sums of the shifted x rows.
        y_sum: (c_out,) weighted column sums of the shifted y rows.
        x_shift: (c_in,) offset subtracted from x (set by the first non-empty block).
        y_shift: (c_out,) offset subtracted from y.
        products: The float type a block's products are computed in (the sums are float64):
            float64 by default; float32 for speed where an error of about 1e-6 of the sums
            does not matter.
    """

    def __init__(self, c_in: int, c_out: int, products: type = np.float64) -> None:
        if c_in < 1 or c_out < 1:
            raise ValueError(f"channel counts must be positive, got c_in={c_in}, c_out={c_out}")
        self.c_in, self.c_out, self.products = c_in, c_out, products
        self.n = 0
        self.seen = 0
        self.weight_sum = 0.0
        self.xtx = np.zeros((c_in, c_in))
        self.xty = np.zeros((c_in, c_out))
        self.x_sum = np.zeros(c_in)
        self.y_sum = np.zeros(c_out)
        self.x_shift: np.ndarray | None = None
        self.y_shift: np.ndarray | None = None

    def update(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add a block of paired rows: x (n, c_in) maps to y (n, c_out), with optional weights
        (n,), finite and >= 0."""
        # 1. Check inputs
        if x.ndim != 2 or x.shape[1] != self.c_in:
            raise ValueError(f"x must be (n, c_in={self.c_in}), got shape {x.shape}")
        if y.ndim != 2 or y.shape[1] != self.c_out:
            raise ValueError(f"y must be (n, c_out={self.c_out}), got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y differ in rows: {x.shape[0]} vs {y.shape[0]}")
        if weights is not None and weights.shape != (x.shape[0],):
            raise ValueError(f"weights must be ({x.shape[0]},), one per row, got {weights.shape}")
        if x.shape[0] == 0:
            return
        self.seen += x.shape[0]
        x = np.asarray(x, dtype=self.products)
        y = np.asarray(y, dtype=self.products)
        for name, rows in (("x", x), ("y", y)):
            if not np.isfinite(rows).all():
                raise ValueError(f"{name} contains NaN or Inf")
        if weights is not None and not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError("weights must be finite and >= 0")
        if weights is not None and not weights.all():  # rows of weight 0 add nothing: skip them
            counted = weights > 0
            x, y, weights = x[counted], y[counted], weights[counted]
            if not len(x):
                return
        # 2. Fix the reference offset on the first block
        if self.x_shift is None:
            self.x_shift = x.mean(axis=0, dtype=np.float64)
            self.y_shift = y.mean(axis=0, dtype=np.float64)
        # 3. Accumulate the (weighted) sums of the shifted rows
        x = x - self.x_shift.astype(self.products)
        y = y - self.y_shift.astype(self.products)
        if weights is not None:
            weights = weights.astype(self.products, copy=False)
        weighted = x if weights is None else x * weights[:, None]
        self.n += x.shape[0]
        self.weight_sum += x.shape[0] if weights is None else float(weights.sum(dtype=np.float64))
        self.xtx += weighted.T @ x
        self.xty += weighted.T @ y
        self.x_sum += weighted.sum(axis=0, dtype=np.float64)
        self.y_sum += y.sum(axis=0, dtype=np.float64) if weights is None else weights @ y

    def update_maps(
        self, x_maps: np.ndarray, y_maps: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        """Add paired feature maps (N, c_in, H, W) and (N, c_out, H, W), each position a row,
        with optional weights (N, H, W), one per position."""
        if x_maps.ndim != 4 or y_maps.ndim != 4 or x_maps.shape[2:] != y_maps.shape[2:]:
            raise ValueError(
                f"feature maps must be (N, C, H, W) on one grid, got {x_maps.shape} vs "
                f"{y_maps.shape}"
            )
        if weights is not None:
            expected = (x_maps.shape[0], *x_maps.shape[2:])
            if weights.shape != expected:
                raise ValueError(f"weights must be (N, H, W) = {expected}, got {weights.shape}")
            weights = weights.reshape(-1)  # (N, H, W) -> (N*H*W,), the order of feature_rows
        self.update(feature_rows(x_maps), feature_rows(y_maps), weights)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """(Weighted) column means of x (c_in,) and y (c_out,) over all rows seen."""
        self._check_not_empty()
        return (
            self.x_shift + self.x_sum / self.weight_sum,
            self.y_shift + self.y_sum / self.weight_sum,
        )

    def centred(self) -> tuple[np.ndarray, np.ndarray]:
        """(Weighted) centred scatter matrices Sxx_c (c_in, c_in) and Sxy_c (c_in, c_out)."""
        self._check_not_empty()
        sxx = self.xtx - np.outer(self.x_sum, self.x_sum) / self.weight_sum
        sxy = self.xty - np.outer(self.x_sum, self.y_sum) / self.weight_sum
        return sxx, sxy

    def _check_not_empty(self) -> None:
        if self.seen == 0:
            raise ValueError("no rows accumulated; call update() first")
        if self.n == 0 or self.weight_sum <= 0:
            raise ValueError("every row accumulated so far has weight 0")


def solve_ridge(acc: GramAccumulator, gamma: float = 1.0, standardised: bool = False) -> AffineMap:
    """Affine ridge regression: minimise sum |y - W x - b|^2 + gamma |W|_F^2 (b not penalised).

    Solved through the centred normal equations, W^T = (Sxx_c + gamma I)^-1 Sxy_c and
    b = mean(y) - W mean(x), by Cholesky. Where that matrix is singular or too ill-conditioned
    (gamma = 0 with collinear channels), falls back to the least-squares (minimum-norm) solution.
    Weighted sums (rows with weights) give the weighted fit.

    Args:
        acc: Sums of the training rows.
        gamma: Ridge penalty on the weight, in units of the summed squared error (not per row).
        standardised: Penalise W as a ridge on per-channel standardised inputs would, with
            gamma (diag Sxx_c / n) in the place of gamma I: the fit then does not depend on the
            scale of any input channel, nor on the scale of the row weights.

    Returns:
        The fitted map.
    """
    if not (np.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
    sxx, sxy = acc.centred()
    mean_x, mean_y = acc.means()
    penalty = np.diag(sxx) / acc.n if standardised else np.ones(acc.c_in)
    system = sxx + gamma * np.diag(penalty)
    import scipy.linalg  # here: trained and baseline maps import this module but never solve

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            weight_t = scipy.linalg.solve(system, sxy, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning):
        weight_t = scipy.linalg.lstsq(system, sxy)[0]
    weight = weight_t.T  # (c_in, c_out) -> (c_out, c_in)
    return AffineMap(weight=weight, bias=mean_y - weight @ mean_x)


def solve_procrustes(acc: GramAccumulator) -> AffineMap:
    """Orthogonal Procrustes on centred data: y - mean(y) ≈ W (x - mean(x)) with W orthogonal.

    Maximising tr(W Sxy_c) over orthogonal W gives, with the SVD Sxy_c^T = U S V^T,
    W = U V^T; reflections are allowed and there is no scale factor. b = mean(y) - W mean(x).

    Args:
        acc: Sums of the training rows; needs c_in == c_out.

    Returns:
        The fitted map.
    """
    if acc.c_in != acc.c_out:
        raise ValueError(f"Procrustes needs c_in == c_out, got {acc.c_in} and {acc.c_out}")
    _, sxy = acc.centred()
    mean_x, mean_y = acc.means()
    u, _, vt = np.linalg.svd(sxy.T)
    weight = u @ vt
    return AffineMap(weight=weight, bias=mean_y - weight @ mean_x)
