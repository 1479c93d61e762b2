"""FeatInv at the paper's size: a miniSD-sized UNet and ControlNet (random weights) at 256x256.

Two comparisons, each in one run, on random weights (speed does not depend on them):

- sampling images/s of the fast sampler (DPM-Solver++ 20 steps, bf16 autocast, batched) against
  the reference (DDIM 50 steps, fp32, batch 1), both with classifier-free guidance 1.75, through
  the VAE decoder;
- training steps/s (batch 8, bf16 autocast, AdamW on the ControlNet and hint block) with the
  conditioning features given, as the pipeline reads them from the feature store, against
  recomputing them every step with a ConvNeXt-B (random weights) on 288x288 crops.

The architecture is Stable Diffusion 1.x's (miniSD is SD 1.4 fine-tuned to 256x256): UNet blocks
320-640-1280-1280, cross-attention width 768 over 77 prompt tokens, 4x32x32 latents; the VAE's
blocks 128-256-512-512. The features are ConvNeXt-B's stage 2 (512 x 18 x 18). Meant for a CUDA
GPU; `--small` shrinks every width so that the script can be checked on a CPU in a minute.

    python bench/bench_featinv_minisd.py --device cuda --images 32
"""

import argparse
import dataclasses
import json
import time

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import timm
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel

from featlab.devices import autocast
from featlab.featinv import train
from featlab.featinv.model import FeatInvModel, FeatureHintBlock, ModelSettings
from featlab.featinv.sample import REFERENCE, SampleSettings, sample

# Stable Diffusion 1.x's noise schedule (miniSD's).
SD_NOISE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
    "clip_sample": False,
}


def minisd(small: bool, feature_channels: int) -> FeatInvModel:
    """A FeatInv model of miniSD's shape with random weights (`small`: every width / 40)."""
    width = (8, 16, 32, 32) if small else (320, 640, 1280, 1280)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=width,
        cross_attention_dim=16 if small else 768,
        attention_head_dim=8,
        norm_num_groups=8 if small else 32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16) if small else (128, 256, 512, 512),
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=8 if small else 32,
        sample_size=256,
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,))
    hint = FeatureHintBlock(feature_channels, width[0], 32, hidden_channels=16 if small else 512)
    tokens = torch.randn(77, unet.config.cross_attention_dim)
    settings = ModelSettings(base="random miniSD", resolution=256)
    return FeatInvModel(unet, controlnet, hint, SD_NOISE, tokens, tokens * 0, settings, vae)


def seconds(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_sampling(model: FeatInvModel, features: torch.Tensor, batch: int, device) -> dict:
    """Images/s of the reference and the fast sampler on the same features."""
    reference = dataclasses.replace(REFERENCE, batch_size=1, device=device.type)
    fast = SampleSettings(scheduler="dpmsolver++", steps=20, batch_size=batch, device=device.type)
    sample(model, features[:1], dataclasses.replace(fast, steps=2))  # warm-up (kernels, autotune)
    n = len(features)
    result = {"images": n}
    for name, settings in (("reference", reference), ("fast", fast)):
        elapsed = seconds(lambda s=settings: sample(model, features, s), device)
        label = f"{settings.scheduler}-{settings.steps}, batch {settings.batch_size}"
        precision = "bf16" if settings.bf16 and device.type == "cuda" else "fp32"
        result[name] = {"sampler": f"{label}, {precision}", "images_per_s": n / elapsed}
    result["speedup"] = result["fast"]["images_per_s"] / result["reference"]["images_per_s"]
    return result


def bench_training(model: FeatInvModel, channels: int, steps: int, small: bool, device) -> dict:
    """Training steps/s with given features against recomputing them with ConvNeXt-B."""
    settings = train.TrainSettings(batch_size=8, lr=1e-5)
    crops = torch.rand(settings.batch_size, 3, 288, 288) * 2 - 1
    with torch.no_grad():
        targets = model.to(device).encode(
            F.interpolate(crops.to(device), size=256, mode="bilinear")
        )
    backbone = timm.create_model(
        "convnext_atto" if small else "convnext_base", pretrained=False, features_only=True
    )
    backbone = backbone.to(device).eval()
    index = 2  # stage 2: 512 x 18 x 18 at 288 (ConvNeXt-B)

    def features_of(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(device, cuda_only=True):
            return backbone(images.to(device))[index].float().cpu()

    data = train.TrainingData(features_of(crops), targets.cpu())
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=settings.lr)
    noise = DDPMScheduler.from_config(model.noise_config)
    model.train()

    def run(recompute: bool) -> None:
        for step in range(steps):
            if recompute:
                data.features = features_of(crops)
            train._train_step(model, data, settings, noise, optimiser, step, device)

    run(False)  # warm-up
    stored = steps / seconds(lambda: run(False), device)
    recomputed = steps / seconds(lambda: run(True), device)
    model.eval()
    return {
        "steps": steps,
        "batch_size": settings.batch_size,
        "features": list(data.features.shape[1:]),
        "stored_steps_per_s": stored,
        "recomputed_steps_per_s": recomputed,
        "speedup": stored / recomputed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=32, help="images sampled by each sampler")
    parser.add_argument("--batch", type=int, default=16, help="the fast sampler's batch size")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="every width shrunk (a CPU check)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    channels = 160 if args.small else 512  # ConvNeXt stage 2 (atto: 160, base: 512)
    model = minisd(args.small, channels).to(device).eval()
    features = torch.randn(args.images, channels, 18, 18)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "size": "small check" if args.small else "miniSD",
        "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "sampling": bench_sampling(model, features, args.batch, device),
        "training": bench_training(model, channels, args.train_steps, args.small, device),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
