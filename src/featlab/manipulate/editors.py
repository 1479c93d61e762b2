"""Generative image editors for the semantic manipulation: diffusers pipelines behind one call.

Three editors, each a diffusers pipeline loaded from a local folder or a hub id:

- qwen_image_edit: `QwenImageEditPlusPipeline`, the FeatMap paper's (Qwen-Image-Edit-2511, bf16,
  10 steps, true CFG 4.5, negative prompt " ", seed 42: the `EditSettings` defaults);
- instruct_pix2pix: `StableDiffusionInstructPix2PixPipeline`, a lighter instruction editor;
- inpaint: `StableDiffusionInpaintPipeline`, which repaints a masked region after the prompt.

Each image is edited with its own random generator, seeded from (seed, image index), so an edit
does not depend on the batch or shard it ran in, and any one edit can be reproduced alone.

Importing this module is cheap; torch and diffusers load on use. The editors' names and pipeline
classes (`EDITORS`) live in featlab.manipulate.spec, which checks the configs that name them.
"""

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from featlab.manipulate.spec import EDITORS, is_int, is_non_negative

PRECISIONS = ("auto", "bfloat16", "float16", "float32")
OFFLOADS = ("none", "model", "sequential")


@dataclasses.dataclass(frozen=True)
class EditSettings:
    """What an editor does and how it runs; the defaults are the FeatMap paper's."""

    editor: str  # a key of EDITORS
    model: str  # a local diffusers folder, or a hub id read through the Hugging Face cache
    prompt: str  # the edit instruction (inpaint: what to paint inside the mask)
    negative_prompt: str = " "  # " " rather than "": Qwen needs a negative prompt for true CFG
    steps: int = 10  # denoising steps
    guidance: float = 4.5  # classifier-free guidance: Qwen's true_cfg_scale, SD's guidance_scale
    distilled_guidance: float = 1.0  # Qwen's guidance_scale, read by guidance-distilled models only
    image_guidance: float = 1.5  # InstructPix2Pix's image_guidance_scale
    seed: int = 42  # image i draws from (seed, i)
    batch_size: int = 1  # images per pipeline call (Qwen: one call per image, see _run)
    # The longer side the editor works at; None: the image's own size. Either way each side is a
    # multiple of the pipeline's (vae_scale_factor * 2 = 16 for Qwen, vae_scale_factor = 8 for SD).
    edit_size: int | None = None
    precision: str = "auto"  # bfloat16 on CUDA and float32 on the CPU, or one of PRECISIONS
    device: str = "auto"  # auto, cpu or cuda (featlab.devices)
    offload: str = "none"  # model or sequential: diffusers' CPU offload, for GPUs short of memory

    def __post_init__(self) -> None:
        from featlab.devices import DEVICES

        checks = {
            "editor": (self.editor in EDITORS, f"one of {list(EDITORS)}"),
            "model": (isinstance(self.model, str) and self.model != "", "a hub id or a folder"),
            "prompt": (isinstance(self.prompt, str) and self.prompt.strip() != "", "a text"),
            "negative_prompt": (isinstance(self.negative_prompt, str), "a string"),
            "steps": (is_int(self.steps) and self.steps >= 1, "an integer >= 1"),
            "guidance": (is_non_negative(self.guidance), "a non-negative number"),
            "distilled_guidance": (
                is_non_negative(self.distilled_guidance),
                "a non-negative number",
            ),
            "image_guidance": (is_non_negative(self.image_guidance), "a non-negative number"),
            "seed": (is_int(self.seed) and self.seed >= 0, "a non-negative integer"),
            "batch_size": (is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            "edit_size": (
                self.edit_size is None or (is_int(self.edit_size) and self.edit_size >= 1),
                "None (the image's size) or a positive integer",
            ),
            "precision": (self.precision in PRECISIONS, f"one of {list(PRECISIONS)}"),
            "device": (self.device in DEVICES, f"one of {list(DEVICES)}"),
            "offload": (self.offload in OFFLOADS, f"one of {list(OFFLOADS)}"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"EditSettings.{name} is {getattr(self, name)!r}; use {allowed}")


def load_editor(settings: EditSettings) -> Any:
    """The settings' pipeline on its device (or offloaded), in its precision, progress bars off.

    Raises:
        FileNotFoundError: the model is neither a local diffusers folder nor in the Hugging Face
            cache, and cannot be downloaded (offline, HF_HUB_OFFLINE=1, or no such repository).
    """
    import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

    import diffusers
    import torch

    from featlab.devices import resolve_device

    # 1. Where and how it runs.
    device = resolve_device(settings.device, "EditSettings.device")
    if settings.offload != "none" and device.type != "cuda":
        raise ValueError(f"EditSettings.offload {settings.offload!r} needs a CUDA device")
    if settings.precision == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, settings.precision)
    # 2. Load, from the folder or through the hub's cache.
    pipeline_class = getattr(diffusers, EDITORS[settings.editor])
    source = _model_source(settings.model)
    try:
        pipeline = pipeline_class.from_pretrained(source, dtype=dtype)
    except OSError as error:  # huggingface_hub's offline and not-found errors are OSErrors
        if isinstance(source, Path):
            raise
        raise FileNotFoundError(
            f"editor model {settings.model!r} is neither a local diffusers folder nor in the "
            "Hugging Face cache, and cannot be downloaded here (offline, or no such repository). "
            f"On a machine with network run `hf download {settings.model}` (and copy the cache "
            "if jobs run elsewhere), or set the manipulation's model to a local diffusers folder"
        ) from error
    # 3. Place it.
    if settings.offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif settings.offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    else:
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _model_source(model: str) -> Path | str:
    """A local diffusers folder as a Path, or the hub id as given."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"editor model {model!r} is a folder without model_index.json")
        return folder
    if model.startswith((".", "/", "~")) or model.count("/") != 1:  # a path, not "org/name"
        raise FileNotFoundError(f"editor model {model!r}: no such diffusers folder")
    return model


def edit_images(
    pipeline: Any,
    settings: EditSettings,
    images: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    masks: np.ndarray | None = None,
) -> np.ndarray:
    """Edit each image after `settings.prompt`.

    Images are resized (Pillow, Lanczos) to the edit size, edited in batches of
    `settings.batch_size`, and resized back. Image i's generator is seeded from
    (settings.seed, indices[i]); generators live on the CPU, so the noise is the same on any device.

    Args:
        pipeline: the settings' pipeline, from `load_editor`.
        settings: the edit.
        images: (N, H, W, 3) uint8 images.
        indices: (N,) the images' indices in the whole image set.
        masks: (N, H, W) bool, inpaint only (and required there): the pixels to repaint. Pixels
            outside the mask keep the original's values (the pipeline redraws the whole image
            through its VAE).

    Returns:
        The (N, H, W, 3) uint8 edited images.
    """
    import torch

    # 1. Check inputs.
    images, indices, masks = _check_inputs(pipeline, settings, images, indices, masks)
    height, width = images.shape[1:3]
    # The pipeline's size multiple: Qwen's image processor works in vae_scale_factor * 2 (its
    # latents are packed in 2x2 patches), the SD pipelines' in vae_scale_factor.
    multiple = pipeline.image_processor.config.vae_scale_factor
    size = _edit_size(height, width, settings.edit_size, multiple)  # (height, width)
    # 2. Edit, batch by batch.
    edited = np.empty_like(images)
    with torch.inference_mode():
        for start in range(0, len(images), settings.batch_size):
            batch = slice(start, start + settings.batch_size)
            inputs = [_pil(image, size, Image.Resampling.LANCZOS) for image in images[batch]]
            regions = None
            if masks is not None:
                regions = [_pil(mask, size, Image.Resampling.NEAREST) for mask in masks[batch]]
            generators = [_generator(settings.seed, index) for index in indices[batch]]
            outputs = _run(pipeline, settings, inputs, regions, generators, size)
            for i, output in enumerate(outputs, start):
                output = _resize(output.convert("RGB"), (height, width), Image.Resampling.LANCZOS)
                edited[i] = np.asarray(output)
    # 3. Inpainting changes the masked pixels only.
    if masks is not None:
        edited = np.where(masks[..., None], edited, images)
    return edited


def _check_inputs(
    pipeline: Any,
    settings: EditSettings,
    images: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    masks: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The inputs as arrays, or a ValueError saying what is wrong with them."""
    if type(pipeline).__name__ != EDITORS[settings.editor]:
        raise ValueError(
            f"editor {settings.editor!r} runs a {EDITORS[settings.editor]}, "
            f"got a {type(pipeline).__name__}"
        )
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    indices = np.asarray(indices)
    if indices.shape != images.shape[:1] or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be {images.shape[:1]} integers, got {indices.shape}")
    if (indices < 0).any():
        raise ValueError("indices must be non-negative")
    if settings.editor != "inpaint":
        if masks is not None:
            raise ValueError(f"masks are for the inpaint editor only, not {settings.editor!r}")
        return images, indices, None
    if masks is None:
        raise ValueError("the inpaint editor needs masks (N, H, W) bool of the pixels to repaint")
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.shape != images.shape[:3]:
        raise ValueError(f"masks must be {images.shape[:3]} bool, got {masks.shape} {masks.dtype}")
    return images, indices, masks


def _edit_size(height: int, width: int, edit_size: int | None, multiple: int) -> tuple[int, int]:
    """The (height, width) the editor works at: sides rounded to `multiple`, aspect kept."""
    if edit_size is not None and edit_size % multiple:
        raise ValueError(
            f"EditSettings.edit_size {edit_size} is not a multiple of {multiple}, this editor's"
        )
    scale = 1.0 if edit_size is None else edit_size / max(height, width)
    return tuple(
        max(multiple, round(side * scale / multiple) * multiple) for side in (height, width)
    )


def _pil(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """`array` (an image, or a bool mask as black and white) as a PIL image at (height, width)."""
    image = Image.fromarray(array.astype(np.uint8) * 255 if array.dtype == bool else array)
    return _resize(image, size, resample)


def _resize(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    if image.size != (size[1], size[0]):  # PIL sizes are (width, height)
        image = image.resize((size[1], size[0]), resample)
    return image


def _generator(seed: int, index: int) -> Any:
    """Image `index`'s own generator: seeded from (seed, index), independent of its batch."""
    import torch

    state = np.random.SeedSequence((seed, int(index))).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator("cpu").manual_seed(int(state))


def _run(
    pipeline: Any,
    settings: EditSettings,
    images: list[Image.Image],
    masks: list[Image.Image] | None,
    generators: list,
    size: tuple[int, int],
) -> list[Image.Image]:
    """One pipeline call per batch (Qwen: per image); the edited PIL images at `size`."""
    height, width = size
    common = {"num_inference_steps": settings.steps, "output_type": "pil"}
    if settings.editor == "qwen_image_edit":
        # QwenImageEditPlusPipeline takes one prompt per call (diffusers 0.42 rejects more); its
        # `image` list holds several reference images for that one edit, so loop over images.
        # Its guidance_scale is read by guidance-distilled transformers only (guidance_embeds);
        # others warn on every call when given one.
        distilled = (
            settings.distilled_guidance if pipeline.transformer.config.guidance_embeds else None
        )
        return [
            pipeline(
                image=image,
                prompt=settings.prompt,
                negative_prompt=settings.negative_prompt,
                true_cfg_scale=settings.guidance,
                guidance_scale=distilled,
                height=height,
                width=width,
                generator=[generator],
                **common,
            ).images[0]
            for image, generator in zip(images, generators, strict=True)
        ]
    # The SD pipelines batch: one prompt (and negative prompt) per image, one generator each.
    prompts = {
        "prompt": [settings.prompt] * len(images),
        "negative_prompt": [settings.negative_prompt] * len(images),
        "guidance_scale": settings.guidance,
        "generator": generators,
    }
    if settings.editor == "instruct_pix2pix":
        # Its output has the size of its input image: it takes no height or width.
        output = pipeline(
            image=images, image_guidance_scale=settings.image_guidance, **prompts, **common
        )
    else:
        output = pipeline(
            image=images, mask_image=masks, height=height, width=width, **prompts, **common
        )
    flagged = output.nsfw_content_detected
    if flagged is not None and any(flagged):
        # The safety checker returns black images for these; the caller should know.
        warnings.warn(
            f"the safety checker blacked out {sum(flagged)} of {len(flagged)} edits",
            stacklevel=3,
        )
    return output.images
