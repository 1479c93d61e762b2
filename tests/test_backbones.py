"""timm backbones: weights from files and the hub, layer checks, and token grids."""

import dataclasses

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import pytest
import torch

from featlab.backbones import (
    BackboneSpec,
    build_backbone,
    capture_layers,
    load_weights,
    save_backbone,
    to_grid,
)

RESNET = BackboneSpec(
    model="resnet18",
    layers=("layer2", "layer4"),
    model_args={"channels": [4, 8, 8, 8], "stem_width": 4},
    num_classes=3,
)
VIT = BackboneSpec(
    model="vit_tiny_patch16_224",
    layers=("blocks.0",),
    model_args={"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
    num_classes=3,
)


class Payload:
    """An arbitrary object: unpickling it would run code from the checkpoint."""


def _from_file(spec: BackboneSpec, path) -> BackboneSpec:
    return dataclasses.replace(spec, weights="file", weights_path=str(path))


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32))


def test_safetensors_weights_round_trip(tmp_path):
    model = build_backbone(RESNET)
    save_backbone(model, RESNET, tmp_path / "model.safetensors", {})
    loaded = build_backbone(_from_file(RESNET, tmp_path / "model.safetensors"))
    torch.testing.assert_close(_logits(loaded), _logits(model))


def test_torch_checkpoint_loads_weights_only(tmp_path):
    model = build_backbone(RESNET)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    state = load_weights(tmp_path / "checkpoint.pth")
    assert set(state) == set(model.state_dict())


def test_a_checkpoint_with_code_is_refused(tmp_path):
    torch.save({"state_dict": {}, "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match=r"weights_only|Unsupported global"):
        load_weights(tmp_path / "evil.pth")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.safetensors"):
        build_backbone(_from_file(RESNET, tmp_path / "nowhere.safetensors"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_backbone(build_backbone(VIT), VIT, tmp_path / "vit.safetensors", {})
    with pytest.raises(ValueError, match=r"vit.safetensors does not fit timm model 'resnet18'"):
        build_backbone(_from_file(RESNET, tmp_path / "vit.safetensors"))


def test_hub_weights_offline_give_a_clear_error():
    spec = dataclasses.replace(RESNET, weights="hub", hub_id="featlab/no-such-model")
    with pytest.raises(FileNotFoundError, match="hf download"):
        build_backbone(spec)


def test_unknown_model_and_layer_are_named():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nine'"):
        build_backbone(BackboneSpec(model="resnet_nine", layers=("layer1",)))
    with pytest.raises(ValueError, match=r"layer9.*valid names include.*layer2"):
        build_backbone(dataclasses.replace(RESNET, layers=("layer9",)))
    with pytest.raises(ValueError, match=r"blocks\.0"):
        build_backbone(dataclasses.replace(VIT, layers=("layer2",)))


def test_vit_tokens_become_a_grid_and_the_class_token_is_kept_apart():
    model = build_backbone(VIT)
    # Tokens numbered so that each value tells its position: (B, 1 + 4*4, C).
    tokens = torch.arange(2 * 17 * 16, dtype=torch.float32).reshape(2, 17, 16)
    grid, prefix = to_grid(model, tokens)
    assert grid.shape == (2, 16, 4, 4)
    torch.testing.assert_close(prefix, tokens[:, :1])
    for h, w in [(0, 0), (1, 2), (3, 3)]:
        torch.testing.assert_close(grid[:, :, h, w], tokens[:, 1 + 4 * h + w])


def test_channels_last_maps_are_permuted_to_nchw():
    model = build_backbone(RESNET)
    model.output_fmt = "NHWC"  # as timm's Swin models declare
    maps = torch.randn(2, 5, 6, 7)  # (B, H, W, C)
    grid, prefix = to_grid(model, maps)
    assert prefix is None
    torch.testing.assert_close(grid, maps.permute(0, 3, 1, 2))


def test_captured_layers_have_the_feature_info_shapes():
    model = build_backbone(RESNET)
    info = {entry["module"]: entry for entry in model.feature_info}
    with capture_layers(model, RESNET.layers) as outputs:
        _logits(model)
    for layer in RESNET.layers:
        assert outputs[layer].shape[1] == info[layer]["num_chs"]
        assert outputs[layer].shape[-1] == 32 // info[layer]["reduction"]
