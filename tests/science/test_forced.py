"""Forced PSF photometry: injection-recovery against the white-noise theory."""

from __future__ import annotations

import numpy as np
from photutils.psf import CircularGaussianPRF

from astrid.science.forced import forced_psf_flux, magnitude_or_limit

FWHM = 3.5
SIGMA = 2.0


def _image(rng: np.random.Generator, flux: float, x: float, y: float) -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64]
    return CircularGaussianPRF(flux=flux, x_0=x, y_0=y, fwhm=FWHM)(xx, yy) + rng.normal(
        0, SIGMA, (64, 64)
    )


def test_injected_fluxes_are_recovered_with_the_theoretical_error() -> None:
    """Error = σ·sqrt(4π)·s for a Gaussian PSF (s = FWHM/2.3548); pulls have unit width."""
    rng = np.random.default_rng(7)
    theory = SIGMA * np.sqrt(4 * np.pi) * FWHM / (2 * np.sqrt(2 * np.log(2)))
    pulls, errors = [], []
    for _ in range(120):
        flux = rng.uniform(0, 600)
        x, y = rng.uniform(28, 36, 2)
        got = forced_psf_flux(_image(rng, flux, x, y), x, y, FWHM, noise=SIGMA)
        assert got is not None
        pulls.append((got.flux - flux) / got.flux_err)
        errors.append(got.flux_err)
    # The fit window truncates the PSF wings a little: the error is within 5 % of theory.
    assert abs(np.median(errors) / theory - 1) < 0.05
    assert abs(np.mean(pulls)) < 0.3
    assert 0.8 < np.std(pulls) < 1.2


def test_noise_is_estimated_from_the_image_when_not_given() -> None:
    rng = np.random.default_rng(3)
    got = forced_psf_flux(_image(rng, 0.0, 32.0, 32.0), 32.0, 32.0, FWHM)
    assert got is not None
    assert abs(got.noise / SIGMA - 1) < 0.1
    assert abs(got.flux) < 4 * got.flux_err


def test_off_image_and_limits() -> None:
    img = np.zeros((20, 20))
    assert forced_psf_flux(img, -3.0, 5.0, FWHM, noise=1.0) is None
    assert forced_psf_flux(np.full((20, 20), np.nan), 10.0, 10.0, FWHM) is None
    mag, err, limit = magnitude_or_limit(1000.0, 10.0, 25.0)
    assert mag is not None and err is not None and limit is None
    assert abs(mag - (25.0 - 2.5 * np.log10(1000.0))) < 1e-9
    assert abs(err - 1.0857 * 0.01) < 1e-4
    mag, err, limit = magnitude_or_limit(5.0, 10.0, 25.0)
    assert mag is None and limit is not None
    assert abs(limit - (25.0 - 2.5 * np.log10(50.0))) < 1e-9
    assert magnitude_or_limit(5.0, 10.0, None) == (None, None, None)
