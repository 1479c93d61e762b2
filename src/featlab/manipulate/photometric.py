"""Photometric manipulations: hue shift, grayscale and additive Gaussian noise.

Pixels keep their places and only their values change. Hue and grayscale go through Pillow's
colour conversions, so they match what an image tool would do; noise is seeded per image.
"""

import numpy as np
from PIL import Image


def hue_shift(images: np.ndarray, shift: int) -> np.ndarray:
    """Rotate the hue of every pixel by `shift` on Pillow's 0-255 hue scale (mod 256).

    A shift of 256 is the identity; a shift of 0 is the identity up to the small rounding error of
    Pillow's RGB -> HSV -> RGB round trip.
    """
    shifted = np.empty_like(images)
    for i, image in enumerate(images):
        hue, saturation, value = Image.fromarray(image).convert("HSV").split()
        hue = Image.fromarray(((np.asarray(hue, dtype=np.int64) + shift) % 256).astype(np.uint8))
        shifted[i] = np.asarray(Image.merge("HSV", (hue, saturation, value)).convert("RGB"))
    return shifted


def grayscale(images: np.ndarray) -> np.ndarray:
    """Replace every pixel by its luminance (Pillow's "L" conversion) in all three channels."""
    gray = np.empty_like(images)
    for i, image in enumerate(images):
        gray[i] = np.asarray(Image.fromarray(image).convert("L"))[..., None]
    return gray


def gaussian_noise(images: np.ndarray, sigma: float, seed: int, first_index: int = 0) -> np.ndarray:
    """Add Gaussian noise with std `sigma` (0-255 scale), then round and clip to uint8.

    Image i's noise comes from `np.random.default_rng((seed, first_index + i))`: it depends on the
    image's place in the whole set, not on how the set was split into chunks.
    """
    noise = np.empty(images.shape, dtype=np.float64)
    for i in range(len(images)):
        rng = np.random.default_rng((seed, first_index + i))
        noise[i] = rng.normal(0.0, sigma, size=images.shape[1:])
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)
