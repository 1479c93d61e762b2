"""Exact spatial operations shared by image manipulation and the feature-grid baseline.

A rotation or mirror of an image moves every pixel to a known place; applying the same operation
to a feature map (the "spatial" mapping baseline) is then the best a mapping can do without
learning anything. Both sides call `apply_spatial`, so images and feature grids follow one
convention:

- `rot90`, `rot180`, `rot270`: counter-clockwise as seen in the image (row 0 at the top), as
  `np.rot90` with k = 1, 2, 3 on the (H, W) axes; `rot90` moves the top-right pixel to the top-left.
- `flip_h`: mirror left-right (reverse W); `flip_v`: mirror top-bottom (reverse H).

Works on numpy arrays and on torch tensors; torch is imported only when a tensor comes in.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

SPATIAL_OPS = ("rot90", "rot180", "rot270", "flip_h", "flip_v")
# Manipulation parameters that name a spatial op (see `spatial_op_of`).
ROTATION_OPS = {90: "rot90", 180: "rot180", 270: "rot270"}  # "rotate" angle -> op
FLIP_OPS = {"horizontal": "flip_h", "vertical": "flip_v"}  # "flip" axis -> op

_QUARTER_TURNS = {"rot90": 1, "rot180": 2, "rot270": 3}


def apply_spatial(array: Any, op: str, axes: tuple[int, int] = (-2, -1)) -> Any:
    """Rotate or mirror a numpy array or torch tensor in the plane of two axes.

    Args:
        array: a numpy array or torch tensor; for images (N, H, W, 3) pass `axes=(1, 2)`, for
            feature maps (N, C, H, W) keep the default.
        op: one of `SPATIAL_OPS`.
        axes: the (row, column) = (H, W) axes of the plane.

    Returns:
        The same type as `array`; a numpy result is contiguous (never a negative-stride view), so
        it can go straight to `torch.from_numpy` or to disk.
    """
    # 1. Check inputs.
    if op not in SPATIAL_OPS:
        raise ValueError(f"unknown spatial op {op!r}; choose one of {list(SPATIAL_OPS)}")
    torch = None if isinstance(array, np.ndarray) else _torch_or_none(array)
    if torch is None and not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array or torch tensor, got {type(array).__name__}")
    plane = _normalise_axes(axes, array.ndim)  # (row axis, column axis)
    turns = _QUARTER_TURNS.get(op)
    flip_axis = plane[1] if op == "flip_h" else plane[0]
    # 2. Rotate or mirror; torch.rot90 turns from the first towards the second dim, as np.rot90.
    if torch is not None:
        if turns is not None:
            return torch.rot90(array, turns, dims=plane)
        return torch.flip(array, dims=(flip_axis,))
    result = np.rot90(array, turns, axes=plane) if turns is not None else np.flip(array, flip_axis)
    return np.ascontiguousarray(result)


def spatial_op_of(spec: Mapping[str, Any]) -> str | None:
    """The spatial op that a manipulation spec performs, or None for a non-geometric one.

    `{"kind": "rotate", "angle": 90}` gives "rot90" and `{"kind": "flip", "axis": "horizontal"}`
    gives "flip_h"; any other kind gives None.
    """
    kind = spec.get("kind")
    if kind == "rotate":
        angle = spec.get("angle")
        if isinstance(angle, bool) or angle not in tuple(ROTATION_OPS):
            raise ValueError(f"rotate: bad 'angle' {angle!r}; choose one of {list(ROTATION_OPS)}")
        return ROTATION_OPS[angle]
    if kind == "flip":
        axis = spec.get("axis")
        if axis not in tuple(FLIP_OPS):
            raise ValueError(f"flip: bad 'axis' {axis!r}; choose one of {list(FLIP_OPS)}")
        return FLIP_OPS[axis]
    return None


def _normalise_axes(axes: tuple[int, int], ndim: int) -> tuple[int, int]:
    """Two distinct, non-negative axis indices, or a ValueError."""
    if len(axes) != 2 or not all(-ndim <= axis < ndim for axis in axes):
        raise ValueError(f"axes {axes!r} must be two axes of a {ndim}-d array")
    row_axis, col_axis = (axis % ndim for axis in axes)
    if row_axis == col_axis:
        raise ValueError(f"axes {axes!r} name the same axis twice")
    return row_axis, col_axis


def _torch_or_none(array: Any):
    """The torch module if `array` is a torch tensor, else None (without importing torch)."""
    if not type(array).__module__.startswith("torch"):
        return None
    import torch

    return torch if isinstance(array, torch.Tensor) else None
