"""The optimisation inverter: it recovers what a known invertible layer saw, its feature cosine to
the target rises, it is deterministic for a seed and independent of the batch, and bad settings
stop naming their key."""

import numpy as np
import pytest
import timm
import torch
from torch import nn

from featlab.featinv.optimise import FeatureReader, OptimiseSettings, feature_cosine, optimise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MixColours(nn.Module):
    """One known invertible linear layer: a 1x1 convolution mixing the colour channels."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 3, 1, bias=False)
        generator = torch.Generator().manual_seed(0)
        weight = torch.eye(3) + 0.3 * torch.randn(3, 3, generator=generator)
        with torch.no_grad():
            self.proj.weight.copy_(weight.view(3, 3, 1, 1))

    def forward(self, x):
        return self.proj(x)


def images_of(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def features_of(reader: FeatureReader, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return reader(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).numpy()


def test_the_optimiser_recovers_the_image_behind_an_invertible_linear_layer():
    reader = FeatureReader(MixColours(), "proj", (0.5,) * 3, (0.25,) * 3, 16)
    images = images_of(3, 16)
    settings = OptimiseSettings(steps=200, lr=0.05, loss="mse", tv_weight=0.0, jitter=0)
    start = np.full((16, 16, 3), 128, np.uint8)
    result = optimise(reader, features_of(reader, images), start, settings, progress=False)
    error = np.abs(result.images.astype(float) - images).mean()
    assert error < 1.0, f"mean absolute error {error:.2f} of 255"


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()


def test_the_feature_cosine_to_the_target_rises_over_the_iterations():
    reader = FeatureReader(tiny_cnn(), "layer2", (0.5,) * 3, (0.25,) * 3, 32)
    target = features_of(reader, images_of(2, 32))
    start = np.full((32, 32, 3), 128, np.uint8)
    result = optimise(reader, target, start, OptimiseSettings(steps=30), progress=False)
    assert result.cosine.shape == (30,)
    assert result.cosine[-5:].mean() > result.cosine[0] + 0.05
    goal = torch.from_numpy(target)
    before = feature_cosine(torch.from_numpy(features_of(reader, start[None])), goal)
    after = feature_cosine(torch.from_numpy(features_of(reader, result.images)), goal)
    assert (after > before).all()


def test_the_optimiser_is_deterministic_and_independent_of_the_batch():
    reader = FeatureReader(tiny_cnn(), "layer1", (0.5,) * 3, (0.25,) * 3, 32)
    target = features_of(reader, images_of(3, 32))
    start = np.full((32, 32, 3), 100, np.uint8)
    settings = OptimiseSettings(steps=5, start="noise", batch_size=3)
    first = optimise(reader, target, start, settings, progress=False).images
    again = optimise(reader, target, start, settings, progress=False).images
    np.testing.assert_array_equal(first, again)
    single = OptimiseSettings(steps=5, start="noise", batch_size=1)
    one_by_one = optimise(reader, target, start, single, progress=False).images
    np.testing.assert_allclose(first.astype(int), one_by_one.astype(int), atol=1)


@pytest.mark.parametrize(
    "change",
    [{"loss": "l1"}, {"start": "zeros"}, {"steps": 0}, {"tv_weight": -1.0}, {"jitter": -2}],
)
def test_bad_settings_stop_naming_the_key(change):
    key = next(iter(change))
    with pytest.raises(ValueError, match=f"featinv.optimise.{key}"):
        OptimiseSettings(**change)
