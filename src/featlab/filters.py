"""Filter decoding: each neuron of a CNN layer as an image-space filter, by substitution and by
deconvolution, and how well each filter's linear response predicts the neuron.

A neuron is one channel of a layer's output at one position. Filter substitution (METHODS.md)
builds its image-space filter layer by layer: the filter of a layer-l channel is the sum over its
input channels c and kernel offsets (u, v) of w[c, u, v] times the filter of channel c at layer
l-1, placed at (u, v) times the cumulative stride of layer l-1; the first convolution's filters
are its RGB kernels. For a stack of linear maps this sum is the chain rule written bottom-up: the
filter is the gradient of the neuron's response with respect to the input image, i.e. the
composite kernel. So we compute it as that gradient, by back-propagating a one-hot at the neuron
through a linearised copy of the network (one backward pass per neuron instead of a filter bank
per channel of every layer), on a canvas just large enough to hold the neuron's whole footprint,
so that no zero padding inside the network clips it. On a linear stack this is exact
(tests/test_filters.py checks it against the layer-by-layer substitution).

What the linearised copy approximates (everything else is linear and kept exactly):

- Convolutions (strided, padded, grouped and depthwise), linear layers (ConvNeXt's pointwise
  convolutions), layer scale, average pooling, BatchNorm in eval mode (an affine map per channel:
  back-propagating through it is folding its scale into the convolution before it) and residual
  additions (the gradient is the sum over both paths): exact.
- Activations (ReLU, GELU, SiLU, ...): the identity, the linearisation at a large positive
  pre-activation: the decoded filter is what the neuron computes when every unit below it is on.
- Max pooling: average pooling over the same window and stride. Its gradient is a one-hot at the
  arg-max of each window, which depends on the image; with the arg-max equally likely anywhere in
  the window the expected linear map is the window average, so the window enlarges the footprint
  (METHODS.md). Taking one fixed position per window instead (a plain stride) gives lower
  fidelity on the default study: mean r 0.42 against 0.46 on layer1, 0.24 against 0.26 on layer2.
- LayerNorm (ConvNeXt, over channels): the centring is kept (it is linear) and the division by
  the per-position standard deviation is frozen at its mean over a batch of the study's images.
- Biases, BatchNorm shifts and LayerNorm offsets only shift a neuron's response by a constant,
  which the fidelity (a correlation) ignores; they do not enter the filter.

Any other module that makes the copy non-linear (attention, softmax, global response
normalisation) stops the decoding with an error that names its type.

The deconvolution baseline (Zeiler & Fergus) back-projects the same one-hot through the same
transposed linear maps, but rectifies the back-projected signal where it enters every
convolution or linear layer but the first (in ReLU networks every such input is a rectified map,
which is why the deconvnet keeps its reconstruction non-negative at each layer), and ignores
where the forward ReLUs were on. Max pooling is undone as in substitution: deconvnet's switches
need one image's forward pass, and the decoding here is image-free. On a linear stack the
rectification is the only difference between the two methods.

The fidelity of a neuron's filter is the Pearson correlation, over random patches, between the
filter's linear response (its dot product with the patch) and the neuron's true response. A patch
is a canvas the size of the footprint, zero (the mean colour after normalisation) except for one
of the study's test images plus Gaussian noise (the shapes world's flat colours alone span few
directions), placed so that the footprint's centre falls on a uniformly random pixel of the
image: the neuron looking at a random position of a random image, as inside the network, where
the image is zero-padded. The image part outside the footprint is cut off.
"""

import contextlib
import copy
import dataclasses
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import timm.layers
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from featlab import metrics
from featlab.backbones import capture_layers, check_layers, preprocess, to_grid
from featlab.devices import resolve_device
from featlab.io import atomic_path
from featlab.tables import metric_row

METHODS = ("substitution", "deconvolution")
MAX_CANVAS = 8192  # pixels per side; a footprint that does not fit stops the decoding
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    timm.layers.activations.GELU,
    timm.layers.activations.GELUTanh,
    timm.layers.activations.QuickGELU,
    timm.layers.activations.Swish,
    timm.layers.activations.Mish,
    timm.layers.activations.HardSwish,
)


@dataclasses.dataclass(frozen=True)
class FilterSettings:
    """How many neurons are decoded and how their fidelity is measured."""

    neurons: int | None = 16  # channels per layer, evenly spaced over the layer; None: all
    patches: int = 2000  # random patches of the test images the fidelity is measured on
    noise: float = 0.1  # std of the Gaussian noise added to each image, on the 0-1 pixel scale
    batch_size: int = 32  # patches (or neurons) per forward pass
    seed: int = 0  # seed of the patches and their noise
    device: str = "auto"  # auto: CUDA when present, else CPU
    threads: int = 1  # CPU threads


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Where a layer's neurons look in the image, per axis (rows, columns).

    Neuron k of an axis sees the input pixels k * stride - offset up to size - 1 further on; the
    `canvas` is the smallest input that holds one whole footprint, that of neuron `index`, which
    starts at pixel `start`.
    """

    size: tuple[int, int]  # pixels a neuron sees: the decoded filter's shape (receptive field)
    stride: tuple[int, int]  # pixels between neighbouring neurons (the cumulative stride)
    offset: tuple[int, int]  # where neuron 0's footprint starts, negated (cumulative padding)

    @property
    def index(self) -> tuple[int, int]:
        return tuple(-(-p // s) for p, s in zip(self.offset, self.stride, strict=True))

    @property
    def start(self) -> tuple[int, int]:
        steps = zip(self.index, self.stride, self.offset, strict=True)
        return tuple(k * s - p for k, s, p in steps)

    @property
    def canvas(self) -> tuple[int, int]:
        return tuple(a + r for a, r in zip(self.start, self.size, strict=True))

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The footprint of neuron `index` out of canvases (..., H, W)."""
        (top, left), (height, width) = self.start, self.size
        return images[..., top : top + height, left : left + width]


@dataclasses.dataclass
class DecodedLayer:
    """The decoded filters of one layer's neurons and their fidelity."""

    layer: str
    channels: np.ndarray  # (n,) the decoded channels
    filters: dict[str, np.ndarray]  # method -> (n, 3, R_h, R_w) filters on the normalised input
    fidelity: dict[str, np.ndarray]  # method -> (n,) Pearson r over the patches (NaN: constant)
    footprint: Footprint
    settings: FilterSettings

    def rows(self, backbone: str) -> list[dict]:
        """Metrics rows: each method's mean fidelity over the neurons (n: neurons with one)."""
        base = dict(backbone=backbone, layer=self.layer, split="test")
        return [
            metric_row(
                "filters",
                "fidelity",
                *metrics.summarise(self.fidelity[m], undefined_ok=True),  # NaN: constant neuron
                **base,
                comparison=m,
            )
            for m in METHODS
        ]

    def save(self, path: str | os.PathLike) -> None:
        """Filters and fidelities as safetensors, footprint and settings as JSON beside them."""
        path = Path(path)
        arrays = {"channels": self.channels.astype(np.int64)}
        for method in METHODS:
            arrays[f"filters.{method}"] = np.ascontiguousarray(self.filters[method], np.float32)
            arrays[f"fidelity.{method}"] = self.fidelity[method].astype(np.float64)
        with atomic_path(path) as temporary:
            save_file(arrays, temporary)
        info = {
            "layer": self.layer,
            "footprint": dataclasses.asdict(self.footprint),
            "settings": dataclasses.asdict(self.settings),
        }
        with atomic_path(path.with_suffix(".json")) as temporary:
            temporary.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DecodedLayer":
        path = Path(path)
        arrays = load_file(path)
        info = json.loads(path.with_suffix(".json").read_text())
        return cls(
            layer=info["layer"],
            channels=arrays["channels"],
            filters={m: arrays[f"filters.{m}"] for m in METHODS},
            fidelity={m: arrays[f"fidelity.{m}"] for m in METHODS},
            footprint=Footprint(**{k: tuple(v) for k, v in info["footprint"].items()}),
            settings=FilterSettings(**info["settings"]),
        )


def decode_layer(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    normalisation: dict,
    settings: FilterSettings,
) -> DecodedLayer:
    """Decode neurons of one layer by substitution and deconvolution and score both.

    Args:
        model: A CNN in eval mode (timm or any nn.Module with a module named `layer`).
        layer: The module whose output channels are decoded (e.g. "layer3", "stages.2").
        images: uint8 (N, H, W, 3) images the patches are cut from (the test split).
        normalisation: The model's preprocessing, {"mean": [...], "std": [...]}.
        settings: Neurons, patches, noise, seed and device.

    Returns:
        The filters (on the normalised input) of the evenly spaced channels, their fidelities and
        the layer's footprint.
    """
    # 1. Check inputs and prepare the model
    check_layers(model, (layer,))
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, "filters.device")
    model = copy.deepcopy(model).eval().requires_grad_(False).to(device)

    # 2. Linearise it, with LayerNorm scales from a batch of the images
    calibration = preprocess(images[: settings.batch_size], normalisation).to(device)
    surrogate = linearise(model, calibration)

    # 3. Find the footprint and the canvas that holds it
    footprint = find_footprint(surrogate, layer, start=max(images.shape[1:3]))
    with torch.inference_mode():
        n_channels = layer_output(surrogate, layer, calibration[:1]).shape[1]
    channels = pick_channels(n_channels, settings.neurons)

    # 4. Back-project a one-hot at each neuron: without and with rectification
    filters = {
        method: backproject(surrogate, layer, channels, footprint, method, settings.batch_size)
        for method in METHODS
    }

    # 5. Score each filter's linear response against the neuron's over random patches
    fidelity = measure_fidelity(
        model, layer, channels, filters, footprint, images, normalisation, settings
    )
    return DecodedLayer(layer, channels, filters, fidelity, footprint, settings)


def measure_fidelity(
    model: nn.Module,
    layer: str,
    channels: np.ndarray,
    filters: dict[str, np.ndarray],
    footprint: Footprint,
    images: np.ndarray,
    normalisation: dict,
    settings: FilterSettings,
) -> dict[str, np.ndarray]:
    """Per method, the (n,) Pearson correlations over `settings.patches` random patches between
    each filter's dot product with the patch and its neuron's response in `model`."""
    parameter = next(model.parameters())
    weights = {m: torch.from_numpy(f).flatten(1).to(parameter.device) for m, f in filters.items()}
    index, (i, j) = torch.from_numpy(channels).to(parameter.device), footprint.index
    responses = {"true": [], **{method: [] for method in filters}}
    with torch.inference_mode():
        for canvases in random_patches(images, footprint, normalisation, settings):
            canvases = canvases.to(parameter.device)
            responses["true"].append(layer_output(model, layer, canvases)[:, index, i, j])
            patches = footprint.crop(canvases).flatten(1)  # (B, 3 * R_h * R_w)
            for method, weight in weights.items():
                responses[method].append(patches @ weight.T)  # (B, n)
    responses = {k: torch.cat(v).double().cpu().numpy() for k, v in responses.items()}
    return {method: pearson(responses[method], responses["true"]) for method in filters}


def linearise(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """A copy of `model` with its nonlinear modules replaced as the module docstring says.

    `calibration` (B, 3, H, W) images give each LayerNorm the standard deviation it is frozen at.
    """
    sigmas = _layer_norm_sigmas(model, calibration)
    surrogate = copy.deepcopy(model).eval().requires_grad_(False)
    for name, module in list(surrogate.named_modules()):
        if isinstance(module, _ACTIVATIONS):
            replacement = nn.Identity()
        elif isinstance(module, nn.MaxPool2d):
            if module.dilation not in (1, (1, 1)):
                raise ValueError(f"{name}: max pooling with dilation is not supported")
            replacement = nn.AvgPool2d(
                module.kernel_size,
                module.stride,
                module.padding,
                ceil_mode=module.ceil_mode,
                count_include_pad=False,
            )
        elif isinstance(module, nn.LayerNorm):
            replacement = _FrozenLayerNorm(module, sigmas[name])
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(surrogate.get_submodule(parent), child, replacement)
    return surrogate


class _FrozenLayerNorm(nn.Module):
    """LayerNorm with its divisor frozen: (x - mean over channels) / sigma * weight + bias."""

    def __init__(self, norm: nn.LayerNorm, sigma: float):
        super().__init__()
        self.dims, self.sigma = _norm_dims(norm), sigma
        # the affine parameters broadcast over channels of NCHW, or over the last dims
        shape = (-1, 1, 1) if self.dims == (1,) else norm.normalized_shape
        self.weight = None if norm.weight is None else nn.Parameter(norm.weight.view(shape))
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(self.dims, keepdim=True)) / self.sigma
        if self.weight is not None:
            x = x * self.weight
        return x if self.bias is None else x + self.bias


def _norm_dims(norm: nn.LayerNorm) -> tuple[int, ...]:
    """The dims a LayerNorm normalises: channels of NCHW for timm's LayerNorm2d, else the last."""
    if isinstance(norm, timm.layers.LayerNorm2d):
        return (1,)
    return tuple(range(-len(norm.normalized_shape), 0))


def _layer_norm_sigmas(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Each LayerNorm's standard deviation over its normalised dims, averaged over `images`."""
    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    if not norms:
        return {}
    sigmas = {}

    def record(name: str, norm: nn.LayerNorm, inputs: tuple) -> None:
        variance = inputs[0].float().var(_norm_dims(norm), unbiased=False)
        sigmas[name] = float((variance + norm.eps).sqrt().mean())

    handles = [
        norm.register_forward_pre_hook(lambda m, i, name=name: record(name, m, i))
        for name, norm in norms.items()
    ]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return sigmas


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of `layer` for input `x` as a (B, C, H, W) grid; the forward stops there."""
    with capture_layers(model, (layer,), stop=True) as outputs:
        model(x)
    grid, _ = to_grid(model, outputs[layer])
    return grid


def find_footprint(surrogate: nn.Module, layer: str, start: int) -> Footprint:
    """Measure the footprint of a layer's neurons on the linearised model.

    Back-propagates a random mix of channels at two diagonal neighbours in float64 on square
    canvases from `start` pixels up, doubling until both footprints lie inside the canvas (then
    no padding inside the network clipped them); where the gradient is non-zero is the footprint.
    """
    probe = copy.deepcopy(surrogate).double()
    parameter = next(probe.parameters())
    _check_linear(probe, layer, start)
    generator = torch.Generator().manual_seed(0)
    size = start
    while size <= MAX_CANVAS:
        x = torch.zeros(2, 3, size, size, dtype=torch.float64, device=parameter.device)
        x.requires_grad_(True)
        grid = layer_output(probe, layer, x)  # (2, C, h, w)
        i, j = (grid.shape[2] - 1) // 2, (grid.shape[3] - 1) // 2
        if min(grid.shape[2:]) >= 3:
            mix = torch.randn(grid.shape[1], generator=generator, dtype=torch.float64)
            mix = mix.to(grid.device)
            (grid[0, :, i, j] @ mix + grid[1, :, i + 1, j + 1] @ mix).backward()
            boxes = [_support(x.grad[b]) for b in (0, 1)]
            if all(box[0] > 0 and box[2] > 0 and max(box[1], box[3]) < size - 1 for box in boxes):
                return _footprint_of(boxes, (i, j))
        size *= 2
    raise ValueError(f"the footprint of {layer} does not fit in {MAX_CANVAS} pixels")


def _support(gradient: torch.Tensor) -> tuple[int, int, int, int]:
    """First and last row, first and last column where a (3, H, W) gradient is non-zero."""
    magnitude = gradient.abs().sum(0)  # (3, H, W) -> (H, W)
    rows = torch.nonzero(magnitude.sum(1)).flatten()
    columns = torch.nonzero(magnitude.sum(0)).flatten()
    return int(rows[0]), int(rows[-1]), int(columns[0]), int(columns[-1])


def _footprint_of(boxes: list[tuple[int, ...]], index: tuple[int, int]) -> Footprint:
    """The footprint from the supports of neurons `index` and `index` + (1, 1)."""
    (top, bottom, left, right), (top1, _, left1, _) = boxes
    if boxes[0][1] - top != boxes[1][1] - top1 or boxes[0][3] - left != boxes[1][3] - left1:
        raise ValueError("neighbouring neurons have footprints of different sizes")
    stride = (top1 - top, left1 - left)
    return Footprint(
        size=(bottom - top + 1, right - left + 1),
        stride=stride,
        offset=(index[0] * stride[0] - top, index[1] * stride[1] - left),
    )


def _check_linear(probe: nn.Module, layer: str, size: int) -> None:
    """Stop, naming the modules that are not, when the linearised model is not affine up to
    `layer`: for inputs a, b, a + b and 0, an affine f has f(a) + f(b) - f(a + b) - f(0) = 0."""
    parameter = next(probe.parameters())
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 3, size, size, generator=generator, dtype=torch.float64)
    x = torch.cat([a, b, a + b, torch.zeros_like(a)]).to(parameter.device)
    # per module: whether its input and its output are affine in x
    affine = {}

    def record(name: str, inputs: tuple, output) -> None:
        affine[name] = (_is_affine(inputs[0] if inputs else None), _is_affine(output))

    handles = [
        module.register_forward_hook(lambda _m, i, o, name=name: record(name, i, o))
        for name, module in probe.named_modules()
        if name
    ]
    try:
        with torch.inference_mode():
            out = layer_output(probe, layer, x)
    finally:
        for handle in handles:
            handle.remove()
    if _is_affine(out):
        return
    # the innermost modules that turn an affine input into a non-affine output
    culprits = [name for name, (inp, output) in affine.items() if inp and not output]
    culprits = [n for n in culprits if not any(c.startswith(n + ".") for c in culprits)]
    modules = dict(probe.named_modules())
    named = ", ".join(f"{n} ({type(modules[n]).__name__})" for n in culprits) or "unknown"
    raise ValueError(
        f"{layer} is not linear in the image once activations, max pooling and LayerNorms are "
        f"linearised, so its neurons have no image-space filter (filter decoding needs a CNN); "
        f"not linearised: {named}"
    )


def _is_affine(outputs) -> bool:
    """Whether the outputs for a, b, a + b and 0 (stacked along the batch) are affine ones;
    what is not such a tensor counts as affine."""
    if not torch.is_tensor(outputs) or outputs.shape[:1] != (4,) or not outputs.is_floating_point():
        return True
    error = (outputs[0] + outputs[1] - outputs[2] - outputs[3]).abs().max()
    return bool(error <= 1e-6 * outputs[:3].abs().max())


def pick_channels(n_channels: int, neurons: int | None) -> np.ndarray:
    """`neurons` channels evenly spaced over 0 .. n_channels - 1 (all of them for None)."""
    if neurons is None or neurons >= n_channels:
        return np.arange(n_channels)
    return np.unique(np.linspace(0, n_channels - 1, neurons).round().astype(np.int64))


class _RectifyBackward(torch.autograd.Function):
    """The identity on the way forward; rectifies the gradient on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return gradient.clamp(min=0)


@contextlib.contextmanager
def _rectified_inputs(model: nn.Module, image: torch.Tensor) -> Iterator[None]:
    """Rectify what is back-projected into every convolution and linear layer but the first."""

    def rectify(_module: nn.Module, inputs: tuple) -> tuple | None:
        if inputs[0] is image:
            return None
        return (_RectifyBackward.apply(inputs[0]), *inputs[1:])

    handles = [
        module.register_forward_pre_hook(rectify)
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def backproject(
    surrogate: nn.Module,
    layer: str,
    channels: np.ndarray,
    footprint: Footprint,
    method: str,
    batch_size: int,
) -> np.ndarray:
    """(n, 3, R_h, R_w) filters: a one-hot at each neuron back-projected to the image.

    `substitution` is the plain gradient of the linearised model; `deconvolution` rectifies it
    on the way, as the module docstring says.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    parameter = next(surrogate.parameters())
    filters = []
    for first in range(0, len(channels), batch_size):
        chunk = torch.from_numpy(channels[first : first + batch_size])
        x = torch.zeros(len(chunk), 3, *footprint.canvas, device=parameter.device)
        x.requires_grad_(True)
        rectified = method == "deconvolution"
        with _rectified_inputs(surrogate, x) if rectified else contextlib.nullcontext():
            grid = layer_output(surrogate, layer, x)  # (B, C, h, w)
        (i, j), rows = footprint.index, torch.arange(len(chunk))
        grid[rows, chunk.to(grid.device), i, j].sum().backward()
        filters.append(footprint.crop(x.grad).cpu().numpy())
    return np.concatenate(filters)


def random_patches(
    images: np.ndarray, footprint: Footprint, normalisation: dict, settings: FilterSettings
) -> Iterator[torch.Tensor]:
    """Batches of (B, 3, *footprint.canvas) canvases, as the module docstring describes."""
    rng = np.random.default_rng(settings.seed)
    n, height, width, _ = images.shape
    std = np.asarray(normalisation["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    (top, left), (rows, columns) = footprint.start, footprint.size
    for first in range(0, settings.patches, settings.batch_size):
        count = min(settings.batch_size, settings.patches - first)
        chosen = rng.integers(n, size=count)
        centres = rng.integers((height, width), size=(count, 2))
        # (B, H, W, 3) uint8 -> (B, 3, H, W) normalised, plus noise in normalised units
        noise = rng.standard_normal((count, 3, height, width), dtype=np.float32)
        batch = preprocess(images[chosen], normalisation) + torch.from_numpy(
            noise * (settings.noise / std)
        )
        canvases = torch.zeros(count, 3, *footprint.canvas)
        for b, (y, x) in enumerate(centres):
            # the image's top-left corner on the canvas, and the part of it inside the footprint
            y0, x0 = top + rows // 2 - y, left + columns // 2 - x
            r0, r1 = max(y0, top), min(y0 + height, top + rows)
            c0, c1 = max(x0, left), min(x0 + width, left + columns)
            canvases[b, :, r0:r1, c0:c1] = batch[b, :, r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]
        yield canvases


def pearson(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per column, the Pearson correlation of (P, n) arrays; NaN where a column is constant."""
    predicted = predicted - predicted.mean(0)
    true = true - true.mean(0)
    scale = np.sqrt((predicted**2).sum(0) * (true**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (predicted * true).sum(0) / scale
    return np.where(scale > 0, r, math.nan)
