"""Filter decoding: substitution is exact on linear stacks, deconvolution is not; footprints of
timm CNNs; substitution predicts a ReLU network's neurons at least as well as deconvolution."""

import featlab._compat  # noqa: F401  (before timm)

import numpy as np
import pytest
import timm
import torch
from torch import nn

from featlab.filters import DecodedLayer, FilterSettings, decode_layer, pearson, pick_channels

NORMALISATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _linear_stack() -> nn.Sequential:
    """Convolutions with strides and padding and nothing between them."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=2, padding=2),
        nn.Conv2d(4, 6, 3, stride=1, padding=1),
        nn.Conv2d(6, 5, 3, stride=2, padding=1),
    ).eval()


def _substitute(convs: list[nn.Conv2d]) -> torch.Tensor:
    """METHODS.md's filter substitution, written out: the first convolution's filters are its RGB
    kernels; the filter of a channel of each later layer is the sum over input channels c and
    kernel offsets (u, v) of w[c, u, v] times the filter of channel c one layer down, placed at
    (u, v) times that layer's cumulative stride."""
    bank, stride = convs[0].weight.detach().double(), convs[0].stride[0]  # (C, 3, k, k)
    for conv in convs[1:]:
        weight, size = conv.weight.detach().double(), bank.shape[-1]  # (C_out, C_in, k, k)
        kernel = weight.shape[-1]
        footprint = (kernel - 1) * stride + size
        composed = torch.zeros(weight.shape[0], 3, footprint, footprint, dtype=torch.float64)
        for u in range(kernel):
            for v in range(kernel):
                top, left = u * stride, v * stride
                term = torch.einsum("oc,cxhw->oxhw", weight[:, :, u, v], bank)
                composed[:, :, top : top + size, left : left + size] += term
        bank, stride = composed, stride * conv.stride[0]
    return bank


@pytest.fixture(scope="module")
def linear_decoded() -> tuple[nn.Sequential, DecodedLayer]:
    model = _linear_stack()
    settings = FilterSettings(neurons=None, patches=200, batch_size=50)
    return model, decode_layer(model, "2", _images(8, 16), NORMALISATION, settings)


def test_substitution_on_a_linear_stack_is_the_composite_filter(linear_decoded):
    model, decoded = linear_decoded
    reference = _substitute(list(model)).float().numpy()
    assert decoded.footprint.size == (13, 13)  # 5, then 2 x 2 and 2 x 2 more pixels
    assert decoded.footprint.stride == (4, 4)
    np.testing.assert_allclose(decoded.filters["substitution"], reference, rtol=1e-4, atol=1e-6)


def test_substitution_on_a_linear_stack_is_the_gradient_of_the_neuron(linear_decoded):
    model, decoded = linear_decoded
    image = torch.randn(1, 3, 48, 48, requires_grad=True)
    i, j, channel = 5, 6, 3
    model(image)[0, channel, i, j].backward()
    # the neuron's footprint starts at its index times the stride, minus the offset
    (top, left), size = decoded.footprint.offset, decoded.footprint.size[0]
    top, left = i * 4 - top, j * 4 - left
    inside = image.grad[0, :, top : top + size, left : left + size]
    np.testing.assert_allclose(inside.numpy(), decoded.filters["substitution"][channel], atol=1e-6)
    assert float(image.grad.abs().sum() - inside.abs().sum()) == pytest.approx(0, abs=1e-6)


def test_on_a_linear_stack_substitution_is_exact_and_deconvolution_is_not(linear_decoded):
    _, decoded = linear_decoded
    np.testing.assert_allclose(decoded.fidelity["substitution"], 1.0, atol=1e-5)
    assert decoded.fidelity["deconvolution"].max() < 0.95


def _resnet(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    # zero_init_last=False: timm would start every residual branch at zero
    model = timm.create_model(
        "resnet18", channels=[8, 8, 16, 16], stem_width=8, zero_init_last=False, **kwargs
    )
    return model.eval()


@pytest.mark.parametrize(("layer", "footprint", "stride"), [("layer1", 43, 4), ("layer2", 99, 8)])
def test_footprints_of_a_resnet_are_its_receptive_fields(layer, footprint, stride):
    # 7x7/2 stem, 3x3/2 max pool, then 3x3 convolutions: 4 in layer1, 4 (one strided) in layer2
    settings = FilterSettings(neurons=3, patches=8)
    decoded = decode_layer(_resnet(), layer, _images(4, 32), NORMALISATION, settings)
    assert decoded.footprint.size == (footprint, footprint)
    assert decoded.footprint.stride == (stride, stride)
    np.testing.assert_array_equal(decoded.channels, [0, 4, 7])
    for filters in decoded.filters.values():
        assert filters.shape == (3, 3, footprint, footprint)
        # the footprint is tight: every border row and column of some filter is non-zero
        assert np.abs(filters[:, :, [0, -1]]).sum((0, 1, 3)).all()
        assert np.abs(filters[..., [0, -1]]).sum((0, 1, 2)).all()


def test_a_dilated_resnet_keeps_its_stride_and_widens_its_footprint():
    # output_stride 8 (the default study's CNN) dilates layer3 instead of striding it: its
    # 3x3 convolutions (dilations 1, 2, 2, 2 in timm) add 2 * d * 8 pixels each to layer2's 99.
    settings = FilterSettings(neurons=2, patches=8)
    decoded = decode_layer(
        _resnet(output_stride=8), "layer3", _images(4, 32), NORMALISATION, settings
    )
    assert decoded.footprint.size == (99 + 8 * (2 + 4 + 4 + 4),) * 2
    assert decoded.footprint.stride == (8, 8)
    for filters in decoded.filters.values():
        assert np.abs(filters[:, :, [0, -1]]).sum((0, 1, 3)).all()


def test_substitution_predicts_a_random_resnet_at_least_as_well_as_deconvolution():
    settings = FilterSettings(neurons=8, patches=300, batch_size=100)
    decoded = decode_layer(_resnet(), "layer1", _images(16, 32), NORMALISATION, settings)
    substitution, deconvolution = (np.nanmean(decoded.fidelity[m]) for m in decoded.filters)
    assert substitution > deconvolution > 0


def test_convnext_layer_norms_and_depthwise_convolutions_are_linearised():
    torch.manual_seed(0)
    model = timm.create_model("test_convnext").eval()
    settings = FilterSettings(neurons=2, patches=16)
    decoded = decode_layer(model, "stages.0", _images(4, 32), NORMALISATION, settings)
    # a 4x4/4 patchify stem, then one block's 7x7 depthwise convolution
    assert decoded.footprint.size == (28, 28)
    assert all(np.isfinite(f).all() for f in decoded.filters.values())


def test_a_vision_transformer_is_refused():
    model = timm.create_model("test_vit", img_size=32, patch_size=8).eval()
    with pytest.raises(ValueError, match="needs a CNN"):
        decode_layer(model, "blocks.0", _images(2, 32), NORMALISATION, FilterSettings())


def test_decoded_layers_round_trip_and_give_one_row_per_method(tmp_path, linear_decoded):
    _, decoded = linear_decoded
    decoded.save(tmp_path / "filters.safetensors")
    loaded = DecodedLayer.load(tmp_path / "filters.safetensors")
    assert loaded.footprint == decoded.footprint
    assert loaded.settings == decoded.settings
    np.testing.assert_array_equal(loaded.filters["deconvolution"], decoded.filters["deconvolution"])
    rows = loaded.rows("cnn")
    assert [(r["stage"], r["metric"], r["comparison"]) for r in rows] == [
        ("filters", "fidelity", "substitution"),
        ("filters", "fidelity", "deconvolution"),
    ]
    assert rows[0]["n"] == 5
    assert rows[0]["value"] == pytest.approx(1.0, abs=1e-5)


def test_pearson_and_channel_choice():
    x = np.arange(10.0)
    r = pearson(np.stack([x, -x, np.ones(10)], 1), np.stack([2 * x + 1, x, x], 1))
    np.testing.assert_allclose(r[:2], [1.0, -1.0])
    assert np.isnan(r[2])  # a constant response has no correlation
    np.testing.assert_array_equal(pick_channels(32, 4), [0, 10, 21, 31])
    np.testing.assert_array_equal(pick_channels(3, 16), [0, 1, 2])
