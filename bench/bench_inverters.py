"""Inverters benchmark: FeatInv against the optimiser on the same features, in one run.

Both invert the original and the true manipulated features of the first test images of one
(backbone, layer, manipulation) cell of a study, through the workflow's own code
(`featinv.evaluate.invert_references`, the same reconstructions and scoring as the inversion
rows): FeatInv with the study's `featinv.sample`, the optimiser with its `featinv.optimise`
(`--steps` overrides the steps). Reported per inverter: images per second of the reconstruction
alone (scoring not counted), and each score of the table's rows for `reconstructed_original` and
`reconstructed_manipulated` (SSIM and LPIPS against the image, median cosine to the conditioning
features, top-1 agreement), beside the floor (the mean train image) and the ceiling (the
originals at the reconstructions' resolution). A layer without a FeatInv model gets the
optimiser's rows only.

`--checkpoints` adds FeatInv at earlier training steps: each folder is a training checkpoint of
the layer's model (`featinv.train.save_checkpoint`, copied aside while the workflow trained it; the
workflow removes it at the end), whose weights replace the trained model's and are scored on the
same features, from the same starting noise. With the recipe's constant learning rate, step k of a
longer run is exactly a k-step run, so this measures what fewer training steps would give.

Run after the study has extracted the features (and trained the FeatInv model), from the
repository root:

    python bench/bench_inverters.py --backbone cnn --layer layer4 --manipulation rot90 --images 16
"""

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import torch
import yaml
from safetensors.torch import load_file

from featlab.backbones import BackboneSpec, build_backbone
from featlab.featinv import evaluate
from featlab.featinv.model import FeatInvModel
from featlab.featinv.optimise import OptimiseSettings
from featlab.featinv.sample import SampleSettings, sample
from featlab.featinv.train import restore_weights
from featlab.io import write_json
from featlab.study.settings import settings_of


class Timed:
    """A reconstruction function that counts its images and seconds."""

    def __init__(self, reconstruct):
        self.reconstruct, self.images, self.seconds = reconstruct, 0, 0.0

    def __call__(self, features):
        start = time.perf_counter()
        images = self.reconstruct(features)
        self.seconds += time.perf_counter() - start
        self.images += len(images)
        return images


def run(inverter: evaluate.Inverter, inputs, base: dict) -> dict:
    """Invert the true features with `inverter`; its images/s and its rows' values."""
    timer = Timed(inverter.reconstruct)
    inverter = dataclasses.replace(inverter, reconstruct=timer)
    settings = evaluate.InvertSettings(n_images=len(inputs.original), pooled=False)
    rows, _ = evaluate.invert_references(inverter, inputs, settings, base)
    scores = {f"{row['comparison']}:{row['metric']}": round(row["value"], 4) for row in rows}
    return {"images_per_second": round(timer.images / timer.seconds, 3), "scores": scores}


def open_cell(config: dict, backbone: str, manipulation: str) -> tuple[torch.nn.Module, dict]:
    """The study's trained backbone and the stores of one (backbone, manipulation) cell."""
    results = Path("results") / config["study"]
    spec = {k: v for k, v in config["backbones"][backbone].items() if k != "train"}
    weights = results / "models" / backbone / "model.safetensors"
    model = build_backbone(BackboneSpec(**spec), weights if spec["weights"] != "hub" else None)
    features = results / "features" / backbone
    stores = {
        "original": features / "original.zarr",
        "manipulated": features / f"{manipulation}.zarr",
        "original_images": results / "images" / "original.zarr",
        "manipulated_images": results / "images" / f"{manipulation}.zarr",
    }
    return model, stores


def sampling_settings(config: dict) -> SampleSettings:
    """The study's FeatInv sampler, on the CPU."""
    chosen = settings_of(SampleSettings, config.get("featinv", {}).get("sample", {}))
    return SampleSettings(**{**chosen, "device": "cpu"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--backbone", default="cnn")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--manipulation", default="rot90")
    parser.add_argument("--images", type=int, default=16, help="test images to invert")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (the config's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="FeatInv checkpoint folders")
    parser.add_argument("--no-optimiser", action="store_true", help="FeatInv's rows only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # 1. The study's cell: its backbone, stores and settings.
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path("results") / config["study"]
    backbone, stores = open_cell(config, args.backbone, args.manipulation)
    featinv = config.get("featinv", {})
    chosen = settings_of(OptimiseSettings, featinv.get("optimise", {}))
    optimising = OptimiseSettings(**{**chosen, "device": "cpu"})
    if args.steps:
        optimising = dataclasses.replace(optimising, steps=args.steps)
    resolution = featinv.get("model", {}).get("resolution", 64)
    base = dict(backbone=args.backbone, layer=args.layer, manipulation=args.manipulation)
    report = {"cell": base, "images": args.images, "threads": args.threads, "device": "cpu"}
    # 2. The optimiser, then FeatInv where the layer has a model.
    if not args.no_optimiser:
        inverter, inputs, _ = evaluate.open_optimisation(
            backbone, args.layer, stores, optimising, args.images, resolution
        )
        report["optimiser"] = {
            "settings": dataclasses.asdict(optimising),
            **run(inverter, inputs, base),
        }
    model = results / "featinv" / args.backbone / args.layer / "model"
    if model.is_dir():
        sampling = sampling_settings(config)
        inverter, inputs, _ = evaluate.open_inversion(
            model, backbone, args.layer, stores, sampling, args.images
        )
        report["featinv"] = {
            "settings": dataclasses.asdict(sampling),
            **run(inverter, inputs, base),
        }
        for checkpoint in map(Path, args.checkpoints):
            earlier = FeatInvModel.from_pretrained(model)
            restore_weights(earlier, load_file(checkpoint / "state.safetensors"))
            step = json.loads((checkpoint / "state.json").read_text())["step"]
            reconstruct = functools.partial(sample, earlier, settings=sampling)
            earlier_inverter = dataclasses.replace(inverter, reconstruct=reconstruct)
            report[f"featinv_step_{step}"] = run(earlier_inverter, inputs, base)
    print(json.dumps(report, indent=2))
    if args.output:
        write_json(args.output, report)  # keys sorted


if __name__ == "__main__":
    main()
