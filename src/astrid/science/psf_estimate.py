"""The empirical PSF of an image, estimated from its own stars.

:func:`estimate_psf` finds isolated, unsaturated, bright stars with SEP, recentres each one
to sub-pixel accuracy and stacks them into an empirical PSF (the ePSF idea of Anderson &
King 2000 at the native sampling, built with a sigma-clipped median instead of iterations,
which makes it fast enough for the differencing hot path). When the PSF is undersampled
(stacked FWHM below ``epsf_below_fwhm``, 2 px) and at least 10 stars are usable, the
oversampled ePSF of photutils' ``EPSFBuilder`` replaces the native stack
(:func:`astrid.science.psf_model.build_epsf`): spline recentring at the native sampling
blurs an undersampled core. When fewer than ``min_stars`` usable stars are found the
documented fallbacks are, in order: an elliptical Moffat fitted to the stack of the 2-4
stars there are (``method="moffat"``), else a circular Gaussian whose FWHM is the median
FWHM of whatever stars were seen (or ``default_fwhm``, ``method="gaussian"``).
:class:`PSFEstimate` says which in ``method``, ``fallback`` and ``reason``. PSFs that vary
across the field are handled by :mod:`astrid.science.psf_spatial`; the stars come from
:func:`astrid.science.psf_stars.find_stars`.

All positions and sizes are in pixels; PSF arrays are odd-sized, centred on the central
pixel and normalised to unit sum.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from astrid.science.psf import PSFError, PSFEstimate, _moments_fwhm, gaussian_psf, recentre_psf
from astrid.science.psf_stars import StarList, background_and_noise, find_stars
from astrid.science.stats import robust_sigma

__all__ = ["estimate_psf", "star_stamps"]


def _shift_stamps(stamps: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Sample each stamp at ``(j + dy[k], i + dx[k])`` with cubic-spline interpolation.

    Equivalent to ``scipy.ndimage.shift(stamp, (-dy, -dx), order=3, mode="nearest")`` for
    every stamp of the (k, n, n) stack, done with two separable passes over the stack.
    """
    k, n, m = stamps.shape
    if k == 0:
        return stamps.copy()
    pad = 12  # what scipy.ndimage pads with for mode="nearest" before its spline filter
    coef = np.pad(stamps, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    coef = ndimage.spline_filter1d(coef, 3, axis=1, mode="mirror")
    coef = ndimage.spline_filter1d(coef, 3, axis=2, mode="mirror")

    def taps(shift: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        floor = np.floor(shift)
        f = (shift - floor)[:, None]
        w = np.stack(
            [
                (1 - f) ** 3 / 6,
                (3 * f**3 - 6 * f**2 + 4) / 6,
                (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
                f**3 / 6,
            ],
            axis=-1,
        )  # (k, 1, 4)
        first = pad + np.arange(length)[None, :] + floor.astype(int)[:, None] - 1  # (k, length)
        return first[:, :, None] + np.arange(4)[None, None, :], w

    rows, wy = taps(np.asarray(dy, float), n)
    cols, wx = taps(np.asarray(dx, float), m)
    kk = np.arange(k)[:, None, None]
    along_y = np.einsum("kjtw,kjt->kjw", coef[kk, rows], np.broadcast_to(wy, rows.shape))
    gathered = np.take_along_axis(along_y, cols[:, None, :, :].reshape(k, 1, -1), axis=2)
    gathered = gathered.reshape(k, n, m, 4)
    return np.einsum("kjit,kit->kji", gathered, np.broadcast_to(wx, cols.shape))


def estimate_psf(
    image: np.ndarray,
    noise: float | None = None,
    mask: np.ndarray | None = None,
    *,
    stars: StarList | None = None,
    size: int | None = None,
    saturation: float | None = None,
    min_stars: int = 5,
    max_stars: int = 100,
    default_fwhm: float = 3.0,
    region: tuple[slice, slice] | None = None,
    epsf_below_fwhm: float = 2.0,
) -> PSFEstimate:
    """Estimate the PSF of an image from its own stars.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image, shape (ny, nx).
    noise : float, optional
        Background noise in image units (measured if omitted).
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    stars : StarList, optional
        Pre-computed detections (from :func:`find_stars`); detected here if omitted.
    size : int, optional
        PSF side in pixels (odd); default ``clip(2 * ceil(3.5 * FWHM) + 1, 15, 61)`` from the
        median FWHM of the detected stars.
    saturation : float, optional
        Saturation level above background; stars peaking above 80% of it are not used.
    min_stars : int
        Minimum number of usable stars for an empirical PSF; below it a fallback is
        returned with ``fallback=True`` (a Moffat fitted to 2 or more stars, else a
        Gaussian).
    max_stars : int
        Use at most this many of the brightest usable stars.
    default_fwhm : float
        FWHM in pixels of the fallback when no star at all is measurable.
    region : tuple of slice, optional
        Use only stars whose centres fall in ``image[region]`` (sub-image PSFs).
    epsf_below_fwhm : float
        Build photutils' oversampled ePSF instead of the native stack when the stacked
        core's FWHM (adaptive moments, :func:`~astrid.science.psf_model.psf_moments`) is
        below this many pixels (undersampled) and at least 10 stars are usable; 0 never.

    Returns
    -------
    PSFEstimate
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise PSFError(f"the image must be 2-D, not shape {data.shape}")
    if noise is None:
        _, noise = background_and_noise(data, mask)
    if stars is None:
        stars = find_stars(data, noise, mask, saturation=saturation, psf_size=size or 31)
    sel = stars.usable.copy()
    if region is not None:
        ys, xs = region
        sel &= (stars.x >= (xs.start or 0)) & (stars.x < (xs.stop or data.shape[1]))
        sel &= (stars.y >= (ys.start or 0)) & (stars.y < (ys.stop or data.shape[0]))
    idx = np.flatnonzero(sel)
    seen_fwhm = stars.fwhm[stars.snr > 10] if len(stars) else np.zeros(0)
    if idx.size:
        fwhm_guess = float(np.median(stars.fwhm[idx]))
    elif seen_fwhm.size:
        fwhm_guess = float(np.median(seen_fwhm))
    else:
        fwhm_guess = float(default_fwhm)
    if size is None:
        size = int(np.clip(2 * int(np.ceil(3.5 * fwhm_guess)) + 1, 15, 61))
    size = int(size) | 1
    half = size // 2
    ny, nx = data.shape
    idx = idx[
        (stars.x[idx] > half + 1)
        & (stars.y[idx] > half + 1)
        & (stars.x[idx] < nx - half - 2)
        & (stars.y[idx] < ny - half - 2)
    ]
    seen = "from the stars seen" if seen_fwhm.size else "by default"
    if idx.size < min_stars:
        if idx.size >= 2:
            few = _fitted_moffat(data, mask, stars, idx, size, fwhm_guess, min_stars)
            if few is not None:
                return few
        reason = (
            f"only {idx.size} usable star(s) (need {min_stars}); Gaussian PSF with FWHM "
            f"{fwhm_guess:.2f} px {seen}"
        )
        return PSFEstimate(
            gaussian_psf(fwhm_guess, size), fwhm_guess, 0, True, reason, method="gaussian"
        )
    idx = idx[np.argsort(stars.flux[idx])[::-1][:max_stars]]
    stacked = _stack(data, mask, stars, idx, size, fwhm_guess)
    if stacked is None or stacked[1] < min_stars:
        n_clean = 0 if stacked is None else stacked[1]
        reason = f"only {n_clean} clean star stamp(s) (need {min_stars}); Gaussian PSF"
        return PSFEstimate(
            gaussian_psf(fwhm_guess, size), fwhm_guess, 0, True, reason, method="gaussian"
        )
    psf, n_used = stacked
    fwhm = _moments_fwhm(psf)
    from astrid.science.psf_model import psf_moments

    core_fwhm = psf_moments(psf)[0]  # the wings do not count here
    if epsf_below_fwhm > 0 and core_fwhm < epsf_below_fwhm and n_used >= 10:
        from astrid.science.psf_model import EPSFBuildError, build_epsf

        try:
            model = build_epsf(data, stars.x[idx], stars.y[idx], size, mask=mask)
        except EPSFBuildError:
            model = None  # keep the native stack
        if model is not None:
            model = recentre_psf(model)
            return PSFEstimate(model, _moments_fwhm(model), int(n_used), False, "", "epsf")
    return PSFEstimate(psf, fwhm, int(n_used), False, "", "stack")


def _stack(
    data: np.ndarray,
    mask: np.ndarray | None,
    stars: StarList,
    idx: np.ndarray,
    size: int,
    fwhm_guess: float,
) -> tuple[np.ndarray, int] | None:
    """S/N²-weighted, clipped stack of the recentred stamps of ``stars[idx]`` (None if none)."""
    cut = star_stamps(data, mask, stars, idx, size)
    if cut is None:
        return None
    stamps, weights, _ = cut
    half = size // 2
    # S/N^2-weighted mean of the stamps after 3-sigma clipping around the median.
    med = np.median(stamps, axis=0)
    mad = robust_sigma(stamps, centre=med, axis=0) + 1e-12 if stamps.shape[0] > 2 else None
    if mad is None:
        mad = np.abs(stamps - med).max(axis=0) + 1e-12
    good = np.abs(stamps - med) < 3.0 * mad
    w = np.where(good, weights[:, None, None], 0.0)
    wsum = np.clip(w.sum(axis=0), 1e-12, None)
    psf = (w * stamps).sum(axis=0) / wsum
    n_eff = wsum**2 / np.clip((w**2).sum(axis=0), 1e-12, None)
    err = mad / np.sqrt(n_eff)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    rr = np.hypot(xx, yy)
    # Zero insignificant wings (the background is already subtracted).
    psf = np.where((rr > 2.0 * fwhm_guess) & (np.abs(psf) < 3.0 * err), 0.0, psf)
    psf = np.where(rr > half + 0.5, 0.0, psf)
    psf = np.clip(psf, -0.02 * psf.max(), None)
    if psf.sum() <= 0:
        return None
    return recentre_psf(psf), int(stamps.shape[0])


def star_stamps(
    data: np.ndarray,
    mask: np.ndarray | None,
    stars: StarList,
    idx: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Recentred, unit-sum stamps of the stars ``stars[idx]`` (those with no masked pixel).

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image, shape (ny, nx).
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    stars : StarList
        Star list; ``idx`` indexes it (stars at least ``size // 2 + 2`` px from the edges).
    idx : numpy.ndarray
        Indices of the stars to cut, shape (k,).
    size : int
        Stamp side in pixels (odd).

    Returns
    -------
    tuple or None
        ``(stamps, weights, kept)``: stamps shape (m, size, size) float32 each summing to
        1 and shifted so the star's centroid is on the central pixel; weights (m,) = S/N²
        (S/N clipped to 1-1000); ``kept`` (m,) the indices into ``stars`` used. None when no
        stamp survives.
    """
    half = size // 2
    # Cut (size + 2)^2 stamps around the nearest pixels, drop masked ones and recentre all
    # of them at once (cubic-spline shift, separable, vectorised over the stack).
    xc, yc = stars.x[idx], stars.y[idx]
    ix, iy = np.round(xc).astype(int), np.round(yc).astype(int)
    if mask is not None:
        clean = np.array(
            [
                not mask[b - half : b + half + 1, a - half : a + half + 1].any()
                for a, b in zip(ix, iy, strict=True)
            ],
            dtype=bool,
        )
        idx, xc, yc, ix, iy = idx[clean], xc[clean], yc[clean], ix[clean], iy[clean]
    if idx.size == 0:
        return None
    offs = np.arange(-half - 1, half + 2)
    cuts = data[iy[:, None, None] + offs[None, :, None], ix[:, None, None] + offs[None, None, :]]
    shifted = _shift_stamps(cuts.astype(np.float64), yc - iy, xc - ix)[:, 1:-1, 1:-1]
    totals = shifted.sum(axis=(1, 2))
    keep = np.isfinite(totals) & (totals > 0)
    if not keep.any():
        return None
    stamps = (shifted[keep] / totals[keep, None, None]).astype(np.float32)
    weights = np.clip(stars.snr[idx][keep], 1.0, 1000.0) ** 2
    return stamps, weights, idx[keep]


def _fitted_moffat(
    data: np.ndarray,
    mask: np.ndarray | None,
    stars: StarList,
    idx: np.ndarray,
    size: int,
    fwhm_guess: float,
    min_stars: int,
) -> PSFEstimate | None:
    """Fallback for 2 to ``min_stars - 1`` stars: an elliptical Moffat fitted to their stack."""
    from astrid.science.psf_model import fit_moffat, moffat_psf

    stacked = _stack(data, mask, stars, idx, size, fwhm_guess)
    if stacked is None or stacked[1] < 2:
        return None
    try:
        shape = fit_moffat(stacked[0])
        model = moffat_psf(shape.fwhm, shape.beta, shape.ellipticity, shape.angle, size)
    except ValueError:
        return None
    reason = (
        f"only {stacked[1]} usable star(s) (need {min_stars}); elliptical Moffat fitted to "
        f"their stack (FWHM {shape.fwhm:.2f} px, e {shape.ellipticity:.2f}, "
        f"angle {shape.angle:.0f} deg, beta {shape.beta:.1f})"
    )
    return PSFEstimate(model, _moments_fwhm(model), stacked[1], True, reason, "moffat")
