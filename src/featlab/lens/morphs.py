"""Morphs toward the target class, each matched to an image-space L2 budget.

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
"""

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import torch

from featlab.lens.edits import Edit
from featlab.lens.settings import LensSettings


def gradient(edit: Edit, objective: Callable, theta: torch.Tensor) -> torch.Tensor:
    """d objective(render(theta)) / d theta, (n_params,)."""
    theta = theta.detach().requires_grad_(True)
    (value,) = objective(edit.render(theta))
    (grad,) = torch.autograd.grad(value, theta)
    return grad


def _unit_max(vector: torch.Tensor) -> torch.Tensor:
    """The vector scaled to a largest entry of 1 (a zero vector stays zero)."""
    return vector / vector.abs().max().clamp_min(1e-30)


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


def _grow(distance: Callable[[float], float], budget: float, start: float, name: str, key: str):
    """(low, high) with distance(low) < budget <= distance(high): the first amplification past
    `start` that reaches the budget, found by growing it by half at a time. `key` names the
    config key that set the budget, for the message when none reaches it."""
    low, high = 0.0, start
    for _ in range(80):
        if distance(high) >= budget:
            return low, high
        low, high = high, 1.5 * high
    raise ValueError(f"{name}: no amplification of the edit reaches L2 {budget:g}; lower {key}")


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
        low, high = _grow(distance, budget, edit.step_cap, f"{name} one_step", "lens.budgets")
        scale, value = _bisect(distance, budget, low, high, settings.budget_tolerance)
        # 3. Frames at evenly spaced amplifications.
        with torch.no_grad():
            amplifications = np.linspace(0.0, scale, settings.frames)
            frames = torch.cat([edit.render(float(s) * direction) for s in amplifications])
        morphs[budget] = Morph(frames, value, scale)
    return morphs


def iterative(
    edit: Edit, objective: Callable, settings: LensSettings, name: str, key: str = "lens.budgets"
) -> dict[float, Morph]:
    """Take the gradient again after every capped step; cut the path where it meets each budget
    (`key`: the config key of the budgets, named when a budget cannot be reached).

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
        _, extension = _grow(
            lambda s: edit.distance(s * end), largest, 1.0, f"{name} iterative", key
        )
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
