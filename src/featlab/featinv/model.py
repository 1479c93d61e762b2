"""The FeatInv model: a ControlNet, fed by a feature hint block, conditioning a diffusion UNet.

The structure follows FeatInv (Neukirch, Vielhaben, Strodthoff 2025): a ControlNet (a trainable
copy of the UNet's encoder and middle block whose residuals enter the UNet through
zero-initialised convolutions) has its image hint encoder replaced by a *feature hint block*
(bilinear resize of the feature map to the latent grid, conv3x3-SiLU-conv3x3-SiLU, and a
zero-initialised conv3x3 to the ControlNet's first block channels, added after the ControlNet's
input convolution). Text conditioning is one fixed prompt embedding.

Two bases:

- ``base: scratch`` (the embedded default): a tiny pixel-space UNet trained from scratch together
  with the ControlNet. With ``patch_size`` p > 1 it denoises the image folded into p x p patches
  (3 p^2 channels on an R/p grid, Hoogeboom et al.'s "simple diffusion" patching): an exact,
  lossless stand-in for a VAE that costs the UNet of an R/p image. It has no text encoder; its
  "prompt embedding" is a fixed, seeded standard normal tensor (tokens, cross_attention_dim) and
  the dropped prompt is zeros. Both are constants the UNet learns to read, saved with the model.
- ``base: <local diffusers folder or hub id>`` (miniSD in the paper): the UNet (and VAE, when the
  base has one) are loaded and frozen, the ControlNet is initialised from the UNet, and only the
  ControlNet and the hint block train. The prompt is encoded by the base's CLIP text encoder
  (needs the `transformers` package) or read from a `prompt_embeds` safetensors file.

A trained model is a folder of diffusers components (`save_pretrained` folders, safetensors):
``controlnet/`` (without an image hint encoder), ``hint/``, ``scheduler/``, ``unet/`` (only when the
UNet trained; a frozen pretrained base is re-read from `base`), ``vae/`` likewise, plus
``prompt_embeds.safetensors`` and ``featinv.json``. Load it with `FeatInvModel.from_pretrained`.
"""

import dataclasses
import json
import os
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file, save_file
from torch import nn

from featlab.featinv.settings import SCRATCH, check_patch_size
from featlab.io import atomic_path

# A three-level pixel-space UNet, 32x32 -> 16x16 -> 8x8, cross-attention only at 8x8 and in the
# middle block: on a CPU a training step costs a third of a two-level UNet of 32-64 channels with
# attention at 16x16, at about the same number of parameters.
SCRATCH_UNET = {
    "block_out_channels": [16, 32, 64],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
# DDPM's linear schedule, the usual choice for pixel-space diffusion.
SCRATCH_NOISE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": True,
}


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """How to build a FeatInv model (saved in `featinv.json` beside its weights)."""

    base: str = SCRATCH  # "scratch", or a local diffusers folder or hub id (miniSD in the paper)
    resolution: int = (
        32  # image side the diffusion model generates (the base's, for a pretrained one)
    )
    patch_size: int = 1  # scratch base: the UNet denoises p x p pixel patches on an R/p grid
    hint_channels: int = 64  # hidden channels of the feature hint block (512 in the paper)
    normalise_features: bool = True  # standardise hint inputs per channel; False: raw (the paper)
    prompt: str = "a high-quality, detailed, and professional image"  # for a pretrained base
    prompt_embeds: str | None = None  # safetensors with `prompt` and `null` (tokens, dim) tensors
    prompt_tokens: int = 4  # tokens of the scratch base's fixed prompt embedding
    unet: dict = dataclasses.field(default_factory=lambda: dict(SCRATCH_UNET))  # scratch UNet
    noise: dict = dataclasses.field(default_factory=lambda: dict(SCRATCH_NOISE))  # scratch DDPM
    seed: int = 0  # initialisation of the scratch UNet, ControlNet, hint block and prompt


class FeatureHintBlock(ModelMixin, ConfigMixin):
    """Feature map -> ControlNet input residual on the latent grid (FeatInv's hint block).

    Features are standardised per channel (buffers set from the training features) when
    `normalise` is set, or enter in raw units as in the paper; then they are resized bilinearly to
    the latent grid and passed through conv3x3-SiLU-conv3x3-SiLU and a zero-initialised conv3x3,
    so that an untrained block adds exactly nothing. A dropped hint is the zero input: the mean
    feature when standardised, raw zeros (the paper's) when not.
    """

    @register_to_config
    def __init__(
        self,
        feature_channels: int,
        out_channels: int,
        latent_size: int,
        hidden_channels: int = 64,
        normalise: bool = True,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(feature_channels, hidden_channels, kernel_size=3, padding=1)
        self.conv_mid = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1)
        self.conv_out = nn.Conv2d(hidden_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.register_buffer("feature_mean", torch.zeros(feature_channels))
        self.register_buffer("feature_std", torch.ones(feature_channels))

    def set_statistics(self, features: torch.Tensor) -> None:
        """Standardise later inputs with the per-channel mean and std of (N, C, H, W) features."""
        # (N, C, H, W) -> (C,)
        self.feature_mean.copy_(features.mean(dim=(0, 2, 3)))
        self.feature_std.copy_(features.std(dim=(0, 2, 3)).clamp_min(1e-6))

    def forward(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embed features; rows with keep == 0 get a zero (dropped) hint input.

        Args:
            features: (B, C, h, w) feature maps, or (B, h*w, C) tokens on a square grid.
            keep: Optional (B,) mask; 0 drops an image's hint (its block input becomes 0).

        Returns:
            (B, out_channels, latent_size, latent_size).
        """
        x = self._as_grid(features).to(self.feature_mean.dtype)
        if self.config.normalise:
            x = (x - self.feature_mean.view(1, -1, 1, 1)) / self.feature_std.view(1, -1, 1, 1)
        if keep is not None:
            x = x * keep.to(x.dtype).view(-1, 1, 1, 1)
        size = self.config.latent_size
        # (B, C, h, w) -> (B, C, latent, latent)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = F.silu(self.conv_in(x))
        x = F.silu(self.conv_mid(x))
        return self.conv_out(x)

    def _as_grid(self, features: torch.Tensor) -> torch.Tensor:
        channels = self.config.feature_channels
        if features.ndim == 3 and features.shape[-1] == channels:
            side = round(features.shape[1] ** 0.5)
            if side * side != features.shape[1]:
                raise ValueError(f"{features.shape[1]} tokens do not fill a square grid")
            # (B, h*w, C) -> (B, C, h, w)
            return features.transpose(1, 2).reshape(features.shape[0], channels, side, side)
        if features.ndim != 4 or features.shape[1] != channels:
            raise ValueError(
                f"the hint block takes ({channels} channels) features as (B, C, H, W) or "
                f"(B, H*W, C), got shape {tuple(features.shape)}"
            )
        return features


class FeatInvModel(nn.Module):
    """UNet + ControlNet + feature hint block (+ optional VAE) with a fixed prompt embedding."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        hint: FeatureHintBlock,
        noise_config: dict,
        prompt_embeds: torch.Tensor,
        null_embeds: torch.Tensor,
        settings: ModelSettings,
        vae: AutoencoderKL | None = None,
    ):
        super().__init__()
        self.unet, self.controlnet, self.hint, self.vae = unet, controlnet, hint, vae
        # The hint block takes the place of the ControlNet's image hint encoder.
        self.controlnet.controlnet_cond_embedding = nn.Identity()
        # Without diffusers' bookkeeping keys: `_use_default_values` (set on a config built from
        # arguments, not on one read from a file) makes `from_config` of a sampling scheduler take
        # its own defaults (timestep spacing, among others), so a model would sample differently
        # before and after a save.
        self.noise_config = {k: v for k, v in noise_config.items() if not k.startswith("_")}
        self.register_buffer("prompt_embeds", prompt_embeds.reshape(1, *prompt_embeds.shape[-2:]))
        self.register_buffer("null_embeds", null_embeds.reshape(1, *null_embeds.shape[-2:]))
        self.settings = settings
        # The training's probability of the guidance branch (hint kept, prompt dropped), set by
        # training or read from a saved model; None for a model that was never trained.
        self.prompt_drop_prob: float | None = None
        self.train_unet = settings.base == SCRATCH
        self.unet.requires_grad_(self.train_unet)
        if self.vae is not None:
            self.vae.requires_grad_(False)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, side, side) of what the UNet denoises."""
        side = self.unet.config.sample_size
        return self.unet.config.in_channels, side, side

    def trainable_parameters(self) -> list[nn.Parameter]:
        """ControlNet and hint block; the UNet too when it is the scratch base."""
        modules = [self.controlnet, self.hint] + ([self.unet] if self.train_unet else [])
        return [p for module in modules for p in module.parameters()]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable parameters by name (what a checkpoint holds)."""
        wanted = {id(p) for p in self.trainable_parameters()}
        return {name: p for name, p in self.named_parameters() if id(p) in wanted}

    def embeddings(self, keep: torch.Tensor) -> torch.Tensor:
        """Prompt embedding where keep == 1, the dropped (null) prompt where keep == 0."""
        keep = keep.to(self.prompt_embeds.dtype).view(-1, 1, 1)
        return keep * self.prompt_embeds + (1 - keep) * self.null_embeds

    def predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        features: torch.Tensor,
        hint_keep: torch.Tensor,
        prompt_keep: torch.Tensor,
    ) -> torch.Tensor:
        """The UNet's prediction (noise or v) for noisy latents, conditioned on features.

        Args:
            noisy: (B, c, s, s) noisy latents (or pixels for a pixel-space base).
            timesteps: (B,) diffusion timesteps.
            features: (B, C, h, w) conditioning feature maps.
            hint_keep: (B,) 1 to use an image's features, 0 to drop them.
            prompt_keep: (B,) 1 for the prompt, 0 for the dropped prompt.
        """
        text = self.embeddings(prompt_keep).expand(noisy.shape[0], -1, -1)
        hint = self.hint(features, hint_keep)
        down, mid = self.controlnet(
            noisy, timesteps, encoder_hidden_states=text, controlnet_cond=hint, return_dict=False
        )
        return self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, R, R) -> what the UNet denoises (VAE latents or the pixels)."""
        if self.vae is None:
            # (B, 3, R, R) -> (B, 3 p^2, R/p, R/p)
            return F.pixel_unshuffle(images, self.settings.patch_size)
        latents = self.vae.encode(images).latent_dist.mean
        shift = self.vae.config.get("shift_factor") or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode`: images in [-1, 1] (B, 3, R, R)."""
        if self.vae is None:
            # (B, 3 p^2, R/p, R/p) -> (B, 3, R, R)
            return F.pixel_shuffle(latents, self.settings.patch_size).clamp(-1, 1)
        shift = self.vae.config.get("shift_factor") or 0.0
        latents = latents / self.vae.config.scaling_factor + shift
        return self.vae.decode(latents).sample.clamp(-1, 1)

    def save_pretrained(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the model folder atomically: diffusers components, prompt and `featinv.json`."""
        with atomic_path(path) as temporary:
            temporary.mkdir(parents=True)
            self.controlnet.save_pretrained(temporary / "controlnet")
            self.hint.save_pretrained(temporary / "hint")
            DDPMScheduler.from_config(self.noise_config).save_pretrained(temporary / "scheduler")
            if self.train_unet:
                self.unet.save_pretrained(temporary / "unet")
            embeds = {"prompt": self.prompt_embeds[0], "null": self.null_embeds[0]}
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in embeds.items()},
                temporary / "prompt_embeds.safetensors",
            )
            config = {"settings": dataclasses.asdict(self.settings), **(extra or {})}
            (temporary / "featinv.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "FeatInvModel":
        """Load a folder written by `save_pretrained` (the frozen base is re-read from `base`)."""
        path = Path(path)
        if not (path / "featinv.json").is_file():
            raise FileNotFoundError(f"{path} is not a FeatInv model folder (no featinv.json)")
        record = json.loads((path / "featinv.json").read_text())
        settings = ModelSettings(**record["settings"])
        if settings.base == SCRATCH:
            unet, vae = UNet2DConditionModel.from_pretrained(path / "unet"), None
        else:
            unet, vae, _ = load_base(settings.base)
        controlnet = ControlNetModel.from_config(ControlNetModel.load_config(path / "controlnet"))
        controlnet.controlnet_cond_embedding = nn.Identity()
        weights = path / "controlnet" / "diffusion_pytorch_model.safetensors"
        controlnet.load_state_dict(load_file(weights), strict=True)
        hint = FeatureHintBlock.from_pretrained(path / "hint")
        noise_config = dict(DDPMScheduler.load_config(path / "scheduler"))
        embeds = load_file(path / "prompt_embeds.safetensors")
        model = cls(
            unet, controlnet, hint, noise_config, embeds["prompt"], embeds["null"], settings, vae
        )
        if "train" in record:  # models trained before the key existed never dropped it alone
            model.prompt_drop_prob = record["train"].get("prompt_drop_prob", 0.0)
        return model.eval()


def build_model(settings: ModelSettings, feature_channels: int) -> FeatInvModel:
    """A new FeatInv model for features with `feature_channels` channels, from its settings."""
    check_patch_size(settings.base, settings.resolution, settings.patch_size)
    torch.manual_seed(settings.seed)
    if settings.base == SCRATCH:
        patch = settings.patch_size
        channels = 3 * patch**2
        unet = UNet2DConditionModel(
            sample_size=settings.resolution // patch,
            in_channels=channels,
            out_channels=channels,
            **settings.unet,
        )
        vae, noise_config = None, dict(DDPMScheduler(**settings.noise).config)
        generator = torch.Generator().manual_seed(settings.seed)
        dim = unet.config.cross_attention_dim
        prompt = torch.randn(settings.prompt_tokens, dim, generator=generator)
        null = torch.zeros_like(prompt)
    else:
        unet, vae, noise_config = load_base(settings.base)
        prompt, null = prompt_embeddings(settings)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,))
    hint = FeatureHintBlock(
        feature_channels=feature_channels,
        out_channels=unet.config.block_out_channels[0],
        latent_size=unet.config.sample_size,
        hidden_channels=settings.hint_channels,
        normalise=settings.normalise_features,
    )
    model = FeatInvModel(unet, controlnet, hint, noise_config, prompt, null, settings, vae)
    factor = settings.patch_size if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)
    if unet.config.sample_size * factor != settings.resolution:
        raise ValueError(
            f"featinv.model.resolution is {settings.resolution}, but the base generates "
            f"{unet.config.sample_size * factor}x{unet.config.sample_size * factor} images"
        )
    return model


def _base_folder(base: str) -> Path:
    """A local diffusers folder for `base`: the folder itself, or the hub id's cached snapshot."""
    if Path(base).expanduser().is_dir():
        return Path(base).expanduser()
    if base.startswith((".", "/", "~")) or base.count("/") != 1:  # a path, not "org/name"
        raise FileNotFoundError(f"featinv.model.base: no diffusers folder at {base}")
    from huggingface_hub import snapshot_download

    patterns = [
        "model_index.json",
        "unet/*",
        "vae/*",
        "scheduler/*",
        "text_encoder/*",
        "tokenizer/*",
    ]
    try:
        return Path(snapshot_download(base, allow_patterns=patterns))
    except OSError as error:  # offline, not cached, or no such repository
        raise FileNotFoundError(
            f"featinv.model.base: the diffusion base {base!r} is neither a local folder nor in "
            "the Hugging Face cache, and cannot be downloaded here (offline?). On a connected "
            f"machine run `hf download {base}` (or copy the cache), or set featinv.model.base to "
            "a local diffusers folder holding unet/ (and vae/, scheduler/)"
        ) from error


def load_base(base: str) -> tuple[UNet2DConditionModel, AutoencoderKL | None, dict]:
    """The pretrained UNet, its VAE (None for a pixel-space base) and its noise schedule."""
    folder = _base_folder(base)
    if not (folder / "unet" / "config.json").is_file():
        raise FileNotFoundError(f"featinv.model.base: {folder} has no unet/ diffusers folder")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    vae = None
    if (folder / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    if (folder / "scheduler").is_dir():
        noise_config = dict(DDPMScheduler.load_config(folder / "scheduler"))
    else:
        noise_config = dict(DDPMScheduler().config)
    return unet, vae, noise_config


def prompt_embeddings(settings: ModelSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, dim) embeddings of the prompt and of the empty (dropped) prompt."""
    if settings.prompt_embeds:
        embeds = load_file(settings.prompt_embeds)
        if set(embeds) != {"prompt", "null"}:
            raise ValueError(f"{settings.prompt_embeds} must hold exactly `prompt` and `null`")
        return embeds["prompt"], embeds["null"]
    folder = _base_folder(settings.base)
    if not (folder / "text_encoder").is_dir():
        raise FileNotFoundError(
            f"{settings.base} has no text_encoder/: set featinv.model.prompt_embeds to a "
            "safetensors file with `prompt` and `null` (tokens, dim) tensors"
        )
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as error:
        raise ImportError(
            "encoding the prompt with the base's CLIP text encoder needs the `transformers` "
            "package; install it, or set featinv.model.prompt_embeds"
        ) from error
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
    tokens = tokenizer(
        [settings.prompt, ""],
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    )
    with torch.inference_mode():
        hidden = encoder(tokens.input_ids)[0]
    return hidden[0].clone(), hidden[1].clone()
