"""How much of a morph's change is a smooth warp (and gain)?

How much of a change is a smooth warp (and gain)? A displacement field on a coarse control grid,
upsampled bicubically, warps the source (bilinear sampling) toward the final frame; warp plus
gain multiplies the warped image by a smooth gain field on the same grid. The share explained is
"""

import numpy as np
import torch
from torch.nn import functional as F

from featlab.lens.settings import WarpSettings


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
