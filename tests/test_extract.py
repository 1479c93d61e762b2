"""Feature extraction: store layout, values, provenance, and nothing left behind on failure."""

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import pytest
import torch

from featlab.backbones import BackboneSpec, build_backbone, capture_layers, data_config, preprocess
from featlab.data.images import ImageStore, write_image_store
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.extract import ExtractSettings, classifier_rows, extract_features
from featlab.store import FeatureStore

RESNET = BackboneSpec(
    model="resnet18",
    layers=("layer2", "layer3"),
    model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
    num_classes=5,
)
VIT = BackboneSpec(
    model="vit_tiny_patch16_224",
    layers=("blocks.0", "blocks.1"),
    model_args={"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2},
    num_classes=5,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> ImageStore:
    image_set, _ = render_image_set(ShapesSettings(image_size=32, n_train=9, n_test=4, seed=2))
    path = tmp_path_factory.mktemp("images") / "original.zarr"
    write_image_store(path, image_set)
    return ImageStore(path)


def _extract(spec, images, path, **settings):
    torch.manual_seed(0)
    model = build_backbone(spec)
    extract_features(model, spec, images, path, ExtractSettings(batch_size=5, **settings), {})
    return model, FeatureStore(path)


@pytest.mark.parametrize(
    ("spec", "grids"),
    [(RESNET, {"layer2": (8, 4, 4), "layer3": (8, 2, 2)}), (VIT, {"blocks.0": (16, 4, 4)})],
)
def test_store_holds_every_layer_as_nchw_with_logits(tmp_path, images, spec, grids):
    _, store = _extract(spec, images, tmp_path / "features.zarr")
    assert len(store) == len(images)
    for layer, shape in grids.items():
        array = store.layer(layer)
        assert array.shape == (len(images), *shape)
        assert array.dtype == np.float16
        assert store.attrs["layers"][layer] == list(shape)
    assert store.logits.shape == (len(images), 5)
    assert store.attrs["model"] == spec.model
    assert store.attrs["preprocessing"]["input_size"] == 32


def test_stored_values_equal_the_layer_outputs_in_image_order(tmp_path, images):
    model, store = _extract(VIT, images, tmp_path / "features.zarr", dtype="float32")
    x = preprocess(images.images[:], data_config(model))
    with torch.inference_mode(), capture_layers(model, VIT.layers) as outputs:
        logits = model(x)
    tokens = outputs["blocks.1"]  # (N, 1 + 16, C)
    # Patch token p of image n sits at grid (p // 4, p % 4); the class token is stored apart.
    stored = store.read("blocks.1")[:, :, 1, 2]
    np.testing.assert_allclose(stored, tokens[:, 1 + 6].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        store.group["prefix_tokens/blocks.1"][:], tokens[:, :1].numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(store.logits[:], logits.numpy(), rtol=1e-5, atol=1e-6)


def test_classifier_rows_report_accuracy_per_split(tmp_path, images):
    _extract(RESNET, images, tmp_path / "features.zarr")
    rows = classifier_rows(tmp_path / "features.zarr", images, "cnn", "original")
    assert [row["split"] for row in rows] == ["train", "test"]
    logits = FeatureStore(tmp_path / "features.zarr").logits[:]
    test = images.indices("test")
    expected = np.mean(logits[test].argmax(1) == images.labels[test])
    assert rows[1]["value"] == pytest.approx(expected)
    assert rows[1]["n"] == len(test)
    assert rows[1]["manipulation"] == ""


class _Exploding(torch.nn.Module):
    """Wraps a model so that its features turn NaN after the first batch."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x * (float("nan") if self.calls > 2 else 1.0))


def test_a_failed_extraction_leaves_no_store(tmp_path, images):
    model = build_backbone(RESNET)
    wrapped = _Exploding(model)
    wrapped.feature_info, wrapped.pretrained_cfg = model.feature_info, model.pretrained_cfg
    spec = BackboneSpec(**{**RESNET.to_dict(), "layers": ("model.layer2",)})
    path = tmp_path / "features.zarr"
    with pytest.raises(ValueError, match="NaN or Inf features at image"):
        extract_features(wrapped, spec, images, path, ExtractSettings(batch_size=5), {})
    assert list(tmp_path.iterdir()) == []


def test_float16_overflow_stops_with_the_setting_to_change(tmp_path, images):
    model = build_backbone(RESNET)
    with torch.no_grad():
        model.conv1.weight.mul_(1e9)  # the stem; blocks zero-init their last norm
    with pytest.raises(OverflowError, match=r"extraction\.dtype"):
        extract_features(model, RESNET, images, tmp_path / "f.zarr", ExtractSettings(), {})
    assert not (tmp_path / "f.zarr").exists()
