"""FeatInv benchmark: the fast sampler against the DDIM-50 reference, and stored against
recomputed features in training, on one trained model of a study, in one run.

Sampling: the reference is DDIM, 50 steps, eta 0, leading timestep spacing, fp32, batch 1
(FeatInv's sampler, run image by image; guidance as `featinv.settings.resolve_guidance` picks it
for the model: 1.75 for a pretrained base, off for the scratch one); the fast sampler is the
study's `featinv.sample` (scheduler, steps, spacing, batch size), and is run again with the other
timestep spacing (leading against trailing). All start from the same noise. Reported: images/s of
each and the speed-up, the agreement of the two samplers' images (SSIM, MSE), and for each sampler
SSIM and LPIPS against the ground-truth images, the median cosine between the backbone's features
of its images and the conditioning features, and the classifier's top-1 agreement with the source
images; and the baseline to beat, the SSIM of the mean train image against the ground truth.

Training: steps/s of the training step with features read from the feature store (what the
pipeline does) against the same step with the backbone recomputing the batch's features first.

Run after the study has trained the model, from the repository root:

    snakemake results/shapes/featinv/cnn/layer4/model
    python bench/bench_featinv_sampling.py --backbone cnn --layer layer4 --images 16
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import numpy as np
import torch
import yaml
from diffusers import DDPMScheduler

from featlab import metrics
from featlab.backbones import BackboneSpec, build_backbone
from featlab.data.images import ImageStore
from featlab.featinv import train
from featlab.featinv.evaluate import BackboneProbe, mean_image
from featlab.featinv.model import FeatInvModel
from featlab.featinv.sample import REFERENCE, SampleSettings, sample
from featlab.featinv.scores import LPIPS, mse, ssim
from featlab.featinv.train import TrainSettings, images_to_tensor, tensor_to_images
from featlab.store import FeatureStore


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def sampler_scores(images, truth, features, source, probe, lpips) -> dict:
    own_features, logits = probe(images)
    return {
        "ssim_vs_truth": float(ssim(images, truth).mean()),
        f"{lpips.name}_vs_truth": float(lpips(images, truth).mean()),
        "cosine_to_conditioning": float(metrics.cosine_median(own_features, features).mean()),
        "top1_agreement": float((logits.argmax(1) == source).mean()),
    }


def bench_sampling(
    model, features, truth, source, probe, fast: SampleSettings, lpips, mean
) -> dict:
    """Both samplers on the same images and noise; `mean` is the mean train image (R, R, 3)."""
    reference = dataclasses.replace(REFERENCE, batch_size=1, device="cpu")
    ref_images, ref_seconds = timed(sample, model, features, reference)
    fast_images, fast_seconds = timed(sample, model, features, fast)
    other = dataclasses.replace(
        fast, spacing="leading" if fast.spacing != "leading" else "trailing"
    )
    other_images = sample(model, features, other)
    n = len(features)
    return {
        "images": n,
        "reference": {
            "sampler": "ddim-50, fp32, batch 1",
            "images_per_s": n / ref_seconds,
            **sampler_scores(ref_images, truth, features, source, probe, lpips),
        },
        "fast": {
            "sampler": f"{fast.scheduler}-{fast.steps} {fast.spacing}, batch {fast.batch_size}",
            "images_per_s": n / fast_seconds,
            **sampler_scores(fast_images, truth, features, source, probe, lpips),
        },
        # The same sampler with the other timestep spacing (leading: diffusers' default).
        f"fast_{other.spacing}": {
            "sampler": f"{other.scheduler}-{other.steps} {other.spacing}",
            **sampler_scores(other_images, truth, features, source, probe, lpips),
            "vs_reference_ssim": float(ssim(other_images, ref_images).mean()),
        },
        "speedup": ref_seconds / fast_seconds,
        # The ceiling the model's resolution sets: the true images at that resolution.
        "truth_at_resolution_top1_agreement": float((probe(truth)[1].argmax(1) == source).mean()),
        "mean_image_ssim_vs_truth": float(
            ssim(np.broadcast_to(mean, truth.shape).copy(), truth).mean()
        ),
        "fast_vs_reference_ssim": float(ssim(fast_images, ref_images).mean()),
        "fast_vs_reference_mse": float(mse(fast_images, ref_images).mean()),
    }


def bench_training(model, data, pixels, probe, settings: TrainSettings, steps: int) -> dict:
    """Training steps/s with stored features against recomputing them every step."""
    noise = DDPMScheduler.from_config(model.noise_config)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=settings.lr)
    model.train()

    def run(recompute: bool) -> float:
        start = time.perf_counter()
        for step in range(steps):
            if recompute:
                batch = train.step_draws(settings, step, data.targets.shape, noise)[0]
                data.features[batch] = torch.from_numpy(probe(pixels[batch.numpy()])[0])
            train._train_step(model, data, settings, noise, optimiser, step, torch.device("cpu"))
        return steps / (time.perf_counter() - start)

    run(recompute=True)  # warm-up: first calls allocate and pick kernels
    stored, recomputed = run(recompute=False), run(recompute=True)
    model.eval()
    return {
        "steps": steps,
        "batch_size": settings.batch_size,
        "stored_steps_per_s": stored,
        "recomputed_steps_per_s": recomputed,
        "speedup": stored / recomputed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--backbone", default="cnn")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--images", type=int, default=16, help="test images to sample")
    parser.add_argument("--train-steps", type=int, default=20, help="steps per training timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--fast-steps", type=int, default=None, help="override featinv.sample.steps"
    )
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--model", default=None, help="a FeatInv model folder other than the study's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # 1. The study's trained model, test images, their features, and the backbone.
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path("results") / config["study"]
    model_dir = args.model or results / "featinv" / args.backbone / args.layer / "model"
    model = FeatInvModel.from_pretrained(model_dir)
    store = FeatureStore(results / "features" / args.backbone / "original.zarr")
    images = ImageStore(results / "images" / "original.zarr")
    spec = {k: v for k, v in config["backbones"][args.backbone].items() if k != "train"}
    weights = results / "models" / args.backbone / "model.safetensors"
    backbone = build_backbone(BackboneSpec(**spec), weights if spec["weights"] == "train" else None)
    probe = BackboneProbe(backbone, args.layer, store.attrs["preprocessing"])
    indices = images.indices("test")[: args.images]
    features = store.read(args.layer, indices)
    pixels = images.images.get_orthogonal_selection((indices,))
    truth = tensor_to_images(images_to_tensor(pixels, model.settings.resolution))
    source = store.logits.get_orthogonal_selection((indices,)).argmax(1)
    fast = SampleSettings(**{**config["featinv"].get("sample", {}), "device": "cpu"})
    if args.fast_steps:
        fast = dataclasses.replace(fast, steps=args.fast_steps)
    # 2. Sampling, then training.
    report = {
        "device": "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "model": f"{args.backbone}/{args.layer}",
    }
    mean = mean_image(images, model.settings.resolution)
    report["sampling"] = bench_sampling(model, features, truth, source, probe, fast, LPIPS(), mean)
    train_indices = images.indices("train")[:256]
    data = train.TrainingData(
        torch.from_numpy(store.read(args.layer, train_indices)),
        model.encode(
            images_to_tensor(
                images.images.get_orthogonal_selection((train_indices,)), model.settings.resolution
            )
        ),
    )
    settings = TrainSettings(
        **{k: v for k, v in config["featinv"].get("train", {}).items() if k in ("batch_size", "lr")}
    )
    train_pixels = images.images.get_orthogonal_selection((train_indices,))
    report["training"] = bench_training(
        model, data, train_pixels, probe, settings, args.train_steps
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
