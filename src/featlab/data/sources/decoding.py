"""Decoding one image file: RGB and upright (`load_image`), fitted to the store's side with
timm's evaluation geometry (`fit_image`, `resolve_size`)."""

import math
import os
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps

# Pillow modes whose values span 16 bits (mode I is how some formats open 16-bit grey).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; names the file, the reason and what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: cannot read the image ({reason}); replace or remove the file, "
            "or set data.on_error: skip to leave unreadable images out"
        )

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def _to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of a decoded image (see load_image)."""
    if image.mode == "F":
        # Pillow would clip to 0-255: an image scaled to [0, 1] would be stored black.
        raise ValueError(
            "its pixels are 32-bit floats, whose range is not known; save it with 8 or 16 bits"
        )
    if image.mode in SIXTEEN_BIT_MODES:
        # Keep the high byte: Pillow's convert would clip every value above 255 to white.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 0xFFFF)  # (H, W)
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to RGB, upright.

    The EXIF orientation is applied. Transparent pixels (RGBA, LA, PA, and palette, grey or RGB
    images with a transparency entry) are composited on a white background; grey becomes RGB;
    16-bit images keep their high byte (0xABCD reads 0xAB); CMYK is converted by Pillow. Any
    failure (a missing, empty, truncated or non-image file, one past Pillow's decompression bomb
    limit, or one of 32-bit float pixels) raises UnreadableImage naming the file.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that a truncated file fails here
            return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as error:  # Pillow's decoders raise many types: report all of them as one
        raise UnreadableImage(path, f"{type(error).__name__}: {error}") from error


def fit_image(image: Image.Image, size: int, crop_pct: float = 1.0) -> np.ndarray:
    """timm's evaluation geometry: the shorter side resized (bicubic) to floor(size / crop_pct),
    then the centre size x size crop, with timm's and torchvision's rounding.

    Returns:
        uint8 (size, size, 3).
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct {crop_pct} must be in (0, 1]")
    # 1. Resize the shorter side, keeping the aspect ratio (the longer side is truncated)
    short = math.floor(size / crop_pct)
    width, height = image.size
    if width <= height:
        resized = (short, int(short * height / width))
    else:
        resized = (int(short * width / height), short)
    image = image.resize(resized, Image.Resampling.BICUBIC)
    # 2. Centre crop
    left = round((resized[0] - size) / 2)
    top = round((resized[1] - size) / 2)
    return np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"))


def resolve_size(
    size: int | None, crop_pct: float | None, models: Iterable[str]
) -> tuple[int, float]:
    """The image side and crop_pct of the store.

    An explicit size wins. Without one, the largest input size among the pretrained configs that
    timm holds for the model names (a name may carry a tag, "convnext_base.fb_in1k"; nothing is
    downloaded). An explicit crop_pct wins too; without one, the crop_pct of the model with the
    largest input size (timm's default 0.875 when no model is given).
    """
    import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

    import timm
    from timm.data import DEFAULT_CROP_PCT

    best = None  # (side, crop_pct) of the model with the largest input size
    for name in models:
        config = timm.get_pretrained_cfg(name)
        if config is None:
            raise ValueError(
                f"timm has no pretrained config for {name!r}; set data.image_size and data.crop_pct"
            )
        side = max(config.input_size[1:])
        if best is None or side > best[0]:
            best = (side, config.crop_pct or DEFAULT_CROP_PCT)
    if size is None and best is None:
        raise ValueError("no backbone to take the image size from; set data.image_size")
    if crop_pct is None:
        crop_pct = DEFAULT_CROP_PCT if best is None else best[1]
    return (best[0] if size is None else int(size)), float(crop_pct)
