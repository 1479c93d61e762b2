"""Sample reconstructions from a FeatInv model: DDIM as the reference, faster solvers to use.

The reference is FeatInv's sampler: DDIM, 50 steps, eta 0, classifier-free guidance 1.75 over the
prompt only (the unconditional branch keeps the feature hint and drops the prompt), seed 100, with
diffusers' `leading` timestep spacing. DPM-Solver++ and UniPC reach similar images in fewer steps
with `trailing` spacing (bench/bench_featinv_sampling.py measures how close). Guidance is off by
default for the scratch base, whose prompt is a constant, and needs a model trained with the
unconditional branch (`featinv.settings.resolve_guidance`). The starting noise of image i depends
only on (seed, i), so reconstructions do not depend on the batch size, and the reconstructions of
one image from different feature maps (original, manipulated, mapped) start from the same noise.
"""

import dataclasses

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from tqdm import tqdm

from featlab.devices import autocast, resolve_device
from featlab.featinv.model import FeatInvModel
from featlab.featinv.settings import resolve_guidance
from featlab.featinv.train import tensor_to_images

SCHEDULERS = ("ddim", "dpmsolver++", "unipc")
SPACINGS = ("trailing", "leading", "linspace")


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """How to sample (defaults: the fast sampler; `REFERENCE` is the paper's DDIM)."""

    scheduler: str = "dpmsolver++"  # ddim (the reference) | dpmsolver++ | unipc
    steps: int = 20  # denoising steps
    guidance: float | None = None  # CFG scale over the prompt; 1 is off, None: by base (settings)
    eta: float = 0.0  # DDIM's eta (0: deterministic)
    spacing: str = "trailing"  # timestep spacing: trailing starts at t = T; leading (the paper's)
    seed: int = 100  # starting noise of image i comes from (seed, i)
    batch_size: int = 32  # images per denoising batch
    bf16: bool = True  # bf16 autocast on CUDA (the CPU samples in fp32)
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: choose one of {SCHEDULERS}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing {self.spacing!r}: choose one of {SPACINGS}")


REFERENCE = SampleSettings(
    scheduler="ddim", steps=50, guidance=None, eta=0.0, seed=100, bf16=False, spacing="leading"
)


def make_scheduler(name: str, noise_config: dict, spacing: str = "trailing"):
    """A sampling scheduler on the model's training noise schedule.

    `spacing` places the few sampling steps on the training schedule's 1000: with diffusers'
    `leading` default, 10 steps run t = 900, 810, ..., 0 and start from pure noise where the model
    expects some signal; `trailing` runs t = 999, ..., 99 and starts where training's noise is
    pure (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed").
    """
    noise_config = {**noise_config, "timestep_spacing": spacing}
    if name == "ddim":
        return DDIMScheduler.from_config(noise_config)
    # The multistep solvers clip their x0 estimates as DDIM does for a clipped (pixel) model:
    # dynamic thresholding with a maximum of 1 is a plain clip to [-1, 1].
    clip = (
        {"thresholding": True, "sample_max_value": 1.0} if noise_config.get("clip_sample") else {}
    )
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(
            noise_config, algorithm_type="dpmsolver++", **clip
        )
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(noise_config, **clip)
    raise ValueError(f"scheduler {name!r}: choose one of {SCHEDULERS}")


def initial_noise(model: FeatInvModel, n: int, seed: int) -> torch.Tensor:
    """(n, c, s, s) starting noise; row i is the same for every n > i."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *model.latent_shape), generator=generator)


@torch.inference_mode()
def sample(
    model: FeatInvModel,
    features: np.ndarray | torch.Tensor,
    settings: SampleSettings,
    progress: bool = False,
) -> np.ndarray:
    """Reconstruct one image per feature map.

    Args:
        model: A trained FeatInv model.
        features: (N, C, h, w) conditioning feature maps.
        settings: Scheduler, steps, guidance, seed and batch size.
        progress: Show a progress bar over batches.

    Returns:
        uint8 (N, R, R, 3) images at the model's resolution.
    """
    # 1. Check inputs and prepare the device.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, "featinv.sample.device")
    model.to(device).eval()
    guidance = resolve_guidance(model.settings.base, settings.guidance, model.prompt_drop_prob)
    settings = dataclasses.replace(settings, guidance=guidance)
    features = torch.as_tensor(np.asarray(features, dtype=np.float32))
    noise = initial_noise(model, len(features), settings.seed)
    # 2. Denoise batch by batch.
    images = []
    starts = range(0, len(features), settings.batch_size)
    for start in tqdm(starts, desc="sample featinv", unit="batch", disable=not progress):
        chunk = slice(start, start + settings.batch_size)
        latents = _denoise(model, features[chunk].to(device), noise[chunk].to(device), settings)
        images.append(tensor_to_images(model.decode(latents.float())))
    return np.concatenate(images) if images else np.zeros((0, 0, 0, 3), np.uint8)


def _denoise(
    model: FeatInvModel, features: torch.Tensor, latents: torch.Tensor, settings: SampleSettings
) -> torch.Tensor:
    # 1. Prepare timesteps.
    scheduler = make_scheduler(settings.scheduler, model.noise_config, settings.spacing)
    scheduler.set_timesteps(settings.steps, device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    n = len(latents)
    guided = settings.guidance != 1.0
    ones = torch.ones(n, device=latents.device)
    # 2. Guidance doubles the batch: (hint, no prompt) first, then (hint, prompt).
    hint_keep = torch.cat([ones, ones]) if guided else ones
    prompt_keep = torch.cat([torch.zeros_like(ones), ones]) if guided else ones
    both = torch.cat([features, features]) if guided else features
    extra = {"eta": settings.eta} if settings.scheduler == "ddim" else {}
    # 3. Denoising loop.
    for t in scheduler.timesteps:
        x = torch.cat([latents, latents]) if guided else latents
        x = scheduler.scale_model_input(x, t)
        with autocast(latents.device, "bfloat16" if settings.bf16 else "float32", cuda_only=True):
            prediction = model.predict(x, t.expand(len(x)), both, hint_keep, prompt_keep).float()
        if guided:
            unconditional, conditional = prediction.chunk(2)
            prediction = unconditional + settings.guidance * (conditional - unconditional)
        latents = scheduler.step(prediction, t, latents, **extra).prev_sample
    return latents
