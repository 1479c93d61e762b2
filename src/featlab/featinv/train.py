"""Train a FeatInv model on stored features and their images, resumably.

The features come from a feature store (they are never recomputed) and the targets are the images
they were extracted from, resized to the model's resolution. The recipe is FeatInv's: the hint and
the prompt are dropped together with probability `drop_prob`, AdamW, a fixed number of steps.
Beyond the paper, the prompt alone is dropped with probability `prompt_drop_prob`, so that the
unconditional branch of guidance over the prompt (hint kept, prompt dropped) is a case the model
saw. All randomness of step k (the batch, the noise, the timesteps, the drop masks) comes from a
generator seeded with (seed, k), so a run resumed from a checkpoint continues exactly as an
uninterrupted one would. A checkpoint is a folder, replaced atomically, holding `state.safetensors`
(trainable weights and AdamW moments) and `state.json` (step, loss curve, optimiser hyper-
parameters, and a fingerprint of the settings it belongs to).
"""

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from featlab.data.images import ImageStore
from featlab.devices import autocast, resolve_device
from featlab.featinv.model import FeatInvModel, ModelSettings, build_model
from featlab.io import atomic_path, remove
from featlab.store import FeatureStore


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The FeatInv training recipe (the paper: AdamW lr 1e-5, batch 8, 3 ImageNet epochs)."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 8  # images per step, drawn with replacement
    lr: float = 1e-5  # AdamW learning rate (a scratch base needs a larger one)
    lr_schedule: str = "constant"  # the paper's; or cosine, from lr down to 0 over the steps
    weight_decay: float = 0.01  # AdamW weight decay
    drop_prob: float = 0.15  # probability of dropping the hint and the prompt together
    prompt_drop_prob: float = 0.1  # probability of dropping the prompt alone (guidance's branch)
    checkpoint_every: int = 200  # steps between checkpoints (and at the end)
    log_every: int = 10  # steps per point of the loss curve (mean loss over the window)
    seed: int = 0  # batches, noise, timesteps and drop masks
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule {self.lr_schedule!r}: choose constant or cosine")
        if self.drop_prob + self.prompt_drop_prob > 1:
            raise ValueError(
                f"drop_prob {self.drop_prob} + prompt_drop_prob {self.prompt_drop_prob} exceed 1"
            )

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based): a function of the step alone, so a resumed
        run continues the schedule without a scheduler state to save."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))


@dataclasses.dataclass
class TrainingData:
    """Conditioning features and the targets the UNet denoises, in memory."""

    features: torch.Tensor  # (N, C, h, w) float32
    targets: torch.Tensor  # (N, c, s, s): images in [-1, 1], or their VAE latents


def images_to_tensor(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) images -> float (N, 3, R, R) in [-1, 1], resized with antialiasing."""
    # (N, H, W, 3) -> (N, 3, H, W)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if tuple(x.shape[-2:]) != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
    return x.clamp(-1, 1)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """Inverse of `images_to_tensor` (without the resize): (N, 3, R, R) -> uint8 (N, R, R, 3)."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def load_training_data(
    features: str | os.PathLike,
    images: str | os.PathLike,
    layer: str,
    model: FeatInvModel,
    split: str = "train",
    batch_size: int = 64,
) -> TrainingData:
    """Read one layer's stored features and the images of one split; encode them for the model."""
    store, image_store = FeatureStore(features), ImageStore(images)
    if len(store) != len(image_store):
        raise ValueError(f"{features} holds {len(store)} images but {images} {len(image_store)}")
    indices = image_store.indices(split)
    if len(indices) == 0:
        raise ValueError(f"{images} has no {split} images to train on")
    maps = torch.from_numpy(store.read(layer, indices))
    pixels = images_to_tensor(
        image_store.images.get_orthogonal_selection((indices,)), model.settings.resolution
    )
    with torch.inference_mode():
        targets = torch.cat(
            [model.encode(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
        )
    return TrainingData(maps, targets.clone())


def fingerprint(settings: TrainSettings, model: FeatInvModel, data: TrainingData) -> str:
    """What a checkpoint must match to be resumed: the recipe, the model and the data."""
    digest = hashlib.sha256()
    recipe = {
        k: v
        for k, v in dataclasses.asdict(settings).items()
        if k not in ("checkpoint_every", "device", "threads")
    }
    digest.update(json.dumps([recipe, dataclasses.asdict(model.settings)], sort_keys=True).encode())
    digest.update(str(tuple(data.features.shape) + tuple(data.targets.shape)).encode())
    digest.update(data.features[:8].numpy().tobytes())
    return digest.hexdigest()[:16]


def train_featinv(
    model: FeatInvModel,
    data: TrainingData,
    settings: TrainSettings,
    checkpoint: str | os.PathLike,
    progress: bool = True,
) -> list[dict]:
    """Train the model in place; resume from `checkpoint` when it matches. Returns the loss curve.

    Args:
        model: A FeatInv model (its hint statistics are set here from the training features).
        data: Training features and targets.
        settings: The recipe.
        checkpoint: Folder of the last checkpoint (read if present, rewritten as training runs).
        progress: Show a progress bar.

    Returns:
        The loss curve: one {"step", "loss"} entry per `log_every` steps.
    """
    # 1. Prepare the device, the normalisation statistics and the optimiser.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, "featinv.train.device")
    if model.hint.config.normalise:
        model.hint.set_statistics(data.features)
    model.prompt_drop_prob = settings.prompt_drop_prob
    model.to(device).train()
    if model.vae is not None:
        model.vae.eval()
    if not model.train_unet:
        model.unet.eval()
    optimiser = torch.optim.AdamW(
        model.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    noise = DDPMScheduler.from_config(model.noise_config)
    key = fingerprint(settings, model, data)
    # 2. Resume from the last checkpoint of the same run, if there is one.
    start, curve = load_checkpoint(checkpoint, model, optimiser, key)
    window: list[float] = []
    # 3. Training loop: every step draws its randomness from (seed, step).
    bar = tqdm(
        range(start, settings.steps),
        desc="train featinv",
        unit="step",
        initial=start,
        total=settings.steps,
        disable=not progress,
    )
    for step in bar:
        loss = _train_step(model, data, settings, noise, optimiser, step, device)
        window.append(loss)
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            curve.append({"step": step + 1, "loss": float(np.mean(window))})
            window = []
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            save_checkpoint(checkpoint, model, optimiser, step + 1, curve, key)
    model.eval()
    return curve


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one training step, independent of every other step."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def step_draws(
    settings: TrainSettings, step: int, shape: torch.Size, noise: DDPMScheduler
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A step's random draws: batch indices, noise, timesteps and the hint and prompt keep masks.

    One uniform draw u per image decides: u < drop_prob drops the hint and the prompt together
    (the paper's unconditional case), drop_prob <= u < drop_prob + prompt_drop_prob drops the
    prompt alone with the hint kept (the unconditional branch of guidance over the prompt).
    """
    generator = step_generator(settings.seed, step)
    batch = torch.randint(shape[0], (settings.batch_size,), generator=generator)
    eps = torch.randn((settings.batch_size, *shape[1:]), generator=generator)
    t = torch.randint(noise.config.num_train_timesteps, (settings.batch_size,), generator=generator)
    u = torch.rand(settings.batch_size, generator=generator)
    hint_keep = (u >= settings.drop_prob).float()
    prompt_keep = (u >= settings.drop_prob + settings.prompt_drop_prob).float()
    return batch, eps, t, hint_keep, prompt_keep


def _train_step(
    model: FeatInvModel,
    data: TrainingData,
    settings: TrainSettings,
    noise: DDPMScheduler,
    optimiser: torch.optim.Optimizer,
    step: int,
    device: torch.device,
) -> float:
    # 1. Draw the batch, noise, timesteps and drop masks on the CPU (the same on every device).
    batch, eps, t, hint_keep, prompt_keep = step_draws(settings, step, data.targets.shape, noise)
    clean = data.targets[batch]
    noisy = noise.add_noise(clean, eps, t)
    targets = {"epsilon": eps, "sample": clean}
    if noise.config.prediction_type == "v_prediction":
        targets["v_prediction"] = noise.get_velocity(clean, eps, t)
    target = targets[noise.config.prediction_type]
    # 2. One optimiser step on the prediction loss, at the step's learning rate.
    for group in optimiser.param_groups:
        group["lr"] = settings.lr_at(step)
    features = data.features[batch].to(device)
    with autocast(device, "bfloat16", cuda_only=True):
        prediction = model.predict(
            noisy.to(device), t.to(device), features, hint_keep.to(device), prompt_keep.to(device)
        )
    loss = F.mse_loss(prediction.float(), target.to(device))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def save_checkpoint(
    path: str | os.PathLike,
    model: FeatInvModel,
    optimiser: torch.optim.Optimizer,
    step: int,
    curve: list[dict],
    key: str,
) -> None:
    """Write the checkpoint folder atomically: weights and AdamW state, then step and curve."""
    names = {id(p): name for name, p in model.trainable_state().items()}
    tensors = {
        f"model.{name}": p.detach().cpu().contiguous()
        for name, p in model.trainable_state().items()
    }
    state = optimiser.state_dict()
    order = [names[id(p)] for group in optimiser.param_groups for p in group["params"]]
    for index, values in state["state"].items():
        for field, value in values.items():
            tensors[f"optimizer.{order[index]}.{field}"] = value.detach().cpu().contiguous()
    groups = [{k: v for k, v in group.items() if k != "params"} for group in state["param_groups"]]
    record = {"step": step, "loss_curve": curve, "param_groups": groups, "fingerprint": key}
    with atomic_path(path) as temporary:
        temporary.mkdir(parents=True)
        save_file(tensors, temporary / "state.safetensors", metadata={"step": str(step)})
        (temporary / "state.json").write_text(json.dumps(record, indent=2))


def restore_weights(model: FeatInvModel, tensors: dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's weights (`model.{name}` tensors) into the model's trainable ones."""
    with torch.no_grad():
        for name, p in model.trainable_state().items():
            p.copy_(tensors[f"model.{name}"])


def load_checkpoint(
    path: str | os.PathLike,
    model: FeatInvModel,
    optimiser: torch.optim.Optimizer,
    key: str,
) -> tuple[int, list[dict]]:
    """Restore weights and optimiser state; (0, []) when there is no matching checkpoint."""
    path = Path(path)
    if not (path / "state.json").is_file():
        return 0, []
    record = json.loads((path / "state.json").read_text())
    if record["fingerprint"] != key:
        remove(path)  # a checkpoint of other settings or data: start afresh
        return 0, []
    tensors = load_file(path / "state.safetensors")
    parameters = model.trainable_state()
    restore_weights(model, tensors)
    by_id = {id(p): name for name, p in parameters.items()}
    order = [by_id[id(p)] for group in optimiser.param_groups for p in group["params"]]
    state = {}
    for index, name in enumerate(order):
        fields = {
            key.rsplit(".", 1)[1]: value
            for key, value in tensors.items()
            if key.startswith(f"optimizer.{name}.") and key.count(".") == name.count(".") + 2
        }
        if fields:
            state[index] = fields
    groups = [
        {**saved, "params": group["params"]}
        for saved, group in zip(
            record["param_groups"], optimiser.state_dict()["param_groups"], strict=True
        )
    ]
    optimiser.load_state_dict({"state": state, "param_groups": groups})
    return int(record["step"]), list(record["loss_curve"])


def train_from_stores(
    features: str | os.PathLike,
    images: str | os.PathLike,
    layer: str,
    model_settings: ModelSettings,
    settings: TrainSettings,
    output: str | os.PathLike,
    extra: dict | None = None,
) -> list[dict]:
    """Build, train and save a FeatInv model for one stored layer; returns the loss curve.

    The checkpoint lives beside `output` while training runs and is removed once the model is
    saved, so a later run with changed code trains afresh instead of resuming a finished run.
    """
    channels = FeatureStore(features).layer(layer).shape[1]
    model = build_model(model_settings, channels)
    data = load_training_data(features, images, layer, model)
    checkpoint = Path(output).parent / f".{Path(output).name}.checkpoint"
    curve = train_featinv(model, data, settings, checkpoint)
    config = {"layer": layer, "feature_store": str(features), "train": dataclasses.asdict(settings)}
    model.save_pretrained(output, {**config, **(extra or {})})
    remove(checkpoint)
    return curve
