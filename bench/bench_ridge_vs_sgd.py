"""Closed-form ridge against the SGD-trained linear map (the FeatMap recipe), in one run.

Both fit the same train pairs of feature maps and are scored on the same test pairs: the wall
time of each fit, their ratio, and the test median per-position cosine of each. The data are
either a study's stored features (--study, --backbone, --layer, --manipulation) or synthetic
pairs of any size: originals with a decaying channel spectrum, manipulated = a random affine
map of them plus noise (--noise, relative to the signal). Run from the repository root:

    .venv/bin/python bench/bench_ridge_vs_sgd.py --channels 128 --grid 9 --pairs 2000
    .venv/bin/python bench/bench_ridge_vs_sgd.py --study shapes --backbone vit --layer blocks.3 \\
        --manipulation hue60
    # the paper-sized layer (ConvNeXt-B stage 2) on a CUDA GPU:
    .venv/bin/python bench/bench_ridge_vs_sgd.py --channels 512 --grid 18 --pairs 8000 --device cuda
"""

import argparse
import dataclasses
import time

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch

from featlab import metrics
from featlab.mapping.closed_form import GramAccumulator, solve_ridge
from featlab.mapping.models import NormalisedMap, apply_model, build_model
from featlab.mapping.train import TensorPairs, TrainSettings, train_model


def synthetic_pairs(channels: int, grid: int, pairs: int, noise: float, seed: int = 0):
    """Original maps (N, C, g, g) and manipulated = W x + b + noise, float32."""
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(channels))  # decaying channel variances
    mixing = rng.normal(size=(channels, channels)) * spectrum
    x = rng.normal(size=(pairs, grid * grid, channels)) @ mixing.T + rng.normal(size=channels)
    weight = np.eye(channels) + rng.normal(size=(channels, channels)) / np.sqrt(channels)
    y = x @ weight.T + rng.normal(size=channels)
    y += noise * y.std() * rng.normal(size=y.shape)

    def maps(rows):  # (N, g*g, C) -> (N, C, g, g)
        return rows.transpose(0, 2, 1).reshape(pairs, channels, grid, grid).astype(np.float32)

    return maps(x), maps(y)


def study_pairs(study: str, backbone: str, layer: str, manipulation: str):
    """A study's train+test features of one layer, in the store's split order (train first)."""
    from featlab.data.images import ImageStore
    from featlab.store import FeatureStore

    root = f"results/{study}"
    images = ImageStore(f"{root}/images/{manipulation}.zarr")
    order = np.concatenate([images.indices("train"), images.indices("test")])
    x = FeatureStore(f"{root}/features/{backbone}/original.zarr").read(layer, order)
    y = FeatureStore(f"{root}/features/{backbone}/{manipulation}.zarr").read(layer, order)
    return x, y, len(images.indices("train"))


def fit_ridge(x: np.ndarray, y: np.ndarray, gamma: float, block: int = 256):
    gram = GramAccumulator(x.shape[1], y.shape[1])
    for start in range(0, len(x), block):
        gram.update_maps(x[start : start + block], y[start : start + block])
    return solve_ridge(gram, gamma).apply_maps


def fit_sgd(x: np.ndarray, y: np.ndarray, settings: TrainSettings, device: str):
    """The recipe's linear map: per-channel normalisation, 5% validation, early stopping."""
    n_val = max(1, round(settings.val_fraction * len(x)))
    order = np.random.default_rng(settings.seed).permutation(len(x))
    val, train = order[:n_val], np.sort(order[n_val:])
    mean = x[train].mean(axis=(0, 2, 3), dtype=np.float64)
    std = np.maximum(x[train].std(axis=(0, 2, 3), dtype=np.float64), 1e-6)
    core = build_model("linear", x.shape[1], x.shape[2:])
    model = NormalisedMap(core, torch.from_numpy(mean), torch.from_numpy(std)).to(device)
    result = train_model(
        model,
        TensorPairs(x[train], y[train], torch.device(device)),
        TensorPairs(x[val], y[val], torch.device(device)),
        settings,
    )
    return (lambda maps: apply_model(result.model, maps)), len(result.history)


def test_cosine(apply, x: np.ndarray, y: np.ndarray) -> float:
    return metrics.summarise(metrics.cosine_median(apply(x), y))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--grid", type=int, default=9)
    parser.add_argument("--pairs", type=int, default=2000, help="train pairs (test: a fifth)")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--study")
    parser.add_argument("--backbone")
    parser.add_argument("--layer")
    parser.add_argument("--manipulation")
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=100, help="the recipe's upper limit")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # 1. The data, split into train and test pairs
    if args.study:
        x, y, n_train = study_pairs(args.study, args.backbone, args.layer, args.manipulation)
        source = f"{args.study}: {args.backbone} {args.layer} {args.manipulation}"
    else:
        n_train = args.pairs
        x, y = synthetic_pairs(args.channels, args.grid, n_train + args.pairs // 5, args.noise)
        source = f"synthetic, noise {args.noise}"
    (x_train, x_test), (y_train, y_test) = np.split(x, [n_train]), np.split(y, [n_train])
    print(f"data: {source}; train {x_train.shape}, test {x_test.shape}; device {args.device}")
    # 2. Closed-form ridge (numpy, fp64 Gram matrices on the CPU)
    start = time.perf_counter()
    ridge = fit_ridge(x_train, y_train, args.gamma)
    ridge_seconds = time.perf_counter() - start
    # 3. The SGD recipe (AdamW, plateau schedule, early stopping) on the same pairs
    settings = dataclasses.replace(TrainSettings(), epochs=args.epochs)
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    sgd, epochs = fit_sgd(x_train, y_train, settings, args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    sgd_seconds = time.perf_counter() - start
    # 4. The comparison
    ridge_cosine, sgd_cosine = test_cosine(ridge, x_test, y_test), test_cosine(sgd, x_test, y_test)
    print(f"{'fit':<24}{'seconds':>10}{'test cosine':>14}")
    print(f"{'ridge (closed form)':<24}{ridge_seconds:>10.2f}{ridge_cosine:>14.4f}")
    print(f"{f'linear SGD ({epochs} ep)':<24}{sgd_seconds:>10.2f}{sgd_cosine:>14.4f}")
    print(
        f"speed-up {sgd_seconds / ridge_seconds:.0f}x; "
        f"cosine ridge - SGD = {ridge_cosine - sgd_cosine:+.4f}"
    )


if __name__ == "__main__":
    main()
