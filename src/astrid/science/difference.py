"""One entry point for image differencing and a high-level detect-on-a-pair function.

* :func:`difference` — ``zogy`` or ``classic`` on two arrays already on the same grid.
* :func:`align_to_reference` — resample a new image (with celestial WCS) onto the
  reference's pixel grid, refusing pairs that do not overlap.
* :func:`subtract_pair` — check filters, align, subtract; returns the products and the
  reference WCS (what ``astrid subtract`` writes).
* :func:`detect_pair` — :func:`subtract_pair` + extraction, features and rule score; returns
  an astropy Table with at least ``ra, dec, x, y, snr, flux, flux_err, mag, score``.

Inputs may be paths, FITS bytes, :class:`~astrid.science.fitsio.FitsImage` objects or plain
arrays; plain arrays (no WCS) are taken as already aligned. Errors subclass
:class:`~astrid.science.diffimage.DifferenceError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from astrid.science.alard_lupton import KernelFitError, classic
from astrid.science.diffimage import (
    DifferenceError,
    DifferenceResult,
    PreparedImage,
    ShapeMismatchError,
    prepare_image,
)
from astrid.science.extract import extract_candidates, zero_point_from_header
from astrid.science.morphology import dilate_square
from astrid.science.prepared_reference import (
    GAIN_KEYS,
    SATURATION_KEYS,
    ImageInput,
    PreparedReference,
    header_float,
    load_image_input,
    prepare_reference,
    reference_side,
)
from astrid.science.stats import FWHM_PER_SIGMA
from astrid.science.vetting import (
    cosmic_ray_hits,
    residual_fraction,
    star_residual,
    symmetric_residual,
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


class NoOverlapError(DifferenceError):
    """The new image and the reference do not overlap (enough) on the sky."""


class FilterMismatchError(DifferenceError):
    """The two images were taken through different filters."""


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


@dataclass
class AlignedPair:
    """A new image resampled onto the reference grid.

    Attributes
    ----------
    new, ref : numpy.ndarray
        Pixels on the reference grid, float32, shape (ny, nx) of the reference.
    new_mask, ref_mask : numpy.ndarray of bool
        True = excluded (outside the new image's footprint, NaN, flagged).
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the reference grid (None for plain arrays).
    new_header, ref_header : astropy.io.fits.Header
        Headers of the inputs (empty for plain arrays).
    overlap : float
        Fraction of reference pixels covered by the new image.
    resampled : bool
        Whether the new image was resampled (False when the grids already agree).
    new_noise : float or None
        Background noise of the new image measured before resampling (interpolation
        lowers the per-pixel noise but not the low-frequency noise a matched filter sees).
    notes : list of str
        What was done (resampling, residual shift...).
    """

    new: np.ndarray
    ref: np.ndarray
    new_mask: np.ndarray
    ref_mask: np.ndarray
    wcs: WCS | None
    new_header: fits.Header
    ref_header: fits.Header
    overlap: float
    resampled: bool
    notes: list[str] = field(default_factory=list)
    new_noise: float | None = None
    # the prepare_image outputs subtract_pair used: detect_pair re-uses them to look again
    # under cosmic rays (see _rescore_under_rays)
    prepared: tuple[PreparedImage, PreparedImage] | None = None


def _filter_name(header: fits.Header) -> str | None:
    for key in ("FILTER", "FILTNAM", "FILTER1", "BAND"):
        value = header.get(key)
        if value not in (None, ""):
            return str(value).split()[0].strip().lower()
    return None


def _same_grid(a: WCS, b: WCS, shape_a: tuple[int, int], shape_b: tuple[int, int]) -> bool:
    if shape_a != shape_b:
        return False
    ny, nx = shape_b
    xs = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2.0])
    ys = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2.0])
    ra, dec = b.pixel_to_world_values(xs, ys)
    xa, ya = a.world_to_pixel_values(ra, dec)
    return bool(np.all(np.hypot(xa - xs, ya - ys) < 1e-3))


def align_to_reference(
    new: ImageInput,
    ref: ImageInput | PreparedReference,
    *,
    new_mask: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    min_overlap: float = 0.05,
    force_filter: bool = False,
    measure_noise: bool = True,
) -> AlignedPair:
    """Resample the new image onto the reference's pixel grid.

    Parameters
    ----------
    new, ref : path, bytes, FitsImage or numpy.ndarray
        The two images. Arrays carry no WCS and are taken as already aligned (both must
        then be arrays of the same shape). ``ref`` may also be a
        :class:`~astrid.science.prepared_reference.PreparedReference` (loaded once, its mask
        included: then no ``ref_mask``).
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded, on each input's own grid; combined with a MASK, BPM or DQ extension
        of a FITS input (non-zero = excluded).
    min_overlap : float
        Smallest accepted fraction of reference pixels covered by the new image.
    force_filter : bool
        Accept images whose FILTER keywords differ.
    measure_noise : bool
        Measure ``new_noise`` before resampling (False: the caller knows it, e.g. from a
        variance map, and it stays None).

    Returns
    -------
    AlignedPair

    Raises
    ------
    FilterMismatchError
        If the filters differ and ``force_filter`` is False.
    NoOverlapError
        If the images overlap on less than ``min_overlap`` of the reference.
    ShapeMismatchError
        If plain arrays of different shapes are given.
    """
    new_data, new_header, new_wcs, new_file_mask = load_image_input(new)
    if isinstance(ref, PreparedReference):
        if ref_mask is not None:
            raise DifferenceError(
                "a prepared reference carries its mask: ref_mask cannot be given with it",
                hint="pass the mask to prepare_reference",
            )
        ref_data, ref_header, ref_wcs, rmask = ref.data, ref.header, ref.wcs, ref.mask
        ref_file_pixels = ref.file_mask_pixels
    else:
        ref_data, ref_header, ref_wcs, rmask, ref_file_pixels = reference_side(ref, ref_mask)
    notes: list[str] = []
    fn, fr = _filter_name(new_header), _filter_name(ref_header)
    if fn and fr and fn != fr and not force_filter:
        raise FilterMismatchError(
            f"the new image is in filter {fn!r} but the reference in {fr!r}",
            hint="pick a reference in the same filter, or force it (--force-filter)",
        )
    nmask = np.zeros(new_data.shape, bool) if new_mask is None else np.asarray(new_mask, bool)
    if nmask.shape != new_data.shape:
        raise ShapeMismatchError("a mask does not have the shape of its image")
    if new_file_mask is not None:
        notes.append(f"new image: {int(new_file_mask.sum())} pixels masked by its FITS mask")
    if ref_file_pixels is not None:
        notes.append(f"reference image: {ref_file_pixels} pixels masked by its FITS mask")
    nmask = nmask if new_file_mask is None else nmask | new_file_mask
    if new_wcs is None or ref_wcs is None:
        if (new_wcs is None) != (ref_wcs is None):
            raise ShapeMismatchError(
                "one image has a celestial WCS and the other is a plain array",
                hint="give both as FITS with WCS, or both as arrays already aligned",
            )
        if new_data.shape != ref_data.shape:
            raise ShapeMismatchError(
                f"arrays without WCS must be aligned already, got {new_data.shape} and "
                f"{ref_data.shape}"
            )
        nmask = nmask | ~np.isfinite(new_data)
        return AlignedPair(new_data, ref_data, nmask, rmask, None, new_header, ref_header,
                           float((~nmask).mean()), False, notes)  # fmt: skip
    ny, nx = ref_data.shape
    # Quick footprint test on a coarse grid of new-image points before resampling.
    gy, gx = np.mgrid[0 : new_data.shape[0] : 16j, 0 : new_data.shape[1] : 16j]
    ra, dec = new_wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        px, py = ref_wcs.world_to_pixel_values(ra, dec)
    inside = np.isfinite(px) & (px > -0.5) & (px < nx - 0.5) & (py > -0.5) & (py < ny - 0.5)
    if not inside.any():
        raise NoOverlapError(
            "the new image and the reference do not overlap on the sky",
            hint="check the pointings: they must cover a common area",
        )
    if _same_grid(new_wcs, ref_wcs, new_data.shape, ref_data.shape):
        aligned = new_data
        amask = nmask | ~np.isfinite(new_data)
        resampled = False
        new_noise = None
    else:
        from astrid.science.resample import AlignError, reproject_to

        # reproject_to fills excluded pixels before the spline (a NaN fed to the bicubic
        # interpolation would spread over the whole image) and resamples the mask separately.
        try:
            rep = reproject_to(new_data, new_wcs, ref_wcs, (ny, nx), mask=nmask)
        except AlignError as exc:
            raise NoOverlapError(
                f"the new image cannot be resampled onto the reference: {exc}",
                hint="check the pointings and masks: they must leave a common area",
            ) from exc
        amask = rep.mask | (rep.footprint < 1)
        aligned = rep.data  # float32 and ours: zeroed in place
        aligned[amask] = 0.0
        resampled = True
        new_noise = _background_rms(new_data, nmask) if measure_noise else None
        notes.append("new image resampled onto the reference grid (bicubic)")
    overlap = float((~amask & ~rmask).mean())
    if overlap < min_overlap:
        raise NoOverlapError(
            f"the images overlap on only {overlap:.1%} of the reference "
            f"(minimum {min_overlap:.0%})",
            hint="use a reference that covers the new image",
        )
    return AlignedPair(np.asarray(aligned, np.float32), ref_data, amask, rmask, ref_wcs,
                       new_header, ref_header, overlap, resampled, notes, new_noise)  # fmt: skip


def _background_rms(image: np.ndarray, mask: np.ndarray) -> float:
    """Robust background noise of ``image`` (image units): the ``noise`` of
    :func:`astrid.science.psf_stars.background_and_noise` (SEP's global RMS, 64-px mesh), without
    building the full-resolution background map it also returns (~25 ms at 4 Mpix).

    ``mask`` is True = excluded, shape of ``image``; non-finite pixels are excluded too.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float32)
    bad = mask | ~np.isfinite(data)
    if bad.any():
        data = np.where(bad, np.float32(0), data)
    box = int(max(16, min(64, min(data.shape) // 2)))
    # uint8 view: see background_and_noise
    mask8 = bad.view(np.uint8) if bad.any() else None
    return float(sep.Background(data, mask=mask8, bw=box, bh=box).globalrms)


def _refine_shift(pair: AlignedPair, new_prep: PreparedImage, ref_prep: PreparedImage) -> float:
    """Median offset of matched stars (new - ref) in pixels, applied to the new image."""
    from astrid.science.neighbours import nearest

    ns, rs = new_prep.stars, ref_prep.stars
    if len(ns) < 5 or len(rs) < 5:
        return 0.0
    d, j = nearest(np.column_stack([rs.x, rs.y]), np.column_stack([ns.x, ns.y]), 3.0)
    ok = np.isfinite(d) & (ns.snr > 30)
    if ok.sum() < 5:
        return 0.0
    jj = j[ok]
    ok2 = rs.snr[jj] > 30
    if ok2.sum() < 5:
        return 0.0
    dx = float(np.median(ns.x[ok][ok2] - rs.x[jj][ok2]))
    dy = float(np.median(ns.y[ok][ok2] - rs.y[jj][ok2]))
    shift = float(np.hypot(dx, dy))
    if shift > 0.05:
        pair.new = ndimage.shift(pair.new, (-dy, -dx), order=3, mode="constant").astype(np.float32)
        pair.new_mask = ndimage.shift(pair.new_mask.astype(np.float32), (-dy, -dx), order=1,
                                      mode="constant", cval=1.0) > 0.01  # fmt: skip
        pair.notes.append(f"residual shift ({dx:+.3f}, {dy:+.3f}) px removed using matched stars")
    return shift


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
    if refine and pair.resampled and _refine_shift(pair, new_prep, ref_prep) > 0.05:
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
        rays = _vet_cosmic_rays(table, pair, _psf_arrays(result))
        if rescore_rays and method == "zogy" and (rays[0].any() or rays[1].any()):
            result, table = _rescore_under_rays(table, result, pair, rays, method, threshold,
                                                zero_point, negative, kwargs)  # fmt: skip
    if len(table):
        _vet_symmetric_residuals(table, result)
    if min_score > 0 and len(table):
        table = table[table["score"] >= min_score]
    table.meta["overlap"] = pair.overlap
    table.meta["area_pix"] = int((~result.mask).sum())
    return table


def _header_gain(header: fits.Header) -> float | None:
    for key in ("GAIN", "EGAIN", "CCDGAIN"):
        try:
            value = float(header[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value > 0 and np.isfinite(value):
            return value
    return None


def _psf_arrays(result: DifferenceResult) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The whole-image PSFs of the new and reference images (None where unknown)."""
    return tuple(  # type: ignore[return-value]
        None if p is None else p.array for p in (result.new_psf, result.ref_psf)
    )


def _vet_cosmic_rays(
    table: Table,
    pair: AlignedPair,
    psfs: tuple[np.ndarray | None, np.ndarray | None],
    only: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag candidates on a cosmic ray of the image they come from (in place).

    ``psfs`` (new, reference) set L.A.Cosmic's contrast limit per image
    (:func:`~astrid.science.vetting.cosmic_ray_hits`). ``only`` (bool, shape (n,)) restricts
    the runs to those candidates. Returns the rays' pixels in the new and in the reference
    image (bool, shape (ny, nx) each)."""
    sign = np.asarray(table["sign"])
    hits = np.zeros(len(table), bool)
    rays = (np.zeros(pair.new.shape, bool), np.zeros(pair.ref.shape, bool))
    sides = ((1, pair.new, pair.new_mask, pair.new_header, rays[0], psfs[0]),
             (-1, pair.ref, pair.ref_mask, pair.ref_header, rays[1], psfs[1]))  # fmt: skip
    for want, img, msk, hdr, px, psf in sides:
        sel = sign == want
        if only is not None:
            sel &= only
        if sel.any():
            hits[sel] = cosmic_ray_hits(np.asarray(table["x"])[sel], np.asarray(table["y"])[sel],
                                        img, msk, gain=_header_gain(hdr), pixels=px,
                                        psf=psf)  # fmt: skip
    fresh = hits & ~np.asarray(table["flag_cr"], bool)
    table["score"][fresh] = np.asarray(table["score"])[fresh] * 0.1
    table["flag_cr"] = np.asarray(table["flag_cr"], bool) | hits
    table.meta.setdefault("notes", []).append(
        f"L.A.Cosmic on candidate stamps: {int(hits.sum())} of {len(table)} on a cosmic ray"
    )
    return rays


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
        _vet_cosmic_rays(again, pair, _psf_arrays(second), only=fresh)
    return second, again


def _vet_symmetric_residuals(table: Table, result: DifferenceResult) -> None:
    """Flag (``flag_psf_residual``) and damp (score × 0.2) star residuals: point-symmetric
    ones (:func:`~astrid.science.vetting.symmetric_residual`) and ones on a star whose flux
    and shape are those of its subtraction residual
    (:func:`~astrid.science.vetting.star_residual`)."""
    stars = result.ref_stars
    if stars is None or not len(stars):
        table["flag_psf_residual"] = np.zeros(len(table), bool)
        return
    yy, xx = np.indices(result.psf.shape)
    p = result.psf / result.psf.sum()
    c = result.psf.shape[0] // 2
    fwhm = FWHM_PER_SIGMA * float(np.sqrt((p * ((xx - c) ** 2 + (yy - c) ** 2)).sum() / 2.0))
    flag = symmetric_residual(np.asarray(table["x"]), np.asarray(table["y"]),
                              np.asarray(table["sign"]), np.asarray(table["snr"]),
                              result.score, stars.x, stars.y, fwhm)  # fmt: skip
    eps = residual_fraction(result.flux, result.mask, stars.x, stars.y, stars.flux, stars.snr)
    on_star = star_residual(np.asarray(table["x"]), np.asarray(table["y"]),
                            np.asarray(table["flux"]), np.asarray(table["sharpness"]),
                            np.asarray(table["neg_frac"]), stars.x, stars.y, stars.flux, eps,
                            fwhm)  # fmt: skip
    flag = flag | on_star
    table["score"][flag] = np.asarray(table["score"])[flag] * 0.2
    table["flag_psf_residual"] = flag
    if np.isfinite(eps):
        table.meta.setdefault("notes", []).append(
            f"star residuals: typical {eps:.3g} of the star's flux; {int(on_star.sum())} "
            "candidate(s) on a star consistent with its residual in flux and shape"
        )
