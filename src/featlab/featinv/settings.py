"""What a FeatInv model's settings must satisfy, checked without importing diffusers.

Planning (`rules/common.smk`) checks the config with these before any job runs, and
`model.build_model` checks the settings it builds from with the same functions.
"""

SCRATCH = "scratch"


def check_patch_size(base: str, resolution: int, patch_size: int) -> None:
    """Raise a ValueError naming `featinv.model.patch_size` unless it fits the base and resolution.

    Patches fold the image for a UNet trained from scratch; a pretrained base generates at its
    own latent grid, so it takes patch size 1.
    """
    if patch_size == 1:
        return
    if base != SCRATCH:
        raise ValueError(
            f"featinv.model.patch_size {patch_size} applies to base: {SCRATCH} only; set it to 1 "
            f"for the pretrained base {base!r}"
        )
    if patch_size < 1 or resolution % patch_size:
        raise ValueError(
            f"featinv.model.patch_size {patch_size} must be a positive divisor of "
            f"featinv.model.resolution {resolution}"
        )


PAPER_GUIDANCE = 1.75  # FeatInv's classifier-free guidance scale over the prompt


def resolve_guidance(base: str, guidance: float | None, prompt_drop_prob: float | None) -> float:
    """The guidance scale to sample with; raise a ValueError naming the keys where it cannot work.

    Guidance over the prompt extrapolates from the unconditional branch (hint kept, prompt
    dropped) toward the conditional one. The scratch base's prompt is a constant, so guidance
    there has nothing to extrapolate: by default it is off (1.0) for the scratch base and the
    paper's 1.75 for a pretrained one. Any scale other than 1 needs a model that saw the
    unconditional branch in training (`featinv.train.prompt_drop_prob` > 0).

    Args:
        base: `featinv.model.base`.
        guidance: `featinv.sample.guidance`; None picks the default for the base.
        prompt_drop_prob: `featinv.train.prompt_drop_prob` of the model, None when unknown (a
            model that was never trained by `train_featinv`).
    """
    if guidance is None:
        guidance = 1.0 if base == SCRATCH else PAPER_GUIDANCE
    if guidance != 1.0 and prompt_drop_prob == 0:
        raise ValueError(
            f"featinv.sample.guidance {guidance} extrapolates from a branch (hint kept, prompt "
            "dropped) that the model never saw in training: set featinv.train.prompt_drop_prob "
            "above 0 (0.1, say) and retrain, or set featinv.sample.guidance to 1.0"
        )
    return guidance
