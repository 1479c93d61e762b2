"""Local masking: a filled square of a pure colour painted over part of the image.

The squares are those of the FeatMap paper, given on its 288x288 canvas and scaled to the image
size, so a mask covers the same part of the scene at any resolution.
"""

import math

import numpy as np

REFERENCE_SIZE = 288  # the canvas on which the squares below are given
# colour name -> (first, last) pixel on both axes, inclusive, on the reference canvas; RGB fill.
SQUARES: dict[str, tuple[tuple[int, int], tuple[int, int, int]]] = {
    "red": ((26, 103), (255, 0, 0)),  # top-left
    "green": ((180, 270), (0, 255, 0)),  # bottom-right
    "blue": ((90, 193), (0, 0, 255)),  # big, centre
    "yellow": ((116, 154), (255, 255, 0)),  # small, centre
}


def square_slice(colour: str, size: int) -> slice:
    """The pixels the square covers along an axis of `size` pixels (the same on both axes).

    The square's edges [first, last + 1) are scaled by size / 288 and rounded half up, so the
    square's side scales with the image; at 288 the slice is exactly [first, last].
    """
    if colour not in SQUARES:
        raise ValueError(f"unknown square colour {colour!r}; choose one of {list(SQUARES)}")
    (first, last), _ = SQUARES[colour]
    scale = size / REFERENCE_SIZE
    start = math.floor(first * scale + 0.5)
    stop = max(math.floor((last + 1) * scale + 0.5), start + 1)  # at least one pixel
    return slice(start, stop)


def mask_square(images: np.ndarray, colour: str) -> np.ndarray:
    """Paint the square of `colour` on every image of an (N, H, W, 3) batch."""
    height, width = images.shape[1:3]
    masked = images.copy()
    masked[:, square_slice(colour, height), square_slice(colour, width)] = SQUARES[colour][1]
    return masked
