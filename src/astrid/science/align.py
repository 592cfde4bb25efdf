"""Applying an alignment: an image put onto a reference's pixel grid (reproject + refine).

* :func:`align_image` reprojects the image onto the reference's WCS
  (:func:`astrid.science.resample.reproject_to`), then refines: matches its stars to the
  reference's (:func:`astrid.science.starmatch.match_stars`), fits the residual similarity
  transform (:func:`astrid.science.starmatch.fit_similarity`), resamples once more by it, and
  reports the astrometric RMS of the matched stars *after* alignment (re-measured, not the
  fit's) in an :class:`AlignmentResult`.
* :func:`register_many` puts several images on the grid of one of them (combining them is
  :func:`astrid.science.coadd.coadd`).

Conventions: 0-based pixels, x = column; masks True = excluded; variances in image units².
Resampling the variance with the same kernel as the data is the usual approximation (it
ignores the correlation the interpolation introduces).

Errors: :class:`~astrid.science.resample.NonOverlappingError` (footprints do not intersect),
:class:`~astrid.science.starmatch.TooFewStarsError` (fewer matched stars than needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.stats import sigma_clip
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from skimage.transform import SimilarityTransform, warp

from astrid.errors import AstridError
from astrid.science.resample import AlignError, reproject_to
from astrid.science.starmatch import StarMatch, TooFewStarsError, fit_similarity, match_stars

__all__ = ["AlignmentResult", "align_image", "register_many"]


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
    tform, keep = fit_similarity(match)
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
