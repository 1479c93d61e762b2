"""Steerable lens: how does a classifier move an image from its class to a target class?

An edit of a source image is a flat parameter vector theta in one of three domains:

- ``steerable``: the complex bands c of plenoptic's ``SteerablePyramidFreq(is_complex=True)``
  become c * exp(eta + i*delta); ``_phase`` edits the phases delta only (eta = 0),
  ``_phase_amplitude`` edits delta and the log-amplitudes eta jointly. The highpass and lowpass
  residuals stay fixed.
- ``fourier``: the same parameterisation of the image's 2-D Fourier coefficients (``rfft2``; the
  inverse keeps the real part where the half spectrum holds both members of a conjugate pair).
- ``pixel``: theta is added to the pixels.

The edited image is the source plus the change the edit makes to the real part of the
reconstruction, clipped to [0, 1]: clip(source + R(c * (exp(eta + i*delta) - 1))). The
reconstruction R is (real-)linear, so this is the reconstruction of the edited coefficients with
the pyramid's tiny round-trip error left out, and zero parameters return the source exactly.

Two morphs extrapolate toward the target class; the objective is the target's log-probability
(or its logit margin over the best other class) under the driving classifier:

- ``one_step``: the gradient g at the source is amplified, theta(s) = s * g / max|g|; frames at
  evenly spaced s from 0 to the s that meets the budget;
- ``iterative``: the gradient is taken again after every step, and a step changes no parameter
  by more than a cap (``phase_step`` radians, or ``pixel_step`` for pixels): cap * g / max|g|.
  The path is cut where it meets the budget; frames are evenly spaced along it. A walk that
  settles (the classifier content) before the largest budget after ``max_steps`` steps goes on
  in a straight line: its end point is amplified until it reaches the budget.

Every morph meets each image-space L2 budget: the amplification (or the last step's fraction) is
bracketed and bisected so that ||final frame - source||_2, pixels in [0, 1] over all channels,
equals the budget within ``budget_tolerance``. A budget that a method cannot reach stops the run.

How much of a change is a smooth warp (and gain)? A displacement field on a coarse control grid,
upsampled bicubically, warps the source (bilinear sampling) toward the final frame; warp plus
gain multiplies the warped image by a smooth gain field on the same grid. The share explained is
1 - ||final - model||^2 / ||final - source||^2 (see ``explained_share``).

The package by concern: `settings`, `edits` (the domains), `classifier` (the driving and the
reading classifiers), `morphs`, `warp` and `cases`; the strips and GIFs are drawn in
`featlab.plots.lens`.
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
