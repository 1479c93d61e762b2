"""FeatInv: hint block, ControlNet wiring, training, checkpoints, sampling, bases and scores."""

import dataclasses
import functools

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import lpips
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from skimage.metrics import structural_similarity

from featlab.featinv import evaluate, scores, train
from featlab.featinv import model as featinv_model
from featlab.featinv.model import FeatInvModel, FeatureHintBlock, ModelSettings, build_model
from featlab.featinv.sample import SampleSettings, make_scheduler, sample
from featlab.featinv.settings import SCRATCH, resolve_guidance
from featlab.featinv.train import TrainingData, TrainSettings, step_draws, train_featinv

TINY_UNET = {
    "block_out_channels": [4, 8],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 8,
    "attention_head_dim": 2,
    "norm_num_groups": 2,
}
CHANNELS = 5  # feature channels of the tiny "backbone layer"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_settings(**changes) -> ModelSettings:
    base = {"resolution": 8, "hint_channels": 4, "prompt_tokens": 2, "unet": TINY_UNET}
    return ModelSettings(**{**base, **changes})


def tiny_data(n: int = 6, seed: int = 0) -> TrainingData:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, CHANNELS, 3, 3, generator=generator)
    targets = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    return TrainingData(features, targets)


def inputs(model: FeatInvModel, n: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.randn(n, *model.latent_shape, generator=generator)
    features = torch.randn(n, CHANNELS, 3, 3, generator=generator)
    return noisy, torch.tensor([10, 500])[:n], features, torch.ones(n), torch.ones(n)


def randomise(module: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)


def test_hint_block_takes_grids_and_tokens_of_any_size_and_starts_at_zero():
    hint = FeatureHintBlock(feature_channels=7, out_channels=4, latent_size=8, hidden_channels=3)
    grid = torch.randn(2, 7, 5, 5)
    tokens = grid.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
    assert torch.count_nonzero(hint(grid)) == 0  # zero-initialised output convolution
    randomise(hint.conv_out)
    assert hint(grid).shape == (2, 4, 8, 8)
    torch.testing.assert_close(hint(grid), hint(tokens))
    assert hint(torch.randn(1, 7, 2, 2)).shape == (1, 4, 8, 8)  # a coarse CNN grid
    with pytest.raises(ValueError, match="7 channels"):
        hint(torch.randn(1, 6, 2, 2))


def test_untrained_controlnet_leaves_the_base_prediction_unchanged():
    model = build_model(tiny_settings(), CHANNELS).eval()
    randomise(model.unet)
    noisy, t, features, keep, _ = inputs(model)
    with torch.no_grad():
        text = model.prompt_embeds.expand(2, -1, -1)
        base = model.unet(noisy, t, encoder_hidden_states=text).sample
        torch.testing.assert_close(model.predict(noisy, t, features, keep, keep), base)
        # Even with active ControlNet outputs, the zero hint block makes features irrelevant.
        randomise(model.controlnet)
        model.controlnet.controlnet_cond_embedding = torch.nn.Identity()
        first = model.predict(noisy, t, features, keep, keep)
        second = model.predict(noisy, t, features * 3 + 1, keep, keep)
        torch.testing.assert_close(first, second)
        assert not torch.allclose(first, base)


def test_training_drops_both_at_drop_prob_and_the_prompt_alone_at_prompt_drop_prob():
    settings = TrainSettings(batch_size=50, drop_prob=0.15, prompt_drop_prob=0.1)
    noise = DDPMScheduler()
    draws = [step_draws(settings, s, (10, 3, 8, 8), noise) for s in range(200)]
    hint = torch.cat([d[3] for d in draws])
    prompt = torch.cat([d[4] for d in draws])
    assert abs(float(1 - hint.mean()) - 0.15) < 0.015  # the paper's joint drop
    # guidance's unconditional branch (hint kept, prompt dropped) is trained...
    assert abs(float((hint * (1 - prompt)).mean()) - 0.1) < 0.015
    # ...and a hint is never dropped with the prompt kept
    assert not bool(((1 - hint) * prompt).any())
    model = build_model(tiny_settings(), CHANNELS)
    seen = []
    original = model.predict
    model.predict = lambda *args: seen.append((args[3], args[4])) or original(*args)
    train._train_step(
        model,
        tiny_data(),
        dataclasses.replace(settings, batch_size=8),
        noise,
        torch.optim.AdamW(model.trainable_parameters()),
        0,
        torch.device("cpu"),
    )
    _, _, _, hint_keep, prompt_keep = step_draws(
        dataclasses.replace(settings, batch_size=8), 0, (6, 3, 8, 8), noise
    )
    torch.testing.assert_close(seen[0], (hint_keep, prompt_keep))


def test_guidance_is_off_for_the_scratch_base_and_needs_a_trained_branch_elsewhere():
    assert resolve_guidance(SCRATCH, None, 0.0) == 1.0  # a constant prompt: nothing to guide
    assert resolve_guidance("some/pretrained-base", None, 0.1) == 1.75  # the paper's
    assert resolve_guidance("some/pretrained-base", 1.0, 0.0) == 1.0
    with pytest.raises(ValueError, match=r"featinv\.train\.prompt_drop_prob"):
        resolve_guidance("some/pretrained-base", None, 0.0)
    with pytest.raises(ValueError, match=r"featinv\.sample\.guidance 2\.0"):
        resolve_guidance(SCRATCH, 2.0, 0.0)


@pytest.mark.parametrize("guidance", [None, 2.0])
def test_the_sampler_runs_the_branches_the_model_was_trained_on(guidance):
    model = build_model(tiny_settings(), CHANNELS)
    model.prompt_drop_prob = 0.1
    seen = []
    original = model.predict
    model.predict = lambda *args: seen.append((args[3], args[4])) or original(*args)
    features = torch.randn(2, CHANNELS, 3, 3)
    sample(model, features, SampleSettings(steps=2, guidance=guidance))
    hint_keep, prompt_keep = seen[0]
    if guidance is None:  # the scratch base: one branch, hint and prompt
        torch.testing.assert_close(hint_keep, torch.ones(2))
        torch.testing.assert_close(prompt_keep, torch.ones(2))
    else:  # (hint, no prompt) then (hint, prompt): the branches training drew
        torch.testing.assert_close(hint_keep, torch.ones(4))
        torch.testing.assert_close(prompt_keep, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    model.prompt_drop_prob = 0.0  # a model whose training never dropped the prompt alone
    if guidance is not None:
        with pytest.raises(ValueError, match="never saw in training"):
            sample(model, features, SampleSettings(steps=2, guidance=guidance))


@pytest.mark.parametrize("scheduler", ["dpmsolver++", "unipc", "ddim"])
def test_trailing_spacing_starts_the_few_step_samplers_at_pure_noise(scheduler):
    config = build_model(tiny_settings(), CHANNELS).noise_config
    trailing = make_scheduler(scheduler, config, "trailing")
    trailing.set_timesteps(10)
    assert int(trailing.timesteps[0]) == 999
    leading = make_scheduler(scheduler, config, "leading")
    leading.set_timesteps(10)
    assert int(leading.timesteps[0]) == 900  # diffusers' default starts a tenth too late


@pytest.mark.parametrize("normalise", [True, False])
def test_normalise_features_decides_what_the_hint_block_reads(normalise):
    model = build_model(tiny_settings(normalise_features=normalise), CHANNELS)
    randomise(model.hint)
    model.hint.set_statistics(torch.randn(16, CHANNELS, 3, 3) * 3 + 5)
    features = torch.randn(2, CHANNELS, 3, 3) * 3 + 5
    dropped = model.hint(features, keep=torch.zeros(2))
    # A dropped hint is the zero input of the block: the mean feature when standardised, raw
    # zeros (the paper's) when not.
    mean = model.hint.feature_mean.view(1, -1, 1, 1).expand_as(features)
    reference = mean if normalise else torch.zeros_like(features)
    torch.testing.assert_close(dropped, model.hint(reference))
    # the training statistics matter only when the block standardises
    before = model.hint(features)
    model.hint.set_statistics(torch.randn(16, CHANNELS, 3, 3) * 7 - 2)
    assert torch.allclose(model.hint(features), before) is not normalise


def fixed_loss(model: FeatInvModel, data: TrainingData) -> float:
    generator = torch.Generator().manual_seed(123)
    noise = DDPMScheduler.from_config(model.noise_config)
    eps = torch.randn(data.targets.shape, generator=generator)
    t = torch.randint(0, 1000, (len(eps),), generator=generator)
    keep = torch.ones(len(eps))
    with torch.no_grad():
        prediction = model.predict(
            noise.add_noise(data.targets, eps, t), t, data.features, keep, keep
        )
    return float(torch.nn.functional.mse_loss(prediction, eps))


def test_a_short_training_run_lowers_the_loss(tmp_path):
    model, data = build_model(tiny_settings(), CHANNELS), tiny_data(n=4)
    before = fixed_loss(model, data)
    settings = TrainSettings(steps=40, batch_size=4, lr=3e-3, checkpoint_every=100)
    curve = train_featinv(model, data, settings, tmp_path / "checkpoint", progress=False)
    assert fixed_loss(model, data) < 0.8 * before
    assert [point["step"] for point in curve] == list(range(10, 41, 10))


def test_save_and_load_in_diffusers_format_give_identical_outputs(tmp_path):
    model = build_model(tiny_settings(), CHANNELS)
    for module in (model.controlnet, model.hint):
        randomise(module)
    model.hint.set_statistics(torch.randn(4, CHANNELS, 3, 3) * 2 + 1)
    model.save_pretrained(tmp_path / "model")
    for folder in ("unet", "controlnet", "hint", "scheduler"):
        assert (tmp_path / "model" / folder / "config.json").is_file() or folder == "scheduler"
    assert list((tmp_path / "model").rglob("*.safetensors"))
    assert not list((tmp_path / "model").rglob("*.bin"))
    loaded = FeatInvModel.from_pretrained(tmp_path / "model")
    args = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.predict(*args), model.eval().predict(*args), rtol=0, atol=0
        )


def test_the_cosine_schedule_decays_from_lr_to_zero(tmp_path):
    settings = TrainSettings(steps=4, lr=1e-3, lr_schedule="cosine")
    lrs = [settings.lr_at(step) for step in range(4)]
    assert lrs[0] == 1e-3
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[2] == pytest.approx(0.5e-3)  # half way
    assert settings.lr_at(4) == pytest.approx(0)
    assert TrainSettings(lr=1e-3).lr_at(3) == 1e-3  # constant, the paper's
    with pytest.raises(ValueError, match="lr_schedule 'linear'"):
        TrainSettings(lr_schedule="linear")
    # The training loop applies it: the first step is the constant run's, the later ones are not.
    runs = {}
    for schedule in ("constant", "cosine"):
        for steps in (1, 3):
            model = build_model(tiny_settings(), CHANNELS)
            recipe = TrainSettings(steps=steps, batch_size=2, lr=1e-2, lr_schedule=schedule)
            train_featinv(model, tiny_data(), recipe, tmp_path / f"{schedule}{steps}", False)
            runs[schedule, steps] = torch.cat([p.flatten() for p in model.trainable_parameters()])
    assert torch.equal(runs["constant", 1], runs["cosine", 1])
    assert not torch.equal(runs["constant", 3], runs["cosine", 3])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resuming_from_a_checkpoint_continues_like_an_uninterrupted_run(
    tmp_path, monkeypatch, schedule
):
    data = tiny_data()
    settings = TrainSettings(
        steps=6, batch_size=3, lr=1e-3, lr_schedule=schedule, checkpoint_every=3, log_every=1
    )
    straight = build_model(tiny_settings(), CHANNELS)
    straight_curve = train_featinv(straight, data, settings, tmp_path / "a", progress=False)
    # Interrupt a second run during step 5, after the checkpoint at step 3.
    step = train._train_step

    def interrupt(model, data, settings, noise, optimiser, index, device):
        if index == 4:
            raise KeyboardInterrupt
        return step(model, data, settings, noise, optimiser, index, device)

    monkeypatch.setattr(train, "_train_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_featinv(
            build_model(tiny_settings(), CHANNELS), data, settings, tmp_path / "b", progress=False
        )
    monkeypatch.setattr(train, "_train_step", step)
    resumed = build_model(tiny_settings(), CHANNELS)
    resumed_curve = train_featinv(resumed, data, settings, tmp_path / "b", progress=False)
    assert resumed_curve == straight_curve
    for (name, a), b in zip(
        straight.trainable_state().items(), resumed.trainable_state().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    data = tiny_data()
    settings = TrainSettings(steps=2, batch_size=2, checkpoint_every=1)
    train_featinv(
        build_model(tiny_settings(), CHANNELS), data, settings, tmp_path / "c", progress=False
    )
    other = dataclasses.replace(settings, lr=1e-3, steps=3)
    curve = train_featinv(
        build_model(tiny_settings(), CHANNELS), data, other, tmp_path / "c", progress=False
    )
    assert curve == [{"step": 3, "loss": curve[0]["loss"]}]  # one point: the mean of steps 1-3


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++", "unipc"])
def test_sampling_is_deterministic_for_a_seed(scheduler):
    model = build_model(tiny_settings(), CHANNELS)
    randomise(model.hint.conv_out)
    features = torch.randn(3, CHANNELS, 3, 3).numpy()
    settings = SampleSettings(scheduler=scheduler, steps=2, batch_size=3, seed=7)
    first = sample(model, features, settings)
    assert first.shape == (3, 8, 8, 3)
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(first, sample(model, features, settings))
    one_by_one = sample(model, features, dataclasses.replace(settings, batch_size=1))
    np.testing.assert_array_equal(first, one_by_one)  # noise depends on the image, not the batch
    assert not np.array_equal(first, sample(model, features, dataclasses.replace(settings, seed=8)))


def test_a_patched_scratch_base_denoises_patches_and_returns_full_size_images(tmp_path):
    settings = tiny_settings(resolution=16, patch_size=2)
    model = build_model(settings, CHANNELS)
    assert model.latent_shape == (12, 8, 8)  # 2x2 patches of RGB on an 8x8 grid
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    patches = model.encode(images)
    # The first grid cell holds the top-left 2x2 patch, channel by channel, row by row.
    top_left = images[:, :, :2, :2].reshape(2, 12)
    torch.testing.assert_close(patches[:, :, 0, 0], top_left, rtol=0, atol=0)
    torch.testing.assert_close(model.decode(patches), images, rtol=0, atol=0)  # lossless
    model.save_pretrained(tmp_path / "model")
    loaded = FeatInvModel.from_pretrained(tmp_path / "model")
    features = torch.randn(2, CHANNELS, 3, 3).numpy()
    reconstructions = sample(loaded, features, SampleSettings(steps=2, seed=1))
    assert reconstructions.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(
        reconstructions, sample(model, features, SampleSettings(steps=2, seed=1))
    )
    with pytest.raises(ValueError, match="patch_size 3 must be a positive divisor"):
        build_model(tiny_settings(resolution=16, patch_size=3), CHANNELS)
    with pytest.raises(ValueError, match="applies to base: scratch only"):  # before any loading
        build_model(tiny_settings(base="no/such/base", patch_size=2), CHANNELS)


def save_tiny_base(folder, with_vae: bool = True):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=4 if with_vae else 8,
        in_channels=4 if with_vae else 3,
        out_channels=4 if with_vae else 3,
        **TINY_UNET,
    )
    unet.save_pretrained(folder / "unet")
    if with_vae:
        AutoencoderKL(
            block_out_channels=(4, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=2,
            sample_size=8,
        ).save_pretrained(folder / "vae")
    DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
    ).save_pretrained(folder / "scheduler")
    embeds = {"prompt": torch.randn(2, 8), "null": torch.zeros(2, 8)}
    save_file(embeds, folder / "prompt_embeds.safetensors")
    return unet


def test_a_pretrained_base_loads_offline_and_only_controlnet_and_hint_train(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = tmp_path / "base"
    unet = save_tiny_base(base)
    settings = tiny_settings(base=str(base), prompt_embeds=str(base / "prompt_embeds.safetensors"))
    model = build_model(settings, CHANNELS)
    assert model.vae is not None
    assert model.latent_shape == (4, 4, 4)
    assert not any(p.requires_grad for p in model.unet.parameters())
    assert not any(p.requires_grad for p in model.vae.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for m in (model.controlnet, model.hint) for p in m.parameters()}
    torch.testing.assert_close(model.controlnet.conv_in.weight, unet.conv_in.weight)
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    assert model.encode(images).shape == (2, 4, 4, 4)
    assert model.decode(model.encode(images)).shape == (2, 3, 8, 8)
    # Training leaves the UNet as it was; the saved folder refers to the base instead of a copy.
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    data = train.TrainingData(
        torch.randn(4, CHANNELS, 3, 3), model.encode(images.repeat(2, 1, 1, 1))
    )
    train_featinv(
        model, data, TrainSettings(steps=2, batch_size=2), tmp_path / "ck", progress=False
    )
    for name, value in model.unet.state_dict().items():
        assert torch.equal(value, before[name]), name
    model.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model" / "unet").exists()
    loaded = FeatInvModel.from_pretrained(tmp_path / "model")
    args = (
        torch.randn(2, 4, 4, 4),
        torch.tensor([3, 700]),
        torch.randn(2, CHANNELS, 3, 3),
        torch.ones(2),
        torch.ones(2),
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(*args), model.eval().predict(*args))


def test_a_missing_base_while_offline_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="hf download"):
        build_model(tiny_settings(base="no-such-org/no-such-featinv-base"), CHANNELS)
    with pytest.raises(FileNotFoundError, match="no diffusers folder"):
        build_model(tiny_settings(base=str(tmp_path / "missing")), CHANNELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no unet/"):
        featinv_model.load_base(str(tmp_path / "empty"))


def random_images(n: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_ssim_and_mse_agree_with_references():
    a, b = random_images(seed=0), random_images(seed=1)
    b[:, 8:24] = a[:, 8:24]  # partly equal, so SSIM is neither 0 nor 1
    expected = [
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
    np.testing.assert_allclose(scores.ssim(a, b), expected)
    np.testing.assert_allclose(scores.ssim(a, a), 1.0)
    np.testing.assert_allclose(
        scores.mse(a, b), ((a / 255.0 - b / 255.0) ** 2).mean(axis=(1, 2, 3))
    )


def test_lpips_agrees_with_the_lpips_package_and_flags_a_random_trunk(tmp_path):
    a, b = random_images(size=64, seed=2), random_images(size=64, seed=3)
    metric = scores.LPIPS(hub_dir=str(tmp_path))  # an empty hub cache: no AlexNet weights
    assert metric.name == "lpips_random_backbone"
    torch.manual_seed(0)
    reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        expected = [
            float(reference(lpips.im2tensor(x), lpips.im2tensor(y)))
            for x, y in zip(a, b, strict=True)
        ]
    np.testing.assert_allclose(metric(a, b), expected, rtol=1e-5)
    # With torchvision's AlexNet weights in the hub cache, the trunk uses them and says so.
    trunk = {
        f"features.{k.split('.', 2)[2]}": torch.randn_like(v)
        for k, v in reference.state_dict().items()
        if k.startswith("net.slice")
    }
    (tmp_path / "checkpoints").mkdir()
    torch.save(trunk, tmp_path / "checkpoints" / scores.ALEXNET_FILE)
    pretrained = scores.LPIPS(hub_dir=str(tmp_path))
    assert pretrained.name == "lpips"
    torch.testing.assert_close(pretrained.net.net.slice1[0].weight, trunk["features.0.weight"])
    torch.testing.assert_close(
        getattr(pretrained.net.net.slice5, "10").bias, trunk["features.10.bias"]
    )


def test_pooled_and_perturbed_conditionings():
    rng = np.random.default_rng(0)
    original = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)
    manipulated = original + rng.standard_normal(original.shape).astype(np.float32)
    flat = evaluate.pooled(original)
    np.testing.assert_allclose(flat[:, :, 1, 0], original.mean(axis=(2, 3)), rtol=1e-6)
    job = evaluate.InversionInputs(None, None, original, manipulated, None, None, None)
    noisy = evaluate.perturbed(job, 2.0, seed=0)
    distance = np.sqrt(((manipulated - original) ** 2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(
        np.sqrt(((noisy - original) ** 2).sum(axis=(1, 2, 3))), 2 * distance, rtol=1e-5
    )


class StubProbe:
    """A 'backbone' whose features are the image's 2x2-pooled colours and logits its mean colour."""

    def __call__(self, images):
        x = images.astype(np.float32).transpose(0, 3, 1, 2)
        n, c, h, w = x.shape
        grid = x.reshape(n, c, 2, h // 2, 2, w // 2).mean(axis=(3, 5))
        return grid, x.mean(axis=(2, 3))


def stub_inputs(size: int, resolution: int) -> evaluate.InversionInputs:
    """Two test images, their 2x2 feature grids, a vertical flip as the manipulation."""
    images = random_images(n=2, size=size)
    rng = np.random.default_rng(0)
    original = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    step = size // resolution
    return evaluate.InversionInputs(
        original_images=images,
        manipulated_images=images[:, ::-1].copy(),
        original=original,
        manipulated=original[:, :, ::-1].copy(),
        original_logits=rng.standard_normal((2, 3)),
        manipulated_logits=rng.standard_normal((2, 3)),
        mean_image=images.mean(axis=0).astype(np.uint8)[::step, ::step],
    )


def test_inversion_scores_every_reconstruction_against_its_references():
    model = build_model(dataclasses.replace(tiny_settings(), resolution=16), 3).eval()
    randomise(model.hint.conv_out)
    job = stub_inputs(size=32, resolution=16)
    settings = evaluate.InvertSettings(n_images=2, perturbation_scales=(1.0,))
    inverter = evaluate.Inverter(
        functools.partial(sample, model, settings=SampleSettings(scheduler="ddim", steps=2)),
        model.settings.resolution,
        StubProbe(),
        scores.LPIPS(hub_dir="/nonexistent"),
    )
    base = dict(backbone="b", layer="l", manipulation="m")
    rows, references = evaluate.invert_references(inverter, job, settings, base)
    mapped_rows, mapped = evaluate.invert_mapping(
        inverter, job, references, lambda x: x, settings, {**base, "mapping": "identity"}
    )
    # The identity mapping reconstructs exactly what the original features do (same noise).
    np.testing.assert_array_equal(mapped["mapped"], references["reconstructed_original"])
    assert {row["mapping"] for row in rows} == {""}
    assert {row["mapping"] for row in mapped_rows} == {"identity"}
    found = {(row["comparison"], row["metric"]) for row in rows + mapped_rows}
    for comparison in (
        "mapped_vs_manipulated",
        "mapped_vs_reconstructed_manipulated",
        "reconstructed_original_vs_original",
        "mean_image_vs_original",
        "pooled_mapped_vs_reconstructed_manipulated",
        "perturbed_x1_vs_original",
    ):
        for metric in ("ssim", "mse", "lpips_random_backbone"):
            assert (comparison, metric) in found
    assert ("mapped_vs_conditioning", "cosine_median") in found
    assert ("resized_original_vs_original", "top1_agreement") in found
    assert ("mapped_vs_manipulated", "top1_agreement") in found
    assert all(row["stage"] == "inversion" and row["split"] == "test" for row in rows)
    assert all(row["n"] == 2 for row in rows + mapped_rows)
    # A mapping that changes the features' shape is refused, naming both shapes.
    with pytest.raises(ValueError, match="the mapping gives"):
        evaluate.invert_mapping(inverter, job, references, lambda x: x[:, :2], settings, base)


def test_saved_reconstructions_must_belong_to_the_same_test_images(tmp_path):
    images = {"original": random_images(n=3, size=8)}
    evaluate.save_images(tmp_path / "images.safetensors", images, np.arange(3))
    loaded = evaluate.load_images(tmp_path / "images.safetensors", np.arange(3))
    np.testing.assert_array_equal(loaded["original"], images["original"])
    with pytest.raises(ValueError, match="other test images"):
        evaluate.load_images(tmp_path / "images.safetensors", np.arange(4))


def test_the_optimisers_rows_carry_its_prefix_and_compare_with_its_own_reconstructions():
    job = stub_inputs(size=16, resolution=16)

    def reconstruct(features):  # a stand-in inverter: each position's colour from its features
        grid = (np.tanh(features) * 127 + 128).astype(np.uint8).transpose(0, 2, 3, 1)
        return grid.repeat(8, axis=1).repeat(8, axis=2)

    inverter = evaluate.Inverter(
        reconstruct, 16, StubProbe(), scores.LPIPS(hub_dir="/nonexistent"), evaluate.OPTIMISED
    )
    settings = evaluate.InvertSettings(n_images=2, perturbation_scales=(1.0,))
    base = dict(backbone="b", layer="l", manipulation="m")
    rows, references = evaluate.invert_references(inverter, job, settings, base, baselines=False)
    mapped_rows, mapped = evaluate.invert_mapping(
        inverter, job, references, lambda x: x, settings, {**base, "mapping": "identity"}
    )
    assert set(mapped) == {"optimised_mapped", "optimised_pooled_mapped"}
    assert {"optimised_reconstructed_original", "original", "mean_image"} <= set(references)
    found = {row["comparison"] for row in rows + mapped_rows}
    assert {
        "optimised_reconstructed_original_vs_original",
        "optimised_perturbed_x1_vs_optimised_reconstructed_original",
        "optimised_mapped_vs_optimised_reconstructed_manipulated",
        "optimised_pooled_mapped_vs_conditioning",
        "optimised_mapped_vs_manipulated",
    } <= found
    # no floor or ceiling rows when FeatInv writes them for the cell
    assert not any(c.startswith(("mean_image", "resized_original")) for c in found)
