"""FeatInv training throughput against batch size and model size: what buys images per second?

Issue 21's item 4 asks whether FeatInv's training could take fewer and larger steps. That only
saves time if a step of a bigger batch costs less than proportionally more, so this benchmark
times the workflow's own training step (`featinv.train._train_step`, the study's model, noise
schedule and optimiser) on one backbone layer's stored training data, at the study's batch size
and at bigger ones, in one run: a few warm-up steps, then `--steps` timed steps per batch size.
`--model KEY=VALUE ...` adds a changed model (keys of `featinv.model`, values read as YAML, for
example `patch_size=4`: a coarser grid for the scratch UNet) at the study's batch size. Prints
seconds per step, images per second and the ratio to the study's model and batch size. It
measures speed only; a changed recipe must then be trained and scored for quality.

Run after the study has extracted the layer's features, from the repository root:

    OMP_NUM_THREADS=1 python bench/bench_featinv_batch.py --backbone cnn --layer layer4 \
        --batches 16 32 64 --model patch_size=4
"""

import argparse
import dataclasses
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import torch
import yaml
from diffusers import DDPMScheduler

from featlab.featinv.model import ModelSettings, build_model
from featlab.featinv.train import TrainSettings, _train_step, load_training_data
from featlab.store import FeatureStore
from featlab.study.settings import settings_of


def seconds_per_step(model, data, settings: TrainSettings, steps: int, warmup: int) -> float:
    """Mean wall seconds of `steps` training steps after `warmup` untimed ones."""
    optimiser = torch.optim.AdamW(
        model.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    noise = DDPMScheduler.from_config(model.noise_config)
    model.train()
    device = torch.device("cpu")
    for step in range(warmup):
        _train_step(model, data, settings, noise, optimiser, step, device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        _train_step(model, data, settings, noise, optimiser, step, device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--results", default=".", help="folder holding the study's results/")
    parser.add_argument("--backbone", default="cnn")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", nargs="*", default=[], help="a changed model: KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # 1. The study's model and recipe for the layer, and its training data.
    config = yaml.safe_load(Path(args.config).read_text())
    featinv = config.get("featinv", {})
    results = Path(args.results) / "results" / config["study"]
    features = results / "features" / args.backbone / "original.zarr"
    images = results / "images" / "original.zarr"
    model_settings = ModelSettings(**featinv.get("model", {}))
    study = TrainSettings(**settings_of(TrainSettings, featinv.get("train", {})), device="cpu")
    channels = FeatureStore(features).layer(args.layer).shape[1]
    # 2. Each variant on a fresh model of the same seed, the study's model and batch first.
    changed = {k: yaml.safe_load(v) for k, _, v in (pair.partition("=") for pair in args.model)}
    variants = [("study", model_settings, study.batch_size)]
    variants += [("study", model_settings, b) for b in args.batches if b != study.batch_size]
    if changed:
        label = " ".join(args.model)
        variants.append((label, dataclasses.replace(model_settings, **changed), study.batch_size))
    print(f"{args.backbone} {args.layer}, {args.threads} thread(s), {args.steps} timed steps")
    print(f"{'model':>14} {'batch':>6} {'s/step':>8} {'images/s':>9} {'vs study':>9}")
    baseline = None
    for label, variant, batch in variants:
        model = build_model(variant, channels)
        data = load_training_data(features, images, args.layer, model)
        settings = dataclasses.replace(study, batch_size=batch)
        seconds = seconds_per_step(model, data, settings, args.steps, args.warmup)
        rate = batch / seconds
        baseline = baseline or rate
        print(f"{label:>14} {batch:>6} {seconds:>8.3f} {rate:>9.1f} {rate / baseline:>8.2f}x")


if __name__ == "__main__":
    main()
