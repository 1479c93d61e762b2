"""Manipulation specs: the config dicts that name a manipulation and its parameters.

A spec is a `kind` plus that kind's parameters, all required, e.g. `{"kind": "rotate", "angle":
90}` or `{"kind": "gaussian_noise", "sigma": 40, "seed": 0}`. `check_spec` rejects unknown kinds,
missing or misspelt keys and bad values, so a typo in a config fails at once instead of silently
running a different study.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from featlab.data.shapes import CHANGEABLE
from featlab.geometry import FLIP_OPS, ROTATION_OPS

SQUARE_COLOURS = ("red", "green", "blue", "yellow")  # see featlab.manipulate.masking.SQUARES


@dataclasses.dataclass(frozen=True)
class _Param:
    """How to check one parameter, and what to say when the check fails."""

    check: Callable[[Any], bool]
    allowed: str  # what the check accepts, for error messages


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_non_negative(value: Any) -> bool:
    is_number = isinstance(value, Real) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value >= 0


def _choice(values: tuple) -> _Param:
    return _Param(lambda value: value in values, f"one of {list(values)}")


_INTEGER = _Param(_is_int, "an integer")
_SEED = _Param(lambda value: _is_int(value) and value >= 0, "a non-negative integer")
_STD = _Param(_is_non_negative, "a non-negative number")

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
}
MANIPULATION_KINDS = tuple(_PARAMETERS)
GEOMETRIC_KINDS = ("rotate", "flip")  # exact spatial ops; see featlab.geometry.spatial_op_of


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a manipulation spec and return it as a plain dict.

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
    # 3. Every parameter present and valid.
    for name, parameter in parameters.items():
        if name not in spec:
            raise ValueError(f"{kind}: missing key {name!r}, {parameter.allowed}")
        if not parameter.check(spec[name]):
            raise ValueError(f"{kind}: bad {name!r} {spec[name]!r}; use {parameter.allowed}")
    return dict(spec)
