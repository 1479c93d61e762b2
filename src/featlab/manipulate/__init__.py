"""Image manipulations for FeatMap: geometric, photometric, local masking and semantic.

`manipulate(images, labels, spec)` applies one manipulation, given as a config dict such as
`{"kind": "hue_shift", "shift": 60}`, and returns the manipulated images, their labels and the
masks of the pixels that changed.
"""

from featlab.manipulate.change import MaskSettings, change_mask
from featlab.manipulate.core import Manipulated, manipulate, manipulate_store
from featlab.manipulate.masking import SQUARES, square_slice
from featlab.manipulate.spec import GEOMETRIC_KINDS, MANIPULATION_KINDS, check_spec

__all__ = [
    "GEOMETRIC_KINDS",
    "MANIPULATION_KINDS",
    "SQUARES",
    "Manipulated",
    "MaskSettings",
    "change_mask",
    "check_spec",
    "manipulate",
    "manipulate_store",
    "square_slice",
]
