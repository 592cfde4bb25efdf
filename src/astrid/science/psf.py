"""A point-spread function: the :class:`PSFEstimate` record, the Gaussian model, centring.

The PSF arrays every PSF module passes around are odd-sized, centred on the central pixel and
normalised to unit sum; sizes in pixels. :func:`gaussian_psf` is the pixel-integrated circular
Gaussian (the documented fallback and the tests' reference), :func:`recentre_psf` puts a PSF's
centroid on the central pixel. Where PSFs come from: :mod:`astrid.science.psf_stars` (the stars
they are built from), :mod:`astrid.science.psf_estimate` (the empirical PSF of an image),
:mod:`astrid.science.psf_model` (ePSF, Moffat, moments), :mod:`astrid.science.psf_spatial`
(PSFs varying across the field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astrid.errors import AstridError
from astrid.science.stats import FWHM_PER_SIGMA

__all__ = ["PSFError", "PSFEstimate", "gaussian_psf", "recentre_psf"]


class PSFError(AstridError):
    """A PSF could not be built from the given input (bad shape, no finite pixels...)."""


@dataclass(frozen=True)
class PSFEstimate:
    """A PSF estimate.

    Attributes
    ----------
    array : numpy.ndarray
        PSF image, shape (size, size) with odd ``size``, float32, unit sum, centred on the
        central pixel.
    fwhm : float
        FWHM in pixels (from the second moments of ``array``).
    n_stars : int
        Number of stars stacked (0 for a pure model).
    fallback : bool
        True when the PSF is the documented Gaussian fallback, not an empirical stack.
    reason : str
        Why the fallback was used (empty otherwise).
    method : str
        How it was made: ``"stack"`` (native-sampling stack of stars), ``"epsf"``
        (photutils' oversampled ePSF), ``"moffat"`` (elliptical Moffat fitted to a few
        stars; a fallback), ``"gaussian"`` (fallback), ``"given"`` (supplied by the caller)
        or ``"whole-image"`` (a tile of a PSF grid with too few stars of its own).
    """

    array: np.ndarray
    fwhm: float
    n_stars: int
    fallback: bool = False
    reason: str = ""
    method: str = "stack"

    @property
    def size(self) -> int:
        """Side of the PSF array in pixels."""
        return int(self.array.shape[0])


def gaussian_psf(fwhm: float, size: int | None = None) -> np.ndarray:
    """A circular Gaussian PSF.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (> 0).
    size : int, optional
        Side in pixels (made odd); default ``2 * ceil(3 * fwhm) + 1``.

    Returns
    -------
    numpy.ndarray
        Shape (size, size), float32, unit sum.
    """
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise PSFError(f"the Gaussian FWHM must be a positive number of pixels, not {fwhm}")
    if size is None:
        size = 2 * int(np.ceil(3.0 * fwhm)) + 1
    size = int(size) | 1
    sigma = fwhm / FWHM_PER_SIGMA
    half = size // 2
    # Integrate over the pixel (error functions) so narrow PSFs keep their true flux.
    from scipy.special import erf

    edges = (np.arange(-half, half + 2) - 0.5) / (np.sqrt(2.0) * sigma)
    profile = np.diff(0.5 * erf(edges))
    psf = np.outer(profile, profile)
    return (psf / psf.sum()).astype(np.float32)


def _moments_fwhm(psf: np.ndarray) -> float:
    ny, nx = psf.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    w = np.clip(psf, 0, None)
    total = w.sum()
    if total <= 0:
        return float("nan")
    cx, cy = (w * xx).sum() / total, (w * yy).sum() / total
    var = ((w * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / total) / 2.0
    return float(FWHM_PER_SIGMA * np.sqrt(max(var, 1e-6)))


def recentre_psf(psf: np.ndarray) -> np.ndarray:
    """Shift a PSF so that its centroid lies on the central pixel and renormalise it.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF array, shape (n, n) with odd n.

    Returns
    -------
    numpy.ndarray
        Shape (n, n), float32, unit sum, centroid within ~0.01 pixel of the centre.
    """
    psf = np.asarray(psf, dtype=np.float64)
    half = psf.shape[0] // 2
    for _ in range(3):
        w = np.clip(psf, 0, None)
        r = min(half, 6)
        core = w[half - r : half + r + 1, half - r : half + r + 1]
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        cx, cy = (core * xx).sum() / core.sum(), (core * yy).sum() / core.sum()
        if abs(cx) < 0.005 and abs(cy) < 0.005:
            break
        psf = ndimage.shift(psf, (-cy, -cx), order=3, mode="constant")
    psf /= psf.sum()
    return psf.astype(np.float32)
