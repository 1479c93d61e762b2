"""Where a manipulation changed the image: the mask behind the masked feature metrics.

A pixel counts as changed when the slightly blurred images differ by more than a threshold in any
channel. The blur ignores single-pixel noise and resampling speckle and widens a sharp edit by a
pixel or two, so that the mask, max-pooled to a feature grid, marks the positions that saw it.
"""

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter


@dataclasses.dataclass(frozen=True)
class MaskSettings:
    """How to decide which pixels a manipulation changed."""

    blur_sigma: float = 1.0  # std of the Gaussian blur in pixels; 0 compares raw pixels
    threshold: float = 12.0  # smallest change that counts, on the 0-255 scale (about 5%)

    def __post_init__(self) -> None:
        if not self.blur_sigma >= 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")


def change_mask(
    original: np.ndarray, manipulated: np.ndarray, settings: MaskSettings = MaskSettings()
) -> np.ndarray:
    """The (N, H, W) bool mask of pixels where |blur(original) - blur(manipulated)| > threshold.

    Args:
        original: (N, H, W, 3) images before the manipulation.
        manipulated: the same images after it.
        settings: blur and threshold.
    """
    if original.shape != manipulated.shape or original.ndim != 4:
        raise ValueError(
            f"need two (N, H, W, C) batches of one shape, got {original.shape} and "
            f"{manipulated.shape}"
        )
    # The blur is linear, so blur(a) - blur(b) = blur(a - b): blur the difference once, along H
    # and W only (not across images or channels).
    difference = original.astype(np.float32) - manipulated.astype(np.float32)
    if settings.blur_sigma > 0:
        difference = gaussian_filter(
            difference, sigma=(0, settings.blur_sigma, settings.blur_sigma, 0)
        )
    # (N, H, W, C) -> (N, H, W)
    return np.abs(difference).max(axis=-1) > settings.threshold
