"""One entry point for image differencing and a high-level detect-on-a-pair function.

* :func:`difference_images` — ``zogy`` or ``classic`` on two arrays already on the same grid.
* :func:`subtract_pair` — check filters, align
  (:func:`~astrid.science.pair_alignment.align_to_reference`), subtract; returns the products
  and the :class:`~astrid.science.pair_alignment.AlignedPair` (what ``astrid subtract``
  writes).
* :func:`detect_pair` — :func:`subtract_pair` + extraction, features, rule score and vetting
  (:mod:`astrid.science.candidate_vetting`, with a second ZOGY pass under cosmic rays);
  returns an astropy Table with at least ``ra, dec, x, y, snr, flux, flux_err, mag, score``.

Inputs may be paths, FITS bytes, :class:`~astrid.science.fitsio.FitsImage` objects or plain
arrays; plain arrays (no WCS) are taken as already aligned. Errors subclass
:class:`~astrid.science.diffimage.DifferenceError`. The alignment names
(:func:`align_to_reference`, :class:`AlignedPair`, :class:`NoOverlapError`,
:class:`FilterMismatchError`) and :func:`prepare_reference` are re-exported here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from astropy.table import Table

from astrid.science.alard_lupton import KernelFitError, classic
from astrid.science.candidate_vetting import psf_arrays, vet_cosmic_rays, vet_star_residuals
from astrid.science.diffimage import (
    DifferenceError,
    DifferenceResult,
    PreparedImage,
    ShapeMismatchError,
    prepare_image,
)
from astrid.science.extract import extract_candidates, zero_point_from_header
from astrid.science.morphology import dilate_square
from astrid.science.pair_alignment import (
    AlignedPair,
    FilterMismatchError,
    NoOverlapError,
    align_to_reference,
    refine_shift,
)
from astrid.science.prepared_reference import (
    GAIN_KEYS,
    SATURATION_KEYS,
    ImageInput,
    PreparedReference,
    header_float,
    prepare_reference,
)
from astrid.science.zogy import zogy

__all__ = [
    "AlignedPair",
    "DifferenceError",
    "DifferenceResult",
    "FilterMismatchError",
    "KernelFitError",
    "NoOverlapError",
    "PreparedReference",
    "ShapeMismatchError",
    "UnknownMethodError",
    "align_to_reference",
    "detect_pair",
    "difference_images",
    "prepare_reference",
    "subtract_pair",
]

Method = Literal["zogy", "classic"]


class UnknownMethodError(DifferenceError):
    """The differencing method is neither ``zogy`` nor ``classic``."""


def difference_images(
    new: np.ndarray,
    ref: np.ndarray,
    method: str = "zogy",
    *,
    new_mask: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    new_prepared: PreparedImage | None = None,
    ref_prepared: PreparedImage | None = None,
    **kwargs: Any,
) -> DifferenceResult:
    """Difference two images on the same pixel grid.

    Parameters
    ----------
    new, ref : numpy.ndarray
        New and reference images, shape (ny, nx), with their sky.
    method : {"zogy", "classic"}
        ZOGY proper subtraction or Alard-Lupton PSF matching with decorrelation.
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded.
    new_prepared, ref_prepared : PreparedImage, optional
        Outputs of :func:`astrid.science.diffimage.prepare_image` to re-use.
    **kwargs
        Passed to :func:`astrid.science.zogy.zogy` or
        :func:`astrid.science.alard_lupton.classic` (gains, saturation, PSFs...).

    Returns
    -------
    DifferenceResult
    """
    common: dict[str, Any] = dict(
        new_mask=new_mask, ref_mask=ref_mask, new_prepared=new_prepared, ref_prepared=ref_prepared
    )
    if method == "zogy":
        return zogy(new, ref, **common, **kwargs)
    if method == "classic":
        return classic(new, ref, **common, **kwargs)
    raise UnknownMethodError(f"unknown differencing method {method!r}", hint="use zogy or classic")


#: subtract_pair's options about the reference (a prepared reference has its own)
_REF_OPTIONS = ("ref_gain", "ref_saturation", "ref_psf", "ref_noise")


def subtract_pair(
    new: ImageInput,
    ref: ImageInput | PreparedReference,
    method: str = "zogy",
    *,
    new_mask: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    force_filter: bool = False,
    min_overlap: float = 0.05,
    refine: bool = True,
    **kwargs: Any,
) -> tuple[DifferenceResult, AlignedPair]:
    """Align (if needed) and subtract a pair of images.

    Parameters
    ----------
    new, ref : path, bytes, FitsImage or numpy.ndarray
        The images (see :func:`align_to_reference`). ``ref`` may be a
        :class:`~astrid.science.prepared_reference.PreparedReference`
        (:func:`~astrid.science.prepared_reference.prepare_reference`, e.g. kept for many new
        images): the same result, without loading and preparing the reference again; its
        mask, gain, saturation, PSF, noise and ``default_fwhm`` are then the ones it was
        prepared with (no ``ref_mask`` or ``ref_*`` options here).
    method : {"zogy", "classic"}
        Differencing method.
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded, on each input's own grid.
    force_filter : bool
        Accept different FILTER keywords.
    min_overlap : float
        Smallest accepted overlap fraction.
    refine : bool
        Remove a residual sub-pixel shift measured on matched stars after resampling.
    **kwargs
        Passed to :func:`difference`. Gains and saturation levels default to the GAIN and
        SATURATE header keywords. ``new_noise`` / ``ref_noise`` (image units) replace the
        measured background noise of each image (e.g. from a propagated variance map).

    Returns
    -------
    result : DifferenceResult
    pair : AlignedPair
    """
    if method not in ("zogy", "classic"):
        raise UnknownMethodError(
            f"unknown differencing method {method!r}", hint="use zogy or classic"
        )
    if isinstance(ref, PreparedReference):
        given = sorted(k for k in _REF_OPTIONS if k in kwargs)
        if given or kwargs.get("default_fwhm", 3.0) != ref.default_fwhm:
            raise DifferenceError(
                "a prepared reference carries its own options: "
                + (", ".join(given) if given else f"default_fwhm {ref.default_fwhm}"),
                hint="pass them to prepare_reference instead",
            )
    pair = align_to_reference(
        new, ref, new_mask=new_mask, ref_mask=ref_mask, min_overlap=min_overlap,
        force_filter=force_filter, measure_noise=not kwargs.get("new_noise"),
    )  # fmt: skip
    opts = {
        "gain": kwargs.pop("new_gain", header_float(pair.new_header, *GAIN_KEYS)),
        "saturation": kwargs.pop("new_saturation", header_float(pair.new_header, *SATURATION_KEYS)),
        "psf": kwargs.pop("new_psf", None),
        "default_fwhm": kwargs.get("default_fwhm", 3.0),
        "noise": kwargs.pop("new_noise", None) or pair.new_noise,
    }
    new_prep = prepare_image(pair.new, pair.new_mask, **opts)
    if isinstance(ref, PreparedReference):
        ref_prep = ref.prepared
    else:
        ropts = {
            "gain": kwargs.pop("ref_gain", header_float(pair.ref_header, *GAIN_KEYS)),
            "saturation": kwargs.pop(
                "ref_saturation", header_float(pair.ref_header, *SATURATION_KEYS)
            ),
            "psf": kwargs.pop("ref_psf", None),
            "default_fwhm": kwargs.get("default_fwhm", 3.0),
            "noise": kwargs.pop("ref_noise", None),
        }
        ref_prep = prepare_image(pair.ref, pair.ref_mask, **ropts)
    if refine and pair.resampled and refine_shift(pair, new_prep, ref_prep) > 0.05:
        new_prep = prepare_image(pair.new, pair.new_mask, **opts)
    kwargs.pop("default_fwhm", None)
    pair.prepared = (new_prep, ref_prep)
    result = difference_images(pair.new, pair.ref, method, new_prepared=new_prep,
                        ref_prepared=ref_prep, **kwargs)  # fmt: skip
    result.notes[:0] = pair.notes
    return result, pair


def detect_pair(
    new: ImageInput,
    ref: ImageInput,
    method: str = "zogy",
    *,
    threshold: float = 5.0,
    zero_point: float | None = None,
    min_score: float = 0.0,
    negative: bool = True,
    new_mask: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    force_filter: bool = False,
    cosmics: bool = True,
    rescore_rays: bool = True,
    **kwargs: Any,
) -> Table:
    """Align, subtract, extract, filter and score candidates on a pair of images.

    Parameters
    ----------
    new, ref : path, bytes, FitsImage or numpy.ndarray
        The images; FITS inputs need a celestial WCS, plain arrays must be aligned.
    method : {"zogy", "classic"}
        Differencing method.
    threshold : float
        Detection threshold in sigma of the score map (S_corr for zogy).
    zero_point : float, optional
        Magnitude zero point of the reference's flux units; by default from the reference
        header (MAGZP, MAGZERO...), else from the new header corrected by the flux ratio,
        else magnitudes are NaN.
    min_score : float
        Drop candidates whose rule-based score is below this (0 keeps all).
    negative : bool
        Also report fading (negative) candidates (``sign = -1``).
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded.
    force_filter : bool
        Accept different filters.
    cosmics : bool
        Vet candidates for single- and multi-pixel cosmic rays with L.A.Cosmic on stamps of
        the image each comes from (:func:`astrid.science.vetting.cosmic_ray_hits`); a hit
        sets ``flag_cr`` and multiplies the score by 0.1 (as ZOGY's one-pixel test does).
    rescore_rays : bool
        With ``cosmics``: when rays were found, mask their pixels (in the image each is in)
        and difference once more, so that a transient within a few pixels of a ray, which
        is only a shoulder of the ray's peak on the score map, becomes a peak of its own
        (a second ZOGY pass; candidates of the first pass keep their cosmic-ray verdict).
    **kwargs
        Passed to :func:`subtract_pair`.

    Returns
    -------
    astropy.table.Table
        Candidates (see :data:`astrid.science.extract.CANDIDATE_COLUMNS`); ``meta`` records
        the method, threshold, flux ratio, overlap and notes (fallbacks taken).
    """
    result, pair = subtract_pair(new, ref, method, new_mask=new_mask, ref_mask=ref_mask,
                                 force_filter=force_filter, **kwargs)  # fmt: skip
    if zero_point is None:
        zero_point = zero_point_from_header(pair.ref_header)
    if zero_point is None:
        zp_new = zero_point_from_header(pair.new_header)
        if zp_new is not None and result.flux_ratio > 0:
            zero_point = zp_new - 2.5 * float(np.log10(result.flux_ratio))
    table = extract_candidates(result, threshold, wcs=pair.wcs, zero_point=zero_point,
                               negative=negative)  # fmt: skip
    if cosmics and len(table):
        rays = vet_cosmic_rays(table, pair, psf_arrays(result), stars=result.ref_stars)
        if rescore_rays and method == "zogy" and (rays[0].any() or rays[1].any()):
            result, table = _rescore_under_rays(table, result, pair, rays, method, threshold,
                                                zero_point, negative, kwargs)  # fmt: skip
    if len(table):
        vet_star_residuals(table, result)
    if min_score > 0 and len(table):
        table = table[table["score"] >= min_score]
    table.meta["overlap"] = pair.overlap
    table.meta["area_pix"] = int((~result.mask).sum())
    return table


def _rescore_under_rays(
    table: Table,
    result: DifferenceResult,
    pair: AlignedPair,
    rays: tuple[np.ndarray, np.ndarray],
    method: str,
    threshold: float,
    zero_point: float | None,
    negative: bool,
    kwargs: dict[str, Any],
) -> tuple[DifferenceResult, Table]:
    """Difference again with the rays' pixels masked; candidates from the second pass.

    A ray is zeroed in both images like any masked pixel (grown by 1 px in the output mask
    unless it lies on a bright source), so a transient beside it keeps most of its S/N.
    The rays themselves disappear; a second-pass candidate within 1.5 px of a first-pass
    one (same sign) takes its cosmic-ray verdict, the others are vetted afresh. The score
    keeps the first pass's normalisation (``score_scale``).
    """
    from dataclasses import replace

    if pair.prepared is None:
        return result, table
    new_prep, ref_prep = pair.prepared
    # one pixel more: resampling and the PSF spread a ray's edge beyond what L.A.Cosmic flags
    new_prep = replace(new_prep, mask=new_prep.mask | dilate_square(rays[0]))
    ref_prep = replace(ref_prep, mask=ref_prep.mask | dilate_square(rays[1]))
    prep_only = {"new_gain", "ref_gain", "new_saturation", "ref_saturation", "new_psf",
                 "ref_psf", "new_noise", "ref_noise", "default_fwhm", "refine",
                 "min_overlap"}  # fmt: skip
    rest = {k: v for k, v in kwargs.items() if k not in prep_only}
    if rest.get("renormalize", True) is not False:
        # The same pair's noise: masking a few ray pixels must not move every score.
        rest["renormalize"] = result.score_scale
    second = difference_images(pair.new, pair.ref, method, new_prepared=new_prep,
                               ref_prepared=ref_prep, **rest)  # fmt: skip
    second.notes[:0] = pair.notes
    second.notes.append(
        f"cosmic rays masked and differenced again: {int(rays[0].sum())} new-image and "
        f"{int(rays[1].sum())} reference pixels"
    )
    again = extract_candidates(second, threshold, wcs=pair.wcs, zero_point=zero_point,
                               negative=negative)  # fmt: skip
    if not len(again):
        return second, again
    fresh = np.ones(len(again), bool)
    old_sign = np.asarray(table["sign"])
    for s in (1, -1):
        a, b = np.asarray(again["sign"]) == s, old_sign == s
        if a.any() and b.any():
            from astrid.science.neighbours import nearest

            d, j = nearest(np.c_[table["x"][b], table["y"][b]], np.c_[again["x"][a], again["y"][a]])
            same = d <= 1.5
            ia = np.flatnonzero(a)[same]
            was_cr = np.asarray(table["flag_cr"], bool)[b][j[same]]
            fresh[ia] = False
            flags = np.asarray(again["flag_cr"], bool)
            newly = was_cr & ~flags[ia]
            sc = np.asarray(again["score"], float)
            sc[ia[newly]] *= 0.1
            again["score"] = sc
            flags[ia] |= was_cr
            again["flag_cr"] = flags
    if fresh.any():
        vet_cosmic_rays(again, pair, psf_arrays(second), only=fresh, stars=second.ref_stars)
    return second, again
