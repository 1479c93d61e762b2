"""Geometric manipulations: rotations by quarter turns and mirrors, on the same canvas.

They are exact permutations of pixels, done by featlab.geometry.apply_spatial so that the
"spatial" mapping baseline applies the very same operation to feature grids.
"""

import numpy as np

from featlab.geometry import apply_spatial

_IMAGE_AXES = (1, 2)  # (H, W) axes of an (N, H, W, 3) batch


def spatial_transform(images: np.ndarray, op: str) -> np.ndarray:
    """Rotate or mirror every image of an (N, H, W, 3) batch by a `featlab.geometry` op.

    Quarter turns need square images: the manipulated image keeps the original's canvas.
    """
    height, width = images.shape[1:3]
    if op in ("rot90", "rot270") and height != width:
        raise ValueError(f"{op} keeps the canvas, so it needs square images, got {height}x{width}")
    return apply_spatial(images, op, axes=_IMAGE_AXES)
