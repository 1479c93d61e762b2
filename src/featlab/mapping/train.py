"""Training a mapping model with the FeatMap recipe (METHODS.md, FeatMap training recipe).

The recipe: AdamW, batches of 32 with 2 accumulation steps, ReduceLROnPlateau on the validation
loss, early stopping, the best checkpoint by validation loss, and the loss
0.3 * MSE + 0.7 * (1 - median over positions of the per-position cosine). Inputs are normalised per
channel with statistics of the original train features (`NormalisedMap`); the MSE is taken in
those normalised units (so that no channel's scale dominates it) and the cosine on the
de-normalised features (the quantity the study reports). Batches are shuffled with a seeded
generator. Data stay on the device when they fit in `device_memory_gb`, and are streamed from the
Zarr stores in blocks of images otherwise.
"""

import copy
import dataclasses
import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from featlab.devices import resolve_device
from featlab.mapping.models import NormalisedMap, apply_model, build_model, save_trained
from featlab.mapping.pairs import FeaturePair, channel_statistics


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The FeatMap training recipe; the defaults are the paper's preset."""

    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    batch_size: int = 32  # images per micro-batch
    accumulation: int = 2  # micro-batches per optimiser step (effective batch 64)
    epochs: int = 100  # upper limit; early stopping usually ends sooner
    plateau_patience: int = 8  # ReduceLROnPlateau: epochs without improvement before a cut
    plateau_factor: float = 0.5  # ReduceLROnPlateau: learning-rate factor per cut
    min_lr: float = 1e-6  # ReduceLROnPlateau: floor of the learning rate
    early_stop_patience: int = 6  # epochs without a val-loss improvement of min_delta
    early_stop_min_delta: float = 0.001  # smallest val-loss decrease that counts
    mse_weight: float = 0.3  # loss = mse_weight * MSE + cosine_weight * (1 - median cosine)
    cosine_weight: float = 0.7
    val_fraction: float = 0.05  # share of the train images held out for validation
    std_floor: float = 0.01  # channel std floored at this share of the median channel std
    shuffle: bool = True  # shuffle the training images each epoch (the official loader does not)
    seed: int = 42  # initialisation, val split, shuffling and dropout
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    device_memory_gb: float = 4.0  # keep train and val data on the device up to this size
    block_images: int = 256  # images per block read from Zarr (statistics, streaming, scoring)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


@dataclasses.dataclass
class TrainResult:
    """A trained model (its best checkpoint) and the per-epoch record of its training."""

    model: nn.Module
    history: list[dict]  # one entry per epoch: losses, val metrics, learning rate, seconds
    best_epoch: int
    stopped_early: bool


class EarlyStopping:
    """Stops after `patience` epochs without a decrease of the monitored loss by `min_delta`."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.waited = 0

    def step(self, loss: float) -> bool:
        """Record an epoch's loss; True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.waited = loss, 0
        else:
            self.waited += 1
        return self.waited >= self.patience


def featmap_loss(
    pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor, settings: TrainSettings
) -> torch.Tensor:
    """mse_weight * MSE (in units of the channel std) + cosine_weight * (1 - median cosine).

    Args:
        pred: Mapped features (B, C, H, W), de-normalised.
        target: True manipulated features (B, C, H, W).
        std: Channel std (1, C, 1, 1) of the normalisation.
        settings: The loss weights.

    Returns:
        The scalar loss; the median is over each image's positions, then averaged over images.
    """
    mse = torch.mean(((pred - target) / std) ** 2)
    cosine = nn.functional.cosine_similarity(pred, target, dim=1, eps=1e-8)  # (B, H, W)
    median = cosine.flatten(1).median(dim=1).values.mean()
    return settings.mse_weight * mse + settings.cosine_weight * (1.0 - median)


class TensorPairs:
    """Feature pairs held in memory on the training device, batched by index."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device):
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)

    def __len__(self) -> int:
        return len(self.x)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """float32 (x, y) batches; shuffled when a generator is given, else in order."""
        n = len(self.x)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            chosen = order[start : start + batch_size].to(self.x.device)
            yield self.x[chosen].float(), self.y[chosen].float()


class StreamedPairs:
    """Feature pairs of one split read from the Zarr stores block by block.

    Shuffling permutes the order of the blocks and the images inside each block, so each block is
    one contiguous read.
    """

    def __init__(self, view: FeaturePair, split: str, block_images: int, device: torch.device):
        self.view, self.split, self.device = view, split, device
        indices = view.splits[split]
        self.blocks = [indices[i : i + block_images] for i in range(0, len(indices), block_images)]

    def __len__(self) -> int:
        return sum(len(block) for block in self.blocks)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = range(len(self.blocks))
        if generator is not None:
            order = torch.randperm(len(self.blocks), generator=generator).tolist()
        for b in order:
            x, y = (torch.from_numpy(a).to(self.device) for a in self.view.read(self.blocks[b]))
            inner = torch.arange(len(x))
            if generator is not None:
                inner = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                chosen = inner[start : start + batch_size].to(self.device)
                yield x[chosen], y[chosen]


def _train_epoch(model, data, optimiser, settings, generator) -> float:
    """One pass over the training data with gradient accumulation; the mean loss per image."""
    model.train()
    total, seen, pending = 0.0, 0, 0
    optimiser.zero_grad(set_to_none=True)
    for x, y in data.batches(settings.batch_size, generator if settings.shuffle else None):
        loss = featmap_loss(model(x), y, model.std, settings)
        (loss / settings.accumulation).backward()
        pending += 1
        if pending == settings.accumulation:
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            pending = 0
        total += loss.item() * len(x)
        seen += len(x)
    if pending:  # the last, partial accumulation group
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    return total / seen


@torch.no_grad()
def _validate(model, data, settings) -> dict:
    """Mean loss, median cosine and normalised MSE per image over the validation data."""
    model.eval()
    sums = {"val_loss": 0.0, "val_cosine_median": 0.0, "val_mse": 0.0}
    seen = 0
    for x, y in data.batches(settings.batch_size):
        pred = model(x)
        cosine = nn.functional.cosine_similarity(pred, y, dim=1, eps=1e-8).flatten(1)
        sums["val_loss"] += featmap_loss(pred, y, model.std, settings).item() * len(x)
        sums["val_cosine_median"] += cosine.median(dim=1).values.sum().item()
        sums["val_mse"] += torch.mean(((pred - y) / model.std) ** 2).item() * len(x)
        seen += len(x)
    return {key: value / seen for key, value in sums.items()}


def train_model(model: NormalisedMap, train, val, settings: TrainSettings) -> TrainResult:
    """Train with AdamW, the plateau schedule and early stopping; keep the best checkpoint.

    Args:
        model: A `NormalisedMap` on the training device.
        train: Training pairs (`TensorPairs` or `StreamedPairs`), shuffled each epoch.
        val: Validation pairs; their loss drives the schedule, early stopping and the checkpoint.
        settings: The recipe.

    Returns:
        The model with its best weights restored, and the per-epoch history.
    """
    # 1. Optimiser, schedule, early stopping
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser,
        mode="min",
        factor=settings.plateau_factor,
        patience=settings.plateau_patience,
        min_lr=settings.min_lr,
    )
    stopper = EarlyStopping(settings.early_stop_patience, settings.early_stop_min_delta)
    best_loss, best_epoch, best_state = math.inf, 0, None
    history, stopped_early = [], False
    # 2. Epoch loop
    progress = tqdm(range(1, settings.epochs + 1), desc="train mapping", unit="epoch")
    for epoch in progress:
        start = time.perf_counter()
        lr = optimiser.param_groups[0]["lr"]
        train_loss = _train_epoch(model, train, optimiser, settings, generator)
        scores = _validate(model, val, settings)
        schedule.step(scores["val_loss"])
        record = {"epoch": epoch, "lr": lr, "train_loss": train_loss, **scores}
        history.append({**record, "seconds": time.perf_counter() - start})
        progress.set_postfix(train=f"{train_loss:.4f}", val=f"{scores['val_loss']:.4f}")
        # 3. Keep the best checkpoint; stop when the val loss has stalled
        if scores["val_loss"] < best_loss:
            best_loss, best_epoch = scores["val_loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        if stopper.step(scores["val_loss"]):
            stopped_early = epoch < settings.epochs
            break
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), history, best_epoch, stopped_early)


def _pairs(
    view: FeaturePair, split: str, settings: TrainSettings, device: torch.device, in_memory: bool
):
    if in_memory:
        x, y = view.read(view.splits[split], dtype=view.original.layer(view.layer).dtype)
        return TensorPairs(x, y, device)
    return StreamedPairs(view, split, settings.block_images, device)


@dataclasses.dataclass
class TrainedMap:
    """A trained mapping with what reproduces it: its config and its training history."""

    model: NormalisedMap
    config: dict
    history: list[dict]

    def apply_maps(self, x: np.ndarray) -> np.ndarray:
        """Map original features (N, C, H, W) to manipulated ones (float32)."""
        return apply_model(self.model, x)

    def save(self, path: str) -> None:
        """safetensors at `path`, the config as JSON beside it (`load_trained` reads both)."""
        save_trained(path, self.model, self.config)


def train_mapping(
    view: FeaturePair, mapping: str, hyper: dict, settings: TrainSettings
) -> TrainedMap:
    """Train one mapping model on a layer's feature pairs with the FeatMap recipe.

    Args:
        view: The feature pairs, with the val split carved from train (see `open_pair`) and the
            spatial op, if any, that the mapping applies first.
        mapping: One of the trained mappings (`models.TRAINED`).
        hyper: The model's hyperparameters.
        settings: The training recipe.

    Returns:
        The best checkpoint and its config (for `load_trained`) and the per-epoch history.
    """
    # 1. Device, threads and seed
    device = resolve_device(settings.device, "featmap.training.device")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    if not len(view.splits["val"]):
        raise ValueError("training needs a val split: set val_fraction above 0")
    # 2. Normalisation statistics of the originals, and the model
    mean, std = channel_statistics(view, settings.block_images, settings.std_floor)
    channels, height, width = view.shape
    core = build_model(mapping, channels, (height, width), **hyper)
    model = NormalisedMap(core, torch.from_numpy(mean), torch.from_numpy(std)).to(device)
    # 3. Data: on the device when train and val fit, else streamed from the stores
    itemsize = view.original.layer(view.layer).dtype.itemsize
    in_memory = view.nbytes("train", itemsize) + view.nbytes("val", itemsize) <= (
        settings.device_memory_gb * 2**30
    )
    train = _pairs(view, "train", settings, device, in_memory)
    val = _pairs(view, "val", settings, device, in_memory)
    # 4. Train
    result = train_model(model, train, val, settings)
    config = {
        "mapping": mapping,
        "layer": view.layer,
        "channels": channels,
        "grid": [height, width],
        "hyper": dict(hyper),
        "spatial_op": view.spatial_op,
        "train": dataclasses.asdict(settings),
        "device": str(device),
        "data_on_device": in_memory,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }
    return TrainedMap(result.model, config, result.history)
