"""Feature-space metrics against their definitions."""

import math

import numpy as np
import pytest

from featlab.metrics import (
    cosine_masked,
    cosine_median,
    cosine_per_position,
    jsd,
    mse,
    pool_mask,
    summarise,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _direct_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-position cosine, one position at a time."""
    n, _, h, w = a.shape
    out = np.empty((n, h, w))
    for i in range(n):
        for r in range(h):
            for c in range(w):
                u, v = a[i, :, r, c], b[i, :, r, c]
                out[i, r, c] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    return out


def test_cosine_of_self_negation_and_scale(rng):
    a = rng.normal(size=(3, 8, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(cosine_per_position(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(cosine_per_position(a, -a), -1.0, atol=1e-6)
    b = rng.normal(size=a.shape)
    scales = rng.uniform(0.1, 10.0, size=(3, 1, 4, 5))
    np.testing.assert_allclose(cosine_per_position(a, b * scales), cosine_per_position(a, b))


def test_cosine_matches_direct_formula(rng):
    a = rng.normal(size=(2, 6, 3, 4))
    b = rng.normal(size=a.shape) + 0.5 * a
    cos = cosine_per_position(a, b)
    assert cos.shape == (2, 3, 4)
    np.testing.assert_allclose(cos, _direct_cosine(a, b), rtol=1e-12)


def test_cosine_of_zero_vector_is_zero_not_nan():
    a = np.zeros((1, 3, 1, 1))
    b = np.ones((1, 3, 1, 1))
    assert cosine_per_position(a, b)[0, 0, 0] == 0.0


def test_cosine_median_takes_median_over_positions_per_image():
    # Image 0 agrees at 3 of 5 positions, image 1 at 2 of 5: per-image medians are +1 and -1,
    # while the means would be 0.2 and -0.2, and a median over both images pooled would be -1.
    a = np.zeros((2, 2, 1, 5))
    a[:, 0] = 1.0
    b = a.copy()
    b[0, 0, 0, 3:] = -1.0
    b[1, 0, 0, 2:] = -1.0
    np.testing.assert_allclose(cosine_per_position(a, b).mean(axis=(1, 2)), [0.2, -0.2])
    np.testing.assert_allclose(cosine_median(a, b), [1.0, -1.0])


def test_cosine_masked_ignores_unmasked_positions(rng):
    a = rng.normal(size=(3, 8, 5, 5))
    b = a + 0.3 * rng.normal(size=a.shape)
    mask = rng.random((3, 5, 5)) < 0.4
    mask[0, 0, 0] = mask[1, 0, 0] = True
    mask[2] = False
    values = cosine_masked(a, b, mask)
    cos = _direct_cosine(a, b)
    np.testing.assert_allclose(values[:2], [np.median(cos[i][mask[i]]) for i in range(2)])
    assert np.isnan(values[2])
    # Garbage at the unmasked positions leaves the value unchanged.
    garbage = b.copy()
    garbage.transpose(0, 2, 3, 1)[~mask] = rng.normal(scale=1e6, size=(int((~mask).sum()), 8))
    np.testing.assert_array_equal(cosine_masked(a, garbage, mask), values)


def test_cosine_masked_rejects_bad_mask(rng):
    a = rng.normal(size=(2, 3, 4, 4))
    with pytest.raises(ValueError, match="bool"):
        cosine_masked(a, a, np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        cosine_masked(a, a, np.ones((2, 2, 2), dtype=bool))


def test_mse_matches_formula(rng):
    a = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    b = rng.normal(size=a.shape).astype(np.float32)
    expected = ((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(mse(a, b), expected, rtol=1e-12)
    np.testing.assert_array_equal(mse(a, a), 0.0)


def test_mismatched_shapes_raise(rng):
    a = rng.normal(size=(2, 3, 4, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        mse(a, a[:, :2])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cosine_median(a[0], a[0])


def test_pool_mask_divisible_grid():
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, 3] = True  # top-right block
    mask[0, 2, 1] = True  # bottom-left block
    expected = np.array([[[False, True], [True, False]]])
    np.testing.assert_array_equal(pool_mask(mask, (2, 2)), expected)


def test_pool_mask_uneven_grid_overlaps_centre():
    # 5 -> 2 cells: rows 0..2 and 2..4, so the centre row and column belong to both cells.
    mask = np.zeros((3, 5, 5), dtype=bool)
    mask[0, 2, 2] = True
    mask[1, 0, 4] = True
    mask[2, 3, 1] = True
    pooled = pool_mask(mask, (2, 2))
    assert pooled.shape == (3, 2, 2)
    np.testing.assert_array_equal(pooled[0], [[True, True], [True, True]])
    np.testing.assert_array_equal(pooled[1], [[False, True], [False, False]])
    np.testing.assert_array_equal(pooled[2], [[False, False], [True, False]])


def test_pool_mask_identity_and_empty():
    rng = np.random.default_rng(1)
    mask = rng.random((2, 6, 7)) < 0.3
    np.testing.assert_array_equal(pool_mask(mask, (6, 7)), mask)
    assert not pool_mask(np.zeros((1, 9, 9), dtype=bool), (3, 3)).any()


def test_summarise_refuses_nan_unless_the_metric_is_undefined_there():
    # A NaN is a bug upstream: dropping it silently would shrink n and bias the mean.
    with pytest.raises(ValueError, match="1 of 3 values are NaN"):
        summarise(np.array([1.0, np.nan, 3.0]))
    assert summarise(np.array([1.0, np.nan, 3.0]), undefined_ok=True) == (2.0, 2)
    mean, count = summarise(np.array([np.nan]), undefined_ok=True)
    assert math.isnan(mean)
    assert count == 0


def test_jsd_of_nearly_equal_logits_is_finite_and_near_zero(rng):
    # scipy's jensenshannon(...) ** 2 rounds the inner sum below zero for about 40% of such pairs
    # of ten classes, and its square root turns them into NaN.
    logits = rng.normal(size=(2000, 10))
    values = jsd(logits, logits + 1e-8 * rng.normal(size=logits.shape))
    assert np.isfinite(values).all()
    assert (values >= 0).all()
    assert values.max() < 1e-12


def test_jsd_agrees_with_scipy_where_scipy_is_stable(rng):
    import scipy.spatial.distance
    import scipy.special

    p, q = rng.normal(size=(50, 7)) * 3, rng.normal(size=(50, 7)) * 3
    reference = scipy.spatial.distance.jensenshannon(
        scipy.special.softmax(p, axis=1), scipy.special.softmax(q, axis=1), base=2, axis=1
    )
    np.testing.assert_allclose(jsd(p, q), reference**2, rtol=1e-9, atol=1e-12)
    # disjoint supports: 1 bit, with classes of probability exactly 0
    np.testing.assert_allclose(jsd(np.array([[0.0, -np.inf]]), np.array([[-np.inf, 0.0]])), [1.0])
