"""Two training recipes of the trained mappings on the same cells, in one run: the study's
(`featmap.training`) against the same with some settings changed (--set), for example a batch
sized for the CPU with its learning rate scaled.

For each (backbone, layer, manipulation) of a study's config, or a seeded random sample of them
(--sample), and each trained mapping (--mappings; default: the config's), on the study's stored
features: both recipes train the mapping as the workflow does (spatial_first as configured) and
score its test `cosine_median`. Prints per cell the two cosines and seconds; at the end, per
mapping, the distribution of the gap (changed - study's), the worst cell, and the time ratio
(the study's seconds over the changed recipe's, summed over the cells). Run from the repository
root after the study's features exist:

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_training_recipe.py --sample 8 \
        --set batch_size=128 lr=0.006
"""

import argparse
import json
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
import yaml
from bench_ridge_vs_sgd import cells_of, test_cosine
from snakemake.utils import validate

from featlab.mapping.models import TRAINED
from featlab.mapping.pairs import open_pair
from featlab.mapping.train import TrainSettings, train_mapping
from featlab.study import Study

REPO = Path(__file__).resolve().parents[1]


def train_and_score(study: Study, cell: tuple[str, str, str], mapping: str, recipe: dict):
    """Train one cell's mapping with `recipe`; its test cosine_median and seconds."""
    backbone, layer, manipulation = cell
    settings = TrainSettings(**recipe)
    fit = study.fit(manipulation, mapping)
    stores = (
        study.features(backbone, "original"),
        study.features(backbone, manipulation),
        study.images(manipulation),
        layer,
    )
    pair = open_pair(*stores, fit["spatial_op"], settings.val_fraction, settings.seed)
    start = time.perf_counter()
    trained = train_mapping(pair, mapping, fit["settings"], settings)
    seconds = time.perf_counter() - start
    return test_cosine(pair, trained.apply_maps), seconds


def parse_overrides(pairs: list[str]) -> dict:
    """key=value pairs, each value read as YAML (numbers, booleans)."""
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in TrainSettings.__dataclass_fields__:
            raise SystemExit(f"--set {pair}: {key!r} is not a featmap.training setting")
        overrides[key] = yaml.safe_load(value)
    return overrides


def summarise(rows: list[dict], mappings: list[str]) -> None:
    print(f"\n{len(rows) // len(mappings)} cells; gap = test cosine_median changed - study's")
    print(
        "{:<14}{:>8}{:>8}{:>8}{:>8}{:>10}".format(
            "mapping", "worst", "median", "max", "< -0.01", "speed-up"
        )
    )
    for mapping in mappings:
        own = [row for row in rows if row["mapping"] == mapping]
        gaps = np.array([row["changed"] - row["study"] for row in own])
        speed = sum(row["study_seconds"] for row in own) / sum(
            row["changed_seconds"] for row in own
        )
        worst = own[int(np.argmin(gaps))]
        print(
            f"{mapping:<14}{gaps.min():>8.4f}{np.median(gaps):>8.4f}{gaps.max():>8.4f}"
            f"{np.sum(gaps < -0.01):>8}{speed:>9.2f}x   worst: {worst['backbone']} "
            f"{worst['layer']} {worst['manipulation']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="the study's config file")
    parser.add_argument("--sample", type=int, help="this many cells, drawn at random (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --sample draw")
    parser.add_argument("--mappings", nargs="+", choices=TRAINED, help="default: the config's")
    parser.add_argument("--set", nargs="+", default=[], help="changed settings, key=value")
    parser.add_argument("--out", help="also write the per-cell rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    study = Study.plan(config, REPO, main_process=False)
    study_recipe = {**study.settings("featmap.training"), "threads": 1}
    changed = {**study_recipe, **parse_overrides(args.set)}
    mappings = args.mappings or [m for m in study.config["mappings"] if m in TRAINED]
    rows = []
    for cell in cells_of(study.config, args.sample, args.seed):
        if not study.trained_here(cell[1], cell[2]):
            continue
        for mapping in mappings:
            row = dict(zip(("backbone", "layer", "manipulation"), cell, strict=True))
            row["mapping"] = mapping
            row["study"], row["study_seconds"] = train_and_score(study, cell, mapping, study_recipe)
            row["changed"], row["changed_seconds"] = train_and_score(study, cell, mapping, changed)
            rows.append(row)
            print(
                f"{' '.join(cell):<28}{mapping:<14}{row['study']:.4f} "
                f"({row['study_seconds']:5.1f} s)  {row['changed']:.4f} "
                f"({row['changed_seconds']:5.1f} s)",
                flush=True,
            )
    summarise(rows, mappings)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
