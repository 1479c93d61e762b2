"""Train a timm backbone as a classifier on an image store (the shapes world's own models)."""

import dataclasses
import math
import os

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from featlab.backbones import BackboneSpec, build_backbone, data_config, preprocess, save_backbone
from featlab.data.images import ImageStore


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Classifier training recipe: AdamW with a one-cycle learning-rate schedule."""

    epochs: int = 10  # passes over the train split
    batch_size: int = 64
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: bool = True  # random flips and quarter turns (labels that do not change under them)
    seed: int = 0  # initialisation and shuffling
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


@dataclasses.dataclass
class TrainedClassifier:
    model: nn.Module
    spec: BackboneSpec
    history: list[dict]  # one entry per epoch: loss, train and test accuracy
    preprocessing: dict

    def save(self, weights_path: str | os.PathLike, settings: TrainSettings) -> None:
        extra = {"training": dataclasses.asdict(settings), "history": self.history}
        save_backbone(
            self.model, self.spec, weights_path, {**extra, "preprocessing": self.preprocessing}
        )


def accuracy(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return float((logits.argmax(1) == labels).float().mean())


def train_classifier(
    spec: BackboneSpec, images: ImageStore, settings: TrainSettings
) -> TrainedClassifier:
    """Train from random initialisation on the train split; report accuracy on the test split."""
    # 1. Build the model and load the data once (the shapes world fits in memory).
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    n_classes = int(images.labels.max()) + 1
    spec = dataclasses.replace(spec, weights="random", num_classes=n_classes)
    model = build_backbone(spec)
    preprocessing = data_config(model)
    data = images.read()
    x = {s: preprocess(data.images[images.indices(s)], preprocessing) for s in ("train", "test")}
    y = {s: torch.from_numpy(data.labels[images.indices(s)]) for s in ("train", "test")}
    if len(x["train"]) == 0 or len(x["test"]) == 0:
        raise ValueError(f"{images.path}: the train and test splits must both hold images")
    # 2. Optimiser and schedule.
    steps = settings.epochs * math.ceil(len(x["train"]) / settings.batch_size)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    generator = torch.Generator().manual_seed(settings.seed)
    # 3. Training loop; test accuracy after every epoch.
    history = []
    for epoch in tqdm(range(settings.epochs), desc=f"train {spec.model}", unit="epoch"):
        model.train()
        order = torch.randperm(len(x["train"]), generator=generator)
        losses, correct = [], 0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            inputs = (
                _augment(x["train"][batch], generator) if settings.augment else x["train"][batch]
            )
            logits = model(inputs)
            loss = loss_fn(logits, y["train"][batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == y["train"][batch]).sum())
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "train_accuracy": correct / len(order),
                "test_accuracy": accuracy(model, x["test"], y["test"]),
            }
        )
    return TrainedClassifier(model.eval(), spec, history, preprocessing)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random element of the square's symmetry group (flip, then quarter turns) per batch."""
    turns, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
    x = x.flip(-1) if flip % 2 else x
    return torch.rot90(x, turns, dims=(-2, -1))
