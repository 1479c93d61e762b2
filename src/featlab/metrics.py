"""Feature-space metrics: how close a mapped feature map is to the true one.

Feature maps are arrays of shape (N, C, H, W); each position (h, w) of an image holds a C-vector.
These are the project's metric definitions (METHODS.md, FeatMap evaluation):

- cosine_median: mean over images of the per-image median, over positions, of the cosine
  similarity between the two C-vectors at each position;
- cosine_masked: mean over images that have changed positions of the per-image median of the
  per-position cosine over the changed positions only;
- mse: mean over images of the per-image mean squared error over all elements.

Functions here return one value per image; callers average them with `summarise`,
so that results from several batches combine exactly. Everything is computed in float64 whatever
the input dtype, without materialising float64 copies of whole feature maps.
"""

import math

import numpy as np


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    """Raise unless a and b are feature maps (N, C, H, W) of one shape."""
    if a.ndim != 4:
        raise ValueError(f"feature maps must be (N, C, H, W), got shape {a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"feature maps differ in shape: {a.shape} vs {b.shape}")


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise unless mask is a bool array of the given shape."""
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be bool, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {mask.shape}")


def cosine_per_position(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosine similarity over channels at every position of every image.

    cos[n, h, w] = <a[n, :, h, w], b[n, :, h, w]> / max(|a[n, :, h, w]| |b[n, :, h, w]|, eps),
    so a position where either vector is zero scores 0 rather than NaN.

    Args:
        a: Feature maps (N, C, H, W).
        b: Feature maps of the same shape.
        eps: Floor on the product of the norms.

    Returns:
        Float64 array (N, H, W).
    """
    _check_pair(a, b)
    # (N, C, H, W) x (N, C, H, W) -> (N, H, W), summed over C in float64.
    dot = np.einsum("nchw,nchw->nhw", a, b, dtype=np.float64)
    norm_a = np.sqrt(np.einsum("nchw,nchw->nhw", a, a, dtype=np.float64))
    norm_b = np.sqrt(np.einsum("nchw,nchw->nhw", b, b, dtype=np.float64))
    return dot / np.maximum(norm_a * norm_b, eps)


def cosine_median(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image median over positions of the per-position cosine similarity.

    The median rather than the mean keeps a few positions where the maps disagree strongly (the
    edited region, say) from dominating the score. The metric `cosine_median` of a test set is the
    mean of these values over images.

    Args:
        a: Feature maps (N, C, H, W).
        b: Feature maps of the same shape.

    Returns:
        Float64 array (N,).
    """
    cos = cosine_per_position(a, b)
    # (N, H, W) -> (N, H*W)
    return np.median(cos.reshape(cos.shape[0], -1), axis=1)


def cosine_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image median of the per-position cosine over the masked (changed) positions only.

    The metric `cosine_masked` of a test set is the mean of these values over the images that have
    at least one changed position; the others are NaN here, which
    `summarise(values, undefined_ok=True)` leaves out.

    Args:
        a: Feature maps (N, C, H, W).
        b: Feature maps of the same shape.
        mask: Bool array (N, H, W), True where the image changed (see `pool_mask`).

    Returns:
        Float64 array (N,); NaN for an image whose mask is empty.
    """
    cos = cosine_per_position(a, b)
    _check_mask(mask, cos.shape)
    medians = np.full(cos.shape[0], np.nan)
    for i in range(cos.shape[0]):
        selected = cos[i][mask[i]]
        if selected.size:
            medians[i] = np.median(selected)
    return medians


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image mean squared error over all elements (channels and positions).

    Args:
        a: Feature maps (N, C, H, W).
        b: Feature maps of the same shape.

    Returns:
        Float64 array (N,).
    """
    _check_pair(a, b)
    # One image at a time, so the float64 difference never holds the whole batch.
    errors = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        errors[i] = np.mean(np.square(np.subtract(a[i], b[i], dtype=np.float64)))
    return errors


def _block_edges(size: int, cells: int) -> list[tuple[int, int]]:
    """Start and end (exclusive) of the input block each of `cells` output cells covers.

    Cell i covers floor(i * size / cells) .. ceil((i + 1) * size / cells), as adaptive max pooling
    does; neighbouring blocks overlap by a row when size is not a multiple of cells.
    """
    return [((i * size) // cells, -((-(i + 1) * size) // cells)) for i in range(cells)]


def pool_mask(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Max-pool an image-resolution change mask to a feature grid.

    A feature cell counts as changed when any pixel of the image block that maps onto it changed.

    Args:
        mask: Bool array (N, H, W) at image resolution.
        grid: (h, w) of the feature map.

    Returns:
        Bool array (N, h, w).
    """
    if mask.ndim != 3 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be bool (N, H, W), got {mask.dtype} {mask.shape}")
    h, w = grid
    if h < 1 or w < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    height, width = mask.shape[1:]
    # (N, H, W) -> (N, h, W): pool the rows of each block.
    rows = np.stack([mask[:, r0:r1].any(axis=1) for r0, r1 in _block_edges(height, h)], axis=1)
    # (N, h, W) -> (N, h, w): then the columns.
    return np.stack([rows[:, :, c0:c1].any(axis=2) for c0, c1 in _block_edges(width, w)], axis=2)


def summarise(values: np.ndarray, undefined_ok: bool = False) -> tuple[float, int]:
    """Mean of per-image values and how many there were.

    A NaN is a bug upstream (a metric computed wrongly), not a value to drop: dropping it would
    shrink `n` and bias the mean without a word. Only a metric that is undefined for some images
    by its definition (`cosine_masked` of an image that did not change, the fidelity of a constant
    neuron) passes `undefined_ok`, and then its NaNs are left out of the mean and of `n`.

    Args:
        values: Per-image metric values.
        undefined_ok: Leave NaNs out instead of refusing them.

    Returns:
        (mean, count); the mean is NaN when the count is 0.
    """
    values = np.asarray(values, dtype=np.float64)
    undefined = np.isnan(values)
    if undefined.any() and not undefined_ok:
        raise ValueError(
            f"{int(undefined.sum())} of {values.size} values are NaN: a metric computed NaN "
            "where it is defined"
        )
    finite = values[~undefined]
    if finite.size == 0:
        return math.nan, 0
    return float(finite.mean()), int(finite.size)


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows of `logits` (N, classes) whose arg-max is the label."""
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


# Class-probability metrics of semantic consistency (METHODS.md, FeatMap evaluation, semantic):
# logits (N, K) -> one value per image, summarised like the feature metrics.


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) in float64 from logits (N, K)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    import scipy.special  # here: a mapping job, which scores features only, never pays for it

    return scipy.special.softmax(logits, axis=1)


def entropy(logits: np.ndarray) -> np.ndarray:
    """Per-image entropy, in bits, of the softmax of the logits (N, K): between 0 and log2 K."""
    import scipy.stats  # here, not at the top: it costs every job that imports metrics a second

    return scipy.stats.entropy(softmax(logits), base=2, axis=1)


def jsd(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """Per-image Jensen-Shannon divergence, in bits (log2), between the softmaxes of two logits.

    JSD(P, Q) = (KL(P || M) + KL(Q || M)) / 2 with M = (P + Q) / 2: 0 for equal distributions, at
    most 1 bit for disjoint supports. It is computed from log-probabilities and summed directly
    (scipy's `jensenshannon` returns its square root, whose square turns rounding below zero into
    NaN for nearly equal distributions); a sum that rounds below zero is 0.

    Args:
        logits_p: Logits (N, K).
        logits_q: Logits (N, K) of the same images.

    Returns:
        Float64 array (N,).
    """
    log_p, log_q = _log_softmax(logits_p), _log_softmax(logits_q)
    if log_p.shape != log_q.shape:
        raise ValueError(f"logits differ in shape: {log_p.shape} vs {log_q.shape}")
    log_m = np.logaddexp(log_p, log_q) - math.log(2)
    kl_p, kl_q = _kl_terms(log_p, log_m), _kl_terms(log_q, log_m)
    return np.maximum((kl_p + kl_q) / 2, 0.0) / math.log(2)


def _kl_terms(log_p: np.ndarray, log_m: np.ndarray) -> np.ndarray:
    """KL(P || M) per row in nats, with 0 log 0 = 0 (classes of probability 0 add nothing)."""
    with np.errstate(invalid="ignore"):
        terms = np.exp(log_p) * (log_p - log_m)
    return np.sum(np.where(np.isneginf(log_p), 0.0, terms), axis=1)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log class probabilities (N, K) in float64 from logits (N, K)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    import scipy.special  # here: a mapping job, which scores features only, never pays for it

    return scipy.special.log_softmax(logits, axis=1)


def top_k_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-image hit (1.0) or miss (0.0): is the label among the k highest logits?

    The mean over images is the top-k accuracy. With k at or above the number of classes every
    image is a hit (top-5 accuracy of a 5-class problem is 1 by definition).

    Args:
        logits: Logits (N, K).
        labels: Class indices (N,).
        k: How many of the highest logits count.

    Returns:
        Float64 array (N,) of 0.0 and 1.0.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, K) and labels (N,), got {logits.shape}, {labels.shape}")
    # (N, K) -> (N, k): the indices of the k largest logits of each row, in any order.
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1).astype(np.float64)


def top1_agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> np.ndarray:
    """Per-image 1.0 where the two logits (N, K) pick the same top class, else 0.0."""
    logits_a, logits_b = np.asarray(logits_a), np.asarray(logits_b)
    if logits_a.shape != logits_b.shape or logits_a.ndim != 2:
        raise ValueError(
            f"need two (N, K) logits of one shape, got {logits_a.shape}, {logits_b.shape}"
        )
    return (logits_a.argmax(axis=1) == logits_b.argmax(axis=1)).astype(np.float64)
