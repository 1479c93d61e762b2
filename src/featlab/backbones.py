"""timm backbones: building, loading weights, preprocessing, and reading layer outputs as grids."""

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from featlab.io import atomic_path

WEIGHT_SOURCES = ("train", "hub", "file", "random")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Which timm model, with which weights, read at which layers."""

    model: str  # timm model name, e.g. "convnext_atto" or "convnext_base.fb_in22k_ft_in1k"
    layers: tuple[str, ...]  # timm module names whose outputs are stored
    weights: str = "random"  # train (in the pipeline) | hub | file | random
    weights_path: str | None = None  # for weights=file: safetensors, or a checkpoint (weights only)
    hub_id: str | None = None  # for weights=hub: a hub id overriding timm's default for `model`
    model_args: dict = dataclasses.field(default_factory=dict)  # passed to timm.create_model
    num_classes: int | None = None  # classifier head size; None keeps the model's own

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_SOURCES:
            raise ValueError(f"weights={self.weights!r}: choose one of {WEIGHT_SOURCES}")
        if self.weights == "file" and not self.weights_path:
            raise ValueError(f"{self.model}: weights=file needs weights_path")
        object.__setattr__(self, "layers", tuple(self.layers))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _create(spec: BackboneSpec, pretrained: bool) -> nn.Module:
    kwargs = dict(spec.model_args)
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    if pretrained and spec.hub_id:
        kwargs["pretrained_cfg_overlay"] = {"hf_hub_id": spec.hub_id}
    try:
        return timm.create_model(spec.model, pretrained=pretrained, **kwargs)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(
                f"unknown timm model {spec.model!r}; see timm.list_models()"
            ) from error
        raise


def build_backbone(spec: BackboneSpec, weights_path: str | os.PathLike | None = None) -> nn.Module:
    """Build the model in eval mode with its weights; `weights_path` overrides spec.weights_path."""
    if spec.weights == "hub":
        try:
            model = _create(spec, pretrained=True)
        except OSError as error:  # huggingface_hub's offline and not-found errors are OSErrors
            raise FileNotFoundError(
                f"pretrained weights for {spec.hub_id or spec.model} are not in the Hugging Face "
                "cache and cannot be downloaded here (offline?); on a connected machine run "
                f"`hf download timm/{spec.model}` (or copy the cache), or set weights: file with "
                "weights_path"
            ) from error
    else:
        path = weights_path or spec.weights_path
        if spec.weights in ("train", "file") and path is None:
            raise ValueError(f"{spec.model}: weights={spec.weights} needs a weights file")
        if spec.weights == "train":
            # A pipeline-trained model's head size is in the JSON saved beside its weights.
            saved = json.loads(Path(path).with_suffix(".json").read_text())["spec"]
            spec = dataclasses.replace(spec, num_classes=saved["num_classes"])
        model = _create(spec, pretrained=False)
        if spec.weights in ("train", "file"):
            try:
                model.load_state_dict(load_weights(path))
            except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
                raise ValueError(
                    f"weights file {path} does not fit timm model {spec.model!r} with model_args "
                    f"{spec.model_args}; was it saved from another architecture?\n{error}"
                ) from error
    check_layers(model, spec.layers)
    return model.eval()


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or from a torch checkpoint without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_backbone(
    model: nn.Module, spec: BackboneSpec, path: str | os.PathLike, extra: dict
) -> None:
    """Save weights as safetensors and the spec (plus `extra`) as JSON beside them."""
    path = Path(path)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, temporary)
    config = {"spec": spec.to_dict(), **extra}
    with atomic_path(path.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_layers(model: nn.Module, layers: tuple[str, ...]) -> None:
    """Stop with the list of valid names when a configured layer is not a module of the model."""
    modules = dict(model.named_modules())
    unknown = [layer for layer in layers if layer not in modules]
    if unknown:
        suggestions = [info["module"] for info in getattr(model, "feature_info", [])]
        suggestions += [
            name for name in modules if name.count(".") == 1 and name.startswith("blocks")
        ]
        raise ValueError(
            f"{type(model).__name__} has no layer(s) {unknown}; valid names include "
            f"{sorted(set(suggestions))} (any name from model.named_modules() works)"
        )


def data_config(model: nn.Module) -> dict:
    """Normalisation statistics of the model (timm's resolved data config)."""
    config = timm.data.resolve_model_data_config(model)
    return {"mean": list(config["mean"]), "std": list(config["std"])}


def preprocess(images: np.ndarray, config: dict, size: int | None = None) -> torch.Tensor:
    """uint8 (B, H, W, 3) images to a normalised float (B, 3, H, W) tensor, resized if asked."""
    # (B, H, W, 3) -> (B, 3, H, W)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def to_grid(model: nn.Module, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's output as an (B, C, H, W) grid, plus its prefix (class/register) tokens.

    CNN outputs are already NCHW; Swin-style outputs are channels-last (B, H, W, C); ViT outputs
    are tokens (B, P + H*W, C) whose first P = model.num_prefix_tokens are class/register tokens.
    """
    if output.ndim == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            output = output.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return output, None
    if output.ndim != 3:
        raise ValueError(f"cannot read a layer output of shape {tuple(output.shape)} as a grid")
    prefix = getattr(model, "num_prefix_tokens", 0)
    tokens = output[:, prefix:]
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    height, width = grid if grid is not None else (int(tokens.shape[1] ** 0.5),) * 2
    if height * width != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} patch tokens do not fill a {height}x{width} grid")
    # (B, H*W, C) -> (B, C, H, W)
    maps = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
    return maps, (output[:, :prefix] if prefix else None)


@contextlib.contextmanager
def capture_layers(model: nn.Module, layers: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named modules during the forward passes inside the block."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out)
        )
        for name in layers
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
