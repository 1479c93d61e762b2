"""Steerable lens: how does a classifier move an image from its class to a target class?

An edit changes a source image through a flat parameter vector in one of three domains (`edits`:
the bands of a complex steerable pyramid, the Fourier coefficients, or the pixels). Morphs
extrapolate it toward the target class along the driving classifier's gradient (`classifier`),
each matched to an image-space L2 budget (`morphs`); a smooth warp (and gain) fitted to each final
change says how much of it is a deformation (`warp`). `cases` picks a case's test image, runs all
its morphs, reads them with every classifier and writes its files; `settings` holds what the
config sets. The strips and GIFs of a case are drawn in `featlab.plots.lens`.
"""

from featlab.lens.cases import ROW_METRICS, Case, CaseResult, load_case, morph_case
from featlab.lens.classifier import Classifier, load_classifier, objective_of
from featlab.lens.edits import Edit, FourierEdit, PixelEdit, SteerableEdit, make_edit
from featlab.lens.morphs import Morph, gradient, iterative, one_step
from featlab.lens.settings import (
    METHODS,
    OBJECTIVES,
    VARIANTS,
    LensSettings,
    WarpSettings,
    comparison_name,
)
from featlab.lens.warp import explained_share

__all__ = [
    "METHODS",
    "OBJECTIVES",
    "ROW_METRICS",
    "VARIANTS",
    "Case",
    "CaseResult",
    "Classifier",
    "Edit",
    "FourierEdit",
    "LensSettings",
    "Morph",
    "PixelEdit",
    "SteerableEdit",
    "WarpSettings",
    "comparison_name",
    "explained_share",
    "gradient",
    "iterative",
    "load_case",
    "load_classifier",
    "make_edit",
    "morph_case",
    "objective_of",
    "one_step",
]
