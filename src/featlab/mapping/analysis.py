"""Linear-structure analysis of affine maps y = W x + b (METHODS.md, FeatMap evaluation).

For each linear, ridge or Procrustes map of a layer and manipulation:

- norms on the test originals, pooled over all positions of all test images: the median of
  |W x| (without the bias; the official script added it twice), |b|, the median of |W x + b|, the
  bias share |b| / (median |W x| + |b|) (0: the map only transforms, 1: it only shifts) and the
  median per-position cosine between W x and W x + b;
- the SVD of W: numerical rank (singular values above s_max * max(M, N) * eps, as numpy's
  matrix_rank), spectral norm s_1, Frobenius norm, spectral entropy H(p) = -sum p_i ln p_i of
  p_i = s_i^2 / sum s^2, effective rank exp(H(p)), and the energy share of the top 1, 5 and 10
  singular values;
- the rank-k curve: the test cosine (`cosine_median`) of the map truncated to its leading k
  singular components, over a grid of k. The truncated map keeps the output of the mean
  original: W_k = U_k S_k V_k^T and b_k = b + (W - W_k) mean(x), so it changes only how
  deviations from the mean are mapped.

Rows are of stage `analysis`; SVD rows have an empty split, data rows split `test`, and the
rank-k rows name k in `comparison` (`rank_8`, with `_spatial_first` for that variant).
"""

import dataclasses

import numpy as np

from featlab import metrics
from featlab.mapping.closed_form import AffineMap, feature_rows
from featlab.mapping.models import load_affine, spatial_op_in
from featlab.mapping.pairs import SPATIAL_FIRST, PairView, open_view
from featlab.tables import metric_row


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the linear-structure analysis computes."""

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # k grid; k >= C is dropped
    block_images: int = 256  # test images per streamed block

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(self.ranks))
        if any(k < 1 for k in self.ranks):
            raise ValueError(f"ranks must be positive, got {self.ranks}")


def svd_statistics(weight: np.ndarray) -> dict[str, float]:
    """Numerical rank, norms, spectral entropy, effective rank and top-k energy of a matrix."""
    singular = np.linalg.svd(np.asarray(weight, dtype=np.float64), compute_uv=False)
    if not singular.size or singular[0] == 0:
        raise ValueError("the weight is empty or zero; its spectrum is undefined")
    tolerance = singular[0] * max(weight.shape) * np.finfo(np.float64).eps
    energy = singular**2 / np.sum(singular**2)
    positive = energy[energy > 0]
    entropy = float(-np.sum(positive * np.log(positive)))
    return {
        "numerical_rank": float(np.sum(singular > tolerance)),
        "spectral_norm": float(singular[0]),
        "frobenius_norm": float(np.sqrt(np.sum(singular**2))),
        "spectral_entropy": entropy,
        "effective_rank": float(np.exp(entropy)),
        "energy_top1": float(energy[:1].sum()),
        "energy_top5": float(energy[:5].sum()),
        "energy_top10": float(energy[:10].sum()),
    }


def truncate(affine: AffineMap, k: int, mean_x: np.ndarray) -> AffineMap:
    """The map with W cut to its leading k singular components, keeping W mean_x + b fixed."""
    u, s, vt = np.linalg.svd(affine.weight, full_matrices=False)
    weight = (u[:, :k] * s[:k]) @ vt[:k]
    return AffineMap(weight=weight, bias=affine.bias + (affine.weight - weight) @ mean_x)


def rank_grid(channels: int, ranks: tuple[int, ...]) -> list[int]:
    """The k of the rank-k curve: the configured ones below the full rank, and the full rank."""
    return sorted({k for k in ranks if k < channels} | {channels})


def norm_statistics(affine: AffineMap, x_blocks) -> dict[str, tuple[float, int]]:
    """Median norms of W x, b, W x + b, the bias share and cos(W x, W x + b) over all positions.

    Args:
        affine: The map.
        x_blocks: Iterable of original feature blocks (N, C, H, W).

    Returns:
        metric -> (value, number of positions).
    """
    norms_wx, norms_y, cosines = [], [], []
    for x in x_blocks:
        wx = feature_rows(x).astype(np.float64) @ affine.weight.T  # (N*H*W, C_out)
        y = wx + affine.bias
        norms_wx.append(np.linalg.norm(wx, axis=1))
        norms_y.append(np.linalg.norm(y, axis=1))
        cosines.append(np.sum(wx * y, axis=1) / np.maximum(norms_wx[-1] * norms_y[-1], 1e-12))
    norm_wx, norm_y = np.median(np.concatenate(norms_wx)), np.median(np.concatenate(norms_y))
    norm_b = float(np.linalg.norm(affine.bias))
    n = int(sum(len(block) for block in norms_wx))
    return {
        "norm_wx_median": (float(norm_wx), n),
        "norm_bias": (norm_b, n),
        "norm_wx_plus_b_median": (float(norm_y), n),
        "bias_share": (norm_b / max(norm_wx + norm_b, 1e-12), n),
        "cosine_wx_wx_plus_b": (float(np.median(np.concatenate(cosines))), n),
    }


def rank_curve(
    affine: AffineMap, view: PairView, mean_x: np.ndarray, settings: AnalysisSettings
) -> dict[int, tuple[float, int]]:
    """Test `cosine_median` of the map truncated to rank k, for each k of the grid."""
    truncated = {k: truncate(affine, k, mean_x) for k in rank_grid(affine.c_in, settings.ranks)}
    scores: dict[int, list[np.ndarray]] = {k: [] for k in truncated}
    for x, y, _ in view.blocks("test", settings.block_images):
        for k, affine_k in truncated.items():
            scores[k].append(metrics.cosine_median(affine_k.apply_maps(x), y))
    return {k: metrics.summarise(np.concatenate(values)) for k, values in scores.items() if values}


def analyse_affine(
    affine: AffineMap, view: PairView, mean_x: np.ndarray, settings: AnalysisSettings, base: dict
) -> list[dict]:
    """Every analysis row of one map: SVD statistics, norms on the test split, the rank-k curve.

    Args:
        affine: The map, in raw feature units.
        view: The layer's feature pairs with the spatial op the map applies first, if any.
        mean_x: Channel mean (C,) of the original train features, for the rank-k truncation.
        settings: The k grid and the block size.
        base: Columns shared by all rows (backbone, layer, manipulation, mapping).
    """
    suffix = f"_{SPATIAL_FIRST}" if view.spatial_op else ""
    rows = [
        metric_row(
            "analysis", metric, value, min(affine.weight.shape), comparison=suffix[1:], **base
        )
        for metric, value in svd_statistics(affine.weight).items()
    ]
    x_blocks = (x for x, _, _ in view.blocks("test", settings.block_images))
    for metric, (value, n) in norm_statistics(affine, x_blocks).items():
        rows.append(
            metric_row("analysis", metric, value, n, comparison=suffix[1:], split="test", **base)
        )
    for k, (value, n) in rank_curve(affine, view, mean_x, settings).items():
        rows.append(
            metric_row(
                "analysis",
                "cosine_median",
                value,
                n,
                comparison=f"rank_{k}{suffix}",
                split="test",
                **base,
            )
        )
    return rows


def channel_mean(view: PairView, block_images: int = 256) -> np.ndarray:
    """Mean (C,) of the original train features over images and positions, in float64.

    A spatial op moves positions only, so the mean is the same with or without it.
    """
    total, count = np.zeros(view.shape[0]), 0
    for x, _, _ in view.blocks("train", block_images):
        total += x.sum(axis=(0, 2, 3), dtype=np.float64)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise ValueError("the train split is empty")
    return total / count


def analyse_layer(
    original: dict, plan: list[dict], layer: str, settings: AnalysisSettings, backbone: str
) -> list[dict]:
    """Analysis rows of every affine map of one layer.

    Args:
        original: {"features": store path} of the original images.
        plan: One entry per (manipulation, mapping): {"manipulation", "mapping", "features",
            "images" (the manipulated stores), "map" (the map file)}.
        layer: The mapped layer.
        settings: The k grid and the block size.
        backbone: The backbone's name in the table.
    """
    rows, mean_x = [], None
    for entry in plan:
        affine, config = load_affine(entry["map"])
        view = open_view(original["features"], entry["features"], entry["images"], layer)
        if mean_x is None:  # the same for every manipulation and spatial op of the layer
            mean_x = channel_mean(view, settings.block_images)
        view.spatial_op = spatial_op_in(config)
        base = dict(
            backbone=backbone,
            layer=layer,
            manipulation=entry["manipulation"],
            mapping=entry["mapping"],
        )
        rows += analyse_affine(affine, view, mean_x, settings, base)
    return rows
