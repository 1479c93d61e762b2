"""Steerable lens: how does a classifier move an image from its class to a target class?

An edit of a source image is a flat parameter vector theta in one of three domains:

- ``steerable``: the complex bands c of plenoptic's ``SteerablePyramidFreq(is_complex=True)``
  become c * exp(eta + i*delta); ``_phase`` edits the phases delta only (eta = 0),
  ``_phase_amplitude`` edits delta and the log-amplitudes eta jointly. The highpass and lowpass
  residuals stay fixed.
- ``fourier``: the same parameterisation of the image's 2-D Fourier coefficients (``rfft2``; the
  inverse keeps the real part where the half spectrum holds both members of a conjugate pair).
- ``pixel``: theta is added to the pixels.

The edited image is the source plus the change the edit makes to the real part of the
reconstruction, clipped to [0, 1]: clip(source + R(c * (exp(eta + i*delta) - 1))). The
reconstruction R is (real-)linear, so this is the reconstruction of the edited coefficients with
the pyramid's tiny round-trip error left out, and zero parameters return the source exactly.

Two morphs extrapolate toward the target class; the objective is the target's log-probability
(or its logit margin over the best other class) under the driving classifier:

- ``one_step``: the gradient g at the source is amplified, theta(s) = s * g / max|g|; frames at
  evenly spaced s from 0 to the s that meets the budget;
- ``iterative``: the gradient is taken again after every step, and a step changes no parameter
  by more than a cap (``phase_step`` radians, or ``pixel_step`` for pixels): cap * g / max|g|.
  The path is cut where it meets the budget; frames are evenly spaced along it. A walk that
  settles (the classifier content) before the largest budget after ``max_steps`` steps goes on
  in a straight line: its end point is amplified until it reaches the budget.

Every morph meets each image-space L2 budget: the amplification (or the last step's fraction) is
bracketed and bisected so that ||final frame - source||_2, pixels in [0, 1] over all channels,
equals the budget within ``budget_tolerance``. A budget that a method cannot reach stops the run.

How much of a change is a smooth warp (and gain)? A displacement field on a coarse control grid,
upsampled bicubically, warps the source (bilinear sampling) toward the final frame; warp plus
gain multiplies the warped image by a smooth gain field on the same grid. The share explained is
1 - ||final - model||^2 / ||final - source||^2 (see ``explained_share``).
"""

import dataclasses
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from plenoptic.process import SteerablePyramidFreq
from safetensors.numpy import load_file, save_file
from torch import nn
from torch.nn import functional as F

from featlab.backbones import BackboneSpec, build_backbone, data_config
from featlab.data import shapes
from featlab.data.images import ImageStore
from featlab.io import atomic_path, read_json, write_json
from featlab.tables import metric_row

METHODS = (
    "steerable_phase",
    "steerable_phase_amplitude",
    "fourier_phase",
    "fourier_phase_amplitude",
    "pixel",
)
VARIANTS = ("one_step", "iterative")
OBJECTIVES = ("log_probability", "logit_margin")


@dataclasses.dataclass(frozen=True)
class WarpSettings:
    """The smooth warp (and gain) fitted to a morph's change."""

    grid: int = 8  # control points per side of the displacement and gain fields
    smoothness: float = 0.01  # weight of the mean squared difference of neighbouring controls
    steps: int = 100  # Adam steps
    lr: float = 0.1  # Adam learning rate (pixels of displacement per step, roughly)


@dataclasses.dataclass(frozen=True)
class LensSettings:
    """How the morphs are made, matched and scored."""

    budgets: tuple[float, ...] = (2.0, 4.0)  # L2 of the final frame's change, pixels in [0, 1]
    methods: tuple[str, ...] = (
        "steerable_phase",
        "steerable_phase_amplitude",
        "fourier_phase",
        "pixel",
    )
    variants: tuple[str, ...] = VARIANTS
    frames: int = 5  # frames per morph, the source first
    objective: str = "log_probability"  # or logit_margin (target logit minus the best other)
    orientations: int = 4  # pyramid orientations (the steerable filters' order + 1)
    height: int | None = None  # pyramid scales; None: as many as the image side allows
    max_steps: int = 100  # iterative: most gradient steps; then the walk goes on straight
    phase_step: float = 0.2  # iterative: largest change of a phase or log-amplitude per step
    pixel_step: float = 0.05  # iterative: largest change of a pixel per step
    budget_tolerance: float = 0.002  # relative distance to the budget that counts as matched
    warp: WarpSettings = WarpSettings()
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        for name, allowed, values in (
            ("methods", METHODS, self.methods),
            ("variants", VARIANTS, self.variants),
            ("objective", OBJECTIVES, (self.objective,)),
        ):
            unknown = set(values) - set(allowed)
            if unknown:
                raise ValueError(f"lens.{name}: unknown {sorted(unknown)}; choose from {allowed}")
        if not self.budgets or min(self.budgets) <= 0:
            raise ValueError(f"lens.budgets must be positive L2 distances, got {self.budgets}")
        if self.frames < 2:
            raise ValueError("lens.frames must be at least 2 (the source and the final frame)")
        object.__setattr__(self, "budgets", tuple(sorted(float(b) for b in self.budgets)))
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "variants", tuple(self.variants))
        if isinstance(self.warp, dict):
            object.__setattr__(self, "warp", WarpSettings(**self.warp))


def comparison_name(method: str, variant: str, budget: float) -> str:
    """The table's `comparison` of a morph: 'steerable_phase_iterative_l2_2'."""
    return f"{method}_{variant}_l2_{budget:g}"


# --- Edits: a flat parameter vector in a domain, rendered to an image ---------------------------


class Edit:
    """An edit of one source image (1, 3, H, W) in [0, 1]; zero parameters give the source."""

    n_params: int
    step_cap: float  # the iterative variant's largest change of one parameter per step

    def __init__(self, source: torch.Tensor):
        self.source = source

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        """The change (1, 3, H, W) that the parameters make to the source, before clipping."""
        raise NotImplementedError

    def render(self, theta: torch.Tensor) -> torch.Tensor:
        return (self.source + self.change(theta)).clamp(0.0, 1.0)

    def distance(self, theta: torch.Tensor) -> float:
        """||render(theta) - source||_2 over all pixels and channels."""
        with torch.no_grad():
            return float(torch.linalg.vector_norm(self.render(theta) - self.source))


def _polar_factor(theta: torch.Tensor, n: int, amplitude: bool) -> torch.Tensor:
    """exp(eta + i*delta) - 1, (n,) complex, for theta = delta or theta = [delta, eta]."""
    delta = theta[:n]
    eta = theta[n:] if amplitude else torch.zeros_like(delta)
    return torch.expm1(torch.complex(eta, delta))


class PixelEdit(Edit):
    def __init__(self, source: torch.Tensor, step_cap: float):
        super().__init__(source)
        self.n_params, self.step_cap = source.numel(), step_cap

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.view_as(self.source)


class FourierEdit(Edit):
    """Phases (and log-amplitudes) of the image's 2-D Fourier coefficients, per channel."""

    def __init__(self, source: torch.Tensor, amplitude: bool, step_cap: float):
        super().__init__(source)
        self.coefficients = torch.fft.rfft2(source)  # (1, 3, H, W // 2 + 1) complex
        self.amplitude, self.step_cap = amplitude, step_cap
        self.n_params = self.coefficients.numel() * (2 if amplitude else 1)

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        factor = _polar_factor(theta, self.coefficients.numel(), self.amplitude)
        edited = self.coefficients * factor.view_as(self.coefficients)
        return torch.fft.irfft2(edited, s=self.source.shape[-2:])


class SteerableEdit(Edit):
    """Phases (and log-amplitudes) of the complex steerable pyramid's bands; residuals fixed."""

    def __init__(
        self, source: torch.Tensor, amplitude: bool, step_cap: float, settings: LensSettings
    ):
        super().__init__(source)
        self.pyramid = SteerablePyramidFreq(
            tuple(source.shape[-2:]),
            height="auto" if settings.height is None else settings.height,
            order=settings.orientations - 1,
            is_complex=True,
        ).to(source.dtype)
        with torch.no_grad():
            # {"residual_highpass": (1, 3, H, W), scale s: (1, 3, K, H / 2^s, W / 2^s) complex,
            #  "residual_lowpass": (1, 3, h, w)}
            self.coefficients = self.pyramid(source)
        self.bands = [key for key in self.coefficients if isinstance(key, int)]
        self.sizes = [self.coefficients[key].numel() for key in self.bands]
        self.amplitude, self.step_cap = amplitude, step_cap
        self.n_params = sum(self.sizes) * (2 if amplitude else 1)

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        factors = _polar_factor(theta, sum(self.sizes), self.amplitude).split(self.sizes)
        # The residuals do not change; each band changes by c * (exp(eta + i*delta) - 1).
        edited = OrderedDict((key, torch.zeros_like(c)) for key, c in self.coefficients.items())
        for key, factor in zip(self.bands, factors, strict=True):
            edited[key] = self.coefficients[key] * factor.view_as(self.coefficients[key])
        return self.pyramid.recon_pyr(edited)


def make_edit(method: str, source: torch.Tensor, settings: LensSettings) -> Edit:
    """The edit of `method` (one of METHODS) on a source image (1, 3, H, W) in [0, 1]."""
    if method == "pixel":
        return PixelEdit(source, settings.pixel_step)
    domain, _, parameterisation = method.partition("_")
    amplitude = parameterisation == "phase_amplitude"
    if domain == "fourier":
        return FourierEdit(source, amplitude, settings.phase_step)
    return SteerableEdit(source, amplitude, settings.phase_step, settings)


# --- Classifiers and the objective ---------------------------------------------------------------


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


def gradient(edit: Edit, objective: Callable, theta: torch.Tensor) -> torch.Tensor:
    """d objective(render(theta)) / d theta, (n_params,)."""
    theta = theta.detach().requires_grad_(True)
    (value,) = objective(edit.render(theta))
    (grad,) = torch.autograd.grad(value, theta)
    return grad


def _unit_max(vector: torch.Tensor) -> torch.Tensor:
    """The vector scaled to a largest entry of 1 (a zero vector stays zero)."""
    return vector / vector.abs().max().clamp_min(1e-30)


# --- Morphs matched to a budget ------------------------------------------------------------------


@dataclasses.dataclass
class Morph:
    frames: torch.Tensor  # (frames, 3, H, W) in [0, 1]; the source first, the matched frame last
    l2: float  # ||last frame - source||_2
    amplification: float  # one_step: the largest parameter change; iterative: gradient steps
    extension: float = 1.0  # iterative: how far the walk's end was amplified (1: not at all)


def _bisect(distance: Callable[[float], float], budget: float, low: float, high: float, tol: float):
    """With distance(low) < budget <= distance(high), the point where distance = budget."""
    point, value = high, distance(high)
    for _ in range(60):
        if abs(value - budget) <= tol * budget:
            return point, value
        point = 0.5 * (low + high)
        value = distance(point)
        low, high = (point, high) if value < budget else (low, point)
    raise RuntimeError(f"bisection did not meet L2 {budget:g} within {tol:.2%} (got {value:.4g})")


def _grow(distance: Callable[[float], float], budget: float, start: float, name: str):
    """(low, high) with distance(low) < budget <= distance(high): the first amplification past
    `start` that reaches the budget, found by growing it by half at a time."""
    low, high = 0.0, start
    for _ in range(80):
        if distance(high) >= budget:
            return low, high
        low, high = high, 1.5 * high
    raise ValueError(
        f"{name}: no amplification of the edit reaches L2 {budget:g}; lower lens.budgets"
    )


def one_step(
    edit: Edit, objective: Callable, settings: LensSettings, name: str
) -> dict[float, Morph]:
    """Amplify the gradient at the source, s * g / max|g|, to each budget."""
    # 1. Direction: the gradient at the source, scaled to a largest entry of 1.
    direction = _unit_max(gradient(edit, objective, torch.zeros(edit.n_params)))

    def distance(scale: float) -> float:
        return edit.distance(scale * direction)

    morphs = {}
    for budget in settings.budgets:
        # 2. Bracket the first amplification that reaches the budget, then bisect.
        low, high = _grow(distance, budget, edit.step_cap, f"{name} one_step")
        scale, value = _bisect(distance, budget, low, high, settings.budget_tolerance)
        # 3. Frames at evenly spaced amplifications.
        with torch.no_grad():
            amplifications = np.linspace(0.0, scale, settings.frames)
            frames = torch.cat([edit.render(float(s) * direction) for s in amplifications])
        morphs[budget] = Morph(frames, value, scale)
    return morphs


def iterative(
    edit: Edit, objective: Callable, settings: LensSettings, name: str
) -> dict[float, Morph]:
    """Take the gradient again after every capped step; cut the path where it meets each budget.

    A walk that has not crossed the largest budget after `max_steps` steps (it settles where
    the classifier is content) goes on in a straight line: its end point is amplified, as the
    one-step morph amplifies the gradient, until it does.
    """
    # 1. Walk until the largest budget is crossed or the steps run out.
    largest = settings.budgets[-1]
    path, distances = [torch.zeros(edit.n_params)], [0.0]
    while distances[-1] < largest and len(path) <= settings.max_steps:
        step = edit.step_cap * _unit_max(gradient(edit, objective, path[-1]))
        path.append(path[-1] + step)
        distances.append(edit.distance(path[-1]))
    steps, end, extension = len(path) - 1, path[-1], 1.0
    # 2. Short of the largest budget: amplify the end point until it is crossed.
    if distances[-1] < largest:
        _, extension = _grow(lambda s: edit.distance(s * end), largest, 1.0, f"{name} iterative")
        path.append(extension * end)
        distances.append(edit.distance(path[-1]))
    # Frames are spaced evenly in the parameters' path length.
    lengths = np.cumsum([0.0, *(float((b - a).norm()) for a, b in itertools.pairwise(path))])
    morphs = {}
    for budget in settings.budgets:
        # 3. The first segment that crosses the budget, shortened by bisection to land on it.
        crossing = next(k for k, d in enumerate(distances) if d >= budget)
        start, segment = path[crossing - 1], path[crossing] - path[crossing - 1]
        fraction, value = _bisect(
            lambda a, start=start, segment=segment: edit.distance(start + a * segment),
            budget,
            0.0,
            1.0,
            settings.budget_tolerance,
        )
        points = [*path[:crossing], start + fraction * segment]
        positions = np.append(
            lengths[:crossing], lengths[crossing - 1] + fraction * float(segment.norm())
        )
        # 4. Frames evenly spaced along the path.
        with torch.no_grad():
            frames = [
                edit.render(_along(points, positions, t))
                for t in np.linspace(0.0, positions[-1], settings.frames)
            ]
        if crossing <= steps:  # met within the walk
            taken, amplified = crossing - 1 + fraction, 1.0
        else:  # met on the straight continuation
            taken, amplified = steps, 1.0 + fraction * (extension - 1.0)
        morphs[budget] = Morph(torch.cat(frames), value, float(taken), amplified)
    return morphs


def _along(points: list[torch.Tensor], positions: np.ndarray, t: float) -> torch.Tensor:
    """The parameters at position t of the piecewise linear path through `points`."""
    k = int(np.clip(np.searchsorted(positions, t, side="right") - 1, 0, len(points) - 2))
    weight = (t - positions[k]) / max(positions[k + 1] - positions[k], 1e-12)
    return points[k] + float(weight) * (points[k + 1] - points[k])


# --- Smooth warp (and gain) explaining a change --------------------------------------------------


def explained_share(
    sources: torch.Tensor, targets: torch.Tensor, settings: WarpSettings, gain: bool
) -> np.ndarray:
    """Share of ||targets - sources||^2 that a smooth warp (times a smooth gain) explains, (B,).

    A displacement field u (pixels) on a `grid` x `grid` control grid, upsampled bicubically,
    warps each source (bilinear sampling, border padding); with `gain`, a smooth log-gain field on
    the same grid multiplies the warped image (all channels). Adam minimises, per image, the
    squared residual relative to the squared change plus `smoothness` times the mean squared
    difference of neighbouring control points. The share is 1 - that relative residual at the
    iterate of lowest loss; the identity (share 0) is the first iterate, so it is never negative.
    """
    batch, _, height, width = sources.shape
    # 1. Control fields, the bicubic upsampling as a matrix, and the identity sampling grid in
    # grid_sample's (x, y) unit coordinates.
    shift = torch.zeros(batch, 2, settings.grid, settings.grid, requires_grad=True)
    log_gain = torch.zeros(batch, 1, settings.grid, settings.grid, requires_grad=gain)
    upsample = _bicubic_matrix(settings.grid, height, width)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    identity = torch.stack([xs, ys], dim=-1).expand(batch, height, width, 2)
    to_unit = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
    change = (targets - sources).pow(2).sum((1, 2, 3)).clamp_min(1e-12)
    optimiser = torch.optim.Adam([shift, log_gain] if gain else [shift], lr=settings.lr)
    best_loss = torch.full((batch,), torch.inf)
    best_residual = torch.ones(batch)
    # 2. Fit; keep each image's residual at its lowest loss.
    for _ in range(settings.steps + 1):
        # (B, 2, g, g) -> (B, H, W, 2) displacement in unit coordinates
        dense = (shift.flatten(2) @ upsample).view(batch, 2, height, width)
        warped = F.grid_sample(
            sources,
            identity + dense.permute(0, 2, 3, 1) * to_unit,
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        roughness = _roughness(shift)
        if gain:
            warped = warped * (log_gain.flatten(2) @ upsample).view(batch, 1, height, width).exp()
            roughness = roughness + _roughness(log_gain)
        residual = (warped - targets).pow(2).sum((1, 2, 3)) / change
        loss = residual + settings.smoothness * roughness
        better = loss.detach() < best_loss
        best_loss = torch.where(better, loss.detach(), best_loss)
        best_residual = torch.where(better, residual.detach(), best_residual)
        optimiser.zero_grad()
        loss.sum().backward()
        optimiser.step()
    return (1 - best_residual).clamp(0, 1).numpy()


def _bicubic_matrix(grid: int, height: int, width: int) -> torch.Tensor:
    """(grid * grid, H * W): a field's bicubic upsampling (corners aligned) as a matrix product,
    which is several times faster than F.interpolate's bicubic backward pass."""
    basis = torch.eye(grid * grid).view(grid * grid, 1, grid, grid)
    dense = F.interpolate(basis, size=(height, width), mode="bicubic", align_corners=True)
    return dense.view(grid * grid, height * width)


def _roughness(field: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring control points, per image."""
    dy = (field[:, :, 1:] - field[:, :, :-1]).pow(2).mean((1, 2, 3))
    dx = (field[:, :, :, 1:] - field[:, :, :, :-1]).pow(2).mean((1, 2, 3))
    return dx + dy


# --- One case: a source image, a target class, every method, variant and budget ----------------


# The per-morph numbers that become table rows (the records hold per-frame and per-backbone detail).
ROW_METRICS = (
    "target_probability",
    "target_top1",
    "transfer_probability",
    "transfer_top1",
    "warp_share",
    "warp_gain_share",
    "l2_distance",
)


@dataclasses.dataclass
class CaseResult:
    frames: dict[str, np.ndarray]  # comparison -> (frames, H, W, 3) uint8
    records: list[dict]  # one per morph: its numbers and per-frame readings

    def save(self, frames_path: str | os.PathLike, morphs_path: str | os.PathLike, info: dict):
        """The frames as safetensors; the records, with the case's `info`, as JSON."""
        with atomic_path(frames_path) as temporary:
            save_file(self.frames, temporary)
        write_json(morphs_path, {**info, "records": self.records})

    def metric_rows(self, backbone: str, case: str) -> list[dict]:
        """Rows of stage `lens`: `manipulation` the case, `comparison` the morph."""
        rows = []
        for record in self.records:
            for metric in ROW_METRICS:
                if record.get(metric) is not None:
                    rows.append(
                        metric_row(
                            "lens",
                            metric,
                            record[metric],
                            1,
                            backbone=backbone,
                            manipulation=case,
                            comparison=record["comparison"],
                            split="test",
                        )
                    )
        return rows


def morph_case(
    driver: Classifier,
    others: dict[str, Classifier],
    image: np.ndarray,
    target: int,
    settings: LensSettings,
) -> CaseResult:
    """Morph one uint8 (H, W, 3) image toward `target` with every method, variant and budget.

    Args:
        driver: The classifier whose gradient drives the morphs.
        others: The study's other classifiers, by backbone name, read on the final frames.
        image: The source image.
        target: The target class index.
        settings: Methods, variants, budgets and the warp fit.
    """
    # 1. The source and the objective.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    source = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    objective = objective_of(driver, target, settings.objective)
    # 2. Every morph: comparison -> Morph.
    morphs, keys = {}, []
    for method in settings.methods:
        edit = make_edit(method, source, settings)
        for variant in settings.variants:
            walk = one_step if variant == "one_step" else iterative
            for budget, morph in walk(edit, objective, settings, f"{method} {variant}").items():
                key = comparison_name(method, variant, budget)
                morphs[key] = morph
                keys.append((key, method, variant, budget))
    # 3. The driver on every frame; the other classifiers on the source and the final frames.
    frames = torch.stack([morphs[key].frames for key, *_ in keys])  # (M, T, 3, H, W)
    finals = frames[:, -1]  # (M, 3, H, W)
    driven = driver.probabilities(frames.flatten(0, 1)).reshape(*frames.shape[:2], -1)
    others_read = {name: c.probabilities(torch.cat([source, finals])) for name, c in others.items()}
    # 4. How much of each final change a smooth warp, and warp plus gain, explain.
    sources = source.expand_as(finals)
    warp = explained_share(sources, finals, settings.warp, gain=False)
    warp_gain = explained_share(sources, finals, settings.warp, gain=True)
    # 5. One record per morph, and one for the source itself.
    records = [_record("source", None, None, None, driven[0, 0], others_read, 0, target)]
    for m, (key, method, variant, budget) in enumerate(keys):
        record = _record(key, method, variant, budget, driven[m, -1], others_read, m + 1, target)
        record.update(
            l2_distance=morphs[key].l2,
            amplification=morphs[key].amplification,
            extension=morphs[key].extension,
            warp_share=float(warp[m]),
            warp_gain_share=float(warp_gain[m]),
            frame_target_probability=driven[m, :, target].tolist(),
            frame_top1=driven[m].argmax(1).tolist(),
        )
        records.append(record)
    pixels = (frames.permute(0, 1, 3, 4, 2) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return CaseResult({key: pixels[m] for m, (key, *_) in enumerate(keys)}, records)


def _record(
    comparison: str,
    method: str | None,
    variant: str | None,
    budget: float | None,
    probabilities: np.ndarray,
    others_read: dict[str, np.ndarray],
    row: int,
    target: int,
) -> dict:
    """The driver's and the other classifiers' readings of one image (row `row` of others_read)."""
    transfer = {
        name: {
            "target_probability": float(read[row, target]),
            "top1": int(read[row].argmax()),
        }
        for name, read in others_read.items()
    }
    return {
        "comparison": comparison,
        "method": method,
        "variant": variant,
        "budget": budget,
        "target_probability": float(probabilities[target]),
        "target_top1": float(probabilities.argmax() == target),
        "top1": int(probabilities.argmax()),
        "transfer": transfer,
        # The mean over the other backbones (None without any).
        "transfer_probability": _mean([t["target_probability"] for t in transfer.values()]),
        "transfer_top1": _mean([float(t["top1"] == target) for t in transfer.values()]),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --- Cases: which image, which target ------------------------------------------------------------


@dataclasses.dataclass
class Case:
    image: np.ndarray  # (H, W, 3) uint8, from the test split
    source: int  # the source image's label
    target: int  # the target class
    info: dict  # what the case's morphs.json records about it


def load_case(store: ImageStore, case: dict) -> Case:
    """The configured case {source, target, image}: the `image`-th test image of class `source`
    (a class name of the data set, or an index), to be morphed toward class `target`."""
    classes = shapes.CLASSES if store.attrs.get("source") == "shapes" else None
    source, target = (_class_index(case[key], classes) for key in ("source", "target"))
    if source == target:
        raise ValueError(f"lens case {case}: the target class must differ from the source class")
    positions = np.flatnonzero((store.labels == source) & (store.splits == "test"))
    image = case.get("image", 0)
    if image >= len(positions):
        raise ValueError(
            f"lens case {case}: the test split of {store.path} has {len(positions)} images of "
            f"class {case['source']}"
        )
    position = int(positions[image])
    info = {
        "source": case["source"],
        "target": case["target"],
        "image": image,
        "source_label": source,
        "target_label": target,
        "image_id": str(store.image_ids[position]),
        "store_position": position,
    }
    return Case(store.images[position], source, target, info)


def _class_index(name: str | int, classes: tuple[str, ...] | None) -> int:
    if isinstance(name, int):
        return name
    if classes is None or name not in classes:
        raise ValueError(f"lens case class {name!r} is not one of the data set's classes {classes}")
    return classes.index(name)


# --- Figures: a frame strip and an animated GIF per case -----------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _morph_records(morphs_path: str | os.PathLike) -> tuple[dict, list[dict]]:
    case = read_json(morphs_path)
    return case, [r for r in case["records"] if r["method"] is not None]


def draw_strip(
    frames_path: str | os.PathLike,
    morphs_path: str | os.PathLike,
    path: str | os.PathLike,
    scale: int = 2,
) -> None:
    """One row per method and variant, one block of columns per budget: each morph's frames from
    the source to the final frame, each with the driving classifier's target probability."""
    frames = load_file(frames_path)
    case, records = _morph_records(morphs_path)
    rows = list(dict.fromkeys(f"{r['method']}\n{r['variant']}" for r in records))
    budgets = list(dict.fromkeys(r["budget"] for r in records))
    n_frames, height = next(iter(frames.values())).shape[:2]
    tile, label_width, header, gap = height * scale, 250, 56, 14
    block = n_frames * tile + gap  # one budget's frames and the space after them
    font = _font(max(10, tile // 10))
    size = (label_width + len(budgets) * block, header + len(rows) * (tile + gap))
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{case['backbone']}: {case['case']}", fill="black", font=font)
    for column, budget in enumerate(budgets):
        draw.text((label_width + column * block, header // 2), f"L2 = {budget:g}", "black", font)
    for row, name in enumerate(rows):
        draw.multiline_text((4, header + row * (tile + gap) + tile // 4), name, "black", font)
    for record in records:
        top = header + rows.index(f"{record['method']}\n{record['variant']}") * (tile + gap)
        start = label_width + budgets.index(record["budget"]) * block
        for t, picture in enumerate(frames[record["comparison"]]):
            left = start + t * tile
            canvas.paste(Image.fromarray(picture).resize((tile, tile), Image.NEAREST), (left, top))
            probability = record["frame_target_probability"][t]
            draw.text((left + 2, top + tile), f"p={probability:.2f}", fill="black", font=_font(10))
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")


def write_gif(
    frames_path: str | os.PathLike,
    morphs_path: str | os.PathLike,
    path: str | os.PathLike,
    scale: int = 2,
) -> None:
    """An animated grid: one row per method and variant, one column per budget, in step."""
    frames = load_file(frames_path)
    _, records = _morph_records(morphs_path)
    rows = list(dict.fromkeys(f"{r['method']} {r['variant']}" for r in records))
    budgets = list(dict.fromkeys(r["budget"] for r in records))
    n_frames, height = next(iter(frames.values())).shape[:2]
    tile, label_width, header = height * scale, 230, 20
    font = _font(max(10, tile // 10))
    pictures = []
    for t in range(n_frames):
        size = (label_width + len(budgets) * tile, header + len(rows) * tile)
        canvas = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(canvas)
        for column, budget in enumerate(budgets):
            draw.text((label_width + column * tile + 2, 2), f"L2 = {budget:g}", "black", font)
        for record in records:
            row = rows.index(f"{record['method']} {record['variant']}")
            column = budgets.index(record["budget"])
            if column == 0:
                draw.text((4, header + row * tile + tile // 3), rows[row], "black", font)
            picture = Image.fromarray(frames[record["comparison"]][t])
            position = (label_width + column * tile, header + row * tile)
            canvas.paste(picture.resize((tile, tile), Image.NEAREST), position)
        pictures.append(canvas)
    durations = [400] * (n_frames - 1) + [1200]  # hold the final frame
    with atomic_path(path) as temporary:
        pictures[0].save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
        )
