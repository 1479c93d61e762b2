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
