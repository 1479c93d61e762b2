"""The trained mappings of FeatMap as torch modules, and loading any saved mapping for use.

Every model maps a batch of original feature maps (B, C, H, W) to manipulated ones of the same
shape (METHODS.md, FeatMap mappings):

- additive: x + d, one shift d per channel shared by all positions;
- linear: W x + b per feature vector, shared by all positions (a 1x1 convolution with bias);
- local_linear: a separate W, b at every position (nothing shared);
- mlp: C -> hidden, ReLU, dropout, hidden -> C, per position;
- cnn: conv k x k C -> hidden, BN, ReLU, dropout, conv k x k hidden -> C, BN;
- transformer: the H*W positions as tokens, Linear C -> d_model, encoder layers, back to C;
  a learned positional embedding is optional (the official model has none).

`NormalisedMap` wraps a model with the per-channel statistics of the original features: inputs
are normalised with them and outputs de-normalised with them, so the model itself works on unit
scale. Hyperparameters are dataclasses with the paper's values as defaults.
"""

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch_file
from torch import nn

from featlab.geometry import apply_spatial
from featlab.mapping.closed_form import AffineMap
from featlab.mapping.fit import CLOSED_FORM, TRAINED

# Mappings that act on each feature vector alone, the same function at every position.
POSITIONWISE = ("identity", "additive", "linear", "mlp", *CLOSED_FORM)
# The affine maps y = W x + b, whose linear structure featlab.mapping.analysis studies.
AFFINE = (*CLOSED_FORM, "linear")


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Models without hyperparameters (additive, linear, local_linear)."""


@dataclasses.dataclass(frozen=True)
class MLPSettings:
    hidden: int = 512  # hidden channels of the per-position MLP
    dropout: float = 0.2  # after the ReLU


@dataclasses.dataclass(frozen=True)
class CNNSettings:
    hidden: int = 512  # channels between the two convolutions
    kernel_size: int = 3  # odd, so that the grid keeps its size
    dropout: float = 0.2  # after the ReLU


@dataclasses.dataclass(frozen=True)
class TransformerSettings:
    d_model: int = 512  # token width inside the encoder
    layers: int = 4  # encoder layers
    heads: int = 8  # attention heads; must divide d_model
    ffn: int = 1024  # hidden width of each layer's feed-forward block
    dropout: float = 0.2  # in attention and feed-forward blocks
    positional_embedding: bool = False  # learned, one vector per position; the official has none


SETTINGS = {
    "additive": NoSettings,
    "linear": NoSettings,
    "local_linear": NoSettings,
    "mlp": MLPSettings,
    "cnn": CNNSettings,
    "transformer": TransformerSettings,
}


class Additive(nn.Module):
    """x + d with one shift per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift.view(1, -1, 1, 1)


class LocalLinear(nn.Module):
    """A separate affine map W_p x + b_p at every position p of the grid."""

    def __init__(self, channels: int, grid: tuple[int, int]):
        super().__init__()
        positions = grid[0] * grid[1]
        bound = channels**-0.5  # nn.Linear's initialisation, position by position
        self.weight = nn.Parameter(
            torch.empty(positions, channels, channels).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(positions, channels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, C, H, W) -> (B, C, P) -> (B, C_out, P) with W_p applied at each position p
        y = torch.einsum("poc,bcp->bop", self.weight, x.reshape(b, c, h * w))
        return (y + self.bias.T).reshape(b, c, h, w)


class TokenTransformer(nn.Module):
    """A transformer encoder over the H*W positions of a feature map as tokens."""

    def __init__(self, channels: int, grid: tuple[int, int], settings: TransformerSettings):
        super().__init__()
        self.embed = nn.Linear(channels, settings.d_model)
        self.position = None
        if settings.positional_embedding:
            self.position = nn.Parameter(torch.zeros(1, grid[0] * grid[1], settings.d_model))
            nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            settings.d_model, settings.heads, settings.ffn, settings.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, settings.layers, enable_nested_tensor=False)
        self.project = nn.Linear(settings.d_model, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.embed(x.flatten(2).transpose(1, 2))  # (B, C, H, W) -> (B, H*W, d_model)
        if self.position is not None:
            tokens = tokens + self.position
        tokens = self.project(self.encoder(tokens))  # (B, H*W, d_model) -> (B, H*W, C)
        return tokens.transpose(1, 2).reshape(b, c, h, w)  # -> (B, C, H, W)


class NormalisedMap(nn.Module):
    """A mapping model between per-channel normalisation and de-normalisation.

    y = model((x - mean) / std) * std + mean, with mean and std (C,) of the original features, so
    that the model sees unit-scale inputs whatever the layer's scale.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().float().view(1, -1, 1, 1).clone())
        self.register_buffer("std", std.detach().float().view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std) * self.std + self.mean


def build_model(name: str, channels: int, grid: tuple[int, int], **hyper) -> nn.Module:
    """A freshly initialised mapping model for feature maps (B, channels, *grid).

    Args:
        name: One of `TRAINED`.
        channels: Channels C of the feature maps.
        grid: (H, W) of the feature maps (local_linear and positional embeddings depend on it).
        **hyper: The model's hyperparameters (see `SETTINGS`); unknown keys are an error.
    """
    if name not in SETTINGS:
        raise ValueError(f"unknown trained mapping {name!r}; choose one of {TRAINED}")
    try:
        settings = SETTINGS[name](**hyper)
    except TypeError as error:
        fields = [field.name for field in dataclasses.fields(SETTINGS[name])]
        raise ValueError(
            f"{name}: bad hyperparameters {sorted(hyper)}; it takes {fields}"
        ) from error
    if name == "additive":
        return Additive(channels)
    if name == "linear":
        return nn.Conv2d(channels, channels, kernel_size=1)
    if name == "local_linear":
        return LocalLinear(channels, grid)
    if name == "mlp":
        return nn.Sequential(
            nn.Conv2d(channels, settings.hidden, 1),
            nn.ReLU(),
            nn.Dropout(settings.dropout),
            nn.Conv2d(settings.hidden, channels, 1),
        )
    if name == "cnn":
        if settings.kernel_size % 2 == 0:
            raise ValueError(f"cnn: kernel_size must be odd, got {settings.kernel_size}")
        pad = settings.kernel_size // 2
        return nn.Sequential(
            nn.Conv2d(channels, settings.hidden, settings.kernel_size, padding=pad),
            nn.BatchNorm2d(settings.hidden),
            nn.ReLU(),
            nn.Dropout(settings.dropout),
            nn.Conv2d(settings.hidden, channels, settings.kernel_size, padding=pad),
            nn.BatchNorm2d(channels),
        )
    if settings.d_model % settings.heads:
        raise ValueError(
            f"transformer: heads={settings.heads} must divide d_model={settings.d_model}"
        )
    return TokenTransformer(channels, grid, settings)


def affine_of(model: NormalisedMap) -> AffineMap:
    """The raw-feature affine map y = W x + b of a trained linear (or additive) model.

    With normalisation by (mean m, std s) and the model's W_n, b_n on normalised features,
    W = diag(s) W_n diag(1/s) and b = s * b_n + m - W m.
    """
    core = model.model
    mean = model.mean.flatten().double().cpu().numpy()
    std = model.std.flatten().double().cpu().numpy()
    if isinstance(core, nn.Conv2d) and core.kernel_size == (1, 1):
        weight_n = core.weight.detach().double().cpu().numpy()[:, :, 0, 0]  # (C_out, C_in)
        bias_n = core.bias.detach().double().cpu().numpy()
    elif isinstance(core, Additive):
        weight_n = np.eye(len(mean))
        bias_n = core.shift.detach().double().cpu().numpy()
    else:
        raise ValueError(f"{type(core).__name__} is not an affine map")
    weight = std[:, None] * weight_n / std[None, :]
    return AffineMap(weight=weight, bias=std * bias_n + mean - weight @ mean)


def save_trained(path: str | os.PathLike, model: NormalisedMap, config: dict) -> None:
    """Save a trained mapping as safetensors, and `config` (enough to rebuild it) as JSON beside."""
    from safetensors.torch import save_file

    from featlab.io import atomic_path, write_json

    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    with atomic_path(path) as temporary:
        save_file(state, temporary, metadata={"mapping": config["mapping"]})
    write_json(Path(path).with_suffix(".json"), config)


def load_trained(path: str | os.PathLike) -> tuple[NormalisedMap, dict]:
    """Rebuild a mapping saved by `save_trained`: the model (in eval mode) and its config."""
    config = json.loads(Path(path).with_suffix(".json").read_text())
    core = build_model(
        config["mapping"], config["channels"], tuple(config["grid"]), **config["hyper"]
    )
    channels = config["channels"]
    model = NormalisedMap(core, torch.zeros(channels), torch.ones(channels))
    model.load_state_dict(load_torch_file(path))
    return model.eval(), config


def load_affine(path: str | os.PathLike) -> tuple[AffineMap, dict]:
    """An affine map from a map file: closed-form (weight, bias) or a trained linear/additive."""
    with safe_open(path, framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
    if metadata.get("mapping") in TRAINED:
        model, config = load_trained(path)
        return affine_of(model), config
    tensors = load_file(path)
    return AffineMap(weight=tensors["weight"], bias=tensors["bias"]), metadata


def spatial_op_in(config: dict) -> str | None:
    """The spatial op a saved mapping applies first, or None (configs store None or '')."""
    op = config.get("spatial_op")
    return op if op not in (None, "", "None") else None


def mapping_function(
    mapping: str, path: str | os.PathLike | None, spatial_op: str | None, batch_size: int = 256
) -> tuple[Callable[[np.ndarray], np.ndarray], str | None]:
    """A saved or baseline mapping as a function of original feature maps (N, C, H, W).

    Args:
        mapping: The mapping's name (identity, spatial, a closed-form or a trained one).
        path: Its map file (None for identity and spatial).
        spatial_op: The manipulation's spatial op, for the spatial baseline.
        batch_size: Images per forward pass of a trained model.

    Returns:
        The function, and the spatial op it applies before the map (None when it does not):
        the spatial baseline's own op does not count, it is the map.
    """
    if mapping == "spatial":
        if spatial_op is None:
            raise ValueError("the spatial baseline needs a geometric manipulation (rotate or flip)")
        return (lambda x: apply_spatial(x, spatial_op)), None
    core, first = _saved_map(mapping, path, batch_size)
    return (lambda x: core(_spatial(x, first))), first


def token_function(
    mapping: str, path: str | os.PathLike | None, batch_size: int = 256
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The mapping applied to tokens (N, P, C) that are not on the grid (class and register
    tokens), or None for a mapping that needs the grid.

    A mapping that acts on each feature vector alone (`POSITIONWISE`) is one function of a
    C-vector, so it maps these tokens as it maps every patch token (without the spatial op, which
    moves grid positions only).
    """
    if mapping not in POSITIONWISE:
        return None
    core, _ = _saved_map(mapping, path, batch_size)

    def apply(tokens: np.ndarray) -> np.ndarray:
        # (N, P, C) -> (N, C, P, 1) -> map -> (N, P, C)
        return core(tokens.transpose(0, 2, 1)[..., None])[..., 0].transpose(0, 2, 1)

    return apply


def _saved_map(
    mapping: str, path: str | os.PathLike | None, batch_size: int
) -> tuple[Callable[[np.ndarray], np.ndarray], str | None]:
    """The identity or a saved map without its spatial op, and the op it applies first."""
    if mapping == "identity":
        return (lambda x: x), None
    with safe_open(path, framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
    if metadata.get("mapping") in TRAINED:
        model, config = load_trained(path)
        return (lambda x: apply_model(model, x, batch_size)), spatial_op_in(config)
    affine, config = load_affine(path)
    return affine.apply_maps, spatial_op_in(config)


def _spatial(x: np.ndarray, op: str | None) -> np.ndarray:
    return x if op is None else apply_spatial(x, op)


def apply_model(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run a mapping model (eval mode) on feature maps (N, C, H, W), batch by batch, as float32."""
    parameter = next(model.parameters())
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            batch = batch.to(device=parameter.device, dtype=torch.float32)
            outputs.append(model(batch).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros_like(x, dtype=np.float32)
