"""The stars a PSF is built from: background and noise, detection, and which stars are usable.

:func:`background_and_noise` gives the SEP background map and global noise of an image;
:func:`find_stars` detects stars on the background-subtracted image (windowed centroids,
half-light sizes, aperture S/N) and marks in :attr:`StarList.usable` the isolated, unsaturated,
unflagged, round ones on the stellar locus, away from the edges. The empirical PSF is stacked
from those by :mod:`astrid.science.psf_estimate`. (The quality record's star detection and
FWHM measurement are :mod:`astrid.science.stars`.)

Positions and sizes in pixels, 0-based; masks True = excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sep

from astrid.science.psf import PSFError
from astrid.science.sepextract import extract_objects
from astrid.science.stats import FWHM_PER_SIGMA, robust_sigma

__all__ = ["StarList", "background_and_noise", "find_stars"]


@dataclass(frozen=True)
class StarList:
    """Stars measured by SEP on a background-subtracted image.

    Attributes
    ----------
    x, y : numpy.ndarray
        Windowed centroids in pixels (0-based), shape (n,).
    flux : numpy.ndarray
        Aperture fluxes in image units, shape (n,).
    snr : numpy.ndarray
        Aperture S/N, shape (n,).
    fwhm : numpy.ndarray
        FWHM in pixels from SEP's second moments, shape (n,).
    peak : numpy.ndarray
        Peak pixel value above background, shape (n,).
    flags : numpy.ndarray
        SEP flags, shape (n,).
    usable : numpy.ndarray
        Boolean, shape (n,): isolated, unsaturated, unflagged, round, not at an edge.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    snr: np.ndarray
    fwhm: np.ndarray
    peak: np.ndarray
    flags: np.ndarray
    usable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return int(self.x.size)


def background_and_noise(
    image: np.ndarray, mask: np.ndarray | None = None, box: int = 64
) -> tuple[np.ndarray, float]:
    """Smooth background map and robust background noise of an image.

    Parameters
    ----------
    image : numpy.ndarray
        Image, shape (ny, nx); non-finite pixels are treated as masked.
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    box : int
        SEP background mesh size in pixels.

    Returns
    -------
    background : numpy.ndarray
        Background map, float32, shape (ny, nx).
    noise : float
        Standard deviation of the background in image units (SEP's global RMS).
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= mask
    if bad.all():
        raise PSFError("the image has no finite, unmasked pixels")
    any_bad = bool(bad.any())
    # (already zeroed, as prepare_image passes it: no 16-MB copy)
    if any_bad and data[bad].any():
        data = np.where(bad, np.float32(0), data)
    box = int(max(16, min(box, min(data.shape) // 2)))
    # a uint8 view of the mask: SEP copies a bool mask into a new array first (~10 ms at
    # 4 Mpix), the same bytes as uint8 it reads as they are (same result)
    bkg = sep.Background(data, mask=bad.view(np.uint8) if any_bad else None, bw=box, bh=box)
    return bkg.back(), float(bkg.globalrms)


def find_stars(
    image: np.ndarray,
    noise: float,
    mask: np.ndarray | None = None,
    *,
    threshold: float = 2.5,
    saturation: float | None = None,
    psf_size: int = 25,
    minarea: int = 5,
) -> StarList:
    """Detect stars on a background-subtracted image and mark the ones usable for a PSF.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image, shape (ny, nx), float32; non-finite pixels must be
        zeroed and flagged in ``mask``.
    noise : float
        Background noise (standard deviation) in image units.
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    threshold : float
        Per-pixel detection threshold in units of ``noise`` (after SEP's default 3x3
        smoothing).
    saturation : float, optional
        Peak value (above background) beyond which a star is not usable.
    psf_size : int
        PSF stamp side in pixels; stars closer than half of it to an edge or to a brighter
        neighbour are not usable.
    minarea : int
        Minimum number of connected pixels above threshold.

    Returns
    -------
    StarList
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    try:
        objs = extract_objects(
            data,
            threshold,
            err=float(noise),
            mask=mask,
            minarea=minarea,
            deblend_cont=0.005,
            clean=True,
        )
    except Exception as exc:  # sep raises bare Exception on overflow
        raise PSFError(f"star detection failed: {exc}") from exc
    n = len(objs)
    if n == 0:
        empty = np.zeros(0)
        return StarList(
            empty, empty, empty, empty, empty, empty, np.zeros(0, int), np.zeros(0, bool)
        )
    fwhm = FWHM_PER_SIGMA * np.sqrt(np.clip((objs["x2"] + objs["y2"]) / 2.0, 0.09, None)).astype(
        float
    )
    x, y = objs["x"].astype(float), objs["y"].astype(float)
    sig = np.clip(fwhm / FWHM_PER_SIGMA, 0.5, None)
    try:
        wx, wy, wflag = sep.winpos(data, x, y, sig, mask=mask)
        good = (wflag == 0) & (np.hypot(wx - x, wy - y) < 2.0)
        x = np.where(good, wx, x)
        y = np.where(good, wy, y)
    except Exception:  # keep barycentres when windowed centroids fail
        pass
    # Half-light radii are a far better size measure than isophotal moments (which cut the
    # wings): FWHM = 2 r_half for a Gaussian.
    try:
        rhalf, rflag = sep.flux_radius(
            data, x, y, np.clip(6.0 * objs["a"], 3.0, 30.0), 0.5, mask=mask, subpix=5
        )
        okr = (rflag == 0) & np.isfinite(rhalf) & (rhalf > 0.3)
        fwhm = np.where(okr, 2.0 * rhalf, fwhm)
    except Exception:  # keep moment-based sizes
        pass
    r_ap = max(2.0, 1.5 * float(np.nanmedian(fwhm)))
    flux, ferr, fflag = sep.sum_circle(data, x, y, r_ap, err=float(noise), mask=mask, subpix=1)
    snr = flux / np.where(ferr > 0, ferr, np.inf)
    peak = objs["peak"].astype(float)
    ny, nx = data.shape
    half = psf_size // 2 + 2
    usable = (
        (objs["flag"] == 0)
        & (fflag == 0)
        & (x > half)
        & (y > half)
        & (x < nx - 1 - half)
        & (y < ny - 1 - half)
        & (snr > 20)
        & (objs["b"] / np.clip(objs["a"], 1e-3, None) > 0.6)
    )
    if saturation is not None and np.isfinite(saturation):
        usable &= peak < 0.8 * saturation
    # Isolation: no other detection with at least 10% of the flux within half a stamp.
    if n > 1:
        from astrid.science.neighbours import close_pairs

        for i, j in close_pairs(np.column_stack([x, y]), float(psf_size) / 2.0 + 2.0):
            if flux[j] > 0.1 * flux[i]:
                usable[i] = False
            if flux[i] > 0.1 * flux[j]:
                usable[j] = False
    # Keep the stellar locus: stars are the most compact bright objects, galaxies and blends
    # are larger (in cluster fields they outnumber the stars, so the median would not do).
    if usable.sum() >= 5:
        bright = usable & (snr > 30)
        ref_set = fwhm[bright] if bright.sum() >= 5 else fwhm[usable]
        locus = float(np.percentile(ref_set, 25))
        mad = robust_sigma(ref_set, centre=locus)
        usable &= np.abs(fwhm - locus) < max(3.0 * mad, 0.2 * locus)
    return StarList(x, y, flux, snr, fwhm, peak, objs["flag"].astype(int), usable)
