"""Image-space scores of reconstructions: SSIM, LPIPS and MSE, one value per image.

- SSIM: scikit-image's `structural_similarity` with Wang et al.'s settings (Gaussian window,
  sigma 1.5, population covariance), data_range 255, over the colour channels;
- LPIPS: the `lpips` package's AlexNet variant with its learned linear heads, inputs in [-1, 1];
  images smaller than 64 pixels a side are upsampled bilinearly to 64 first (AlexNet's stride-4
  stem and two poolings leave almost nothing of a 32x32 image, and nothing of a 16x16 one).
  Its AlexNet trunk needs torchvision's ImageNet weights, which cannot be downloaded here: they are
  read from the torch hub cache when present; otherwise the trunk keeps a fixed random
  initialisation and the metric is named `lpips_random_backbone`, so the table never passes a
  random-trunk number off as LPIPS;
- MSE: mean squared error over pixels and channels on the 0-1 scale.
"""

import contextlib
import io
import warnings
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before lpips)

import lpips
import numpy as np
import torch
from skimage.metrics import structural_similarity

from featlab import metrics

# torchvision's ImageNet AlexNet weights, the trunk of LPIPS (alex).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
SSIM_WINDOW = 11  # side of scikit-image's Gaussian window for sigma 1.5 (truncated at 3.5 sigma)


def _check_images(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(
            f"images must be two (N, H, W, 3) arrays of one shape: {a.shape}, {b.shape}"
        )
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype} and {b.dtype}")


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM of uint8 (N, H, W, 3) images (Wang et al. settings), float64 (N,)."""
    _check_images(a, b)
    if min(a.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM's Gaussian window needs images of at least {SSIM_WINDOW} pixels a "
            f"side, got {a.shape[1:3]}"
        )
    return np.array(
        [
            structural_similarity(
                x,
                y,
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
            )
            for x, y in zip(a, b, strict=True)
        ]
    )


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image mean squared error of uint8 (N, H, W, 3) images on the 0-1 scale, (N,)."""
    _check_images(a, b)
    return metrics.mse(a / 255.0, b / 255.0)


def to_lpips_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], as lpips.im2tensor does."""
    # (N, H, W, 3) -> (N, 3, H, W)
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)


class LPIPS:
    """LPIPS (AlexNet); `name` says whether its trunk has the pretrained weights."""

    def __init__(self, hub_dir: str | None = None, seed: int = 0, min_size: int = 64):
        self.min_size = min_size  # smaller images are upsampled first (AlexNet needs about 32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # lpips asks torchvision for an untrained AlexNet with a deprecated argument.
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.net = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
        # The learned linear heads ship with the package.
        heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        self.net.load_state_dict(
            torch.load(heads, map_location="cpu", weights_only=True), strict=False
        )
        trunk = Path(hub_dir or torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
        self.pretrained_trunk = trunk.is_file()
        if self.pretrained_trunk:
            self._load_trunk(torch.load(trunk, map_location="cpu", weights_only=True))
        self.net.eval().requires_grad_(False)

    @property
    def name(self) -> str:
        """The metric's name in the table."""
        return "lpips" if self.pretrained_trunk else "lpips_random_backbone"

    def _load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        # torchvision's `features.{i}.*` live in lpips' slices as `slice{k}.{i}.*`.
        target = self.net.net
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] != "features":
                continue
            for k in range(1, target.N_slices + 1):
                module = getattr(target, f"slice{k}")
                if parts[1] in module._modules:
                    getattr(module._modules[parts[1]], parts[2]).data.copy_(value)

    @torch.inference_mode()
    def __call__(self, a: np.ndarray, b: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Per-image LPIPS of uint8 (N, H, W, 3) images, float64 (N,)."""
        _check_images(a, b)
        values = [
            self.net(self._input(a[i : i + batch_size]), self._input(b[i : i + batch_size]))
            .reshape(-1)
            .double()
            .numpy()
            for i in range(0, len(a), batch_size)
        ]
        return np.concatenate(values) if values else np.zeros(0)

    def _input(self, images: np.ndarray) -> torch.Tensor:
        x = to_lpips_input(images)
        if min(x.shape[-2:]) < self.min_size:
            scale = self.min_size / min(x.shape[-2:])
            size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
