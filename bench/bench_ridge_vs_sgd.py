"""Closed-form fits against the SGD-trained linear map (the FeatMap recipe), on every cell of a
study, in one run.

For each (backbone, layer, manipulation) of a study's config, or a seeded random sample of them
(--sample), on the study's stored features: the trained linear map with the study's recipe
(`featmap.training`, the workflow's `train_mapping`; or the paper's preset, --recipe paper), and
each closed-form fit (the workflow's `fit_closed_form`; --fits chooses): ridge, ridge_relative
(and its first pass alone), procrustes, procrustes_relative. All see the originals as they are
(no spatial op first), so that every fit is an affine 1x1 map of the same inputs. Per cell it
prints the test `cosine_median` of each (mean over test images of the per-image median over
positions of the cosine) and the fit's wall time; at the end, per closed-form fit, the
distribution of its cosine gap to the trained map (fit - trained), its worst cell, and the speed
ratio (trained seconds over fit seconds, summed over the cells). Run from the repository root
after the study's features exist (e.g. `make demo`):

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_ridge_vs_sgd.py --config config.yaml
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_ridge_vs_sgd.py --sample 12 --seed 0
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_ridge_vs_sgd.py --sample 6 --recipe paper \
        --fits ridge ridge_relative
"""

import argparse
import dataclasses
import json
import time

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
import yaml

from featlab import metrics
from featlab.mapping.fit import ClosedFormSettings, fit_closed_form
from featlab.mapping.pairs import open_pair
from featlab.mapping.train import TrainSettings, train_mapping

# Each closed-form fit: (mapping, settings that differ from the study's); ridge_relative_1pass
# is ridge_relative without its reweighted passes (least squares of the relative errors).
FITS = {
    "ridge": ("ridge", {}),
    "ridge_relative": ("ridge_relative", {}),
    "ridge_relative_1pass": ("ridge_relative", {"passes": 0}),
    "procrustes": ("procrustes", {}),
    "procrustes_relative": ("procrustes_relative", {}),
}
CLOSED_FORM = tuple(FITS)


def cells_of(config: dict, sample: int | None, seed: int) -> list[tuple[str, str, str]]:
    """Every (backbone, layer, manipulation) of the config, or `sample` of them drawn at random."""
    cells = [
        (backbone, layer, manipulation)
        for backbone, spec in config["backbones"].items()
        for layer in spec["layers"]
        for manipulation in config["manipulations"]
    ]
    if sample is None or sample >= len(cells):
        return cells
    chosen = np.random.default_rng(seed).choice(len(cells), sample, replace=False)
    return [cells[i] for i in sorted(chosen)]


def test_cosine(view, apply) -> float:
    x, y = view.read(view.splits["test"])
    return float(np.mean(metrics.cosine_median(apply(x), y)))


def bench_cell(root: str, cell: tuple[str, str, str], config: dict, fits: dict) -> dict:
    """Fit every closed form and the trained linear map of one cell; their cosines and times."""
    backbone, layer, manipulation = cell
    stores = (
        f"{root}/features/{backbone}/original.zarr",
        f"{root}/features/{backbone}/{manipulation}.zarr",
        f"{root}/images/{manipulation}.zarr",
        layer,
    )
    row = {"backbone": backbone, "layer": layer, "manipulation": manipulation}
    view = open_pair(*stores)
    row["identity"] = test_cosine(view, lambda x: x)
    for name, (method, overrides) in fits.items():
        study = config["mappings"].get(method, {})
        settings = ClosedFormSettings(
            **{k: v for k, v in study.items() if k != "spatial_first"}, **overrides
        )
        start = time.perf_counter()
        affine = fit_closed_form(view, method, settings)
        row[f"{name}_seconds"] = time.perf_counter() - start
        row[name] = test_cosine(view, affine.apply_maps)
    training = TrainSettings(**config["featmap"]["training"])
    carved = open_pair(*stores, val_fraction=training.val_fraction, seed=training.seed)
    start = time.perf_counter()
    trained = train_mapping(carved, "linear", {}, training)
    row["linear_seconds"] = time.perf_counter() - start
    row["linear"] = test_cosine(view, trained.apply_maps)
    return row


def summarise(rows: list[dict], fits: tuple[str, ...]) -> None:
    """Per closed-form fit: the gap to the trained map over cells, its worst cell, the speed."""
    print(f"\n{len(rows)} cells; gap = test cosine_median of the fit - of the trained linear map")
    header = ("fit", "worst", "p05", "median", "max", ">= -0.005", "< identity", "speed-up")
    print("{:<22}{:>8}{:>8}{:>8}{:>8}{:>11}{:>12}{:>10}".format(*header))
    trained_seconds = sum(row["linear_seconds"] for row in rows)
    for method in fits:
        gaps = np.array([row[method] - row["linear"] for row in rows])
        below_identity = sum(row[method] < row["identity"] - 0.005 for row in rows)
        speed = trained_seconds / sum(row[f"{method}_seconds"] for row in rows)
        print(
            f"{method:<22}{gaps.min():>8.3f}{np.quantile(gaps, 0.05):>8.3f}"
            f"{np.median(gaps):>8.3f}{gaps.max():>8.3f}{np.sum(gaps >= -0.005):>7}/{len(rows)}"
            f"{below_identity:>8}/{len(rows)}{speed:>9.0f}x"
        )
        worst = rows[int(np.argmin(gaps))]
        print(
            f"  worst cell: {worst['backbone']} {worst['layer']} {worst['manipulation']}: "
            f"{worst[method]:.4f} against {worst['linear']:.4f} (identity {worst['identity']:.4f})"
        )
    print(f"trained linear map: {trained_seconds:.1f} s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="the study's config file")
    parser.add_argument("--sample", type=int, help="this many cells, drawn at random (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --sample draw")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", help="also write the per-cell rows to this JSON file")
    parser.add_argument(
        "--fits", nargs="+", choices=CLOSED_FORM, default=CLOSED_FORM, help="closed forms to fit"
    )
    parser.add_argument(
        "--recipe",
        choices=("study", "paper"),
        default="study",
        help="train the linear map with the study's featmap.training or the paper's preset "
        "(TrainSettings' defaults: 100 epochs at 1e-4, batch 32 x 2, patience 8 and 6)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    config.setdefault("featmap", {}).setdefault("training", {})
    config.setdefault("mappings", {})
    recipe = config["featmap"]["training"] if args.recipe == "study" else {}
    training = dataclasses.asdict(TrainSettings(**recipe))
    config["featmap"]["training"] = {**training, "threads": args.threads}
    root = f"results/{config['study']}"
    cells = cells_of(config, args.sample, args.seed)
    fits = {name: FITS[name] for name in args.fits}
    print(
        f"study {config['study']}: {len(cells)} cells; torch threads {args.threads}; "
        f"linear trained with the {args.recipe}'s recipe"
    )
    print(
        f"{'cell':<34}{'identity':>9}"
        + "".join(f"{m:>22}" for m in (*fits, "linear"))
        + "   (test cosine, fit seconds)"
    )
    rows = []
    for cell in cells:
        row = bench_cell(root, cell, config, fits)
        rows.append(row)
        scores = "".join(
            f"{row[m]:>14.4f} ({row[f'{m}_seconds']:>5.2f})" for m in (*fits, "linear")
        )
        print(f"{' '.join(cell):<34}{row['identity']:>9.4f}{scores}", flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(rows, handle, indent=1)
    summarise(rows, tuple(fits))


if __name__ == "__main__":
    main()
