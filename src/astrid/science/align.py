"""Putting images on one pixel grid: star-based refinement, coadds (on top of reprojection).

* :func:`reproject_to` (defined in :mod:`astrid.science.resample`, re-exported here)
  resamples an image, with its variance and mask, onto a target WCS.
* :func:`match_stars` pairs the stars of two images on (nearly) the same grid, or, when the
  offset is unknown, by asterism matching (``astroalign``), and refines the centroids with a
  pixel-integrated Gaussian fit (``photutils.psf.fit_2dgaussian``).
* :func:`align_image` = reproject + refine: fits a similarity transform (shift, rotation,
  scale; ``skimage``) to the matched stars, resamples once more by that residual, and reports
  the astrometric RMS of the matched stars *after* alignment (re-measured, not the fit's).
* :func:`register_many` puts several images on one grid, :func:`coadd` combines them.

Conventions: 0-based pixels, x = column; masks True = excluded; variances in image units².
Resampling the variance with the same kernel as the data is the usual approximation (it
ignores the correlation the interpolation introduces).

Errors: :class:`NonOverlappingError` (footprints do not intersect), :class:`TooFewStarsError`
(fewer matched stars than needed; the message gives both counts).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.stats import sigma_clip
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy.spatial import cKDTree
from skimage.transform import SimilarityTransform, warp

from astrid.errors import AstridError
from astrid.science.background import BackgroundEstimate, estimate_background
from astrid.science.resample import (
    AlignError,
    NonOverlappingError,
    ReprojectedImage,
    affine_pixel_map,
    pixel_map,
    reproject_to,
)
from astrid.science.stars import detect_stars
from astrid.science.stats import FWHM_PER_SIGMA, SIGMA_PER_FWHM, robust_sigma

__all__ = [
    "AlignError",
    "AlignmentResult",
    "Coadd",
    "NonOverlappingError",
    "ReprojectedImage",
    "StarMatch",
    "TooFewStarsError",
    "affine_pixel_map",
    "align_image",
    "coadd",
    "match_stars",
    "pixel_map",
    "register_many",
    "reproject_to",
]


class TooFewStarsError(AlignError):
    """Too few stars to determine or verify the alignment.

    Attributes
    ----------
    n_image, n_reference, n_matched, needed : int
        Stars found in each image, matched pairs, and the minimum required.
    """

    def __init__(
        self,
        n_image: int,
        n_reference: int,
        n_matched: int,
        needed: int,
        *,
        hint: str | None = None,
    ) -> None:
        self.n_image, self.n_reference = n_image, n_reference
        self.n_matched, self.needed = n_matched, needed
        super().__init__(
            f"too few stars to align: {n_image} in the image, {n_reference} in the reference, "
            f"{n_matched} matched, {needed} needed",
            hint=hint
            or "lower the detection threshold, use deeper images, or trust the WCS (refine=False)",
        )


@dataclass
class StarMatch:
    """Matched stars of an image and a reference (pixel positions, 0-based).

    ``x``, ``y`` in the image, ``x_ref``, ``y_ref`` in the reference; ``flux`` and
    ``flux_ref`` are the Gaussian-fit fluxes (image units); ``sigma`` is the expected 2-D
    length of each offset from the fits' centroid errors in both images (pixels).
    """

    x: np.ndarray
    y: np.ndarray
    x_ref: np.ndarray
    y_ref: np.ndarray
    flux: np.ndarray
    flux_ref: np.ndarray
    n_image: int
    n_reference: int
    sigma: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def residuals(self, transform: SimilarityTransform | None = None) -> np.ndarray:
        """Offsets (N, 2) of reference minus (transformed) image positions, in pixels."""
        src = np.column_stack([self.x, self.y])
        if transform is not None:
            src = transform(src)
        return np.column_stack([self.x_ref, self.y_ref]) - src


@dataclass
class AlignmentResult:
    """An image aligned onto a reference grid.

    Attributes
    ----------
    data, variance, mask :
        On the reference grid (``variance`` None if not given).
    wcs : astropy.wcs.WCS or None
        The grid's WCS.
    transform : numpy.ndarray
        3×3 matrix of the residual similarity transform applied after the WCS step
        (image → reference pixels); identity if not refined.
    shift : tuple of float
        Its translation (dx, dy) in pixels.
    rotation : float
        Its rotation in degrees.
    scale : float
        Its scale factor.
    rms_px : float
        RMS (2-D, ``sqrt(mean(dx² + dy²))``) of matched-star offsets after alignment, pixels.
    rms_arcsec : float or None
        The same in arcsec (needs a WCS).
    n_matched : int
        Stars in the RMS.
    n_image, n_reference : int
        Stars detected in each.
    matches : StarMatch or None
        The post-alignment matches.
    info : dict
        ``fit_rms_px`` (residual RMS of the transform fit), ``fit_stars``, and
        ``expected_rms_px``: the RMS that centroid noise alone would give (from the Gaussian
        fits' errors); ``rms_px`` well above it means a real registration error.
    """

    data: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    wcs: WCS | None
    transform: np.ndarray
    shift: tuple[float, float]
    rotation: float
    scale: float
    rms_px: float
    rms_arcsec: float | None
    n_matched: int
    n_image: int
    n_reference: int
    matches: StarMatch | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _candidates(
    data: np.ndarray,
    mask: np.ndarray | None,
    threshold: float,
    max_stars: int,
    saturation: float | None,
    min_snr: float = 0.0,
) -> tuple[Table, BackgroundEstimate]:
    arr = np.asarray(data, dtype=np.float64)
    bad = ~np.isfinite(arr) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(arr))
    bkg = estimate_background(arr, bad)
    stars = detect_stars(arr, bad, background=bkg, threshold=threshold)
    if len(stars):
        ok = np.asarray(stars["flag"]) & ~0x1 == 0  # allow "blended" bit only
        if saturation is not None:
            ok &= np.asarray(stars["peak"]) + bkg.global_background < 0.8 * saturation
        ny, nx = arr.shape
        ok &= (stars["x"] > 3) & (stars["x"] < nx - 4) & (stars["y"] > 3) & (stars["y"] < ny - 4)
        ok &= np.asarray(stars["snr"]) >= min_snr
        # isolation: no detection brighter than 10 % of the star within 2 FWHM; blends'
        # centroids shift with the seeing. Skipped if it would leave too few stars.
        xy = np.column_stack([stars["x"], stars["y"]])
        flux = np.asarray(stars["flux"], dtype=float)
        radius = 2.0 * _fwhm_guess(stars)
        isolated = np.ones(len(stars), dtype=bool)
        for i, nb in enumerate(cKDTree(xy).query_ball_point(xy, radius)):
            others = [j for j in nb if j != i]
            isolated[i] = not others or bool(np.all(flux[others] < 0.1 * flux[i]))
        if (ok & isolated).sum() >= 6:
            ok &= isolated
        stars = stars[ok][:max_stars]
    return stars, bkg


def _refine_centroids(
    data: np.ndarray, mask: np.ndarray, bkg: BackgroundEstimate, xy: np.ndarray, fwhm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-fit centroids (N, 2), fluxes, centroid errors (N, 2) and FWHMs; NaN on failure."""
    from photutils.psf import fit_2dgaussian

    half = int(max(3, math.ceil(1.2 * fwhm)))
    sub = np.where(mask, 0.0, np.asarray(data, dtype=float) - bkg.background)
    error = np.where(mask | ~(bkg.rms > 0), bkg.global_rms, bkg.rms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_2dgaussian(
            sub,
            xypos=xy,
            fwhm=fwhm,
            fix_fwhm=False,
            fit_shape=2 * half + 1,
            mask=mask,
            error=error,
        )
    res = fit.results
    pos = np.column_stack([np.asarray(res["x_fit"], float), np.asarray(res["y_fit"], float)])
    flux = np.asarray(res["flux_fit"], dtype=float)
    if "x_err" in res.colnames:
        err = np.column_stack([np.asarray(res["x_err"], float), np.asarray(res["y_err"], float)])
    else:  # pragma: no cover - older photutils
        err = np.full(pos.shape, np.nan)
    fwhm_fit = np.asarray(res["fwhm_fit"], dtype=float)
    moved = np.hypot(*(pos - xy).T) > 1.5
    pos[moved] = np.nan
    return pos, flux, err, fwhm_fit


def _winpos_centroids(
    data: np.ndarray, mask: np.ndarray, bkg: BackgroundEstimate, xy: np.ndarray, fwhm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed centroids (SExtractor XWIN), aperture fluxes and approximate errors.

    The per-axis error is the background-limited PSF-centroid error of a Gaussian star,
    ``sqrt(8π) σ_psf² σ_bkg / F`` (``σ_psf = fwhm / 2.3548``, ``F`` the flux in a radius of
    2 FWHM).
    """
    import sep

    sub = np.ascontiguousarray(np.where(mask, 0.0, np.asarray(data, float) - bkg.background))
    m = np.ascontiguousarray(mask)
    sig = fwhm * SIGMA_PER_FWHM
    x0, y0 = xy[:, 0].copy(), xy[:, 1].copy()
    xw, yw, flag = sep.winpos(sub, x0, y0, np.full(len(xy), sig), mask=m)
    pos = np.column_stack([xw, yw])
    bad = (flag != 0) | ~np.all(np.isfinite(pos), axis=1) | (np.hypot(xw - x0, yw - y0) > 1.5)
    flux, _, _ = sep.sum_circle(sub, xw, yw, 2.0 * fwhm, mask=m, subpix=5)
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.sqrt(8.0 * np.pi) * sig**2 * bkg.global_rms / np.where(flux > 0, flux, np.nan)
    pos[bad] = np.nan
    return pos, flux, np.column_stack([e, e])


def _half_light_radius(
    data: np.ndarray, mask: np.ndarray, bkg: BackgroundEstimate, xy: np.ndarray
) -> np.ndarray:
    """Half-light radii in pixels (``sep.flux_radius``); NaN where sep flags a problem."""
    import sep

    sub = np.ascontiguousarray(np.where(mask, 0.0, np.asarray(data, float) - bkg.background))
    rmax = np.full(len(xy), 15.0)
    r50, flag = sep.flux_radius(
        sub,
        xy[:, 0].copy(),
        xy[:, 1].copy(),
        rmax,
        0.5,
        mask=np.ascontiguousarray(mask),
        normflux=None,
        subpix=5,
    )
    return np.where(flag == 0, r50, np.nan)


def _fwhm_guess(stars: Table) -> float:
    if len(stars) == 0:
        return 3.0
    s = np.sqrt(0.5 * (np.asarray(stars["a"]) ** 2 + np.asarray(stars["b"]) ** 2))
    return float(np.clip(FWHM_PER_SIGMA * np.median(s[: max(5, len(s) // 2)]), 1.5, 20.0))


def match_stars(
    data: np.ndarray,
    reference: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    threshold: float = 5.0,
    max_stars: int = 60,
    radius: float = 3.0,
    min_matches: int = 3,
    saturation: float | None = None,
    allow_asterism: bool = True,
    refine: bool = True,
    min_snr: float = 20.0,
    max_fwhm_ratio: float | None = 2.0,
    max_fit: int = 40,
    centroid: str = "gaussian",
) -> StarMatch:
    """Match stars between an image and a reference.

    Stars are matched by nearest neighbour within ``radius`` pixels (images on nearly the same
    grid); if fewer than ``min_matches`` pairs result and ``allow_asterism``, ``astroalign``'s
    triangle matching finds the transform first (any shift/rotation). Centroids and fluxes are
    then re-measured: ``centroid='gaussian'`` (default) fits a pixel-integrated Gaussian to
    each star (``photutils.psf.fit_2dgaussian``, with errors); ``'winpos'`` uses SExtractor's
    windowed centroids (``sep.winpos``) and 2-FWHM aperture fluxes: ~3× faster overall but
    a larger RMS on the NIRCam data (0.25 vs 0.14 px, see docs/imaging.md). Only stars with a
    detection S/N of at least ``min_snr`` are used (faint stars' centroid noise,
    ~FWHM / (2.35 S/N) px, would dominate the RMS), and, when enough remain, only compact
    ones: half-light radius (``sep.flux_radius``) at most ``max_fwhm_ratio`` times the 20th
    percentile of the matched sources' in each image.
    At most ``max_fit`` pairs (the brightest) are fitted.

    Raises
    ------
    TooFewStarsError
        Fewer than ``min_matches`` matched stars.
    """
    img_mask = (~np.isfinite(data)) if mask is None else (mask | ~np.isfinite(data))
    ref_mask = (
        (~np.isfinite(reference))
        if reference_mask is None
        else (reference_mask | ~np.isfinite(reference))
    )
    s_img, b_img = _candidates(data, img_mask, threshold, max_stars, saturation, min_snr)
    s_ref, b_ref = _candidates(reference, ref_mask, threshold, max_stars, saturation, min_snr)
    n_i, n_r = len(s_img), len(s_ref)
    if min(n_i, n_r) < min_matches:
        raise TooFewStarsError(n_i, n_r, 0, min_matches)
    xy_i = np.column_stack([s_img["x"], s_img["y"]])
    xy_r = np.column_stack([s_ref["x"], s_ref["y"]])
    pairs = _nearest_pairs(xy_i, xy_r, radius)
    if len(pairs) < min_matches and allow_asterism:
        import astroalign

        try:
            tform, _ = astroalign.find_transform(xy_i, xy_r, max_control_points=max_stars)
        except Exception as exc:  # astroalign raises ValueError / MaxIterError
            raise TooFewStarsError(
                n_i, n_r, len(pairs), min_matches, hint=f"asterism matching failed: {exc}"
            ) from exc
        pairs = _nearest_pairs(np.asarray(tform(xy_i)), xy_r, radius)
    if len(pairs) < min_matches:
        raise TooFewStarsError(n_i, n_r, len(pairs), min_matches)
    ii, rr = pairs[:, 0], pairs[:, 1]
    pi, pr = xy_i[ii], xy_r[rr]
    fi = np.asarray(s_img["flux"], float)[ii]
    fr = np.asarray(s_ref["flux"], float)[rr]
    if max_fwhm_ratio is not None and len(pi) >= 2 * min_matches:
        # keep compact sources: galaxies' centroids move with seeing and morphology
        ok = np.ones(len(pi), dtype=bool)
        for arr, m, b, xy in ((data, img_mask, b_img, pi), (reference, ref_mask, b_ref, pr)):
            r50 = _half_light_radius(arr, m, b, xy)
            good_r = r50[np.isfinite(r50)]
            if len(good_r):
                ok &= np.isfinite(r50) & (r50 <= max_fwhm_ratio * np.percentile(good_r, 20))
        if ok.sum() >= min_matches:
            pi, pr, fi, fr = pi[ok], pr[ok], fi[ok], fr[ok]
    order = np.argsort(-fr)[:max_fit]
    pi, pr, fi, fr = pi[order], pr[order], fi[order], fr[order]
    sigma = None
    if refine:
        if centroid == "gaussian":
            pi, fi, ei, _ = _refine_centroids(data, img_mask, b_img, pi, _fwhm_guess(s_img))
            pr, fr, er, _ = _refine_centroids(reference, ref_mask, b_ref, pr, _fwhm_guess(s_ref))
        elif centroid == "winpos":
            pi, fi, ei = _winpos_centroids(data, img_mask, b_img, pi, _fwhm_guess(s_img))
            pr, fr, er = _winpos_centroids(reference, ref_mask, b_ref, pr, _fwhm_guess(s_ref))
        else:
            raise AlignError(f"unknown centroid method {centroid!r}", hint="winpos or gaussian")
        ok = np.all(np.isfinite(pi), axis=1) & np.all(np.isfinite(pr), axis=1)
        pi, pr, fi, fr = pi[ok], pr[ok], fi[ok], fr[ok]
        sigma = np.sqrt(np.sum(ei[ok] ** 2, axis=1) + np.sum(er[ok] ** 2, axis=1))
    if len(pi) < min_matches:
        raise TooFewStarsError(n_i, n_r, len(pi), min_matches)
    return StarMatch(pi[:, 0], pi[:, 1], pr[:, 0], pr[:, 1], fi, fr, n_i, n_r, sigma)


def _nearest_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Mutual nearest neighbours within ``radius``: array (K, 2) of indices into a and b."""
    if len(a) == 0 or len(b) == 0:
        return np.empty((0, 2), dtype=int)
    da, ia = cKDTree(b).query(a)
    _, ib = cKDTree(a).query(b)
    keep = [
        (i, j) for i, (d, j) in enumerate(zip(da, ia, strict=True)) if d <= radius and ib[j] == i
    ]
    return np.asarray(keep, dtype=int).reshape(-1, 2)


def _fit_similarity(match: StarMatch, clip: float = 3.0) -> tuple[SimilarityTransform, np.ndarray]:
    src = np.column_stack([match.x, match.y])
    dst = np.column_stack([match.x_ref, match.y_ref])
    keep = np.ones(len(src), dtype=bool)
    tform = SimilarityTransform()
    for _ in range(5):
        estimate = SimilarityTransform.from_estimate(src[keep], dst[keep])
        if not estimate or not isinstance(estimate, SimilarityTransform):
            raise AlignError("the similarity fit failed (degenerate star positions)")
        tform = estimate
        r = np.hypot(*(dst - tform(src)).T)
        clipped = ~sigma_clip(r, sigma=clip, maxiters=3).mask if len(r) > 4 else keep
        new_keep = clipped & (r < 2.0)
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return tform, keep


def _warp(arr: np.ndarray, tform: SimilarityTransform, order: int, cval: float) -> np.ndarray:
    # skimage.warp wants the map from output (reference) to input coordinates
    return np.asarray(
        warp(arr, tform.inverse, order=order, mode="constant", cval=cval, preserve_range=True)
    )


def _rms(res: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(res**2, axis=1)))) if len(res) else float("nan")


def _pixel_scale_arcsec(wcs: WCS | None) -> float | None:
    if wcs is None:
        return None
    try:
        return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)
    except Exception:  # degenerate WCS
        return None


def align_image(
    data: np.ndarray,
    reference: np.ndarray,
    *,
    wcs: WCS | None = None,
    reference_wcs: WCS | None = None,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    refine: bool = True,
    method: str = "interp",
    threshold: float = 5.0,
    min_matches: int = 3,
    saturation: float | None = None,
    min_snr: float = 20.0,
    max_fwhm_ratio: float | None = 2.0,
    centroid: str = "gaussian",
) -> AlignmentResult:
    """Align an image onto a reference's pixel grid.

    With both WCSs the image is first reprojected (:func:`reproject_to`); without them the
    images are assumed to share a grid up to a similarity transform found from the stars.
    With ``refine`` the residual similarity transform is fitted to matched stars
    (Gaussian-fit centroids, sigma-clipped) and applied by bicubic resampling.

    Parameters
    ----------
    data, reference : numpy.ndarray
        Image and reference (2-D).
    wcs, reference_wcs : astropy.wcs.WCS, optional
        Their celestial WCSs (both or neither).
    variance, mask :
        Of the image; carried along.
    reference_mask : numpy.ndarray, optional
        Of the reference.
    refine : bool
        Fit and apply the residual transform from stars.
    method : {'interp', 'adaptive'}
        Reprojection method.
    threshold : float
        Star detection threshold in sigma.
    min_matches : int
        Minimum matched stars for refinement and the RMS.
    saturation : float, optional
        Saturation level (image units) to exclude saturated stars.
    min_snr : float
        Minimum detection S/N of the stars used.
    max_fwhm_ratio : float or None
        Compactness cut of :func:`match_stars` (None keeps extended sources).
    centroid : {'gaussian', 'winpos'}
        Centroid method of :func:`match_stars`.

    Returns
    -------
    AlignmentResult

    Raises
    ------
    NonOverlappingError
        Disjoint footprints.
    TooFewStarsError
        Refinement asked for but too few stars matched (``refine=False`` skips it).
    """
    ref = np.asarray(reference, dtype=np.float64)
    if (wcs is None) != (reference_wcs is None):
        raise AlignError(
            "give the WCS of both images or of neither",
            hint="without WCSs the images are aligned from their stars only",
        )
    img_mask = None if mask is None else np.asarray(mask, dtype=bool)
    if wcs is not None and reference_wcs is not None:
        rp = reproject_to(
            data,
            wcs,
            reference_wcs,
            (int(ref.shape[0]), int(ref.shape[1])),
            variance=variance,
            mask=img_mask,
            method=method,
        )
        cur, cur_var, cur_mask = rp.data.astype(np.float64), rp.variance, rp.mask
    else:
        cur = np.asarray(data, dtype=np.float64)
        if cur.shape != ref.shape and not refine:
            raise AlignError(f"shapes differ ({cur.shape} vs {ref.shape}) and there is no WCS")
        cur_var = None if variance is None else np.asarray(variance, dtype=np.float32)
        cur_mask = (~np.isfinite(cur)) if img_mask is None else (img_mask | ~np.isfinite(cur))
    identity = np.eye(3)
    ref_mask = None if reference_mask is None else np.asarray(reference_mask, dtype=bool)
    scale_arcsec = _pixel_scale_arcsec(reference_wcs)
    if not refine:
        return AlignmentResult(
            data=np.where(cur_mask, np.nan, cur).astype(np.float32),
            variance=cur_var,
            mask=cur_mask,
            wcs=reference_wcs,
            transform=identity,
            shift=(0.0, 0.0),
            rotation=0.0,
            scale=1.0,
            rms_px=float("nan"),
            rms_arcsec=None,
            n_matched=0,
            n_image=0,
            n_reference=0,
        )
    match = match_stars(
        np.where(cur_mask, np.nan, cur),
        ref,
        mask=cur_mask,
        reference_mask=ref_mask,
        threshold=threshold,
        min_matches=min_matches,
        saturation=saturation,
        min_snr=min_snr,
        max_fwhm_ratio=max_fwhm_ratio,
        centroid=centroid,
    )
    tform, keep = _fit_similarity(match)
    fit_rms = _rms(match.residuals(tform)[keep])
    if cur.shape != ref.shape:
        # put the image on the reference's shape first (no WCS case)
        pad = np.full(ref.shape, np.nan)
        h, w = min(cur.shape[0], ref.shape[0]), min(cur.shape[1], ref.shape[1])
        pad[:h, :w] = cur[:h, :w]
        cur = pad
        pm = np.ones(ref.shape, dtype=bool)
        pm[:h, :w] = cur_mask[:h, :w]
        cur_mask = pm
        if cur_var is not None:
            pv = np.full(ref.shape, np.nan, dtype=np.float32)
            pv[:h, :w] = cur_var[:h, :w]
            cur_var = pv
    filled = np.where(cur_mask, float(np.median(cur[~cur_mask])), cur)
    out = _warp(filled, tform, 3, 0.0)
    moved_mask = _warp(cur_mask.astype(float), tform, 1, 1.0) > 0.01
    out_var = (
        None
        if cur_var is None
        else _warp(np.where(cur_mask, 0.0, cur_var), tform, 1, 0.0).astype(np.float32)
    )
    out = np.where(moved_mask, np.nan, out)
    # verify: re-measure the matched stars on the aligned image
    try:
        after = match_stars(
            out,
            ref,
            mask=moved_mask,
            reference_mask=ref_mask,
            threshold=threshold,
            min_matches=min_matches,
            saturation=saturation,
            allow_asterism=False,
            min_snr=min_snr,
            max_fwhm_ratio=max_fwhm_ratio,
            centroid=centroid,
        )
        res = after.residuals()
        rows = _clip_rows(res)
        rms = _rms(res[rows])
        n_matched = int(rows.sum())
        expected = (
            float(np.sqrt(np.nanmean(after.sigma[rows] ** 2)))
            if after.sigma is not None
            else float("nan")
        )
    except TooFewStarsError:
        after, rms, n_matched, expected = None, fit_rms, int(keep.sum()), float("nan")
    return AlignmentResult(
        data=out.astype(np.float32),
        variance=out_var,
        mask=moved_mask,
        wcs=reference_wcs,
        transform=np.asarray(tform.params),
        shift=(float(tform.translation[0]), float(tform.translation[1])),
        rotation=float(math.degrees(tform.rotation)),
        scale=float(tform.scale),
        rms_px=rms,
        rms_arcsec=rms * scale_arcsec if scale_arcsec is not None else None,
        n_matched=n_matched,
        n_image=match.n_image,
        n_reference=match.n_reference,
        matches=after,
        info={
            "fit_rms_px": fit_rms,
            "fit_stars": int(keep.sum()),
            "expected_rms_px": expected,
        },
    )


def _clip_rows(res: np.ndarray) -> np.ndarray:
    """Rows kept by a 3σ clip of the offset lengths (outliers are mismatches/blends)."""
    r = np.hypot(*res.T)
    if len(r) <= 4:
        return np.ones(len(r), dtype=bool)
    return np.asarray(~sigma_clip(r, sigma=3.0, maxiters=3).mask) & (r < 2.0)


def register_many(
    images: Sequence[Any],
    *,
    wcs: Sequence[WCS | None] | None = None,
    variances: Sequence[np.ndarray | None] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    reference_index: int = 0,
    refine: bool = True,
    **kwargs: Any,
) -> list[AlignmentResult]:
    """Align several images onto the grid of one of them.

    Parameters
    ----------
    images : sequence
        2-D arrays, or objects with ``.data`` and ``.wcs`` (e.g. :class:`FitsImage`).
    wcs : sequence of WCS, optional
        WCSs for plain arrays.
    variances, masks : sequences, optional
        Per image.
    reference_index : int
        The image whose grid is used; its own result has RMS 0 and the identity transform.
    refine : bool
        Star-based refinement (see :func:`align_image`).
    **kwargs :
        Passed to :func:`align_image`.

    Returns
    -------
    list of AlignmentResult
        In input order.
    """
    datas: list[np.ndarray] = []
    wcss: list[WCS | None] = []
    for i, im in enumerate(images):
        if hasattr(im, "data"):
            datas.append(np.asarray(im.data, dtype=np.float64))
            try:
                wcss.append(im.wcs if wcs is None else wcs[i])
            except AstridError:
                wcss.append(None)
        else:
            datas.append(np.asarray(im, dtype=np.float64))
            wcss.append(None if wcs is None else wcs[i])
    if not datas:
        raise AlignError("no images to register")
    ref = datas[reference_index]
    ref_wcs = wcss[reference_index]
    ref_mask = None if masks is None else masks[reference_index]
    out: list[AlignmentResult] = []
    for i, d in enumerate(datas):
        var = None if variances is None else variances[i]
        m = None if masks is None else masks[i]
        if i == reference_index:
            bad = ~np.isfinite(d) if m is None else (np.asarray(m, bool) | ~np.isfinite(d))
            out.append(
                AlignmentResult(
                    data=np.where(bad, np.nan, d).astype(np.float32),
                    variance=None if var is None else np.asarray(var, np.float32),
                    mask=bad,
                    wcs=ref_wcs,
                    transform=np.eye(3),
                    shift=(0.0, 0.0),
                    rotation=0.0,
                    scale=1.0,
                    rms_px=0.0,
                    rms_arcsec=0.0,
                    n_matched=0,
                    n_image=0,
                    n_reference=0,
                )
            )
            continue
        use_wcs = wcss[i] is not None and ref_wcs is not None
        out.append(
            align_image(
                d,
                ref,
                wcs=wcss[i] if use_wcs else None,
                reference_wcs=ref_wcs if use_wcs else None,
                variance=var,
                mask=m,
                reference_mask=ref_mask,
                refine=refine,
                **kwargs,
            )
        )
    return out


@dataclass
class Coadd:
    """A weighted coadd: image, variance (image units²), mask, images per pixel, weights."""

    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    n_images: np.ndarray
    weights: np.ndarray


def coadd(
    images: Sequence[np.ndarray | AlignmentResult],
    *,
    variances: Sequence[np.ndarray | None] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    weights: str | Sequence[float] = "inverse-variance",
    scales: Sequence[float] | None = None,
) -> Coadd:
    """Weighted mean of images already on one grid.

    Parameters
    ----------
    images : sequence of numpy.ndarray or AlignmentResult
        Images (same shape); an AlignmentResult brings its variance and mask.
    variances : sequence of numpy.ndarray, optional
        Per-pixel variances; without them each image's variance is its robust pixel scatter
        squared (a constant).
    masks : sequence of numpy.ndarray, optional
        True = excluded.
    weights : {'inverse-variance', 'uniform'} or sequence of float
        'inverse-variance' weights each image by ``1 / median(variance)`` (one number per image,
        so stars are not down-weighted by their own shot noise); 'uniform' weights equally.
    scales : sequence of float, optional
        Multiply each image (and its variance by the square) before combining, e.g. to a
        common photometric zero point.

    Returns
    -------
    Coadd
        ``data = Σ w_i s_i I_i / Σ w_i`` over unmasked images at each pixel,
        ``variance = Σ w_i² s_i² V_i / (Σ w_i)²``; ``mask`` where no image contributes.
    """
    if len(images) == 0:
        raise AlignError("no images to coadd")
    arrs, vars_, msks = [], [], []
    for i, im in enumerate(images):
        if isinstance(im, AlignmentResult):
            a, v, m = im.data, im.variance, im.mask
        else:
            a, v, m = im, None, None
        if variances is not None and variances[i] is not None:
            v = variances[i]
        if masks is not None and masks[i] is not None:
            m = masks[i]
        a = np.asarray(a, dtype=np.float64)
        bad = ~np.isfinite(a) if m is None else (np.asarray(m, bool) | ~np.isfinite(a))
        if v is None:
            good = a[~bad]
            v = np.full(a.shape, robust_sigma(good) ** 2 if good.size else np.nan)
        arrs.append(a)
        vars_.append(np.asarray(v, dtype=np.float64))
        msks.append(bad | ~np.isfinite(v))
    shapes = {a.shape for a in arrs}
    if len(shapes) > 1:
        raise AlignError(
            f"images to coadd have different shapes {sorted(shapes)}",
            hint="register them onto one grid first (register_many)",
        )
    s = np.ones(len(arrs)) if scales is None else np.asarray(scales, dtype=float)
    if isinstance(weights, str):
        if weights == "inverse-variance":
            w = np.array(
                [
                    1.0 / (np.nanmedian(v[~m]) * si**2)
                    for v, m, si in zip(vars_, msks, s, strict=True)
                ]
            )
        elif weights == "uniform":
            w = np.ones(len(arrs))
        else:
            raise AlignError(f"unknown weights {weights!r}", hint="inverse-variance or uniform")
    else:
        w = np.asarray(weights, dtype=float)
    num = np.zeros(arrs[0].shape)
    den = np.zeros(arrs[0].shape)
    var = np.zeros(arrs[0].shape)
    n = np.zeros(arrs[0].shape, dtype=int)
    for a, v, m, wi, si in zip(arrs, vars_, msks, w, s, strict=True):
        use = ~m
        num[use] += wi * si * a[use]
        den[use] += wi
        var[use] += wi**2 * si**2 * v[use]
        n += use
    mask = den <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        data = np.where(mask, np.nan, num / den)
        variance = np.where(mask, np.nan, var / den**2)
    return Coadd(
        data=data.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        n_images=n,
        weights=w,
    )
