"""The stars of an image: source detection and the PSF size and shape measured from them.

:func:`detect_stars` finds sources above a threshold (``sep.extract``, windowed centroids);
:func:`measure_psf` fits the bright, isolated, unsaturated, compact ones for the image's FWHM
and ellipticity (:class:`PSFMeasurement`). These are numbers for the quality record and for
alignment; the PSF *images* used in differencing are built by :mod:`astrid.science.psf_estimate`.

0-based pixels, x = column; masks True = excluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table

from astrid.science.background import (
    BackgroundEstimate,
    QualityError,
    estimate_background,
    valid_pixels,
)
from astrid.science.sepextract import extract_objects
from astrid.science.stats import FWHM_PER_SIGMA, robust_sigma

__all__ = ["PSFMeasurement", "detect_stars", "measure_psf"]


@dataclass
class PSFMeasurement:
    """PSF size and shape from isolated stars.

    Attributes
    ----------
    fwhm : float
        Median FWHM in pixels of a pixel-integrated circular Gaussian fitted to each star
        (NaN if no star).
    fwhm_scatter : float
        Robust standard deviation of the per-star FWHM in pixels.
    ellipticity : float
        Median ``1 - b/a`` from the stars' second moments.
    theta : float
        Median position angle of the major axis, degrees counter-clockwise from +x.
    n_stars : int
        Stars used.
    stars : astropy.table.Table
        The stars used (``x``, ``y``, ``flux``, ``fwhm``, ``ellipticity``).
    """

    fwhm: float
    fwhm_scatter: float
    ellipticity: float
    theta: float
    n_stars: int
    stars: Table


def detect_stars(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    background: BackgroundEstimate | None = None,
    threshold: float = 5.0,
    minarea: int = 5,
    max_sources: int | None = None,
) -> Table:
    """Detect sources above ``threshold`` × rms (``sep.extract``), brightest first.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (pixels, 0-based, windowed centroids), ``flux`` (image units, background
        subtracted), ``peak``, ``a``, ``b`` (second-moment axes, px), ``theta`` (rad),
        ``flag`` (sep flags), ``snr`` and ``npix``.
    """
    arr, bad = valid_pixels(data, mask)
    bkg = background or estimate_background(arr, bad)
    return _detect_stars(arr, bad, bkg, arr - bkg.background, threshold, minarea, max_sources)


def _detect_stars(
    arr: np.ndarray,
    bad: np.ndarray,
    bkg: BackgroundEstimate,
    sub: np.ndarray,
    threshold: float = 5.0,
    minarea: int = 5,
    max_sources: int | None = None,
) -> Table:
    """:func:`detect_stars` of ``arr`` (checked, 0 at ``bad``) with its background-subtracted
    image ``sub`` (``arr - bkg.background``, which :func:`measure_psf` shares)."""
    sub = np.ascontiguousarray(sub)
    # the global rms where the map has none (no copy of the map when it is positive)
    rms = bkg.rms if bool((bkg.rms > 0).all()) else np.where(bkg.rms > 0, bkg.rms, bkg.global_rms)
    rms = np.ascontiguousarray(rms)
    try:
        # SEP's own stack first, the whole image's only when that one is full (the same
        # objects: the stack is a capacity; a stack of 4 Mpix is ~90 ms of page faults)
        objects = extract_objects(
            sub, threshold, err=rms, mask=bad, minarea=minarea, large_stack=arr.size
        )
    except Exception as exc:  # sep raises a bare Exception on internal overflow
        raise QualityError(f"source detection failed: {exc}") from exc
    if len(objects) == 0:
        return Table(
            names=("x", "y", "flux", "peak", "a", "b", "theta", "flag", "snr", "npix"),
            dtype=(float, float, float, float, float, float, float, int, float, int),
        )
    x, y = objects["x"], objects["y"]
    sig = np.clip(2.0 / 2.35 * np.sqrt(objects["a"] ** 2 + objects["b"] ** 2), 0.5, 10.0)
    xw, yw, wflag = sep.winpos(sub, x, y, sig, mask=bad)
    ok = (wflag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < 2.0)
    x = np.where(ok, xw, x)
    y = np.where(ok, yw, y)
    snr = objects["flux"] / (
        rms[
            np.clip(y.astype(int), 0, arr.shape[0] - 1), np.clip(x.astype(int), 0, arr.shape[1] - 1)
        ]
        * np.sqrt(np.maximum(objects["npix"], 1))
    )
    table = Table(
        {
            "x": x,
            "y": y,
            "flux": objects["flux"],
            "peak": objects["peak"],
            "a": objects["a"],
            "b": objects["b"],
            "theta": objects["theta"],
            "flag": objects["flag"].astype(int),
            "snr": snr,
            "npix": objects["npix"].astype(int),
        }
    )
    table.sort("flux", reverse=True)
    if max_sources is not None:
        table = table[:max_sources]
    return table


def measure_psf(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    background: BackgroundEstimate | None = None,
    saturation: float | None = None,
    stars: Table | None = None,
    max_stars: int = 40,
    min_snr: float = 20.0,
) -> PSFMeasurement:
    """FWHM and ellipticity from bright, isolated, unsaturated point sources.

    Each star is fitted with a pixel-integrated circular Gaussian (``photutils.psf.fit_fwhm``);
    the ellipticity comes from its second moments. Galaxies are rejected twice: before the fits
    sources whose half-light radius (``sep.flux_radius``) exceeds 2× the 20th percentile,
    after them fits wider than 1.5× the 20th-percentile FWHM (the stellar locus), followed by a
    sigma-clip of the per-star FWHM. Sources sharper than any PSF (half-light radius < 0.6 px,
    minor axis < 0.35 px, fitted FWHM < 1 px or < 0.6× the 20th percentile) are cosmic rays or hot
    pixels and are dropped first.

    Returns
    -------
    PSFMeasurement
        ``fwhm`` is NaN and ``n_stars`` 0 if no usable star exists.
    """
    arr, bad = valid_pixels(data, mask)
    bkg = background or estimate_background(arr, bad)
    found = stars if stars is not None else detect_stars(arr, bad, background=bkg)
    return _measure_psf(arr, bad, bkg, None, saturation, found, max_stars, min_snr)


def _measure_psf(
    arr: np.ndarray,
    bad: np.ndarray,
    bkg: BackgroundEstimate,
    sub: np.ndarray | None,
    saturation: float | None,
    found: Table,
    max_stars: int = 40,
    min_snr: float = 20.0,
) -> PSFMeasurement:
    """:func:`measure_psf` of ``arr`` (checked, 0 at ``bad``) and its sources ``found``;
    ``sub`` = ``arr - bkg.background`` when already computed."""
    empty = PSFMeasurement(float("nan"), float("nan"), float("nan"), float("nan"), 0, Table())
    if len(found) == 0:
        return empty
    ny, nx = arr.shape
    sigma = np.sqrt(0.5 * (np.asarray(found["a"]) ** 2 + np.asarray(found["b"]) ** 2))
    # the compact end of the size distribution: in galaxy-rich fields the median is a galaxy
    guess = (
        float(np.percentile(sigma[found["snr"] > min_snr], 25))
        if (found["snr"] > min_snr).any()
        else float(np.median(sigma))
    )
    guess_fwhm = max(FWHM_PER_SIGMA * guess, 1.0)
    half = int(max(3, math.ceil(1.5 * guess_fwhm)))
    xs, ys = np.asarray(found["x"]), np.asarray(found["y"])
    # isolation: no other detection brighter than 5 % of the star within two box half-sizes
    fluxes = np.asarray(found["flux"], dtype=float)
    isolated = np.ones(len(found), dtype=bool)
    if len(found) > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([xs, ys]))
        for i, neighbours in enumerate(tree.query_ball_point(np.column_stack([xs, ys]), 2 * half)):
            others = [j for j in neighbours if j != i]
            if others and np.any(fluxes[others] > 0.05 * fluxes[i]):
                isolated[i] = False
    inside = (xs > half + 1) & (xs < nx - half - 2) & (ys > half + 1) & (ys < ny - half - 2)
    ixs = np.clip(np.round(xs).astype(int), 0, nx - 1)
    iys = np.clip(np.round(ys).astype(int), 0, ny - 1)
    near_bad = _near(bad, iys, ixs, half)
    if saturation is not None:
        near_bad |= _near(arr, iys, ixs, half, at_least=float(saturation))
    good = (
        (np.asarray(found["flag"]) == 0)
        & (np.asarray(found["snr"]) > min_snr)
        & isolated
        & inside
        & ~near_bad
    )
    cand = found[good]
    if len(cand) == 0:
        return empty
    if sub is None:
        sub = arr - bkg.background
    if len(cand) >= 5:
        # star/galaxy separation: stars are the most compact sources (half-light radius
        # within 2x the 20th percentile); cheap, done before the fits
        r50, _ = sep.flux_radius(
            np.ascontiguousarray(np.where(bad, 0.0, sub)),
            np.asarray(cand["x"], dtype=float),
            np.asarray(cand["y"], dtype=float),
            np.full(len(cand), 3.0 * half),
            0.5,
            mask=bad,
            normflux=None,
            subpix=5,
        )
        # a PSF is never sharper than a pixel: r50 < 0.6 px or a minor axis < 0.35 px is a
        # cosmic ray (dot or track) or a hot pixel
        ok_r = np.isfinite(r50) & (r50 >= 0.6)
        ok_r &= np.asarray(cand["b"], dtype=float) >= 0.35
        if ok_r.sum() >= 5:
            compact = ok_r & (r50 <= 2.0 * np.percentile(r50[ok_r], 20))
            if compact.sum() >= 3:
                cand = cand[compact]
        elif ok_r.sum() >= 1:
            cand = cand[ok_r]
    cand = cand[:max_stars]
    fit_shape = 2 * half + 1
    # photutils costs 1-2 s to import (its optional-dependency scan); only PSF measurement
    # needs it, not the alignment and resampling that import this module
    from photutils.psf import fit_fwhm

    fwhms = np.asarray(
        fit_fwhm(
            sub,
            xypos=np.column_stack([cand["x"], cand["y"]]),
            fwhm=guess_fwhm,
            fit_shape=fit_shape,
            mask=bad,
        ),
        dtype=float,
    )
    ell = 1.0 - np.asarray(cand["b"]) / np.asarray(cand["a"])
    keep = np.isfinite(fwhms) & (fwhms >= 1.0) & (fwhms < 3 * fit_shape)
    if keep.sum() >= 5:
        keep &= fwhms >= 0.6 * np.percentile(fwhms[keep], 20)  # cosmic rays, hot pixels
        keep &= fwhms <= 1.5 * np.percentile(fwhms[keep], 20)  # the stellar locus
    if keep.sum() >= 3:
        med = np.median(fwhms[keep])
        mad = robust_sigma(fwhms[keep], centre=med)
        keep &= np.abs(fwhms - med) <= max(3 * mad, 0.05 * med)
    if not keep.any():
        return empty
    used = cand[keep]
    used["fwhm"] = fwhms[keep]
    used["ellipticity"] = ell[keep]
    theta = np.degrees(np.asarray(used["theta"]))
    return PSFMeasurement(
        fwhm=float(np.median(fwhms[keep])),
        fwhm_scatter=robust_sigma(fwhms[keep]),
        ellipticity=float(np.median(ell[keep])),
        theta=float(np.median(theta)),
        n_stars=int(keep.sum()),
        stars=used,
    )


def _near(
    mask: np.ndarray,
    iys: np.ndarray,
    ixs: np.ndarray,
    reach: int,
    *,
    at_least: float | None = None,
) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=reach)[iys, ixs]`` (3×3 cross: pixels
    within city-block distance ``reach``) looked up only around the given pixels.

    With ``at_least``, ``mask`` is an image and the mask is ``mask >= at_least``, compared
    only in those windows."""
    out = np.zeros(len(iys), dtype=bool)
    if len(iys) == 0 or (at_least is None and not mask.any()):
        return out
    ny, nx = mask.shape
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    diamond = (np.abs(dy) + np.abs(dx)) <= reach
    for i, (y, x) in enumerate(zip(iys.tolist(), ixs.tolist(), strict=True)):
        y0, y1, x0, x1 = (
            max(y - reach, 0),
            min(y + reach + 1, ny),
            max(x - reach, 0),
            min(x + reach + 1, nx),
        )
        win = mask[y0:y1, x0:x1]
        if at_least is not None:
            with np.errstate(invalid="ignore"):
                win = win >= at_least
        if win.any():
            d = diamond[y0 - y + reach : y1 - y + reach, x0 - x + reach : x1 - x + reach]
            out[i] = bool((win & d).any())
    return out
