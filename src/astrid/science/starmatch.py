"""Star matching between an image and a reference, and the similarity transform it fits.

:func:`match_stars` pairs the stars of two images on (nearly) the same grid by mutual nearest
neighbours, or, when the offset is unknown, by asterism matching (``astroalign``), and
re-measures the pairs' centroids (pixel-integrated Gaussian fit, ``photutils.psf.fit_2dgaussian``,
or SExtractor's windowed centroids) into a :class:`StarMatch`. :func:`fit_similarity` fits a
similarity transform (shift, rotation, scale; ``skimage``) to the pairs, sigma-clipped.
Applying it is :mod:`astrid.science.align`'s job.

Conventions: 0-based pixels, x = column; masks True = excluded.

Errors: :class:`TooFewStarsError` (fewer matched stars than needed; the message gives both
counts), a kind of :class:`~astrid.science.resample.AlignError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clip
from astropy.table import Table
from scipy.spatial import cKDTree
from skimage.transform import SimilarityTransform

from astrid.science.background import BackgroundEstimate, estimate_background
from astrid.science.resample import AlignError
from astrid.science.stars import detect_stars
from astrid.science.stats import FWHM_PER_SIGMA, SIGMA_PER_FWHM

__all__ = ["StarMatch", "TooFewStarsError", "fit_similarity", "match_stars"]


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


def fit_similarity(match: StarMatch, clip: float = 3.0) -> tuple[SimilarityTransform, np.ndarray]:
    """Similarity transform image → reference pixels fitted to the pairs, and the pairs kept.

    Refitted up to 5 times without the pairs beyond ``clip`` sigma or 2 px of it.
    """
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
