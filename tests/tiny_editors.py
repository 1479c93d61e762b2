"""Tiny random generative editors, built without any download, saved as diffusers folders.

Each is a real pipeline of its editor's class (featlab.manipulate.editors.EDITORS) with untrained
components a few thousand parameters large: one edit of a 32x32 image takes well under a second
(Qwen about two: its pipeline encodes the reference image at about 1024x1024 whatever the size).
Tokenizers are byte-level BPE vocabularies without merges (a token per byte), plus the special
tokens the prompt templates use, so no tokenizer files need fetching from the hub.

The SD builder takes its sizes (`SDSizes`): `TINY_SD` for the tests, `SD15` for Stable Diffusion
1.5's (InstructPix2Pix's) architecture with random weights, which bench/bench_edit.py times.
"""

import dataclasses
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before transformers)

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

# The special tokens of QwenImageEditPlusPipeline's prompt template and Qwen2-VL's processor.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
CLIP_MAX_LENGTH = 77  # tokens per prompt, as SD's: the SD pipelines pad every prompt to it


@dataclasses.dataclass(frozen=True)
class SDSizes:
    """The sizes of an SD pipeline's UNet, VAE and CLIP text encoder (the UNet's cross-attention
    width is the text encoder's hidden size)."""

    unet_blocks: tuple[int, ...]  # the UNet's block_out_channels
    unet_down: tuple[str, ...]  # its down_block_types; the up blocks mirror them
    unet_layers: int  # layers_per_block
    unet_heads: int  # diffusers' attention_head_dim, which SD's configs use as the head count
    unet_groups: int  # norm_num_groups
    vae_blocks: tuple[int, ...]  # four blocks: three downsamplings, vae_scale_factor 8 as SD's
    vae_layers: int
    vae_groups: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_vocab: int | None = None  # embedding rows; None: the byte-level tokenizer's
    image_size: int = 512  # the UNet's sample_size times 8 and the VAE's sample_size (tiling)


# The tests' tiny pipelines.
TINY_SD = SDSizes(
    unet_blocks=(8, 16),
    unet_down=("DownBlock2D", "CrossAttnDownBlock2D"),
    unet_layers=1,
    unet_heads=2,
    unet_groups=4,
    vae_blocks=(8, 8, 8, 8),
    vae_layers=1,
    vae_groups=4,
    text_hidden=16,
    text_intermediate=32,
    text_layers=2,
    text_heads=2,
    image_size=32,
)
# Stable Diffusion 1.5's, which InstructPix2Pix fine-tunes: its UNet, its VAE, and CLIP ViT-L/14's
# text encoder (with CLIP's 49,408-token embedding, though the byte tokenizer reaches 514 rows).
SD15 = SDSizes(
    unet_blocks=(320, 640, 1280, 1280),
    unet_down=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    unet_layers=2,
    unet_heads=8,
    unet_groups=32,
    vae_blocks=(128, 256, 512, 512),
    vae_layers=2,
    vae_groups=32,
    text_hidden=768,
    text_intermediate=3072,
    text_layers=12,
    text_heads=12,
    text_vocab=49408,
)


def save_tiny_editor(editor: str, folder: Path) -> Path:
    """Build the tiny `editor` pipeline (a key of EDITORS), seeded, and save it to `folder`."""
    builders = {
        "qwen_image_edit": _tiny_qwen_image_edit,
        "instruct_pix2pix": lambda: build_stable_diffusion(StableDiffusionInstructPix2PixPipeline),
        "inpaint": lambda: build_stable_diffusion(StableDiffusionInpaintPipeline),
    }
    pipeline = builders[editor]()
    pipeline.save_pretrained(folder)
    return Path(folder)


def _byte_vocab() -> dict[str, int]:
    """Byte-level BPE's 256 characters (one per byte), so any text tokenizes without merges."""
    return {character: i for i, character in enumerate(sorted(ByteLevel.alphabet()))}


def build_stable_diffusion(pipeline_class: type, sizes: SDSizes = TINY_SD) -> object:
    """An SD pipeline of `pipeline_class` with random weights (seeded) of the given sizes."""
    # The UNet's input: noisy latents, plus the photo's latents (InstructPix2Pix) or the mask and
    # the masked photo's latents (inpainting).
    in_channels = 8 if pipeline_class is StableDiffusionInstructPix2PixPipeline else 9
    # Down blocks with attention are mirrored by up blocks with attention.
    up = {"DownBlock2D": "UpBlock2D", "CrossAttnDownBlock2D": "CrossAttnUpBlock2D"}
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sizes.image_size // 8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=sizes.unet_blocks,
        layers_per_block=sizes.unet_layers,
        down_block_types=sizes.unet_down,
        up_block_types=tuple(up[block] for block in reversed(sizes.unet_down)),
        cross_attention_dim=sizes.text_hidden,
        attention_head_dim=sizes.unet_heads,
        norm_num_groups=sizes.unet_groups,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=sizes.vae_blocks,
        down_block_types=("DownEncoderBlock2D",) * len(sizes.vae_blocks),
        up_block_types=("UpDecoderBlock2D",) * len(sizes.vae_blocks),
        layers_per_block=sizes.vae_layers,
        latent_channels=4,
        norm_num_groups=sizes.vae_groups,
        sample_size=sizes.image_size,
    )
    # CLIP's BPE marks a word's last token with "</w>".
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in _byte_vocab():
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=sizes.text_vocab or len(vocab),
            hidden_size=sizes.text_hidden,
            intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers,
            num_attention_heads=sizes.text_heads,
            max_position_embeddings=CLIP_MAX_LENGTH,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    # An ancestral sampler draws noise at every step: the per-image generators matter throughout.
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    return pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _tiny_qwen_image_edit() -> QwenImageEditPlusPipeline:
    """A Qwen-Image-Edit-Plus pipeline: tiny MMDiT, 8x Qwen VAE, two-layer Qwen2.5-VL encoder."""
    vocab = _byte_vocab()
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=QWEN_SPECIAL_TOKENS[1:])
    # The text encoder sees the reference image at 56x56 pixels (4x4 patches of 14), not Qwen's
    # 384x384, to keep its vision tower cheap.
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(vocab),
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default"},
                "bos_token_id": vocab["<|endoftext|>"],
                "eos_token_id": vocab["<|im_end|>"],
            },
            vision_config={
                "depth": 2,
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_heads": 2,
                "out_hidden_size": 16,
            },
            vocab_size=len(vocab),
            bos_token_id=vocab["<|endoftext|>"],
            eos_token_id=vocab["<|im_end|>"],
            image_token_id=vocab["<|image_pad|>"],
            video_token_id=vocab["<|video_pad|>"],
            vision_start_token_id=vocab["<|vision_start|>"],
            vision_end_token_id=vocab["<|vision_end|>"],
        )
    )
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # 4 latent channels in 2x2 patches
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,  # the text encoder's hidden size
        axes_dims_rope=(8, 4, 4),
        zero_cond_t=True,  # as Qwen-Image-Edit-2511's
    )
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(
        # Three downsamplings, vae_scale_factor 8 as Qwen's: the pipeline encodes the reference
        # at about 1024x1024 whatever the edit size, so a 4x VAE would give 16k-token images.
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    return QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
