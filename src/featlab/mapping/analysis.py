"""Linear-structure analysis of affine maps y = W x + b (METHODS.md, FeatMap evaluation).

Every map (ridge, Procrustes, trained linear) is analysed in one stated space, so that maps of
different kinds compare:

- `standardised` (the default, the paper's): the space the trained maps work in, each channel
  standardised with the mean m and std s of the layer's original train features (floored as the
  trained maps floor it). The raw map becomes W_s = diag(1/s) W diag(s) and
  b_s = (W m + b - m) / s, and x is the standardised test original. A per-channel rescaling
  changes singular values, and in raw units the bias absorbs (I - W) m, so raw numbers of maps
  fitted in different units do not compare.
- `raw`: the map as it acts on the stored features.

For each map, with the space in the `comparison` column (`standardised` or `raw`):

- norms on the test originals, pooled over all positions of all test images: the median of
  |W x| (without the bias; the official script added it twice), |b|, the median of |W x + b|, and
  two bias shares: `bias_share` = |b| / (median |W x| + |b|) (0: the map only transforms, 1: it
  only shifts) and `bias_share_featmap` = |b| / median |W x + b| (the FeatMap paper's ratio,
  unbounded); and the median per-position cosine between W x and W x + b;
- the SVD of W: `numerical_rank`, the singular values above `rank_tolerance` times the largest (a
  fitted map's noise keeps its tail far above machine precision, so numpy's matrix_rank cut-off
  reports every fitted map as full rank), spectral norm s_1, Frobenius norm, spectral entropy
  H(p) = -sum p_i ln p_i of p_i = s_i^2 / sum s^2, `effective_rank` exp(H(p)) (FeatMap's,
  energy-based), `effective_rank_rv` exp(H(q)) of q_i = s_i / sum s (Roy and Vetterli's), and the
  energy share of the top 1, 5 and 10 singular values. A zero W (a pure shift) has ranks, norms
  and entropy 0 and no energy shares;
- the rank-k curve: the test cosine (`cosine_median`, against the true manipulated features) of the
  map with W cut to its leading k singular components in the analysis space. The truncated map
  keeps the output of the mean original: b_k = b + (W - W_k) mean(x), so it changes only how
  deviations from the mean are mapped.

Rows are of stage `analysis`; SVD rows have an empty split, data rows split `test`, and the
rank-k rows name k after the space in `comparison` (`standardised_rank_8`); a map that applies
the spatial op first adds `_spatial_first`.
"""

import dataclasses

import numpy as np

from featlab import metrics
from featlab.mapping.closed_form import AffineMap, feature_rows
from featlab.mapping.models import load_affine, spatial_op_in
from featlab.mapping.pairs import SPATIAL_FIRST, FeaturePair, channel_statistics, open_pair
from featlab.tables import metric_row

SPACES = ("standardised", "raw")


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the linear-structure analysis computes."""

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # k grid; k >= C is dropped
    space: str = "standardised"  # standardised (per channel, the paper's) or raw feature units
    rank_tolerance: float = 0.01  # numerical rank: singular values above this share of s_1
    std_floor: float = 0.01  # channel std floored at this share of the median: the trained maps'
    block_images: int = 256  # test images per streamed block

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(self.ranks))
        if any(k < 1 for k in self.ranks):
            raise ValueError(f"ranks must be positive, got {self.ranks}")
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r}: choose one of {SPACES}")
        if not 0 < self.rank_tolerance < 1:
            raise ValueError(f"rank_tolerance must lie in (0, 1), got {self.rank_tolerance}")


@dataclasses.dataclass(frozen=True)
class AnalysisSpace:
    """Coordinates x_a = (x - shift) / scale per channel (C,) in which a map is analysed."""

    shift: np.ndarray  # the originals' train mean when standardised, 0 for raw units
    scale: np.ndarray  # their train std when standardised, 1 for raw units
    train_mean: np.ndarray  # the mean original in these coordinates: 0 when standardised

    def features(self, x: np.ndarray) -> np.ndarray:
        """Feature maps (N, C, H, W) in these coordinates."""
        return (x - self.shift[:, None, None]) / self.scale[:, None, None]

    def map_in(self, affine: AffineMap) -> AffineMap:
        """The raw map y = W x + b as it acts between these coordinates (inputs and outputs
        both with the originals' statistics, as the trained maps normalise and de-normalise)."""
        weight = affine.weight * self.scale[None, :] / self.scale[:, None]
        bias = (affine.weight @ self.shift + affine.bias - self.shift) / self.scale
        return AffineMap(weight=weight, bias=bias)

    def map_out(self, affine: AffineMap) -> AffineMap:
        """Inverse of `map_in`: a map in these coordinates, in raw feature units."""
        weight = affine.weight * self.scale[:, None] / self.scale[None, :]
        bias = self.scale * affine.bias + self.shift - weight @ self.shift
        return AffineMap(weight=weight, bias=bias)


def analysis_space(view: FeaturePair, settings: AnalysisSettings) -> AnalysisSpace:
    """The configured space, from the statistics of the layer's original train features."""
    mean, std = channel_statistics(view, settings.block_images, settings.std_floor)
    if settings.space == "raw":
        return AnalysisSpace(shift=np.zeros_like(mean), scale=np.ones_like(std), train_mean=mean)
    return AnalysisSpace(shift=mean, scale=std, train_mean=np.zeros_like(mean))


def svd_statistics(weight: np.ndarray, rank_tolerance: float = 0.01) -> dict[str, float]:
    """Numerical rank, norms, spectral entropy, effective ranks and top-k energy of a matrix.

    A zero matrix (the weight of a pure shift) has ranks, norms and entropy 0 and no energy
    shares.
    """
    singular = np.linalg.svd(np.asarray(weight, dtype=np.float64), compute_uv=False)
    if not singular.size:
        raise ValueError("the weight is empty; its spectrum is undefined")
    if singular[0] == 0:
        names = ("numerical_rank", "spectral_norm", "frobenius_norm", "spectral_entropy")
        return {name: 0.0 for name in (*names, "effective_rank", "effective_rank_rv")}
    energy = singular**2 / np.sum(singular**2)
    entropy = _entropy(energy)
    return {
        "numerical_rank": float(np.sum(singular > rank_tolerance * singular[0])),
        "spectral_norm": float(singular[0]),
        "frobenius_norm": float(np.sqrt(np.sum(singular**2))),
        "spectral_entropy": entropy,
        "effective_rank": float(np.exp(entropy)),
        "effective_rank_rv": float(np.exp(_entropy(singular / np.sum(singular)))),
        "energy_top1": float(energy[:1].sum()),
        "energy_top5": float(energy[:5].sum()),
        "energy_top10": float(energy[:10].sum()),
    }


def _entropy(p: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution, 0 log 0 taken as 0."""
    positive = p[p > 0]
    return float(-np.sum(positive * np.log(positive)))


def truncate(affine: AffineMap, k: int, mean_x: np.ndarray) -> AffineMap:
    """The map with W cut to its leading k singular components, keeping W mean_x + b fixed."""
    u, s, vt = np.linalg.svd(affine.weight, full_matrices=False)
    weight = (u[:, :k] * s[:k]) @ vt[:k]
    return AffineMap(weight=weight, bias=affine.bias + (affine.weight - weight) @ mean_x)


def rank_grid(channels: int, ranks: tuple[int, ...]) -> list[int]:
    """The k of the rank-k curve: the configured ones below the full rank, and the full rank."""
    return sorted({k for k in ranks if k < channels} | {channels})


def norm_statistics(affine: AffineMap, x_blocks) -> dict[str, tuple[float, int]]:
    """Median norms of W x, b, W x + b, the bias shares and cos(W x, W x + b) over all positions.

    Args:
        affine: The map, in the space of `x_blocks`.
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
        "bias_share_featmap": (norm_b / max(norm_y, 1e-12), n),
        "cosine_wx_wx_plus_b": (float(np.median(np.concatenate(cosines))), n),
    }


def rank_curve(
    affine: AffineMap, view: FeaturePair, space: AnalysisSpace, settings: AnalysisSettings
) -> dict[int, tuple[float, int]]:
    """Test `cosine_median` of the map truncated to rank k in the analysis space, for each k.

    Args:
        affine: The map in the analysis space.
        view: The layer's feature pairs (raw units: the cosine is against the true features).
        space: The analysis space.
        settings: The k grid and the block size.
    """
    grid = rank_grid(affine.c_in, settings.ranks)
    truncated = {k: space.map_out(truncate(affine, k, space.train_mean)) for k in grid}
    scores: dict[int, list[np.ndarray]] = {k: [] for k in truncated}
    for x, y, _ in view.blocks("test", settings.block_images):
        for k, affine_k in truncated.items():
            scores[k].append(metrics.cosine_median(affine_k.apply_maps(x), y))
    return {k: metrics.summarise(np.concatenate(values)) for k, values in scores.items() if values}


def analyse_affine(
    affine: AffineMap,
    view: FeaturePair,
    space: AnalysisSpace,
    settings: AnalysisSettings,
    base: dict,
) -> list[dict]:
    """Every analysis row of one map: SVD statistics, norms on the test split, the rank-k curve.

    Args:
        affine: The map, in raw feature units.
        view: The layer's feature pairs with the spatial op the map applies first, if any.
        space: The analysis space (`analysis_space`).
        settings: The space, the k grid, the rank tolerance and the block size.
        base: Columns shared by all rows (backbone, layer, manipulation, mapping).
    """
    suffix = f"_{SPATIAL_FIRST}" if view.spatial_op else ""
    label = settings.space + suffix
    analysed = space.map_in(affine)
    rows = [
        metric_row("analysis", metric, value, min(affine.weight.shape), comparison=label, **base)
        for metric, value in svd_statistics(analysed.weight, settings.rank_tolerance).items()
    ]
    x_blocks = (space.features(x) for x, _, _ in view.blocks("test", settings.block_images))
    for metric, (value, n) in norm_statistics(analysed, x_blocks).items():
        rows.append(
            metric_row("analysis", metric, value, n, comparison=label, split="test", **base)
        )
    for k, (value, n) in rank_curve(analysed, view, space, settings).items():
        comparison = f"{settings.space}_rank_{k}{suffix}"
        rows.append(
            metric_row(
                "analysis", "cosine_median", value, n, comparison=comparison, split="test", **base
            )
        )
    return rows


def analyse_layer(
    original: dict, plan: list[dict], layer: str, settings: AnalysisSettings, backbone: str
) -> list[dict]:
    """Analysis rows of every affine map of one layer.

    Args:
        original: {"features": store path} of the original images.
        plan: One entry per (manipulation, mapping): {"manipulation", "mapping", "features",
            "images" (the manipulated stores), "map" (the map file)}.
        layer: The mapped layer.
        settings: The space, the k grid, the rank tolerance and the block size.
        backbone: The backbone's name in the table.
    """
    rows, space = [], None
    for entry in plan:
        affine, config = load_affine(entry["map"])
        view = open_pair(original["features"], entry["features"], entry["images"], layer)
        if space is None:  # the same for every manipulation and spatial op of the layer
            space = analysis_space(view, settings)
        view.spatial_op = spatial_op_in(config)
        base = dict(
            backbone=backbone,
            layer=layer,
            manipulation=entry["manipulation"],
            mapping=entry["mapping"],
        )
        rows += analyse_affine(affine, view, space, settings, base)
    return rows
