"""Closed-form mappings recover known maps and agree with reference solvers."""

import itertools

import numpy as np
import pytest

from featlab.mapping.closed_form import (
    AffineMap,
    GramAccumulator,
    feature_rows,
    rows_to_maps,
    solve_procrustes,
    solve_ridge,
)

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
