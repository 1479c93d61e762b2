"""timm backbones: weights from files and the hub, layer checks, and token grids."""

import dataclasses

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import huggingface_hub.constants
import pytest
import timm
import torch

from featlab.backbones import (
    BackboneSpec,
    build_backbone,
    capture_layers,
    forward_from_layer,
    hub_weights_file,
    init_backbone,
    labels_match_head,
    load_weights,
    save_backbone,
    sha256_of,
    to_grid,
    token_counts,
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
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
# A ViT with 3 register tokens kept apart from the position embedding, as DINOv2's reg4 models.
VIT_REG = dataclasses.replace(VIT, model_args={**TINY_VIT, "reg_tokens": 3, "no_embed_class": True})
# DINOv3 in timm is an Eva model (rotary positions, any image size); 2 registers, not its 4.
DINOV3 = BackboneSpec(
    model="vit_small_patch16_dinov3",
    layers=("blocks.1",),
    model_args={**TINY_VIT, "depth": 2, "num_reg_tokens": 2},
    num_classes=3,
)
SWINV2 = BackboneSpec(
    model="swinv2_tiny_window8_256",
    layers=("layers.1",),
    model_args={
        "img_size": 32,
        "window_size": 4,
        "embed_dim": 8,
        "depths": (1, 1),
        "num_heads": (1, 2),
    },
    num_classes=3,
)
CONVNEXT = BackboneSpec(model="test_convnext", layers=("stages.1",), num_classes=3)


class Payload:
    """An arbitrary object: unpickling it would run code from the checkpoint."""


def _from_file(spec: BackboneSpec, path) -> BackboneSpec:
    return dataclasses.replace(spec, weights="file", weights_path=str(path))


def _images(height: int = 32, width: int = 32) -> torch.Tensor:
    """Two fixed, varied images (B, 3, H, W)."""
    return torch.linspace(-1, 1, 2 * 3 * height * width).reshape(2, 3, height, width).sin()


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32))


def _layer_output(model: torch.nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), capture_layers(model, (layer,)) as outputs:
        model(images)
    return outputs[layer]


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


@pytest.mark.parametrize(
    ("spec", "counts"),
    [(VIT, (1, 0)), (VIT_REG, (1, 3)), (DINOV3, (1, 2)), (SWINV2, (0, 0)), (RESNET, (0, 0))],
    ids=["vit", "vit_reg", "dinov3", "swinv2", "resnet"],
)
def test_class_and_register_tokens_are_counted_from_the_model(spec, counts):
    model = build_backbone(spec)
    assert token_counts(model) == counts
    assert sum(counts) == getattr(model, "num_prefix_tokens", 0)


def test_prefix_tokens_of_other_kinds_are_refused():
    model = build_backbone(dataclasses.replace(VIT, model="deit_tiny_distilled_patch16_224"))
    with pytest.raises(ValueError, match="2 prefix tokens but 1 class and 0 register"):
        token_counts(model)


@pytest.mark.parametrize("spec", [VIT_REG, DINOV3], ids=["vit_reg", "dinov3"])
def test_the_class_token_comes_first_and_the_registers_next(spec):
    # The first block's input is [class, registers, patches] before any mixing of tokens.
    model = build_backbone(spec)
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    with torch.inference_mode():
        model(_images())
    n_class, n_registers = token_counts(model)
    tokens = seen["x"]  # (B, 1 + R + H*W, C)
    torch.testing.assert_close(tokens[:, :n_class], model.cls_token.expand(2, -1, -1))
    registers = tokens[:, n_class : n_class + n_registers]
    torch.testing.assert_close(registers, model.reg_token.expand(2, -1, -1))


@pytest.mark.parametrize("spec", [VIT, VIT_REG, DINOV3], ids=["vit", "vit_reg", "dinov3"])
def test_token_outputs_become_a_grid_with_the_prefix_tokens_apart(spec):
    model = build_backbone(spec)
    output = _layer_output(model, spec.layers[0], _images())  # (B, P + 4*4, C)
    grid, prefix = to_grid(model, output)
    n_prefix = sum(token_counts(model))
    assert grid.shape == (2, 16, 4, 4)
    torch.testing.assert_close(prefix, output[:, :n_prefix])
    for h, w in [(0, 0), (1, 2), (3, 3)]:
        torch.testing.assert_close(grid[:, :, h, w], output[:, n_prefix + 4 * h + w])


def test_a_non_square_token_grid_follows_the_model():
    # A fixed-size ViT on 32x48 images: patch_embed.grid_size says 4x6.
    model = build_backbone(dataclasses.replace(VIT, model_args={**TINY_VIT, "img_size": (32, 48)}))
    output = _layer_output(model, "blocks.0", _images(32, 48))  # (B, 1 + 4*6, C)
    grid, _ = to_grid(model, output)
    assert grid.shape == (2, 16, 4, 6)
    torch.testing.assert_close(grid[:, :, 2, 5], output[:, 1 + 6 * 2 + 5])
    # DINOv3 takes any image size: the grid comes from the images' size.
    model = build_backbone(DINOV3)
    output = _layer_output(model, "blocks.1", _images(32, 48))  # (B, 1 + 2 + 4*6, C)
    grid, prefix = to_grid(model, output, input_size=(32, 48))
    assert grid.shape == (2, 16, 4, 6)
    assert prefix.shape == (2, 3, 16)
    torch.testing.assert_close(grid[:, :, 2, 5], output[:, 3 + 6 * 2 + 5])
    with pytest.raises(ValueError, match="pass the input images' input_size"):
        to_grid(model, output)


def test_swinv2_stage_outputs_are_its_channels_last_maps_permuted():
    model = build_backbone(SWINV2)
    output = _layer_output(model, "layers.1", _images())
    assert output.shape == (2, 4, 4, 16)  # (B, H, W, C)
    grid, prefix = to_grid(model, output)
    assert prefix is None
    torch.testing.assert_close(grid, output.permute(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (SWINV2, r"\['layers\.0', 'layers\.1'\]"),
        (CONVNEXT, r"\['stages\.0', 'stages\.1', 'stages\.2', 'stages\.3'\]"),
        (DINOV3, r"\['blocks\.0', 'blocks\.1'\]"),
    ],
    ids=["swinv2", "convnext", "dinov3"],
)
def test_an_unknown_layer_lists_the_model_stages(spec, names):
    with pytest.raises(
        ValueError, match=r"no layer\(s\) \['layer3'\]; valid names include " + names
    ):
        build_backbone(dataclasses.replace(spec, layers=("layer3",)))


@pytest.mark.parametrize("spec", [VIT, DINOV3, SWINV2], ids=["vit", "dinov3", "swinv2"])
def test_a_layer_replaced_by_its_own_features_gives_the_model_logits(spec):
    model = build_backbone(spec)
    torch.nn.init.normal_(model.get_classifier().weight)  # logits of order 1, not 1e-5
    layer = spec.layers[0]
    with torch.inference_mode(), capture_layers(model, (layer,)) as outputs:
        logits = model(_images())
    maps, prefix = to_grid(model, outputs[layer])
    torch.testing.assert_close(forward_from_layer(model, layer, maps, prefix), logits)
    # The other image's features give the other image's logits.
    swapped = None if prefix is None else prefix.flip(0)
    torch.testing.assert_close(
        forward_from_layer(model, layer, maps.flip(0), swapped), logits.flip(0)
    )
    assert not torch.allclose(logits[0], logits[1], rtol=0.01, atol=0.01)


def test_a_token_model_loads_from_a_safetensors_file(tmp_path):
    model = build_backbone(DINOV3)
    save_backbone(model, DINOV3, tmp_path / "dinov3.safetensors", {})
    loaded = build_backbone(_from_file(DINOV3, tmp_path / "dinov3.safetensors"))
    torch.testing.assert_close(_logits(loaded), _logits(model))


def test_hub_weights_are_read_from_the_cache_offline(tmp_path, monkeypatch):
    # 1. A tiny DINOv3 saved as a hub repository would be, in a cache laid out as
    #    huggingface_hub's: models--{org}--{name}/snapshots/{commit}/..., refs/main -> commit.
    spec = dataclasses.replace(DINOV3, num_classes=None)  # the hub config's head (none)
    saved = build_backbone(spec)
    repo = tmp_path / "hub" / "models--featlab--tiny-dinov3"
    commit = "0123456789abcdef0123456789abcdef01234567"
    timm.models.save_for_hf(
        saved, repo / "snapshots" / commit, model_args=spec.model_args, safe_serialization=True
    )
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    # 2. huggingface_hub reads these variables once, at import: set its constants too.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # 3. The built model is the saved one, and its weights file is the cached file.
    hub_spec = dataclasses.replace(spec, weights="hub", hub_id="featlab/tiny-dinov3")
    model = build_backbone(hub_spec)
    torch.testing.assert_close(_logits(model), _logits(saved))
    cached = repo / "snapshots" / commit / "model.safetensors"
    assert hub_weights_file(hub_spec, model) == str(cached)
    assert sha256_of(hub_weights_file(hub_spec, model)) == sha256_of(cached)
    assert hub_weights_file(spec, saved) is None  # random weights have no hub file


def test_random_weights_are_one_network_per_seed(tmp_path):
    """Issue 25: every job built its own random network; init_backbone draws it from a seed, in
    any process, without touching the caller's generator, and the saved file rebuilds it."""
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, again = init_backbone(RESNET, seed=7), init_backbone(RESNET, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    other = init_backbone(RESNET, seed=8)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    assert not torch.equal(first.conv1.weight, other.conv1.weight)
    save_backbone(first, RESNET, tmp_path / "model.safetensors", {"seed": 7})
    loaded = build_backbone(RESNET, weights_path=tmp_path / "model.safetensors")
    assert torch.equal(loaded.conv1.weight, first.conv1.weight)


@pytest.mark.parametrize(
    ("weights", "stated", "expected"),
    [("train", None, True), ("hub", None, False), ("random", None, False), ("hub", True, True)],
)
def test_accuracy_needs_a_head_of_the_data_classes(weights, stated, expected):
    assert labels_match_head(weights, stated) is expected
