"""Feature extraction: store layout, values, provenance, and nothing left behind on failure."""

import itertools
import math
import subprocess
import sys
import warnings

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import pytest
import torch

from featlab.backbones import BackboneSpec, build_backbone, capture_layers, data_config, preprocess
from featlab.data.images import ImageStore, write_image_store
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.extract import ExtractSettings, classifier_rows, extract_features, forward_layers
from featlab.store import FeatureStore, FeatureStoreWriter, gather_shards

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
        store.prefix_tokens("blocks.1"), tokens[:, :1].numpy(), rtol=1e-5, atol=1e-6
    )
    assert "register_tokens/blocks.1" not in store.arrays
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


def _extract_shards(spec, images, folder, bounds, **settings):
    """Extract the image ranges between consecutive `bounds` and gather them into one store."""
    torch.manual_seed(0)
    model = build_backbone(spec)
    shards = []
    for k, (start, stop) in enumerate(itertools.pairwise(bounds)):
        shards.append(folder / f"{k:05d}.zarr")
        settings_k = ExtractSettings(batch_size=3, **settings)
        extract_features(model, spec, images, shards[-1], settings_k, {}, (start, stop))
    gather_shards(folder / "gathered.zarr", shards, len(images))
    return FeatureStore(folder / "gathered.zarr")


@pytest.mark.parametrize("spec", [RESNET, VIT])
def test_sharded_extraction_equals_unsharded(tmp_path, images, spec):
    whole = _extract_shards(spec, images, tmp_path / "whole", [0, len(images)])
    # Shards of whole batches (3 images) run the same batches, so the values are bitwise equal.
    sharded = _extract_shards(spec, images, tmp_path / "sharded", [0, 6, 12, len(images)])
    assert sharded.attrs["shard_images"] == [6, 6, 1]
    assert len(sharded) == len(images)
    assert sharded.layers == whole.layers
    for layer in spec.layers:
        np.testing.assert_array_equal(sharded.read(layer), whole.read(layer))
        # In any order, across shard borders.
        order = np.array([12, 0, 7, 5, 6, 11])
        np.testing.assert_array_equal(sharded.read(layer, order), whole.read(layer)[order])
        assert sharded.layer(layer)[4:8].shape == (4, *whole.layer(layer).shape[1:])
    np.testing.assert_array_equal(sharded.logits[:], whole.logits[:])
    if spec is VIT:
        np.testing.assert_array_equal(
            sharded.prefix_tokens("blocks.1", order), whole.prefix_tokens("blocks.1")[order]
        )


def test_a_held_layer_reads_as_from_disk_within_its_budget(tmp_path, images):
    """FeatureStore.hold: a layer read into memory gives the same values, in any order and in
    any dtype, and one larger than the budget stays on disk."""
    store = _extract_shards(RESNET, images, tmp_path, [0, 6, len(images)])
    layer, other = RESNET.layers[:2]
    on_disk = {name: store.read(name) for name in (layer, other)}
    order = np.array([12, 0, 7, 5, 6, 11])

    def size(name):
        return math.prod(store.layer(name).shape) * store.layer(name).dtype.itemsize

    assert store.hold(layer, max_bytes=size(layer))
    assert not store.hold(other, max_bytes=size(other) - 1)
    assert isinstance(store.layer(layer), np.ndarray)
    assert not isinstance(store.layer(other), np.ndarray)
    for name in (layer, other):
        np.testing.assert_array_equal(store.read(name), on_disk[name])
        np.testing.assert_array_equal(store.read(name, order), on_disk[name][order])
    assert store.read(layer, order, dtype=np.float16).dtype == np.float16


def test_gathering_refuses_a_missing_or_foreign_shard(tmp_path, images):
    model = build_backbone(RESNET)
    first, last = tmp_path / "0.zarr", tmp_path / "1.zarr"
    extract_features(model, RESNET, images, first, ExtractSettings(), {}, (0, 5))
    extract_features(model, RESNET, images, last, ExtractSettings(), {}, (6, len(images)))
    with pytest.raises(ValueError, match=r"must start at 5"):
        gather_shards(tmp_path / "all.zarr", [first, last])
    other = tmp_path / "other.zarr"
    extract_features(build_backbone(VIT), VIT, images, other, ExtractSettings(), {}, (5, 6))
    with pytest.raises(ValueError, match="differs"):
        gather_shards(tmp_path / "all.zarr", [first, other])
    with pytest.raises(ValueError, match="images of 99"):
        gather_shards(tmp_path / "all.zarr", [first], n_images=99)
    assert not (tmp_path / "all.zarr").exists()


def test_workers_and_the_zarr_sharding_codec_give_the_same_store(tmp_path, images):
    plain = _extract_shards(RESNET, images, tmp_path / "plain", [0, len(images)])
    piped = _extract_shards(
        RESNET, images, tmp_path / "piped", [0, len(images)], workers=2, zarr_shard_chunks=2
    )
    array = piped.layer("layer2")
    assert array.parts[0].shards is not None
    for layer in RESNET.layers:
        np.testing.assert_array_equal(piped.read(layer), plain.read(layer))


def test_the_forward_pass_stops_after_the_last_layer_without_logits(images):
    model = build_backbone(RESNET)
    x = preprocess(images.images[:2], data_config(model))
    ran = []
    model.fc.register_forward_hook(lambda *_: ran.append("fc"))
    full = forward_layers(model, RESNET.layers, x)
    assert ran == ["fc"]
    assert set(full) == {*RESNET.layers, "logits"}
    early = forward_layers(model, RESNET.layers, x, logits=False)
    assert ran == ["fc"]
    assert set(early) == set(RESNET.layers)
    for layer in RESNET.layers:
        torch.testing.assert_close(early[layer], full[layer])


def test_loader_workers_do_not_rerun_an_unguarded_script(tmp_path, images):
    """Snakemake runs scripts without `if __name__ == "__main__"`: the DataLoader's spawned
    workers must not run the extraction script again (each would extract, and start workers)."""
    script = tmp_path / "script.py"
    script.write_text(
        "import featlab._compat\n"
        "from featlab.backbones import BackboneSpec, build_backbone\n"
        "from featlab.data.images import ImageStore\n"
        "from featlab.extract import ExtractSettings, extract_features\n"
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as runs:\n"
        "    runs.write('run\\n')\n"
        f"spec = BackboneSpec(**{RESNET.to_dict()!r})\n"
        f"images = ImageStore({str(images.path)!r})\n"
        f"path = {str(tmp_path / 'features.zarr')!r}\n"
        "settings = ExtractSettings(batch_size=4, workers=1)\n"
        "extract_features(build_backbone(spec), spec, images, path, settings, {})\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert len(FeatureStore(tmp_path / "features.zarr")) == len(images)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_writer_names_the_image_with_nan_or_inf_in_either_dtype(tmp_path, dtype):
    values = np.ones((6, 2, 3, 3), dtype=dtype)
    values[4, 1, 2, 0] = np.inf
    values[5, 0, 0, 0] = np.nan
    writer = FeatureStoreWriter(tmp_path / "f.zarr", 6, {"layer": (2, 3, 3)}, 1)
    with pytest.raises(ValueError, match="layer: NaN or Inf features at image 4"), writer:
        writer.append({"layer": values, "logits": np.zeros((6, 1), np.float32)})
    assert not (tmp_path / "f.zarr").exists()


def test_float32_features_are_stored_as_numpy_rounds_them_to_float16(tmp_path):
    values = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32) * 300
    with FeatureStoreWriter(tmp_path / "f.zarr", 5, {"layer": (3, 4, 4)}, 1) as writer:
        writer.append({"layer": values, "logits": np.zeros((5, 1), np.float32)})
    stored = FeatureStore(tmp_path / "f.zarr").read("layer", dtype=np.float16)
    np.testing.assert_array_equal(stored, values.astype(np.float16))


def test_gathering_snakemake_marked_shards_warns_nothing(tmp_path, images):
    """Snakemake puts `.snakemake_timestamp` in every directory output; Zarr warned about it in
    every feature log."""
    model = build_backbone(RESNET)
    shards = [tmp_path / "0.zarr", tmp_path / "1.zarr"]
    for shard, image_range in zip(shards, [(0, 6), (6, len(images))], strict=True):
        extract_features(model, RESNET, images, shard, ExtractSettings(), {}, image_range)
        (shard / ".snakemake_timestamp").touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gather_shards(tmp_path / "all.zarr", shards, len(images))
        assert len(FeatureStore(tmp_path / "all.zarr")) == len(images)
