"""Steerable lens: the pyramid's round trip, exact gradients, zero edits, matched budgets, warps."""

import numpy as np
import pytest
import torch
from plenoptic.process import SteerablePyramidFreq
from torch import nn
from torch.nn import functional as F

from featlab.data.images import ImageStore, write_image_store
from featlab.data.shapes import CLASSES, ShapesSettings, render_image_set
from featlab.lens import (
    METHODS,
    Classifier,
    LensSettings,
    WarpSettings,
    explained_share,
    gradient,
    load_case,
    make_edit,
    morph_case,
    objective_of,
    one_step,
)

SIDE = 32


def _smooth_image(seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """A smooth (1, 3, SIDE, SIDE) image strictly inside (0, 1), so that clipping never acts."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=generator, dtype=torch.float64)
    image = F.interpolate(coarse, size=(SIDE, SIDE), mode="bicubic", align_corners=True)
    return (0.25 + 0.5 * image.clamp(0, 1)).to(dtype)


def _classifier(dtype=torch.float32, seed: int = 0) -> Classifier:
    """A tiny convolutional classifier of 5 classes with fixed random weights."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2),
        nn.Tanh(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    ).to(dtype)
    return Classifier(model.eval().requires_grad_(False), [0.5] * 3, [0.25] * 3)


def test_pyramid_round_trip_reconstructs_the_image():
    image = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    pyramid = SteerablePyramidFreq((SIDE, SIDE), order=3, is_complex=True)
    coefficients = pyramid(image)
    assert coefficients[0].is_complex()
    assert coefficients[0].shape == (2, 3, 4, SIDE, SIDE)
    torch.testing.assert_close(pyramid.recon_pyr(coefficients), image, atol=5e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_zero_parameters_and_zero_amplification_return_the_source(method):
    source = _smooth_image()
    settings = LensSettings(budgets=(0.5,), frames=3)
    edit = make_edit(method, source, settings)
    assert torch.equal(edit.render(torch.zeros(edit.n_params)), source)
    objective = objective_of(_classifier(), target=2, kind="log_probability")
    (morph,) = one_step(edit, objective, settings, method).values()
    assert torch.equal(morph.frames[0], source[0])  # the frame at amplification 0


@pytest.mark.parametrize("method", ["steerable_phase", "steerable_phase_amplitude"])
def test_phase_gradient_matches_finite_differences(method):
    source = _smooth_image(dtype=torch.float64)
    edit = make_edit(method, source, LensSettings())
    objective = objective_of(_classifier(torch.float64), target=3, kind="log_probability")
    generator = torch.Generator().manual_seed(2)
    theta = 0.05 * torch.randn(edit.n_params, generator=generator, dtype=torch.float64)
    grad = gradient(edit, objective, theta)
    for _ in range(3):
        direction = torch.randn(edit.n_params, generator=generator, dtype=torch.float64)
        direction /= direction.norm()
        eps = 1e-3
        with torch.no_grad():
            up = objective(edit.render(theta + eps * direction))
            down = objective(edit.render(theta - eps * direction))
        finite = float((up - down) / (2 * eps))
        assert float(grad @ direction) == pytest.approx(finite, rel=1e-3, abs=1e-6)


def test_every_method_and_variant_meets_every_budget_within_one_percent():
    budgets = (0.5, 1.5)
    settings = LensSettings(
        budgets=budgets,
        methods=METHODS,
        frames=3,
        max_steps=15,
        warp=WarpSettings(steps=5),
    )
    image = (_smooth_image()[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    others = {"other": _classifier(seed=1)}
    result = morph_case(_classifier(), others, image, target=1, settings=settings)
    morphs = [r for r in result.records if r["method"] is not None]
    assert len(morphs) == len(METHODS) * 2 * len(budgets)
    for record in morphs:
        assert record["l2_distance"] == pytest.approx(record["budget"], rel=0.01)
        frames = result.frames[record["comparison"]]
        assert frames.shape == (3, SIDE, SIDE, 3)
        assert frames.dtype == np.uint8
        assert np.array_equal(frames[0], image)
        assert set(record["transfer"]) == {"other"}
    source = result.records[0]
    assert source["comparison"] == "source"
    assert source["method"] is None
    rows = result.metric_rows("cnn", "circle_to_square_0")
    assert {row["stage"] for row in rows} == {"lens"}
    assert {row["manipulation"] for row in rows} == {"circle_to_square_0"}
    assert "steerable_phase_iterative_l2_1.5" in {row["comparison"] for row in rows}
    assert {"target_probability", "transfer_top1", "warp_gain_share"} <= {r["metric"] for r in rows}


def _warp(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Images warped by a displacement field (B, 2, g, g) in pixels, upsampled bicubically."""
    height, width = images.shape[-2:]
    dense = F.interpolate(shift, size=(height, width), mode="bicubic", align_corners=True)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    unit = torch.tensor([2 / (width - 1), 2 / (height - 1)])
    grid = torch.stack([xs, ys], -1) + dense.permute(0, 2, 3, 1) * unit
    return F.grid_sample(images, grid, padding_mode="border", align_corners=True)


def test_warp_share_is_near_one_for_a_smooth_warp_and_small_for_noise():
    image_set, _ = render_image_set(ShapesSettings(image_size=SIDE, n_train=1, n_test=2, seed=0))
    sources = torch.from_numpy(image_set.images).permute(0, 3, 1, 2).float() / 255
    shift = 1.5 * torch.randn(len(sources), 2, 4, 4, generator=torch.Generator().manual_seed(3))
    warped = _warp(sources, shift)
    settings = WarpSettings(steps=100)
    for gain in (False, True):
        assert explained_share(sources, warped, settings, gain=gain).min() > 0.95
    noisy = sources + 0.05 * torch.randn(sources.shape, generator=torch.Generator().manual_seed(4))
    assert explained_share(sources, noisy, settings, gain=True).max() < 0.2


def test_a_case_is_the_nth_test_image_of_its_source_class(tmp_path):
    image_set, _ = render_image_set(ShapesSettings(image_size=SIDE, n_train=4, n_test=30, seed=0))
    write_image_store(tmp_path / "original.zarr", image_set, attrs={"source": "shapes"})
    store = ImageStore(tmp_path / "original.zarr")
    case = load_case(store, {"source": "star", "target": "square", "image": 3})
    stars = np.flatnonzero((image_set.labels == 4) & (image_set.splits == "test"))
    assert (case.source, case.target) == (CLASSES.index("star"), CLASSES.index("square"))
    assert np.array_equal(case.image, image_set.images[stars[3]])
    with pytest.raises(ValueError, match="has 1 images of class square"):
        load_case(store, {"source": "square", "target": "star", "image": 1})
    with pytest.raises(ValueError, match="hexagon"):
        load_case(store, {"source": "hexagon", "target": "star"})
    with pytest.raises(ValueError, match="must differ"):
        load_case(store, {"source": "star", "target": 4})
