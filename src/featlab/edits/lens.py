"""A feature-space lens: the gradient of a class's log-probability with respect to a layer's
features, the feature-space counterpart of the steerable lens's input-space gradient.

`target_gradient` differentiates the rest of the backbone (`backbones.forward_from_layer`) at
the given feature maps; `feature_lens` extrapolates along the gradient's direction at a matched
feature-space norm per image (for example the norm of a learned edit, or of the change an
input-space morph made to the features), so that the two lenses are compared at equal size.
"""

import numpy as np
import torch
from torch import nn

from featlab.backbones import forward_from_layer


def target_gradient(
    model: nn.Module,
    layer: str,
    maps: np.ndarray,
    prefix: np.ndarray | None,
    target: np.ndarray,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """d log p(target_i | maps_i) / d maps_i for every image i, (N, C, H, W).

    Args:
        model: The backbone (eval mode).
        layer: The layer whose output `maps` replaces.
        maps: Feature maps (N, C, H, W).
        prefix: A token model's class and register tokens (N, P, C), held fixed; else None.
        target: (N,) the class whose log-probability the gradient raises.
        input_size: (height, width) of the images the features came from.
    """
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).requires_grad_(True)
    tokens = None if prefix is None else torch.from_numpy(np.asarray(prefix, dtype=np.float32))
    logits = forward_from_layer(model, layer, x, tokens, input_size, grad=True)
    chosen = torch.as_tensor(np.asarray(target), dtype=torch.long)
    log_p = torch.log_softmax(logits, dim=1)[torch.arange(len(chosen)), chosen]
    (gradient,) = torch.autograd.grad(log_p.sum(), x)  # images are independent: one backward
    return gradient.numpy().astype(np.float64)


def feature_lens(
    maps: np.ndarray, gradient: np.ndarray, norms: np.ndarray, steps: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """x + t * norm_i * g_i / |g_i| for each step t: `feature_lens_x{t}` -> (N, C, H, W).

    Args:
        maps: The source feature maps x (N, C, H, W).
        gradient: Their gradients g (N, C, H, W) (`target_gradient`).
        norms: (N,) the feature-space norm a step of 1 moves each image by.
        steps: The multiples t of that norm.
    """
    axes = tuple(range(1, maps.ndim))
    length = np.sqrt(np.square(gradient).sum(axis=axes))
    if np.any(length == 0):
        raise ValueError("a gradient is zero: the class's probability does not reach this layer")
    direction = gradient / length.reshape(-1, *([1] * (maps.ndim - 1)))
    scale = np.asarray(norms, dtype=np.float64).reshape(-1, *([1] * (maps.ndim - 1)))
    return {
        f"feature_lens_x{t:g}": (maps + t * scale * direction).astype(np.float32) for t in steps
    }
