"""The driving and the reading classifiers: a backbone applied to images in [0, 1], and the
objective whose gradient drives a morph."""

import dataclasses
import os
from collections.abc import Callable

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from featlab.backbones import BackboneSpec, build_backbone, data_config


@dataclasses.dataclass
class Classifier:
    """A backbone with its input normalisation, applied to images in [0, 1]."""

    model: nn.Module
    mean: list[float]
    std: list[float]
    input_size: int | None = None  # resize to this side first (as extraction does); None keeps it

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> logits (B, classes); differentiable."""
        if self.input_size is not None and images.shape[-1] != self.input_size:
            size = (self.input_size, self.input_size)
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, 3, 1, 1)
        return self.model((images - mean) / std)

    def probabilities(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        with torch.no_grad():
            chunks = [
                self.logits(images[i : i + batch_size]).softmax(1)
                for i in range(0, len(images), batch_size)
            ]
        return torch.cat(chunks).numpy()


def load_classifier(
    backbone: dict, weights: str | os.PathLike | None, input_size: int | None = None
) -> Classifier:
    """A configured backbone (its config section, without `train`) as a classifier."""
    spec = BackboneSpec(**backbone)
    model = build_backbone(spec, weights_path=weights or None)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    statistics = data_config(model)
    return Classifier(model, statistics["mean"], statistics["std"], input_size)


def objective_of(
    classifier: Classifier, target: int, kind: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images (B, 3, H, W) -> (B,) target log-probability or logit margin."""

    def objective(images: torch.Tensor) -> torch.Tensor:
        logits = classifier.logits(images)
        if kind == "log_probability":
            return logits.log_softmax(1)[:, target]
        others = logits.clone()
        others[:, target] = -torch.inf
        return logits[:, target] - others.max(1).values

    return objective
