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
    """Classifier training recipe (AdamW, linear warm-up then cosine decay)."""

    epochs: int = 10  # passes over the train split
    batch_size: int = 64
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warm-up from 0 to lr
    label_smoothing: float = 0.1
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
    steps_per_epoch = math.ceil(len(x["train"]) / settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, settings.warmup_epochs * steps_per_epoch
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min((step + 1) / max(warmup, 1), 0.5 * (1 + math.cos(math.pi * step / total))),
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    generator = torch.Generator().manual_seed(settings.seed)
    # 3. Training loop.
    history = []
    for epoch in tqdm(range(settings.epochs), desc=f"train {spec.model}", unit="epoch"):
        model.train()
        order = torch.randperm(len(x["train"]), generator=generator)
        losses = []
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = loss_fn(model(x["train"][batch]), y["train"][batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "train_accuracy": accuracy(model, x["train"], y["train"]),
                "test_accuracy": accuracy(model, x["test"], y["test"]),
            }
        )
    return TrainedClassifier(model.eval(), spec, history, preprocessing)
