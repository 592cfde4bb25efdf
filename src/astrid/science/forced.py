"""Forced PSF photometry at a fixed position of a difference image (light-curve points).

The position and PSF are fixed; only the flux is fitted (photutils ``PSFPhotometry`` with a
circular Gaussian PRF), so the estimate is the linear PSF-weighted flux and its error is
``σ · sqrt(4π) · s`` for white noise σ per pixel and a Gaussian of width ``s = FWHM / 2.355``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from photutils.psf import CircularGaussianPRF, PSFPhotometry

__all__ = ["ForcedFlux", "forced_psf_flux", "magnitude_or_limit"]


@dataclass(frozen=True)
class ForcedFlux:
    """Flux and 1-σ error (image units) at a position; ``noise`` is σ per pixel used."""

    flux: float
    flux_err: float
    noise: float


def forced_psf_flux(
    image: np.ndarray,
    x: float,
    y: float,
    fwhm: float,
    *,
    noise: float | None = None,
    box: int = 64,
) -> ForcedFlux | None:
    """PSF flux at pixel (x, y) (0-based, x along columns) of a 2-D ``image``.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Difference image (background ~ 0); NaN pixels are ignored.
    x, y : float
        Position in pixels.
    fwhm : float
        PSF full width at half maximum, pixels.
    noise : float, optional
        σ per pixel; default: sigma-clipped standard deviation of a ``box`` around (x, y).

    Returns
    -------
    ForcedFlux or None
        None when the position is off the image or its neighbourhood is all NaN.
    """
    ny, nx = image.shape
    if not (0 <= x < nx - 0.5 and 0 <= y < ny - 0.5) or not np.isfinite(fwhm) or fwhm <= 0:
        return None
    half = max(box // 2, int(3 * fwhm))
    x0, x1 = max(0, int(x) - half), min(nx, int(x) + half + 1)
    y0, y1 = max(0, int(y) - half), min(ny, int(y) + half + 1)
    cut = np.asarray(image[y0:y1, x0:x1], dtype=float)
    finite = np.isfinite(cut)
    if finite.sum() < 9:
        return None
    if noise is None:
        _, _, noise = sigma_clipped_stats(cut[finite], sigma=3.0)
    noise = float(noise)
    if not np.isfinite(noise) or noise <= 0:
        return None
    model = CircularGaussianPRF(fwhm=fwhm)
    model.x_0.fixed = True
    model.y_0.fixed = True
    model.fwhm.fixed = True
    size = int(2 * np.ceil(1.5 * fwhm) + 1)
    phot = PSFPhotometry(model, fit_shape=(size, size), aperture_radius=fwhm)
    init = Table({"x": [x - x0], "y": [y - y0], "flux": [0.0]})
    result = phot(
        np.where(finite, cut, 0.0),
        mask=~finite,
        error=np.full(cut.shape, noise),
        init_params=init,
    )
    flux, err = float(result["flux_fit"][0]), float(result["flux_err"][0])
    if not (np.isfinite(flux) and np.isfinite(err)) or err <= 0:
        return None
    return ForcedFlux(flux, err, noise)


def magnitude_or_limit(
    flux: float, flux_err: float, zero_point: float | None, *, snr_min: float = 3.0
) -> tuple[float | None, float | None, float | None]:
    """(mag, mag_err, limit): a magnitude when flux/err ≥ ``snr_min``, else a 5-σ upper limit.

    All None when there is no zero point (the point then carries flux only).
    """
    if zero_point is None:
        return None, None, None
    if flux > 0 and flux / flux_err >= snr_min:
        mag = float(zero_point - 2.5 * np.log10(flux))
        return mag, float(2.5 / np.log(10) * flux_err / flux), None
    return None, None, float(zero_point - 2.5 * np.log10(5.0 * flux_err))
