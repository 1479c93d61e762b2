"""Edits: a flat parameter vector in a domain, rendered to an image.

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
"""

from collections import OrderedDict

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import torch
from plenoptic.process import SteerablePyramidFreq

from featlab.lens.settings import LensSettings


class Edit:
    """An edit of one source image (1, 3, H, W) in [0, 1]; zero parameters give the source."""

    n_params: int
    step_cap: float  # the iterative variant's largest change of one parameter per step

    def __init__(self, source: torch.Tensor):
        self.source = source

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        """The change (1, 3, H, W) that the parameters make to the source, before clipping."""
        raise NotImplementedError

    def render(self, theta: torch.Tensor) -> torch.Tensor:
        return (self.source + self.change(theta)).clamp(0.0, 1.0)

    def distance(self, theta: torch.Tensor) -> float:
        """||render(theta) - source||_2 over all pixels and channels."""
        with torch.no_grad():
            return float(torch.linalg.vector_norm(self.render(theta) - self.source))


def _polar_factor(theta: torch.Tensor, n: int, amplitude: bool) -> torch.Tensor:
    """exp(eta + i*delta) - 1, (n,) complex, for theta = delta or theta = [delta, eta]."""
    delta = theta[:n]
    eta = theta[n:] if amplitude else torch.zeros_like(delta)
    return torch.expm1(torch.complex(eta, delta))


class PixelEdit(Edit):
    def __init__(self, source: torch.Tensor, step_cap: float):
        super().__init__(source)
        self.n_params, self.step_cap = source.numel(), step_cap

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.view_as(self.source)


class FourierEdit(Edit):
    """Phases (and log-amplitudes) of the image's 2-D Fourier coefficients, per channel."""

    def __init__(self, source: torch.Tensor, amplitude: bool, step_cap: float):
        super().__init__(source)
        self.coefficients = torch.fft.rfft2(source)  # (1, 3, H, W // 2 + 1) complex
        self.amplitude, self.step_cap = amplitude, step_cap
        self.n_params = self.coefficients.numel() * (2 if amplitude else 1)

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        factor = _polar_factor(theta, self.coefficients.numel(), self.amplitude)
        edited = self.coefficients * factor.view_as(self.coefficients)
        return torch.fft.irfft2(edited, s=self.source.shape[-2:])


class SteerableEdit(Edit):
    """Phases (and log-amplitudes) of the complex steerable pyramid's bands; residuals fixed."""

    def __init__(
        self, source: torch.Tensor, amplitude: bool, step_cap: float, settings: LensSettings
    ):
        super().__init__(source)
        self.pyramid = SteerablePyramidFreq(
            tuple(source.shape[-2:]),
            height="auto" if settings.height is None else settings.height,
            order=settings.orientations - 1,
            is_complex=True,
        ).to(source.dtype)
        with torch.no_grad():
            # {"residual_highpass": (1, 3, H, W), scale s: (1, 3, K, H / 2^s, W / 2^s) complex,
            #  "residual_lowpass": (1, 3, h, w)}
            self.coefficients = self.pyramid(source)
        self.bands = [key for key in self.coefficients if isinstance(key, int)]
        self.sizes = [self.coefficients[key].numel() for key in self.bands]
        self.amplitude, self.step_cap = amplitude, step_cap
        self.n_params = sum(self.sizes) * (2 if amplitude else 1)

    def change(self, theta: torch.Tensor) -> torch.Tensor:
        factors = _polar_factor(theta, sum(self.sizes), self.amplitude).split(self.sizes)
        # The residuals do not change; each band changes by c * (exp(eta + i*delta) - 1).
        edited = OrderedDict((key, torch.zeros_like(c)) for key, c in self.coefficients.items())
        for key, factor in zip(self.bands, factors, strict=True):
            edited[key] = self.coefficients[key] * factor.view_as(self.coefficients[key])
        return self.pyramid.recon_pyr(edited)


def make_edit(method: str, source: torch.Tensor, settings: LensSettings) -> Edit:
    """The edit of `method` (one of METHODS) on a source image (1, 3, H, W) in [0, 1]."""
    if method == "pixel":
        return PixelEdit(source, settings.pixel_step)
    domain, _, parameterisation = method.partition("_")
    amplitude = parameterisation == "phase_amplitude"
    if domain == "fourier":
        return FourierEdit(source, amplitude, settings.phase_step)
    return SteerableEdit(source, amplitude, settings.phase_step, settings)
