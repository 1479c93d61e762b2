"""Closed-form mappings recover known maps and agree with reference solvers."""

import dataclasses
import itertools

import numpy as np
import pytest

from featlab import metrics
from featlab.mapping.closed_form import (
    AffineMap,
    GramAccumulator,
    direction_weights,
    feature_rows,
    rows_to_maps,
    solve_procrustes,
    solve_ridge,
)
from featlab.mapping.fit import ClosedFormSettings, fit_closed_form

C_IN, C_OUT, ROWS = 16, 12, 5000


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _affine_data(rng: np.random.Generator, noise: float) -> tuple[np.ndarray, ...]:
    """Rows x with non-zero channel means, y = x W^T + b (+ noise), and the true W, b."""
    weight = rng.normal(size=(C_OUT, C_IN))
    bias = rng.normal(size=C_OUT) * 3.0
    x = rng.normal(size=(ROWS, C_IN)) * rng.uniform(0.5, 2.0, C_IN) + rng.normal(size=C_IN) * 5.0
    y = x @ weight.T + bias + noise * rng.normal(size=(ROWS, C_OUT))
    return x, y, weight, bias


def _fit(x: np.ndarray, y: np.ndarray, gamma: float) -> AffineMap:
    acc = GramAccumulator(x.shape[1], y.shape[1])
    acc.update(x, y)
    return solve_ridge(acc, gamma)


def _relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def test_ridge_recovers_noise_free_affine_map(rng):
    x, y, weight, bias = _affine_data(rng, noise=0.0)
    fitted = _fit(x, y, gamma=1e-12)
    assert fitted.weight.shape == (C_OUT, C_IN)
    assert fitted.bias.shape == (C_OUT,)
    assert _relative_error(fitted.weight, weight) < 1e-6
    assert _relative_error(fitted.bias, bias) < 1e-6


def test_ridge_agrees_with_lstsq_on_noisy_data(rng):
    x, y, _, _ = _affine_data(rng, noise=0.5)
    fitted = _fit(x, y, gamma=1e-12)
    design = np.hstack([x, np.ones((ROWS, 1))])
    solution = np.linalg.lstsq(design, y, rcond=None)[0]  # (C_IN + 1, C_OUT)
    np.testing.assert_allclose(fitted.weight, solution[:-1].T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.bias, solution[-1], rtol=1e-8, atol=1e-10)


def test_ridge_with_zero_gamma_and_collinear_channels_falls_back(rng):
    x, y, _, _ = _affine_data(rng, noise=0.1)
    x = np.hstack([x, x[:, :1]])  # a duplicated channel makes Sxx_c singular
    fitted = _fit(x, y, gamma=0.0)
    assert np.all(np.isfinite(fitted.weight))
    np.testing.assert_allclose(fitted.apply(x), _fit(x[:, :-1], y, 0.0).apply(x[:, :-1]))


def test_streaming_uneven_blocks_matches_one_block(rng):
    x, y, _, _ = _affine_data(rng, noise=0.5)
    whole = _fit(x, y, gamma=1.0)
    acc = GramAccumulator(C_IN, C_OUT)
    edges = [0, 3, 400, 401, 1700, 2900, 4999, ROWS]  # 7 blocks of uneven size
    for start, end in itertools.pairwise(edges):
        acc.update(x[start:end], y[start:end])
    streamed = solve_ridge(acc, gamma=1.0)
    assert acc.n == ROWS
    np.testing.assert_allclose(streamed.weight, whole.weight, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.bias, whole.bias, rtol=1e-10, atol=1e-12)


def test_large_gamma_shrinks_weight_and_bias_tends_to_mean(rng):
    x, y, _, _ = _affine_data(rng, noise=0.5)
    norms = [np.linalg.norm(_fit(x, y, gamma).weight) for gamma in (0.0, 1.0, 1e3, 1e6, 1e9)]
    assert all(later < earlier for earlier, later in itertools.pairwise(norms))
    heavy = _fit(x, y, gamma=1e14)
    assert np.linalg.norm(heavy.weight) < 1e-6 * norms[0]
    np.testing.assert_allclose(heavy.bias, y.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_procrustes_recovers_orthogonal_map(rng):
    q, _ = np.linalg.qr(rng.normal(size=(C_IN, C_IN)))
    offset = rng.normal(size=C_IN) * 3.0
    x = rng.normal(size=(ROWS, C_IN)) + rng.normal(size=C_IN) * 5.0
    acc = GramAccumulator(C_IN, C_IN)
    acc.update(x, x @ q.T + offset)
    fitted = solve_procrustes(acc)
    np.testing.assert_allclose(fitted.weight, q, atol=1e-8)
    np.testing.assert_allclose(fitted.bias, offset, atol=1e-8)
    np.testing.assert_allclose(fitted.weight @ fitted.weight.T, np.eye(C_IN), atol=1e-10)


def test_procrustes_needs_square_map(rng):
    acc = GramAccumulator(C_IN, C_OUT)
    acc.update(rng.normal(size=(10, C_IN)), rng.normal(size=(10, C_OUT)))
    with pytest.raises(ValueError, match="c_in == c_out"):
        solve_procrustes(acc)


def test_bad_inputs_raise(rng):
    acc = GramAccumulator(C_IN, C_OUT)
    x, y = rng.normal(size=(10, C_IN)), rng.normal(size=(10, C_OUT))
    with pytest.raises(ValueError, match="c_in=16"):
        acc.update(x[:, :5], y)
    with pytest.raises(ValueError, match="c_out=12"):
        acc.update(x, y[:, :5])
    with pytest.raises(ValueError, match="differ in rows"):
        acc.update(x, y[:9])
    with pytest.raises(ValueError, match="no rows"):
        solve_ridge(acc)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        acc.update(bad, y)
    y_inf = y.copy()
    y_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        acc.update(x, y_inf)
    assert acc.n == 0
    acc.update(x, y)
    with pytest.raises(ValueError, match="gamma"):
        solve_ridge(acc, gamma=-1.0)


def test_feature_rows_order_and_round_trip(rng):
    maps = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    rows = feature_rows(maps)
    assert rows.shape == (2 * 3 * 4, 5)
    np.testing.assert_array_equal(rows[1 * 12 + 2 * 4 + 3], maps[1, :, 2, 3])
    np.testing.assert_array_equal(rows_to_maps(rows, (2, 3, 4)), maps)


def test_apply_maps_maps_every_position(rng):
    mapping = AffineMap(weight=rng.normal(size=(7, 5)), bias=rng.normal(size=7))
    maps = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    mapped = mapping.apply_maps(maps)
    assert mapped.shape == (2, 7, 3, 4)
    assert mapped.dtype == np.float32
    expected = np.einsum("oc,nchw->nohw", mapping.weight, maps) + mapping.bias[:, None, None]
    np.testing.assert_allclose(mapped, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="c_in=5"):
        mapping.apply_maps(maps[:, :4])


def test_update_maps_fits_a_1x1_convolution(rng):
    mapping = AffineMap(weight=rng.normal(size=(6, 6)), bias=rng.normal(size=6))
    x_maps = rng.normal(size=(20, 6, 5, 5))
    acc = GramAccumulator(6, 6)
    acc.update_maps(x_maps, mapping.apply_maps(x_maps))
    fitted = solve_ridge(acc, gamma=1e-12)
    np.testing.assert_allclose(fitted.weight, mapping.weight, atol=1e-8)
    np.testing.assert_allclose(fitted.bias, mapping.bias, atol=1e-8)


def test_weighted_rows_give_the_weighted_least_squares_fit(rng):
    x, y, _, _ = _affine_data(rng, noise=0.5)
    weights = rng.uniform(0.0, 3.0, ROWS)
    acc = GramAccumulator(C_IN, C_OUT)
    for start, end in itertools.pairwise([0, 7, 2000, ROWS]):
        acc.update(x[start:end], y[start:end], weights[start:end])
    fitted = solve_ridge(acc, gamma=0.0)
    root = np.sqrt(weights)[:, None]
    design = np.hstack([x, np.ones((ROWS, 1))]) * root
    solution = np.linalg.lstsq(design, y * root, rcond=None)[0]  # (C_IN + 1, C_OUT)
    np.testing.assert_allclose(fitted.weight, solution[:-1].T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.bias, solution[-1], rtol=1e-8, atol=1e-10)
    # integer weights act as repeated rows
    counts = rng.integers(0, 3, ROWS)
    repeated, weighted = GramAccumulator(C_IN, C_OUT), GramAccumulator(C_IN, C_OUT)
    repeated.update(np.repeat(x, counts, axis=0), np.repeat(y, counts, axis=0))
    weighted.update(x, y, counts.astype(float))
    np.testing.assert_allclose(solve_ridge(weighted).weight, solve_ridge(repeated).weight)


def test_bad_weights_raise(rng):
    acc = GramAccumulator(C_IN, C_OUT)
    x, y = rng.normal(size=(10, C_IN)), rng.normal(size=(10, C_OUT))
    with pytest.raises(ValueError, match="one per row"):
        acc.update(x, y, np.ones(9))
    with pytest.raises(ValueError, match=">= 0"):
        acc.update(x, y, -np.ones(10))
    acc.update(x, y, np.zeros(10))
    with pytest.raises(ValueError, match="weight 0"):
        solve_ridge(acc)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        acc.update_maps(np.ones((2, C_IN, 3, 3)), np.ones((2, C_OUT, 3, 3)), np.ones((2, 9)))


def test_standardised_penalty_ignores_the_scale_of_input_channels(rng):
    x, y, _, _ = _affine_data(rng, noise=0.5)
    scale = rng.uniform(0.01, 100.0, C_IN)
    plain, scaled = GramAccumulator(C_IN, C_OUT), GramAccumulator(C_IN, C_OUT)
    plain.update(x, y)
    scaled.update(x * scale, y)
    for standardised, same in ((True, True), (False, False)):
        a = solve_ridge(plain, gamma=500.0, standardised=standardised)
        b = solve_ridge(scaled, gamma=500.0, standardised=standardised)
        assert np.allclose(a.apply(x), b.apply(x * scale), rtol=1e-8, atol=1e-8) == same


def test_direction_weights_are_inverse_squared_norms_with_a_floor():
    maps = np.zeros((2, 3, 2, 2))
    maps[0, 0] = [[3.0, 0.3], [4.0, 0.0]]  # image 0: norms 3, 0.3, 4, 0
    weights = direction_weights(maps, floor=0.2)
    floor = 0.2 * np.sqrt((9.0 + 0.09 + 16.0) / 4)  # 0.2 times the image's rms norm, about 0.5
    np.testing.assert_allclose(weights[0], [[1 / 9, floor**-2], [1 / 16, floor**-2]])
    np.testing.assert_array_equal(weights[1], 0.0)  # an image of zero vectors
    np.testing.assert_allclose(direction_weights(maps * 7.0, floor=0.2), weights / 49.0)


@dataclasses.dataclass
class ArrayPair:
    """Feature pairs in memory, read like a FeaturePair: the first n_train images are train."""

    x: np.ndarray
    y: np.ndarray
    n_train: int
    layer: str = "toy"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.x.shape[1:]

    def blocks(self, split: str, block: int):
        train = split == "train"
        indices = np.arange(self.n_train) if train else np.arange(self.n_train, len(self.x))
        for start in range(0, len(indices), block):
            chunk = indices[start : start + block]
            yield self.x[chunk], self.y[chunk], chunk


def _background_and_objects(rng: np.random.Generator) -> ArrayPair:
    """Dim background positions that the manipulation keeps (y = x + a little noise) and, in each
    image, 4 of 64 positions of norm some 80 times larger that it turns and shifts (y = Q x + s),
    which no affine map shared with the background can follow."""
    n, channels, grid = 64, 8, 8
    x = rng.normal(size=(n, channels, grid, grid)) * 0.1 + 0.1
    y = x + 0.01 * rng.normal(size=x.shape)
    turn, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    shift = rng.normal(size=channels) * 5.0
    for i in range(n):
        for position in rng.choice(grid * grid, 4, replace=False):
            h, w = divmod(position, grid)
            x[i, :, h, w] = rng.normal(size=channels) * 10.0 + 5.0
            y[i, :, h, w] = turn @ x[i, :, h, w] + shift
    return ArrayPair(x, y, n_train=48)


def _test_cosine(pair: ArrayPair, mapped: np.ndarray) -> float:
    return float(np.mean(metrics.cosine_median(mapped, pair.y[pair.n_train :])))


def test_relative_fits_follow_the_background_that_plain_fits_turn(rng):
    pair = _background_and_objects(rng)
    x_test = pair.x[pair.n_train :]
    identity = _test_cosine(pair, x_test)
    settings = ClosedFormSettings(block_images=16)
    cosine = {
        method: _test_cosine(pair, fit_closed_form(pair, method, settings).apply_maps(x_test))
        for method in ("ridge", "procrustes", "ridge_relative", "procrustes_relative")
    }
    # squared error in raw units: the few large positions decide the map, which turns the rest
    assert identity > 0.99
    assert cosine["ridge"] < identity - 0.5
    assert cosine["procrustes"] < identity - 0.5
    # relative errors of each image's best-fitting positions: the map follows the background,
    # and the median with it
    assert cosine["ridge_relative"] > identity - 0.002
    assert cosine["procrustes_relative"] > identity - 0.002
    # the trimmed passes are what gets there: squared relative errors alone fall short
    first_pass = dataclasses.replace(settings, passes=0)
    squared = fit_closed_form(pair, "ridge_relative", first_pass).apply_maps(x_test)
    assert _test_cosine(pair, squared) < cosine["ridge_relative"] - 0.02


def test_relative_fit_does_not_depend_on_the_blocks_nor_on_keeping_them(rng):
    pair = _background_and_objects(rng)
    fits = [
        fit_closed_form(
            pair, "ridge_relative", ClosedFormSettings(block_images=block, memory_gb=memory)
        )
        for block, memory in ((5, 0.0), (48, 2.0))  # streamed at every pass, kept after the first
    ]
    # equal up to the rounding of float32 products, which the blocks' order and shift change
    np.testing.assert_allclose(fits[0].weight, fits[1].weight, atol=1e-3)
    np.testing.assert_allclose(fits[0].bias, fits[1].bias, atol=1e-3)


def test_relative_fit_recovers_an_exact_affine_map(rng):
    mapping = AffineMap(weight=rng.normal(size=(6, 6)), bias=rng.normal(size=6))
    x = rng.normal(size=(40, 6, 4, 4)) * rng.uniform(0.1, 10.0, (40, 1, 4, 4))
    pair = ArrayPair(x, mapping.apply_maps(x), n_train=40)
    fitted = fit_closed_form(pair, "ridge_relative", ClosedFormSettings(gamma=0.0))
    # exact up to the float32 rounding of the data and of the products
    np.testing.assert_allclose(fitted.weight, mapping.weight, atol=2e-5)
    np.testing.assert_allclose(fitted.bias, mapping.bias, atol=2e-5)
