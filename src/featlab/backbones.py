"""timm backbones: building, loading weights, preprocessing, and reading layer outputs as grids.

Any timm model by name, with weights from the Hugging Face hub (read from its cache; HF_HUB_OFFLINE
and HF_HUB_CACHE are honoured), from a local file, or random. Layers are timm module names. Token
models (ViT, DINOv3-style models with register tokens) have their patch tokens read as a grid and
their class and register tokens kept apart; Swin's channels-last stage outputs become NCHW.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from featlab.io import atomic_path

# timm, with the torchvision it imports (about a second), is imported in the functions that build
# or describe a model, so that a job reading only what a backbone wrote does not pay for it.

WEIGHT_SOURCES = ("train", "hub", "file", "random")
LAYER_CONTAINERS = ("blocks", "layers", "stages")  # timm's usual names for its stacks of layers


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
    import timm  # here: see the note at the module's imports

    try:
        return timm.create_model(spec.model, pretrained=pretrained, **kwargs)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(
                f"unknown timm model {spec.model!r}; see timm.list_models()"
            ) from error
        if "Invalid pretrained tag" in str(error):
            architecture = spec.model.split(".")[0]
            raise ValueError(f"{error} See timm.list_pretrained('{architecture}.*')") from error
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
                f"`{_download_command(spec)}` (or copy the cache), or set weights: file with "
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
        # Random weights come from a file too where the study made them once (init_backbone);
        # without one they are drawn from torch's generator as it stands.
        if path is not None:
            try:
                model.load_state_dict(load_weights(path))
            except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
                raise ValueError(
                    f"weights file {path} does not fit timm model {spec.model!r} with model_args "
                    f"{spec.model_args}; was it saved from another architecture?\n{error}"
                ) from error
    check_layers(model, spec.layers)
    return model.eval()


def labels_match_head(weights: str, stated: bool | None) -> bool:
    """Whether a backbone's head classes are the data set's labels, so accuracy means something.

    Args:
        weights: The backbone's weight source: a head trained in the pipeline (train) learnt the
            data's classes; a pretrained, file or random head has its own.
        stated: The config's statement (`labels_match_head`), which wins where it is given, e.g.
            true for ImageNet data on an ImageNet head.
    """
    return weights == "train" if stated is None else stated


def init_backbone(spec: BackboneSpec, seed: int) -> nn.Module:
    """The model of `spec` with random weights drawn from `seed`, in eval mode.

    The same spec and seed give the same weights in any process (torch's CPU generator, forked so
    that the caller's draws are untouched). A study makes them once and saves them
    (`save_backbone`), so that every job reads one network and its sha256 is recorded.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _create(spec, pretrained=False)
    check_layers(model, spec.layers)
    return model.eval()


def _download_command(spec: BackboneSpec) -> str:
    """The `hf download` command that fetches a hub backbone's weights: the repository of its
    hub_id, else of timm's pretrained config for the name (resnet18 is timm/resnet18.a1_in1k)."""
    hub_id = spec.hub_id
    if hub_id is None:
        import timm  # here: see the note at the module's imports

        config = timm.get_pretrained_cfg(spec.model)
        hub_id = getattr(config, "hf_hub_id", None) or f"timm/{spec.model}"
    repo_id, _, revision = hub_id.partition("@")  # timm's "org/name@revision"
    return f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or from a torch checkpoint without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as error:  # not a safetensors file, or a damaged one
            raise ValueError(
                f"weights file {path} is not a readable safetensors file ({error}); replace it"
            ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling raises many types: report all of them as one
        raise ValueError(
            f"weights file {path} does not load with torch.load(weights_only=True): {error}"
        ) from error
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


def hub_weights_file(spec: BackboneSpec, model: nn.Module) -> str | None:
    """The cached file of the hub weights that a `weights: hub` model was built from.

    timm reads hub weights with huggingface_hub from the repository in the model's
    `pretrained_cfg["hf_hub_id"]` (spec.hub_id when given), trying the safetensors file before
    the torch one; this looks the same files up in the local cache (HF_HUB_CACHE) without any
    network access, so that the extraction can record the weights' sha256.

    Returns:
        The path of the cached weights file, or None for other weight sources or when no
        weights file of the repository is in the cache.
    """
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id = pretrained_cfg.get("hf_hub_id")
    if spec.weights != "hub" or not hub_id:
        return None
    repo_id, _, revision = hub_id.partition("@")  # timm's "org/name@revision"
    for filename in _hub_weights_names(pretrained_cfg.get("hf_hub_filename")):
        cached = try_to_load_from_cache(repo_id, filename, revision=revision or None)
        if isinstance(cached, str):  # not None, nor the marker of a file known to be missing
            return cached
    return None


def _hub_weights_names(filename: str | None) -> tuple[str, ...]:
    """Weights file names in the order timm's load_state_dict_from_hf tries them."""
    if filename is None or filename == "pytorch_model.bin":
        return ("model.safetensors", "pytorch_model.bin")
    if filename == "open_clip_pytorch_model.bin":
        return ("open_clip_model.safetensors", filename)
    if filename.endswith(".bin"):
        return (filename.removesuffix(".bin") + ".safetensors", filename)
    return (filename,)


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
        raise ValueError(
            f"{type(model).__name__} has no layer(s) {unknown}; valid names include "
            f"{layer_suggestions(model)} (any name from model.named_modules() works)"
        )


def layer_suggestions(model: nn.Module) -> list[str]:
    """Layer names to offer: the model's feature_info stages, then each entry of its
    blocks/layers/stages stacks ("layer3", "stages.2", "layers.1", "blocks.11"), in order."""
    suggestions = [info["module"] for info in getattr(model, "feature_info", [])]
    suggestions += [
        name
        for name, _ in model.named_modules()
        if name.count(".") == 1 and name.split(".")[0] in LAYER_CONTAINERS
    ]
    return list(dict.fromkeys(suggestions))


def check_layer_names(model: nn.Module, layers: tuple[str, ...]) -> None:
    """Stop on an empty layer name (the model itself), a layer named twice, or a name the
    model lacks, naming what to choose instead."""
    if any(not layer.strip() for layer in layers):
        raise ValueError(
            f"an empty layer name (it would be the whole model); choose module names such as "
            f"{layer_suggestions(model)}"
        )
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise ValueError(f"{repeated} named more than once; name each layer once")
    check_layers(model, layers)


def check_layer_outputs(model: nn.Module, layers: tuple[str, ...], input_size: int) -> None:
    """Stop on a layer whose output cannot be stored as a (N, C, H, W) grid: a container that
    the forward pass never calls (an nn.ModuleList), or a layer whose output is not a grid of
    positions (a pooling, the head).

    The model runs once on the meta device (shapes only, no computation), so this costs about a
    second even for large models; a model whose forward pass has no meta kernels is not checked
    here, and its extraction job checks it instead.
    """
    modules = dict(model.named_modules())
    try:
        with capture_layers(model, layers) as outputs, torch.device("meta"), torch.no_grad():
            model.to("meta").eval()(torch.empty(1, 3, input_size, input_size))
    except Exception:  # an op without a meta kernel: the extraction job checks the layers
        return
    suggestions = layer_suggestions(model)
    for layer in layers:
        if layer not in outputs:
            raise ValueError(
                f"{layer!r} ({type(modules[layer]).__name__}) is not called by the forward pass: "
                f"it holds layers but is not one; choose one of them, e.g. {layer}.0, or one of "
                f"{suggestions}"
            )
        output = outputs[layer]
        try:
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"it outputs a {type(output).__name__}, not a tensor")
            to_grid(model, output, (input_size, input_size))
        except ValueError as error:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            raise ValueError(
                f"{layer!r} does not output a grid of positions (output {shape}: {error}); "
                f"choose a layer before the pooling and the head, e.g. one of {suggestions}"
            ) from None


def check_backbone(
    spec: BackboneSpec, where: str = "backbone", input_size: int | None = None
) -> None:
    """Check that timm builds the model of `spec` and that its configured layers can be stored.

    Meant for planning, before any job runs: the model is built and run on PyTorch's meta device
    (shapes without storage or computation, about a second for a ConvNeXt-B) and its weights are
    not looked at, so nothing is read or downloaded; a missing or mismatched weights file still
    stops the job that loads it. Models named by a source prefix (`hf-hub:`, `local-dir:`) are
    not checked: their configs would have to be fetched.

    Args:
        spec: The backbone.
        where: The config key of the backbone, e.g. "backbones.cnn", named in the errors.
        input_size: The side of the images the backbone reads; None: its pretrained config's.

    Raises:
        ValueError: naming `{where}.model`, `{where}.model_args` or `{where}.layers`.
    """
    import timm  # here: see the note at the module's imports

    source, _ = timm.models.parse_model_name(spec.model)
    if source is not None:
        return
    # 1. The name: an architecture timm registers, and a pretrained tag it knows
    if not timm.is_model(spec.model):
        raise ValueError(
            f"{where}.model: timm has no model {spec.model!r}; choose a name from "
            "timm.list_models() (a pretrained tag may follow, as in resnet50.a1_in1k)"
        )
    try:
        timm.get_pretrained_cfg(spec.model)
    except RuntimeError as error:  # "Invalid pretrained tag"
        architecture = spec.model.split(".")[0]
        raise ValueError(
            f"{where}.model: {error} Choose one of timm.list_pretrained('{architecture}.*')"
        ) from None
    # 2. The model with its arguments; a constructor that computes on tensors (no meta kernel)
    # is built for real instead
    try:
        with torch.device("meta"):
            model = _create(spec, pretrained=False)
    except Exception:
        try:
            model = _create(spec, pretrained=False)
        except Exception as error:  # constructors raise many types for arguments they refuse
            raise ValueError(
                f"{where}.model_args: timm cannot build {spec.model!r} with {spec.model_args}: "
                f"{type(error).__name__}: {error}"
            ) from None
    # 3. The layers: named once each, modules of the model, and each output a grid
    if input_size is None:
        input_size = timm.data.resolve_model_data_config(model)["input_size"][-1]
    try:
        check_layer_names(model, spec.layers)
        check_layer_outputs(model, spec.layers, input_size)
    except ValueError as error:
        raise ValueError(f"{where}.layers: {error}") from None


def data_config(model: nn.Module) -> dict:
    """Normalisation statistics of the model (timm's resolved data config)."""
    import timm  # here: see the note at the module's imports

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


def token_counts(model: nn.Module) -> tuple[int, int]:
    """How many class tokens and register tokens a token model puts before its patch tokens.

    Both are read from the model: a class token is present when `model.cls_token` is set, and the
    register count is `model.num_reg_tokens` (timm's VisionTransformer) or the length of
    `model.reg_token` (timm's Eva, which DINOv3 models such as `vit_base_patch16_dinov3` use).
    Both classes build their token sequence as [class token, register tokens, patch tokens]
    (`_pos_embed` concatenates `cls_token`, then `reg_token`, then the patches), so the first
    token of a layer's output is the class token and the next ones are the registers.

    Returns:
        (class tokens, register tokens); (0, 0) for models without prefix tokens (CNNs, Swin).

    Raises:
        ValueError: when the counts do not add up to `model.num_prefix_tokens` (a model with
            other prefix tokens, such as DeiT's distillation token).
    """
    n_prefix = getattr(model, "num_prefix_tokens", 0)
    n_class = int(getattr(model, "cls_token", None) is not None)
    reg_token = getattr(model, "reg_token", None)
    n_registers = getattr(
        model, "num_reg_tokens", reg_token.shape[1] if reg_token is not None else 0
    )
    if n_prefix == 0:
        return 0, 0
    if n_class + n_registers != n_prefix:
        raise ValueError(
            f"{type(model).__name__} has {n_prefix} prefix tokens but {n_class} class and "
            f"{n_registers} register tokens: its other prefix tokens are not supported"
        )
    return n_class, n_registers


def to_grid(
    model: nn.Module, output: torch.Tensor, input_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's output as an (B, C, H, W) grid, plus its prefix (class and register) tokens.

    CNN outputs are already NCHW; outputs of models that declare `output_fmt = "NHWC"` (timm's
    Swin and SwinV2 stages and blocks) are channels-last (B, H, W, C); token models output
    (B, P + H*W, C) whose first P = model.num_prefix_tokens tokens are the class token and then
    the register tokens (`token_counts` splits them).

    Args:
        model: The timm model the output came from.
        output: The layer's output.
        input_size: (height, width) of the input images, to find the token grid of a model that
            takes any image size (DINOv3, `dynamic_img_size=True`); by default the model's
            `patch_embed.grid_size`, or for such a model a square grid when that does not fit.

    Returns:
        The grid (B, C, H, W) and the prefix tokens (B, P, C), or None when there are none.
    """
    if output.ndim == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            output = output.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return output, None
    if output.ndim != 3:
        raise ValueError(f"cannot read a layer output of shape {tuple(output.shape)} as a grid")
    prefix = getattr(model, "num_prefix_tokens", 0)
    tokens = output[:, prefix:]
    height, width = _token_grid(model, tokens.shape[1], input_size)
    # (B, H*W, C) -> (B, C, H, W)
    maps = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
    return maps, (output[:, :prefix] if prefix else None)


def _token_grid(
    model: nn.Module, n_tokens: int, input_size: tuple[int, int] | None
) -> tuple[int, int]:
    """(H, W) of the patch grid of `n_tokens` patch tokens."""
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if input_size is not None and hasattr(patch_embed, "dynamic_feat_size"):
        grid = patch_embed.dynamic_feat_size(tuple(input_size))
    elif grid is None or getattr(model, "dynamic_img_size", False):
        side = math.isqrt(n_tokens)
        if side * side == n_tokens and (grid is None or grid[0] * grid[1] != n_tokens):
            grid = (side, side)  # a model that takes any image size, fed square images
    if grid is None or grid[0] * grid[1] != n_tokens:
        raise ValueError(
            f"{n_tokens} patch tokens do not fill a {grid} grid; pass the input images' "
            "input_size (height, width)"
        )
    return int(grid[0]), int(grid[1])


class _StopForward(Exception):
    """Raised by a capturing hook once every layer asked for has run."""


@contextlib.contextmanager
def capture_layers(
    model: nn.Module, layers: tuple[str, ...], stop: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the raw outputs of the named modules during the forward passes inside the block.

    With `stop`, a forward pass ends as soon as every named module has run (the block then
    ends there too), so the later layers and the head cost nothing; use one pass per block.
    """
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def keep(name: str, output: torch.Tensor) -> None:
        outputs[name] = output
        if stop and len(outputs) == len(layers):
            raise _StopForward

    handles = [
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: keep(name, out))
        for name in layers
    ]
    try:
        yield outputs
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def forward_from_layer(
    model: nn.Module,
    layer: str,
    maps: torch.Tensor,
    prefix: torch.Tensor | None = None,
    input_size: tuple[int, int] | None = None,
    grad: bool = False,
) -> torch.Tensor:
    """Logits of the model when the output of `layer` is replaced by the feature maps `maps`.

    The model runs on a placeholder input, and a forward hook swaps the layer's output for `maps`
    in the layer's own format (the inverse of `to_grid`: channels-last for Swin-style models,
    tokens with the prefix tokens put back in front for ViTs), so the later layers and the head
    run on the given features. The layers before `layer` compute on zeros and are discarded: this
    is exact for timm stage and block outputs, which the rest of the network sees only through
    that output, and works for any architecture; it costs one forward pass of the early layers.

    Args:
        model: A timm model in eval mode.
        layer: Name of the module whose output `maps` replaces (e.g. "layer3", "blocks.5").
        maps: Feature maps (B, C, H, W), as `to_grid` reads them.
        prefix: The class token(s) then the register tokens (B, P, C) of a token model, as
            `to_grid` returns them; needed when the layer outputs tokens and P > 0.
        input_size: (height, width) of the images the features came from; by default the grid
            times the layer's reduction in `model.feature_info`.
        grad: Keep the graph, so that gradients reach `maps` (and `prefix`); by default the pass
            runs in inference mode.

    Returns:
        Logits (B, classes), float32.
    """
    # 1. Check inputs and find the placeholder image size
    check_layers(model, (layer,))
    if maps.ndim != 4:
        raise ValueError(f"maps must be (B, C, H, W), got shape {tuple(maps.shape)}")
    if input_size is None:
        reductions = {
            info["module"]: info["reduction"] for info in getattr(model, "feature_info", [])
        }
        if layer not in reductions:
            raise ValueError(f"{layer} is not in the model's feature_info: pass input_size")
        input_size = (maps.shape[-2] * reductions[layer], maps.shape[-1] * reductions[layer])
    parameter = next(model.parameters())
    placeholder = torch.zeros(
        maps.shape[0], 3, *input_size, dtype=parameter.dtype, device=parameter.device
    )

    # 2. Swap the layer's output for the given features during one forward pass
    def replace(_module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
        return _as_layer_output(model, output, maps, prefix)

    handle = dict(model.named_modules())[layer].register_forward_hook(replace)
    try:
        with torch.inference_mode(not grad):
            return model(placeholder).float()
    finally:
        handle.remove()


def _as_layer_output(
    model: nn.Module, output: torch.Tensor, maps: torch.Tensor, prefix: torch.Tensor | None
) -> torch.Tensor:
    """`maps` (B, C, H, W) in the format of the layer's real `output` (the inverse of to_grid)."""
    maps = maps.to(device=output.device, dtype=output.dtype)
    if output.ndim == 4:
        replaced = maps
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            replaced = maps.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
    elif output.ndim == 3:
        replaced = maps.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        n_prefix = output.shape[1] - replaced.shape[1]
        if n_prefix > 0:
            if prefix is None or tuple(prefix.shape[1:]) != (n_prefix, output.shape[2]):
                got = None if prefix is None else tuple(prefix.shape)
                raise ValueError(
                    f"the layer outputs {n_prefix} prefix tokens: pass prefix (B, {n_prefix}, "
                    f"{output.shape[2]}): the class then the register tokens, got {got}"
                )
            # (B, P, C) + (B, H*W, C) -> (B, P + H*W, C)
            replaced = torch.cat([prefix.to(device=output.device, dtype=output.dtype), replaced], 1)
    else:
        raise ValueError(f"cannot replace a layer output of shape {tuple(output.shape)}")
    if replaced.shape != output.shape:
        raise ValueError(
            f"features of shape {tuple(maps.shape)} do not fit the layer's output "
            f"{tuple(output.shape)}"
        )
    return replaced
