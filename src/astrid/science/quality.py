"""The image quality record: one pass over an image that composes the measurements.

:func:`assess_quality` (array in, :class:`QualityResult` out) runs, in the order the data
flows: saturation (:func:`saturation_mask`), background and noise
(:mod:`astrid.science.background`), cosmic rays (:mod:`astrid.science.cosmics`), star
detection and PSF size (:mod:`astrid.science.stars`), then depth
(:func:`limiting_magnitude`) and the score (:func:`quality_score`). No WCS is needed; a
header, when given, supplies gain, read noise, saturation and zero point.

Quality score (:func:`quality_score`), in [0, 1], the product of five factors, each in [0, 1]:

* ``usable`` — fraction of pixels not masked (bad, saturated, cosmic ray, non-finite);
* ``roundness`` — ``1 - ellipticity`` of the PSF (1 if unknown);
* ``sampling`` — 1 for a PSF FWHM between 1.5 and 8 px, falling as ``fwhm/1.5`` below and
  ``8/fwhm`` above (0 if no star was measured);
* ``flatness`` — ``1 / (1 + flatness)``, where flatness is the standard deviation of the
  background map in units of the pixel noise (a flat sky gives ~0);
* ``sources`` — ``min(1, n_sources / 20)`` with ``n_sources`` the detections above 5σ:
  enough sources to align the image and match its PSF.

Masks are True = excluded. Units: pixels, image units (ADU unless the header says otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from scipy import ndimage

from astrid.science.background import (
    BackgroundEstimate,
    _fraction,
    estimate_background,
    valid_pixels,
)
from astrid.science.cosmics import cosmic_ray_mask
from astrid.science.stars import PSFMeasurement, _detect_stars, _measure_psf
from astrid.science.stats import FWHM_PER_SIGMA

__all__ = [
    "ImageQuality",
    "QualityResult",
    "assess_quality",
    "header_zeropoint",
    "infer_saturation",
    "limiting_magnitude",
    "quality_score",
    "saturation_mask",
]


@dataclass(frozen=True)
class ImageQuality:
    """Plain record of an image's quality (JSON-friendly via :meth:`as_dict`).

    Pixel quantities in pixels, background and noise in image units, magnitudes in the
    zero point's system; ``None`` where not measurable.
    """

    width: int
    height: int
    background: float
    background_rms: float
    background_flatness: float
    fwhm: float | None
    fwhm_arcsec: float | None
    ellipticity: float | None
    n_stars: int
    n_sources: int
    saturated_fraction: float
    masked_fraction: float
    cosmic_ray_pixels: int
    zeropoint: float | None
    limiting_mag: float | None
    score: float
    score_terms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class QualityResult:
    """Everything :func:`assess_quality` measured.

    Attributes
    ----------
    quality : ImageQuality
        The summary record.
    background : BackgroundEstimate
        Background and noise maps.
    mask : numpy.ndarray
        Union of input mask, non-finite, saturated and cosmic-ray pixels (True = excluded).
    saturated : numpy.ndarray
        Saturated pixels (grown by one pixel).
    cosmic_rays : numpy.ndarray
        Cosmic-ray pixels.
    psf : PSFMeasurement
        PSF measurement.
    """

    quality: ImageQuality
    background: BackgroundEstimate
    mask: np.ndarray
    saturated: np.ndarray
    cosmic_rays: np.ndarray
    psf: PSFMeasurement


def infer_saturation(data: np.ndarray, min_pixels: int = 3) -> float | None:
    """The saturation level implied by a plateau at the image maximum, if there is one.

    A saturated detector (or a clipped integer range, e.g. 65535) leaves several pixels at
    exactly the maximum value; a real peak does not. Returns that maximum when at least
    ``min_pixels`` finite pixels equal it, else None.
    """
    arr = np.asarray(data)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return None
    vmax = float(finite.max())
    return vmax if int((finite == vmax).sum()) >= min_pixels else None


def saturation_mask(data: np.ndarray, saturation: float | None, *, grow: int = 1) -> np.ndarray:
    """Pixels at or above ``saturation`` (image units), grown by ``grow`` pixels; +inf
    pixels are bad pixels, not saturated ones (non-finite values are masked elsewhere)."""
    arr = np.asarray(data)
    if saturation is None:
        return np.zeros(arr.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        sat = (arr >= float(saturation)) & (arr < np.inf)
    if grow > 0 and sat.any():
        sat = ndimage.binary_dilation(sat, iterations=grow)
    return sat


def limiting_magnitude(fwhm: float, noise: float, zeropoint: float, nsigma: float = 5.0) -> float:
    """Magnitude of a point source detected at ``nsigma`` by PSF fitting on a flat background.

    For a Gaussian PSF the noise of the optimal flux is ``noise * sqrt(4π σ²)`` (``σ`` =
    ``fwhm / 2.3548``), so ``m_lim = zeropoint - 2.5 log10(nsigma · noise · sqrt(4π) σ)``.

    Parameters
    ----------
    fwhm : float
        PSF FWHM in pixels.
    noise : float
        Background noise per pixel in image units.
    zeropoint : float
        Magnitude of a source of total flux 1 image unit.
    nsigma : float
        Detection significance.
    """
    sigma = fwhm / FWHM_PER_SIGMA
    flux = nsigma * noise * math.sqrt(4.0 * math.pi) * sigma
    return float(zeropoint - 2.5 * math.log10(flux))


def header_zeropoint(header: fits.Header | None) -> float | None:
    """Zero point (mag of 1 image unit) from the header, if it says.

    ``MAGZERO``/``MAGZPT``/``MAGZP``/``ZP``/``ZEROPT``/``PHOTZP``; for JWST-style surface
    brightness images (``BUNIT`` MJy/sr with ``PIXAR_SR``) the AB zero point of one pixel's
    value: ``-2.5 log10(1e6 · PIXAR_SR / 3631)``.
    """
    if header is None:
        return None
    for key in ("MAGZERO", "MAGZPT", "MAGZP", "ZP", "ZEROPT", "PHOTZP"):
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    bunit = str(header.get("BUNIT", "")).strip().lower().replace(" ", "")
    pixar = header.get("PIXAR_SR")
    if bunit in ("mjy/sr", "mjy/steradian") and isinstance(pixar, int | float) and pixar > 0:
        return float(-2.5 * math.log10(1e6 * float(pixar) / 3631.0))
    return None


def quality_score(
    *,
    masked_fraction: float,
    ellipticity: float | None,
    fwhm: float | None,
    flatness: float,
    n_sources: int,
) -> tuple[float, dict[str, float]]:
    """The documented quality score in [0, 1] and its factors (see the module docstring)."""
    usable = float(np.clip(1.0 - masked_fraction, 0.0, 1.0))
    roundness = (
        1.0
        if ellipticity is None or not np.isfinite(ellipticity)
        else float(np.clip(1.0 - ellipticity, 0.0, 1.0))
    )
    if fwhm is None or not np.isfinite(fwhm) or fwhm <= 0:
        sampling = 0.0
    else:
        sampling = float(min(1.0, fwhm / 1.5) * min(1.0, 8.0 / fwhm))
    flat = 1.0 / (1.0 + flatness) if np.isfinite(flatness) else 0.0
    sources = float(min(1.0, n_sources / 20.0))
    terms = {
        "usable": usable,
        "roundness": roundness,
        "sampling": sampling,
        "flatness": flat,
        "sources": sources,
    }
    return float(np.prod(list(terms.values()))), terms


def _header_float(header: fits.Header | None, *keys: str) -> float | None:
    if header is None:
        return None
    for key in keys:
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def assess_quality(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    header: fits.Header | None = None,
    gain: float | None = None,
    read_noise: float | None = None,
    saturation: float | None = None,
    zeropoint: float | None = None,
    pixel_scale: float | None = None,
    detect_cosmics: bool = True,
    box_size: int | None = None,
) -> QualityResult:
    """Measure an image's quality.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx), sky included or subtracted, any unit.
    mask : numpy.ndarray, optional
        Known bad pixels, True = excluded.
    header : astropy.io.fits.Header, optional
        Source of ``GAIN``, ``RDNOISE``, ``SATURATE`` and the zero point when the keyword
        arguments are ``None``.
    gain, read_noise, saturation, zeropoint :
        e-/unit, e-, image units, mag of 1 unit. Without a saturation level from either
        place, a plateau of pixels at the image maximum is taken as saturation
        (:func:`infer_saturation`).
    pixel_scale : float, optional
        Arcsec per pixel, to report the FWHM in arcsec.
    detect_cosmics : bool
        Run L.A.Cosmic.
    box_size : int, optional
        Background mesh in pixels.

    Returns
    -------
    QualityResult

    Raises
    ------
    QualityError, EmptyImageError, ConstantImageError
        Not 2-D, all NaN/masked, or constant.
    """
    return _assess_quality(
        data,
        mask,
        header=header,
        gain=gain,
        read_noise=read_noise,
        saturation=saturation,
        zeropoint=zeropoint,
        pixel_scale=pixel_scale,
        detect_cosmics=detect_cosmics,
        box_size=box_size,
        known_background=None,
    )


def _assess_quality(
    data: np.ndarray,
    mask: np.ndarray | None,
    *,
    header: fits.Header | None,
    gain: float | None,
    read_noise: float | None,
    saturation: float | None,
    zeropoint: float | None,
    pixel_scale: float | None,
    detect_cosmics: bool,
    box_size: int | None,
    known_background: tuple[np.ndarray, BackgroundEstimate] | None,
    checked: np.ndarray | None = None,
) -> QualityResult:
    """:func:`assess_quality`, reusing ``known_background`` = (exclusion mask, estimate).

    The estimate is used only if its mask equals the one this function would estimate with
    (input mask | non-finite | saturated), i.e. the caller computed it from the same pixels.
    ``checked``: ``data`` with 0 at every pixel of ``mask`` (and at its non-finite ones)
    when the caller has it, read instead of zeroing a copy (saturation is still found in
    ``data``).
    """
    arr, bad = valid_pixels(data if checked is None else checked, mask)
    gain = gain if gain is not None else _header_float(header, "GAIN", "EGAIN")
    read_noise = (
        read_noise if read_noise is not None else _header_float(header, "RDNOISE", "READNOIS")
    )
    saturation = (
        saturation if saturation is not None else _header_float(header, "SATURATE", "SATLEVEL")
    )
    zeropoint = zeropoint if zeropoint is not None else header_zeropoint(header)
    if saturation is None:
        saturation = infer_saturation(arr[~bad])
    sat = saturation_mask(data, saturation)  # NaN and ±inf are not saturated
    known = known_background
    if known is not None and box_size is None and np.array_equal(known[0], bad | sat):
        bkg = known[1]  # the caller estimated it from the same pixels and mask
    else:
        bkg = estimate_background(arr, bad | sat, box_size=box_size)
    crs = (
        cosmic_ray_mask(arr, mask=bad | sat, background=bkg, gain=gain, saturation=saturation)
        if detect_cosmics
        else np.zeros(arr.shape, dtype=bool)
    )
    full_mask = bad | sat | crs
    # checked and zeroed once, background subtracted once, for the detection and the PSF
    arr, full_mask = valid_pixels(arr, full_mask)
    sub = arr - bkg.background
    found = _detect_stars(arr, full_mask, bkg, sub)
    psf = _measure_psf(arr, full_mask, bkg, sub, saturation, found)
    fwhm = psf.fwhm if np.isfinite(psf.fwhm) else None
    ellipticity = psf.ellipticity if np.isfinite(psf.ellipticity) else None
    masked_fraction = _fraction(full_mask)
    score, terms = quality_score(
        masked_fraction=masked_fraction,
        ellipticity=ellipticity,
        fwhm=fwhm,
        flatness=bkg.flatness,
        n_sources=len(found),
    )
    lim = (
        limiting_magnitude(fwhm, bkg.global_rms, zeropoint)
        if fwhm is not None and zeropoint is not None and bkg.global_rms > 0
        else None
    )
    quality = ImageQuality(
        width=int(arr.shape[1]),
        height=int(arr.shape[0]),
        background=bkg.global_background,
        background_rms=bkg.global_rms,
        background_flatness=bkg.flatness,
        fwhm=fwhm,
        fwhm_arcsec=fwhm * pixel_scale if fwhm is not None and pixel_scale else None,
        ellipticity=ellipticity,
        n_stars=psf.n_stars,
        n_sources=len(found),
        saturated_fraction=_fraction(sat),
        masked_fraction=masked_fraction,
        cosmic_ray_pixels=int(crs.sum()),
        zeropoint=zeropoint,
        limiting_mag=lim,
        score=score,
        score_terms=terms,
    )
    return QualityResult(
        quality=quality, background=bkg, mask=full_mask, saturated=sat, cosmic_rays=crs, psf=psf
    )
