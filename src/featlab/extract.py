"""Feature extraction: one backbone, one image set, all configured layers in one pass."""

import dataclasses
import os

import featlab._compat  # defines torchvision op schemas before timm

import numpy as np
import timm
import torch
from torch import nn
from tqdm import tqdm

import featlab
from featlab import metrics
from featlab.backbones import BackboneSpec, capture_layers, data_config, preprocess, to_grid
from featlab.data.images import ImageStore
from featlab.store import FeatureStore, FeatureStoreWriter
from featlab.tables import metric_row


@dataclasses.dataclass(frozen=True)
class ExtractSettings:
    """How to run the forward passes and store their outputs."""

    batch_size: int = 128  # images per forward pass
    dtype: str = "float16"  # storage dtype of the feature arrays; float32 if values overflow
    input_size: int | None = None  # resize images to this side first; None keeps the store's
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


def _forward(model: nn.Module, layers: tuple[str, ...], x: torch.Tensor) -> dict[str, np.ndarray]:
    """One batch through the model: grid features per layer, prefix tokens and logits."""
    batch = {}
    with torch.inference_mode(), capture_layers(model, layers) as outputs:
        batch["logits"] = model(x).float().numpy()
    for layer in layers:
        maps, prefix = to_grid(model, outputs[layer])
        batch[layer] = maps.float().numpy()
        if prefix is not None:
            batch[f"prefix_tokens/{layer}"] = prefix.float().numpy()
    return batch


def _shapes(model: nn.Module, layers: tuple[str, ...], x: torch.Tensor) -> tuple[dict, dict, int]:
    """Layer grid shapes, prefix-token shapes and the number of logits, from one image."""
    probe = _forward(model, layers, x[:1])
    grids = {layer: probe[layer].shape[1:] for layer in layers}
    prefixes = {
        layer: probe[f"prefix_tokens/{layer}"].shape[1:]
        for layer in layers
        if f"prefix_tokens/{layer}" in probe
    }
    return grids, prefixes, probe["logits"].shape[1]


def extract_features(
    model: nn.Module,
    spec: BackboneSpec,
    images: ImageStore,
    path: str | os.PathLike,
    settings: ExtractSettings,
    provenance: dict,
) -> None:
    """Write the features of every image of `images` to a feature store at `path`.

    `provenance` (weights sha256 and source, for example) joins the store's attributes.
    """
    # 1. Prepare the model and find the output shapes.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    config = data_config(model)
    first = preprocess(images.images[:1], config, settings.input_size)
    grids, prefixes, n_logits = _shapes(model, spec.layers, first)
    attrs = {
        "featlab_version": featlab.__version__,
        "timm_version": timm.__version__,
        "model": spec.model,
        "spec": spec.to_dict(),
        "pretrained_cfg": dict(getattr(model, "pretrained_cfg", {}) or {}),
        "preprocessing": {**config, "input_size": settings.input_size or images.image_size[0]},
        "image_store": str(images.path),
        **provenance,
    }
    # 2. Forward the images batch by batch and append the outputs in image order.
    writer = FeatureStoreWriter(path, len(images), grids, n_logits, settings.dtype, prefixes, attrs)
    with writer, tqdm(total=len(images), desc=f"extract {spec.model}", unit="img") as progress:
        for start in range(0, len(images), settings.batch_size):
            pixels = images.images[start : start + settings.batch_size]
            writer.append(
                _forward(model, spec.layers, preprocess(pixels, config, settings.input_size))
            )
            progress.update(len(pixels))


def classifier_rows(
    store: str | os.PathLike, images: ImageStore, backbone: str, imageset: str
) -> list[dict]:
    """Top-1 accuracy of the backbone's logits on each split of an image set.

    Rows of the original set have an empty `manipulation`; manipulated sets name theirs.
    """
    logits = FeatureStore(store).logits[:]
    base = dict(backbone=backbone, manipulation="" if imageset == "original" else imageset)
    rows = []
    for split in ("train", "val", "test"):
        chosen = images.indices(split)
        if len(chosen):
            value = metrics.top1_accuracy(logits[chosen], images.labels[chosen])
            rows.append(
                metric_row("classifier", "top1_accuracy", value, len(chosen), split=split, **base)
            )
    return rows
