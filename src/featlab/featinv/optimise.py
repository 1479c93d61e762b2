"""The classic inverter beside FeatInv: an image optimised until the backbone's features match.

Mahendran and Vedaldi (2015) invert a representation by gradient descent on the pixels: start
from an image, minimise the distance between its features at the layer and the target map plus
a total-variation prior, and jitter the image a few pixels at each step so that the solution does
not exploit the exact alignment of the feature grid. Here:

- the image lives in [0, 1] at the FeatInv model's resolution and is read by the backbone as the
  reconstructions are scored: upsampled (bilinear, antialiased) to its input size and normalised;
- the feature distance is `cosine` (1 minus the mean over positions of the cosine over channels,
  the smooth form of FeatMap's median cosine) or `mse` (the squared error over the target's mean
  square, so that one TV weight means the same at every layer);
- the prior is the squared total variation, the mean of squared neighbour differences (their
  beta = 2), weighted by `tv_weight`;
- Adam on the pixels, a cosine step-size schedule from `lr` to 0, pixels clipped to [0, 1] after
  every step, and a random circular shift of up to `jitter` pixels per step.

Each image's loss is summed over the batch, not averaged, so an image's result does not depend on
the others in its batch; the starting noise of image i and the shifts depend only on the seed.

plenoptic's `Metamer` runs the same kind of loop, but its target is the representation of an
image (`model(image)`): the mapped, pooled and perturbed maps inverted here have no image, and
jitter would have to hide inside its model, which plenoptic's checks expect to be deterministic.
"""

import copy
import dataclasses

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from featlab.backbones import capture_layers, to_grid
from featlab.devices import resolve_device

LOSSES = ("cosine", "mse")
STARTS = ("mean_image", "noise")
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class OptimiseSettings:
    """How the optimiser inverts a feature map (`featinv.optimise` in the config)."""

    steps: int = 200  # Adam steps on the pixels
    lr: float = 0.01  # step size in pixel units (0-1 scale); 0.05 made noise on the default CNN
    schedule: str = "cosine"  # cosine: lr decays to 0 over the steps | constant
    loss: str = "cosine"  # cosine | mse (relative to the target's mean square)
    tv_weight: float = 5.0  # weight of the squared total variation (the image prior)
    jitter: int = 2  # largest random shift, in pixels, of the image at each step
    start: str = "mean_image"  # mean_image (the floor) | noise
    seed: int = 0  # starting noise and shifts
    batch_size: int = 32  # images optimised together
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        checks = {
            "loss": (self.loss in LOSSES, f"choose one of {LOSSES}"),
            "start": (self.start in STARTS, f"choose one of {STARTS}"),
            "schedule": (self.schedule in SCHEDULES, f"choose one of {SCHEDULES}"),
            "steps": (self.steps >= 1, "must be at least 1"),
            "lr": (self.lr > 0, "must be positive"),
            "tv_weight": (self.tv_weight >= 0, "must be at least 0"),
            "jitter": (self.jitter >= 0, "must be at least 0"),
            "batch_size": (self.batch_size >= 1, "must be at least 1"),
        }
        for key, (ok, rule) in checks.items():
            if not ok:
                raise ValueError(f"featinv.optimise.{key} {getattr(self, key)!r}: {rule}")


@dataclasses.dataclass(frozen=True)
class FeatureReader:
    """A differentiable read of one layer: float images in [0, 1] to the layer's grid."""

    model: nn.Module
    layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [0, 1] -> (B, C, h, w), as `backbones.preprocess` reads uint8 images."""
        size = (self.input_size, self.input_size)
        if tuple(images.shape[-2:]) != size:
            images = nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        # The layers after this one do not change its output: stop the forward pass there.
        module = self.model.get_submodule(self.layer)
        with capture_layers(self.model, (self.layer,)) as outputs:
            stop = module.register_forward_hook(_stop_forward)
            try:
                self.model((images - mean) / std)
            except _StopForward:
                pass
            finally:
                stop.remove()
        return to_grid(self.model, outputs[self.layer])[0].float()


class _StopForward(Exception):
    """Raised by `_stop_forward` once the layer has given its output."""


def _stop_forward(_module: nn.Module, _inputs, _output) -> None:
    raise _StopForward


def feature_cosine(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, the mean over positions of the cosine over channels: (B, C, h, w) -> (B,)."""
    return nn.functional.cosine_similarity(features, target, dim=1, eps=1e-8).flatten(1).mean(1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per image, the mean squared difference of neighbouring pixels: (B, 3, R, R) -> (B,)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).square().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).square().flatten(1).mean(1)
    return dx + dy


def starting_images(
    start: np.ndarray, n: int, resolution: int, settings: OptimiseSettings
) -> torch.Tensor:
    """(n, 3, R, R) starting images: the mean image, or noise whose row i is the same for every
    n > i (uniform in [0, 1], drawn from the seed)."""
    if settings.start == "noise":
        generator = torch.Generator().manual_seed(settings.seed)
        return torch.rand((n, 3, resolution, resolution), generator=generator)
    # uint8 (R, R, 3) -> (n, 3, R, R) in [0, 1]
    image = torch.from_numpy(np.ascontiguousarray(start)).permute(2, 0, 1).float() / 255.0
    return image.expand(n, -1, -1, -1).clone()


@dataclasses.dataclass
class OptimiseResult:
    """The optimised images and how the feature cosine to the target rose."""

    images: np.ndarray  # uint8 (N, R, R, 3)
    cosine: np.ndarray  # (steps,) mean over images of the cosine to the target at each step


def optimise(
    reader: FeatureReader,
    targets: np.ndarray,
    start: np.ndarray,
    settings: OptimiseSettings,
    progress: bool = True,
) -> OptimiseResult:
    """Invert feature maps by optimising images until their features match.

    Args:
        reader: The backbone layer that made the targets (its model is copied to the device).
        targets: (N, C, h, w) feature maps to invert.
        start: uint8 (R, R, 3) mean image: the start (`start: mean_image`) and the resolution.
        settings: Steps, step size, loss, prior, jitter and seed.
        progress: Show a progress bar over the steps of each batch.
    """
    # 1. Prepare the device and a frozen copy of the backbone on it.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, "featinv.optimise.device")
    model = copy.deepcopy(reader.model).to(device).eval().requires_grad_(False)
    reader = dataclasses.replace(reader, model=model)
    targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    images = starting_images(start, len(targets), start.shape[0], settings)
    # 2. Optimise batch by batch; every batch sees the same shifts.
    results, cosines = [], []
    for first in range(0, len(targets), settings.batch_size):
        chunk = slice(first, first + settings.batch_size)
        x, cosine = _optimise_batch(
            reader, targets[chunk].to(device), images[chunk].to(device), settings, progress
        )
        results.append(x)
        cosines.append(cosine * len(x))
    # 3. (B, 3, R, R) in [0, 1] -> uint8 (B, R, R, 3)
    pixels = torch.cat(results).permute(0, 2, 3, 1).mul(255.0).round().clamp(0, 255)
    history = np.sum(cosines, axis=0) / max(len(targets), 1)
    return OptimiseResult(pixels.to(torch.uint8).cpu().numpy(), history)


def _optimise_batch(
    reader: FeatureReader,
    target: torch.Tensor,
    x: torch.Tensor,
    settings: OptimiseSettings,
    progress: bool,
) -> tuple[torch.Tensor, np.ndarray]:
    x = x.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=settings.lr)
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, settings.steps)
        if settings.schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(optimiser, factor=1.0)
    )
    shifts = torch.Generator().manual_seed(settings.seed + 1)
    cosine = np.zeros(settings.steps)
    steps = tqdm(range(settings.steps), desc="optimise", unit="step", disable=not progress)
    for step in steps:
        dy, dx = torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=shifts)
        with torch.enable_grad():
            features = reader(torch.roll(x, (int(dy), int(dx)), dims=(2, 3)))
            similarity = feature_cosine(features, target)
            if settings.loss == "cosine":
                distance = 1.0 - similarity
            else:
                error = (features - target).square().flatten(1).mean(1)
                distance = error / target.square().flatten(1).mean(1).clamp_min(1e-12)
            loss = (distance + settings.tv_weight * total_variation(x)).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        cosine[step] = similarity.detach().mean().item()
    return x.detach(), cosine
