"""Analytic and oversampled PSF models: elliptical Moffat profiles, shape fits, ePSFs.

* :func:`moffat_psf` renders a pixel-integrated elliptical, rotated Moffat (or Gaussian)
  profile with the conventions of :class:`astrid.science.simulate_model.AnalyticPSF`: ``fwhm`` is
  the geometric mean ``sqrt(fwhm_major * fwhm_minor)`` in pixels, ``ellipticity`` is
  ``1 - b/a`` and ``angle`` the position angle of the major axis in degrees,
  counter-clockwise from +x.
* :func:`fit_moffat` fits that profile (with a free centre, amplitude and Moffat index) to a
  PSF image and returns its :class:`PSFShape`; it is how AstrID measures the FWHM,
  ellipticity and orientation of an empirical PSF, and the fallback model when only a few
  stars are available.
* :func:`build_epsf` builds an oversampled effective PSF (Anderson & King 2000) with
  photutils' ``EPSFBuilder`` from star positions and evaluates it back on the native pixel
  grid; it is used when the PSF is undersampled, where stacking at the native sampling with
  spline recentring blurs the core.
* :func:`psf_moments` measures FWHM and ellipticity components with adaptive
  Gaussian-weighted moments (cheap; used to compare PSFs).

All arrays are float; PSF images are odd-sized, centred on the central pixel and normalised
to unit sum. Positions and sizes are in pixels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from astrid.errors import AstridError
from astrid.science.stats import FWHM_PER_SIGMA

__all__ = [
    "EPSFBuildError",
    "PSFShape",
    "build_epsf",
    "fit_moffat",
    "moffat_psf",
    "psf_moments",
]

_OVERSAMPLE = 3  # sub-pixels per pixel when integrating a profile over the pixels


class EPSFBuildError(AstridError):
    """An oversampled ePSF could not be built (too few usable stars, bad cut-outs...)."""


@dataclass(frozen=True)
class PSFShape:
    """Shape of a PSF from an elliptical Moffat fit.

    Attributes
    ----------
    fwhm : float
        Geometric-mean FWHM ``sqrt(fwhm_major * fwhm_minor)`` in pixels.
    ellipticity : float
        ``1 - b/a`` (0 = round).
    angle : float
        Position angle of the major axis in degrees, counter-clockwise from +x, in
        [-90, 90).
    beta : float
        Moffat index (large = Gaussian-like core and faint wings).
    residual : float
        RMS of the fit residual divided by the PSF's peak (0 = perfect fit).
    """

    fwhm: float
    ellipticity: float
    angle: float
    beta: float
    residual: float

    def angle_difference(self, other_angle: float) -> float:
        """Smallest difference in degrees (0-90) between this angle and another (mod 180)."""
        d = (self.angle - other_angle + 90.0) % 180.0 - 90.0
        return abs(d)


def _profile(
    dx: np.ndarray, dy: np.ndarray, fwhm: float, beta: float | None, e: float, angle: float
) -> np.ndarray:
    q = math.sqrt(max(1.0 - e, 1e-3))
    theta = math.radians(angle)
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    fa, fb = fwhm / q, fwhm * q
    if beta is None:
        sa, sb = fa / FWHM_PER_SIGMA, fb / FWHM_PER_SIGMA
        return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))
    k = 2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    return (1.0 + (u / (fa / k)) ** 2 + (v / (fb / k)) ** 2) ** (-beta)


def _render(
    size: int,
    fwhm: float,
    beta: float | None,
    e: float,
    angle: float,
    x0: float = 0.0,
    y0: float = 0.0,
    oversample: int = _OVERSAMPLE,
) -> np.ndarray:
    """Pixel-integrated profile on a (size, size) grid centred on the central pixel + (x0, y0)."""
    half = size // 2
    sub = (np.arange(size * oversample) + 0.5) / oversample - 0.5 - half
    fine = _profile(sub[None, :] - x0, sub[:, None] - y0, fwhm, beta, e, angle)
    return fine.reshape(size, oversample, size, oversample).mean(axis=(1, 3))


def moffat_psf(
    fwhm: float,
    beta: float | None = 3.0,
    ellipticity: float = 0.0,
    angle: float = 0.0,
    size: int | None = None,
) -> np.ndarray:
    """A pixel-integrated elliptical Moffat (or Gaussian, ``beta=None``) PSF.

    Parameters
    ----------
    fwhm : float
        Geometric-mean FWHM in pixels (> 0).
    beta : float or None
        Moffat index (> 1); ``None`` for a Gaussian.
    ellipticity : float
        ``1 - b/a`` in [0, 0.9).
    angle : float
        Major-axis position angle in degrees, counter-clockwise from +x.
    size : int, optional
        Side in pixels (made odd); default ``2 * ceil(4 * fwhm / sqrt(1 - e)) + 1``.

    Returns
    -------
    numpy.ndarray
        Shape (size, size), float32, unit sum, centred on the central pixel.

    Raises
    ------
    ValueError
        If the FWHM, index or ellipticity is out of range.
    """
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"fwhm must be a positive number of pixels, not {fwhm}")
    if beta is not None and not beta > 1.0:
        raise ValueError(f"the Moffat index must be > 1, not {beta}")
    if not 0.0 <= ellipticity < 0.9:
        raise ValueError(f"ellipticity must be in [0, 0.9), not {ellipticity}")
    if size is None:
        size = 2 * int(math.ceil(4.0 * fwhm / math.sqrt(1.0 - ellipticity))) + 1
    size = int(size) | 1
    psf = _render(size, fwhm, beta, ellipticity, angle)
    return (psf / psf.sum()).astype(np.float32)


def fit_moffat(psf: np.ndarray, *, fit_radius: float | None = None) -> PSFShape:
    """Fit an elliptical Moffat profile to a PSF image.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF image, shape (n, n) with odd n, roughly centred, any normalisation.
    fit_radius : float, optional
        Fit only pixels within this radius of the centre (default: 4 × the moment FWHM,
        at least 6 px).

    Returns
    -------
    PSFShape
        FWHM, ellipticity and angle of the best-fitting Moffat profile.

    Raises
    ------
    ValueError
        If the image is not a finite, odd-sized square with a positive peak.
    """
    from scipy.optimize import least_squares

    arr = np.asarray(psf, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] % 2 == 0:
        raise ValueError(f"the PSF must be an odd-sized square image, not shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.max() <= 0:
        raise ValueError("the PSF must be finite with a positive peak")
    n = arr.shape[0]
    half = n // 2
    peak = float(arr.max())
    data = arr / peak
    # Starting values from second moments of the positive core.
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    w = np.clip(data, 0, None) * (np.hypot(xx, yy) <= min(half, 8))
    tot = w.sum()
    cxx, cyy = (w * xx**2).sum() / tot, (w * yy**2).sum() / tot
    cxy = (w * xx * yy).sum() / tot
    fwhm0 = float(np.clip(FWHM_PER_SIGMA * math.sqrt(max((cxx + cyy) / 2.0, 0.1)), 0.8, n / 2))
    if fit_radius is None:
        fit_radius = max(6.0, 4.0 * fwhm0)
    r = int(min(half, math.ceil(fit_radius)))
    sub = data[half - r : half + r + 1, half - r : half + r + 1]
    e1_0 = (cxx - cyy) / max(cxx + cyy, 1e-6)
    e2_0 = 2.0 * cxy / max(cxx + cyy, 1e-6)

    def model(p: np.ndarray) -> np.ndarray:
        amp, x0, y0, lf, e1, e2, lb = p
        e = min(math.hypot(e1, e2), 0.85)
        ang = 0.5 * math.degrees(math.atan2(e2, e1))
        beta = 1.0 + math.exp(lb)
        prof = _render(2 * r + 1, math.exp(lf), beta, e, ang, x0, y0)
        return amp * prof / prof.max()

    def resid(p: np.ndarray) -> np.ndarray:
        return (model(p) - sub).ravel()

    p0 = np.array([1.0, 0.0, 0.0, math.log(fwhm0), e1_0 / 2, e2_0 / 2, math.log(2.0)])
    lo = [0.1, -2.0, -2.0, math.log(0.5), -0.85, -0.85, math.log(0.05)]
    hi = [3.0, 2.0, 2.0, math.log(n), 0.85, 0.85, math.log(30.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = least_squares(resid, np.clip(p0, lo, hi), bounds=(lo, hi), x_scale="jac",
                            max_nfev=400)  # fmt: skip
    _amp, _x0, _y0, lf, e1, e2, lb = fit.x
    e = float(min(math.hypot(e1, e2), 0.85))
    ang = 0.5 * math.degrees(math.atan2(e2, e1))
    ang = (ang + 90.0) % 180.0 - 90.0
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    return PSFShape(float(math.exp(lf)), e, float(ang), float(1.0 + math.exp(lb)), rms)


def psf_moments(psf: np.ndarray) -> tuple[float, float, float]:
    """FWHM (px) and ellipticity components (e1, e2) from adaptive Gaussian-weighted moments.

    The weight is a round Gaussian matched to the PSF (iterated: for a Gaussian PSF of
    width sigma the weighted second moment is sigma² / 2), so the wings and the noise of an
    empirical PSF do not dominate; ``e1 = (Ixx - Iyy) / (Ixx + Iyy)``, ``e2 = 2 Ixy /
    (Ixx + Iyy)`` of the weighted moments. For a Moffat PSF the FWHM is that of the matched
    Gaussian (close to, not equal to, the true FWHM); use it to compare PSFs.

    Parameters
    ----------
    psf : numpy.ndarray
        Centred PSF, shape (n, n), n odd.

    Returns
    -------
    tuple of float
        ``(fwhm, e1, e2)``.
    """
    arr = np.asarray(psf, dtype=np.float64)
    h = arr.shape[0] // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    r2 = xx**2 + yy**2
    sig2 = 2.0
    ixx = iyy = ixy = 0.0
    for _ in range(12):
        w = arr * np.exp(-0.5 * r2 / sig2)
        tot = w.sum()
        if tot <= 0:
            return float("nan"), 0.0, 0.0
        ixx = float((w * xx**2).sum() / tot)
        iyy = float((w * yy**2).sum() / tot)
        ixy = float((w * xx * yy).sum() / tot)
        new = float(np.clip(ixx + iyy, 0.05, h * h))  # 2 x the mean weighted moment
        if abs(new - sig2) < 1e-4 * sig2:
            break
        sig2 = new
    tr = max(ixx + iyy, 1e-9)
    return float(FWHM_PER_SIGMA * np.sqrt(tr)), (ixx - iyy) / tr, 2.0 * ixy / tr


def build_epsf(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    *,
    mask: np.ndarray | None = None,
    oversampling: int = 2,
    maxiters: int = 5,
    min_stars: int = 10,
) -> np.ndarray:
    """Oversampled ePSF from stars with photutils' ``EPSFBuilder``, on the native grid.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image, shape (ny, nx).
    x, y : numpy.ndarray
        Star centres in pixels (0-based), shape (k,); isolated, unsaturated stars.
    size : int
        Side of the returned PSF in pixels (odd).
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx); stars with a masked pixel in their cut-out are
        dropped.
    oversampling : int
        ePSF samples per pixel along each axis.
    maxiters : int
        EPSFBuilder iterations.
    min_stars : int
        Fewest stars accepted.

    Returns
    -------
    numpy.ndarray
        Shape (size, size), float32, unit sum: the ePSF evaluated at the native pixel
        centres around a star centred on the central pixel.

    Raises
    ------
    EPSFBuildError
        If fewer than ``min_stars`` clean cut-outs remain or photutils fails.
    """
    from astropy.nddata import NDData
    from astropy.table import Table
    from photutils.psf import EPSFBuilder, extract_stars

    size = int(size) | 1
    half = size // 2
    data = np.asarray(image, dtype=np.float64)
    ny, nx = data.shape
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    ix, iy = np.round(xs).astype(int), np.round(ys).astype(int)
    ok = (ix > half + 1) & (iy > half + 1) & (ix < nx - half - 2) & (iy < ny - half - 2)
    if mask is not None:
        for k in np.flatnonzero(ok):
            if mask[iy[k] - half : iy[k] + half + 1, ix[k] - half : ix[k] + half + 1].any():
                ok[k] = False
    if ok.sum() < min_stars:
        raise EPSFBuildError(f"only {int(ok.sum())} clean star cut-out(s) (need {min_stars})")
    # Cut-outs a little larger than the PSF so that recentring has room.
    cut = size + 2 * oversampling
    stars = extract_stars(NDData(data=data), Table({"x": xs[ok], "y": ys[ok]}), size=(cut, cut))
    if len(stars) < min_stars:
        raise EPSFBuildError(f"only {len(stars)} star cut-out(s) extracted (need {min_stars})")
    builder = EPSFBuilder(oversampling=oversampling, maxiters=maxiters, progress_bar=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = builder(stars)
    except Exception as exc:  # photutils raises a variety of ValueErrors on bad stars
        raise EPSFBuildError(f"EPSFBuilder failed: {exc}") from exc
    epsf = result[0] if isinstance(result, tuple) else getattr(result, "epsf", result)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    native = np.asarray(epsf(xx, yy), dtype=np.float64)
    if not np.all(np.isfinite(native)) or native.sum() <= 0:
        raise EPSFBuildError("the ePSF has no positive flux on the native grid")
    return (native / native.sum()).astype(np.float32)
