"""FeatMap beyond closed form: mapping models, training recipe, analysis, semantic consistency."""

import math
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import pytest
import torch

from featlab import metrics
from featlab.backbones import BackboneSpec, build_backbone, capture_layers, to_grid
from featlab.mapping.analysis import AnalysisSpace, norm_statistics, svd_statistics, truncate
from featlab.mapping.closed_form import (
    AffineMap,
    GramAccumulator,
    solve_procrustes,
    solve_ridge,
)
from featlab.mapping.models import (
    TRAINED,
    NormalisedMap,
    affine_of,
    apply_model,
    build_model,
    load_trained,
    save_trained,
)
from featlab.mapping.semantic import (
    HeldOutFeatures,
    SemanticSettings,
    grid_reaches_output,
    logits_of_features,
    mapped_rows,
    mapping_rows,
    reference_rows,
)
from featlab.mapping.train import EarlyStopping, TensorPairs, TrainSettings, train_model

SMALL = {
    "mlp": {"hidden": 16},
    "cnn": {"hidden": 16},
    "transformer": {"d_model": 16, "layers": 1, "heads": 2, "ffn": 32},
}


def _normalised(name: str, channels: int, grid: tuple[int, int], **hyper) -> NormalisedMap:
    core = build_model(name, channels, grid, **{**SMALL.get(name, {}), **hyper})
    return NormalisedMap(core, torch.zeros(channels), torch.ones(channels))


def _fit(model, x, y, **recipe) -> tuple[float, NormalisedMap]:
    """Train on (x, y), return the median cosine of the best checkpoint on fresh inputs."""
    settings = TrainSettings(
        **{"lr": 3e-3, "epochs": 40, "early_stop_patience": 40, "batch_size": 32, **recipe}
    )
    n = len(x) * 3 // 4
    result = train_model(
        model, TensorPairs(x[:n], y[:n], "cpu"), TensorPairs(x[n:], y[n:], "cpu"), settings
    )
    return result.history[result.best_epoch - 1]["val_cosine_median"], result.model


@pytest.mark.parametrize("name", TRAINED)
def test_every_model_maps_a_feature_map_to_one_of_the_same_shape(name):
    model = _normalised(name, 6, (3, 5)).eval()
    x = torch.randn(4, 6, 3, 5)
    assert model(x).shape == x.shape


def test_unknown_models_and_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="unknown trained mapping"):
        build_model("resnet", 4, (2, 2))
    with pytest.raises(ValueError, match=r"mlp: bad hyperparameters \['width'\]"):
        build_model("mlp", 4, (2, 2), width=8)
    with pytest.raises(ValueError, match="must divide d_model"):
        build_model("transformer", 4, (2, 2), d_model=10, heads=3)


def test_a_trained_linear_map_reads_back_as_its_raw_affine_map(tmp_path):
    channels = 5
    mean, std = torch.randn(channels), torch.rand(channels) + 0.5
    model = NormalisedMap(build_model("linear", channels, (2, 2)), mean, std).eval()
    x = np.random.default_rng(0).normal(size=(3, channels, 2, 2)).astype(np.float32)
    affine = affine_of(model)
    np.testing.assert_allclose(affine.apply_maps(x), apply_model(model, x), rtol=1e-5, atol=1e-5)
    config = {"mapping": "linear", "channels": channels, "grid": [2, 2], "hyper": {}}
    save_trained(tmp_path / "map.safetensors", model, config)
    loaded, loaded_config = load_trained(tmp_path / "map.safetensors")
    assert loaded_config == config
    np.testing.assert_allclose(apply_model(loaded, x), apply_model(model, x), rtol=1e-6)


def test_procrustes_recovers_an_orthogonal_map_exactly():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    x = rng.normal(size=(500, 6)) + 3.0
    bias = rng.normal(size=6)
    gram = GramAccumulator(6, 6)
    gram.update(x, x @ q.T + bias)
    affine = solve_procrustes(gram)
    np.testing.assert_allclose(affine.weight, q, atol=1e-6)
    np.testing.assert_allclose(affine.bias, bias, atol=1e-6)


def test_the_transformer_learns_a_permutation_of_positions_a_shared_linear_map_cannot():
    # y moves every position's vector to another position: a fixed global permutation. Only a
    # model that mixes positions (and knows where it is: positional embedding) can learn it.
    torch.manual_seed(0)
    grid, channels = (2, 3), 4
    permutation = torch.tensor([3, 5, 0, 4, 1, 2])
    x = torch.randn(512, channels, *grid)
    y = x.flatten(2)[:, :, permutation].reshape(x.shape)
    hyper = {"d_model": 32, "layers": 2, "heads": 4, "ffn": 64, "dropout": 0.0}
    transformer = _normalised("transformer", channels, grid, positional_embedding=True, **hyper)
    cosine_transformer, _ = _fit(transformer, x, y, lr=1e-2)
    cosine_linear, _ = _fit(_normalised("linear", channels, grid), x, y, lr=1e-2)
    assert cosine_transformer > 0.95
    assert cosine_linear < 0.3


def test_the_cnn_learns_a_one_pixel_shift_a_per_position_mlp_cannot():
    torch.manual_seed(0)
    x = torch.randn(256, 3, 6, 6)
    y = torch.zeros_like(x)
    y[..., 1:] = x[..., :-1]  # one pixel to the right, zeros entering on the left
    cosine_cnn, _ = _fit(_normalised("cnn", 3, (6, 6), hidden=32, dropout=0.0), x, y)
    cosine_mlp, _ = _fit(_normalised("mlp", 3, (6, 6), hidden=32, dropout=0.0), x, y)
    assert cosine_cnn > 0.95
    assert cosine_mlp < 0.3


def test_early_stopping_counts_epochs_without_enough_improvement():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert [stopper.step(loss) for loss in (1.0, 0.95, 0.5, 0.45, 0.44)] == [
        False,
        False,
        False,
        False,
        True,
    ]


def test_training_stops_early_and_keeps_the_best_checkpoint():
    # With a learning rate of zero the validation loss never improves after the first epoch.
    x = torch.randn(64, 3, 2, 2)
    model = _normalised("linear", 3, (2, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = TrainSettings(lr=0.0, epochs=50, early_stop_patience=3, batch_size=16)
    result = train_model(model, TensorPairs(x, x, "cpu"), TensorPairs(x, x, "cpu"), settings)
    assert result.stopped_early
    assert len(result.history) == 4
    assert result.best_epoch == 1
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_svd_statistics_of_a_known_matrix():
    stats = svd_statistics(np.diag([3.0, 4.0, 0.0]))
    p = np.array([16, 9]) / 25
    entropy = -np.sum(p * np.log(p))
    assert stats["numerical_rank"] == 2
    assert stats["spectral_norm"] == pytest.approx(4.0)
    assert stats["frobenius_norm"] == pytest.approx(5.0)
    assert stats["spectral_entropy"] == pytest.approx(entropy)
    assert stats["effective_rank"] == pytest.approx(math.exp(entropy))
    assert stats["energy_top1"] == pytest.approx(0.64)
    assert stats["energy_top5"] == pytest.approx(1.0)
    q = np.array([4, 3]) / 7  # Roy and Vetterli's distribution of the singular values themselves
    assert stats["effective_rank_rv"] == pytest.approx(math.exp(-np.sum(q * np.log(q))))


def test_the_spectrum_of_a_zero_weight_is_rank_zero_not_an_error():
    # A manipulation that the map learns as a pure shift has W = 0.
    stats = svd_statistics(np.zeros((4, 4)))
    assert stats["numerical_rank"] == stats["effective_rank"] == stats["spectral_norm"] == 0
    assert "energy_top1" not in stats


def _rank_r_problem(rank: int, channels: int = 16, positions: int = 20000, seed: int = 0):
    """Originals x with log-normal channel scales, and y = a rank-r map of them plus noise,
    defined in the originals' standardised space; returns x, y, the space, W_s and its s."""
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=channels), np.exp(rng.normal(scale=1.5, size=channels))
    u, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    v, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    singular = np.array([3.0, 2.0, 1.5, 1.0, 0.8][:rank])
    weight_s = (u[:, :rank] * singular) @ v[:, :rank].T
    x_s = rng.normal(size=(positions, channels))
    y_s = x_s @ weight_s.T + rng.normal(size=channels) + 0.01 * rng.normal(size=x_s.shape)
    space = AnalysisSpace(shift=mean, scale=std, train_mean=np.zeros(channels))
    return x_s * std + mean, y_s * std + mean, space, weight_s, singular


def test_a_noisy_ridge_fit_of_a_rank_r_map_has_rank_r_in_both_spaces():
    x, y, space, weight_s, singular = _rank_r_problem(rank=3)
    gram = GramAccumulator(16, 16)
    gram.update(x, y)
    ridge = solve_ridge(gram, gamma=1e-6)
    raw = ridge.weight
    # machine precision would count the noise: every fitted map would have full rank
    assert np.linalg.matrix_rank(raw) == 16
    standardised = space.map_in(ridge).weight
    np.testing.assert_allclose(standardised, weight_s, atol=2e-3)
    for weight in (standardised, raw):
        stats = svd_statistics(weight, rank_tolerance=0.01)
        exact = np.linalg.svd(weight, compute_uv=False)[:3]
        p = exact**2 / np.sum(exact**2)
        assert stats["numerical_rank"] == 3
        assert stats["effective_rank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), 1e-3)
    p = singular**2 / np.sum(singular**2)
    stats = svd_statistics(standardised)
    assert stats["effective_rank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), 1e-3)


def test_the_standardised_space_is_the_one_a_trained_map_works_in():
    # A near-identity map in the standardised space: raw units on channels of log-normal spread
    # turn its flat spectrum (effective rank ~ C) into a steep one, and put (I - W) m into b.
    rng = np.random.default_rng(1)
    channels = 16
    mean = torch.from_numpy(rng.normal(size=channels) * 5)
    std = torch.from_numpy(np.exp(rng.normal(scale=1.5, size=channels)))
    core = torch.nn.Conv2d(channels, channels, 1).double()
    weight_n = np.eye(channels) + 0.05 * rng.normal(size=(channels, channels))
    with torch.no_grad():
        core.weight.copy_(torch.from_numpy(weight_n)[:, :, None, None])
        core.bias.copy_(torch.from_numpy(0.1 * rng.normal(size=channels)))
    raw = affine_of(NormalisedMap(core, mean, std))
    space = AnalysisSpace(shift=mean.numpy(), scale=std.numpy(), train_mean=np.zeros(channels))
    analysed = space.map_in(raw)
    np.testing.assert_allclose(analysed.weight, weight_n, atol=1e-6)
    np.testing.assert_allclose(analysed.bias, core.bias.detach().numpy(), atol=1e-6)
    assert svd_statistics(analysed.weight)["effective_rank"] > 14
    assert svd_statistics(raw.weight)["effective_rank"] < 10
    back = space.map_out(analysed)
    np.testing.assert_allclose(back.weight, raw.weight, atol=1e-6)
    np.testing.assert_allclose(back.bias, raw.bias, atol=1e-6)


def test_norm_statistics_separate_the_weight_from_the_bias():
    # W x = 2 x and b = (0, 3): at x = (1, 0) W x = (2, 0), W x + b = (2, 3).
    affine = AffineMap(weight=2 * np.eye(2), bias=np.array([0.0, 3.0]))
    x = np.array([1.0, 0.0]).reshape(1, 2, 1, 1)
    stats = {key: value for key, (value, _) in norm_statistics(affine, [x]).items()}
    assert stats["norm_wx_median"] == pytest.approx(2.0)
    assert stats["norm_bias"] == pytest.approx(3.0)
    assert stats["norm_wx_plus_b_median"] == pytest.approx(math.sqrt(13))
    assert stats["bias_share"] == pytest.approx(3 / 5)
    assert stats["bias_share_featmap"] == pytest.approx(3 / math.sqrt(13))  # |b| / |W x + b|
    assert stats["cosine_wx_wx_plus_b"] == pytest.approx(2 / math.sqrt(13))


def test_truncation_keeps_the_leading_components_and_the_mean_output():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    weight = u @ np.diag([5.0, 2.0, 1.0, 0.5]) @ v.T
    affine = AffineMap(weight=weight, bias=rng.normal(size=4))
    mean = rng.normal(size=4)
    rank1 = truncate(affine, 1, mean)
    np.testing.assert_allclose(rank1.weight, 5.0 * np.outer(u[:, 0], v[:, 0]), atol=1e-12)
    np.testing.assert_allclose(rank1.apply(mean[None]), affine.apply(mean[None]), atol=1e-12)
    np.testing.assert_allclose(truncate(affine, 4, mean).weight, weight, atol=1e-12)


RESNET = BackboneSpec(
    model="resnet18",
    layers=("layer3",),
    model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
    num_classes=3,
)
VIT = BackboneSpec(
    model="vit_tiny_patch16_224",
    layers=("blocks.0",),
    model_args={"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2},
    num_classes=3,
)


@pytest.mark.parametrize("spec", [RESNET, VIT], ids=["cnn", "vit"])
def test_the_rest_of_the_network_on_identity_mapped_features_gives_the_models_logits(spec):
    torch.manual_seed(0)
    model = build_backbone(spec)
    x = torch.randn(3, 3, 32, 32)
    layer = spec.layers[0]
    with torch.inference_mode(), capture_layers(model, spec.layers) as outputs:
        logits = model(x)
    maps, prefix = to_grid(model, outputs[layer])
    prefix = None if prefix is None else prefix.numpy()
    again = logits_of_features(model, layer, maps.numpy(), prefix, (32, 32), batch_size=2)
    np.testing.assert_allclose(again, logits.numpy(), rtol=1e-4, atol=1e-5)
    # and a real change of the features changes the logits
    changed = logits_of_features(model, layer, -maps.numpy(), prefix, (32, 32), batch_size=2)
    assert not np.allclose(changed, logits.numpy(), atol=1e-3)


def test_semantic_metrics_against_their_formulas():
    logits = np.log(np.array([[0.5, 0.5, 0.0 + 1e-300], [1.0, 1e-300, 1e-300]]))
    np.testing.assert_allclose(metrics.entropy(logits), [1.0, 0.0], atol=1e-9)
    p = np.log(np.array([[1.0, 1e-300]]))
    q = np.log(np.array([[1e-300, 1.0]]))
    np.testing.assert_allclose(metrics.jsd(p, q), [1.0], atol=1e-9)  # disjoint: 1 bit
    np.testing.assert_allclose(metrics.jsd(p, p), [0.0], atol=1e-9)
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    np.testing.assert_array_equal(metrics.top_k_hits(scores, np.array([2, 1]), 2), [1.0, 1.0])
    np.testing.assert_array_equal(metrics.top_k_hits(scores, np.array([2, 2]), 1), [0.0, 0.0])
    np.testing.assert_array_equal(metrics.top1_agreement(scores, scores[::-1]), [0.0, 0.0])


def _default_backbones() -> list:
    """The default study's backbones (config.yaml), to build with seeded random weights."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    specs = {
        name: BackboneSpec(
            model=entry["model"],
            layers=tuple(entry["layers"]),
            model_args=entry["model_args"],
            num_classes=5,
        )
        for name, entry in config["backbones"].items()
    }
    return [pytest.param(spec, id=name) for name, spec in specs.items()]


@pytest.mark.parametrize("spec", _default_backbones())
def test_mapped_features_reach_the_logits_at_every_default_layer(spec):
    # At the ViT's last block nothing after the layer reads the patch tokens: a semantic row is
    # meaningful only if the prefix (class) token is mapped too, as a position-wise map does.
    torch.manual_seed(0)
    model = build_backbone(spec)
    images = torch.randn(4, 3, 64, 64)
    with torch.inference_mode(), capture_layers(model, spec.layers) as outputs:
        logits = model(images).numpy()
    rng = np.random.default_rng(0)

    def noise(x: np.ndarray) -> np.ndarray:
        return rng.normal(size=x.shape).astype(np.float32) * x.std()

    labels = np.zeros(4, dtype=int)
    for layer in spec.layers:
        maps, prefix = to_grid(model, outputs[layer])
        prefix = None if prefix is None else prefix.numpy()
        features = HeldOutFeatures(maps.numpy(), prefix, logits, labels)
        rows = mapping_rows(
            model, layer, features, features, noise, noise, False, (64, 64), SemanticSettings(), {}
        )
        jsd = next(row["value"] for row in rows if row["metric"] == "jsd")
        assert jsd > 1e-3, f"{layer}: the mapped features do not reach the logits"
        # a mapping that keeps the original prefix: the layer tells whether its rows could move
        last = layer == spec.layers[-1] and prefix is not None
        assert grid_reaches_output(model, layer, features, (64, 64)) is not last


def test_top_k_accuracy_is_written_only_where_it_can_be_below_one():
    # With 5 classes every label is among the top 5: the row would be 1 whatever was mapped.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 6)
    for classes, expected in ((5, False), (8, True)):
        logits = rng.normal(size=(6, classes))
        rows = mapped_rows(logits, logits, logits + 1, labels, False, 5, {})
        rows += reference_rows(logits, logits, labels, labels, 5, {})
        assert any(row["metric"] == "top5_accuracy" for row in rows) is expected
        assert sum(row["metric"] == "top1_accuracy" for row in rows) == 3
