"""Manipulation specs: the config dicts that name a manipulation and its parameters.

A spec is a `kind` plus that kind's parameters, e.g. `{"kind": "rotate", "angle": 90}` or
`{"kind": "gaussian_noise", "sigma": 40, "seed": 0}`. Parameters are required, except the
generative editor's settings, which default to the FeatMap paper's. `check_spec` rejects unknown
kinds, missing or misspelt keys and bad values, so a typo in a config fails at once instead of
silently running a different study.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from featlab.data.shapes import CHANGEABLE
from featlab.geometry import FLIP_OPS, ROTATION_OPS

# Generative editor name -> the diffusers pipeline class that runs it (featlab.manipulate.editors).
EDITORS = {
    "qwen_image_edit": "QwenImageEditPlusPipeline",
    "instruct_pix2pix": "StableDiffusionInstructPix2PixPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
}
SQUARE_COLOURS = ("red", "green", "blue", "yellow")  # see featlab.manipulate.masking.SQUARES


_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class _Param:
    """How to check one parameter, and what to say when the check fails."""

    check: Callable[[Any], bool]
    allowed: str  # what the check accepts, for error messages
    default: Any = _REQUIRED


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_non_negative(value: Any) -> bool:
    is_number = isinstance(value, Real) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value >= 0


def _choice(values: tuple) -> _Param:
    return _Param(lambda value: value in values, f"one of {list(values)}")


def _is_region(value: Any) -> bool:
    """A box [top, left, bottom, right] in fractions of the image's height and width."""
    if not (isinstance(value, list | tuple) and len(value) == 4):
        return False
    if not all(is_non_negative(v) and v <= 1 for v in value):
        return False
    return value[0] < value[2] and value[1] < value[3]


def _is_filter(value: Any) -> bool:
    """None, or {min_changed, max_changed}: the range of changed-pixel fractions kept."""
    if value is None:
        return True
    if not (isinstance(value, Mapping) and set(value) == {"min_changed", "max_changed"}):
        return False
    low, high = value["min_changed"], value["max_changed"]
    return all(is_non_negative(v) and v <= 1 for v in (low, high)) and low < high


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


_INTEGER = _Param(is_int, "an integer")
_SEED = _Param(lambda value: is_int(value) and value >= 0, "a non-negative integer")
_STD = _Param(is_non_negative, "a non-negative number")

# Each kind's parameters. Geometric kinds come first; their values are those featlab.geometry maps
# to spatial ops.
_PARAMETERS: dict[str, dict[str, _Param]] = {
    "rotate": {"angle": _choice(tuple(ROTATION_OPS))},  # degrees counter-clockwise
    "flip": {"axis": _choice(tuple(FLIP_OPS))},
    "hue_shift": {"shift": _INTEGER},  # on Pillow's 0-255 hue scale, taken mod 256
    "grayscale": {},
    "gaussian_noise": {"sigma": _STD, "seed": _SEED},  # sigma on the 0-255 scale
    "mask_square": {"colour": _choice(SQUARE_COLOURS)},
    "counterfactual": {"change": _choice(CHANGEABLE), "seed": _SEED},
    # A generative editor's edit of each photo (featlab.manipulate.editors); the defaults are the
    # FeatMap paper's Qwen-Image-Edit settings.
    "semantic": {
        "editor": _choice(EDITORS),
        "model": _Param(lambda value: _is_text(value) and value != "", "a hub id or a folder"),
        "prompt": _Param(lambda value: _is_text(value) and value.strip() != "", "an instruction"),
        "negative_prompt": _Param(_is_text, "a string", " "),
        "steps": _Param(lambda value: is_int(value) and value >= 1, "an integer >= 1", 10),
        "guidance": _Param(is_non_negative, "a non-negative number", 4.5),
        "distilled_guidance": _Param(is_non_negative, "a non-negative number", 1.0),
        "image_guidance": _Param(is_non_negative, "a non-negative number", 1.5),
        "seed": _Param(_SEED.check, _SEED.allowed, 42),
        "edit_size": _Param(
            lambda value: value is None or (is_int(value) and value >= 8),
            "null (the image's size) or an integer >= 8",
            None,
        ),
        "region": _Param(
            lambda value: value is None or _is_region(value),
            "null, or [top, left, bottom, right] in fractions of the image (inpaint)",
            None,
        ),
        "filter": _Param(
            _is_filter, "null, or {min_changed, max_changed} fractions with min < max", None
        ),
    },
}
MANIPULATION_KINDS = tuple(_PARAMETERS)
GEOMETRIC_KINDS = ("rotate", "flip")  # exact spatial ops; see featlab.geometry.spatial_op_of
EDITED_KINDS = ("semantic",)  # by generative editors, in shards; the other kinds are computed


def check_spec(spec: Mapping[str, Any], *, allow_no_op: bool = False) -> dict[str, Any]:
    """Validate a manipulation spec and return it as a plain dict.

    Args:
        spec: The manipulation, e.g. `{"kind": "rotate", "angle": 90}`.
        allow_no_op: Accept parameters that leave every image unchanged (a hue shift by a whole
            turn, noise of sigma 0). A study refuses them: every mapping would fit the unchanged
            features perfectly, and the study would measure nothing.

    Raises:
        ValueError: for an unknown kind, a missing or unknown parameter, or a bad value; the
            message names the key and the values it allows.
    """
    # 1. The kind.
    if not isinstance(spec, Mapping):
        raise ValueError(f"a manipulation spec is a dict with a 'kind', got {spec!r}")
    kind = spec.get("kind")
    if kind not in MANIPULATION_KINDS:
        raise ValueError(
            f"unknown manipulation kind {kind!r}; choose one of {list(MANIPULATION_KINDS)}"
        )
    # 2. No unknown keys: a misspelt key would otherwise be ignored.
    parameters = _PARAMETERS[kind]
    unknown = sorted(set(spec) - {"kind", *parameters})
    if unknown:
        raise ValueError(f"{kind}: unknown key(s) {unknown}; its keys are {list(parameters)}")
    # 3. Every parameter present (or defaulted) and valid.
    checked = {"kind": kind}
    for name, parameter in parameters.items():
        if name not in spec and parameter.default is _REQUIRED:
            raise ValueError(f"{kind}: missing key {name!r}, {parameter.allowed}")
        value = spec.get(name, parameter.default)
        if not parameter.check(value):
            raise ValueError(f"{kind}: bad {name!r} {value!r}; use {parameter.allowed}")
        checked[name] = value
    # 4. What one parameter means for another.
    if kind == "semantic" and (checked["editor"] == "inpaint") != (checked["region"] is not None):
        raise ValueError("semantic: 'region' is the inpaint editor's mask: set it for inpaint only")
    # 5. Parameters that change nothing.
    if not allow_no_op:
        _check_changes(checked)
    return checked


def _check_changes(spec: dict[str, Any]) -> None:
    """Stop on the parameters known to leave every image unchanged."""
    if spec["kind"] == "hue_shift" and spec["shift"] % 256 == 0:
        raise ValueError(
            f"hue_shift: shift {spec['shift']} turns the hue a whole circle (a multiple of 256 "
            "on the 0-255 hue scale) and changes nothing; choose a shift that is not"
        )
    if spec["kind"] == "gaussian_noise" and spec["sigma"] == 0:
        raise ValueError("gaussian_noise: sigma 0 adds no noise and changes nothing; set sigma > 0")
