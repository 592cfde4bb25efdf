"""Aligning a differencing pair: the new image put onto the reference's pixel grid.

:func:`align_to_reference` loads both inputs (paths, FITS bytes,
:class:`~astrid.science.fitsio.FitsImage`, plain arrays or a
:class:`~astrid.science.prepared_reference.PreparedReference`), refuses pairs taken through
different filters (:class:`FilterMismatchError`) or that do not overlap on the sky
(:class:`NoOverlapError`), combines the masks given with those of the FITS inputs, and
resamples the new image (bicubic, :func:`astrid.science.resample.reproject_to`) unless the
grids already agree; it returns an :class:`AlignedPair`. :func:`refine_shift` then removes a
residual sub-pixel shift measured on the matched stars of the two prepared images (median
offset, not a fitted transform).

This is the alignment :func:`astrid.science.difference.subtract_pair` uses; the star-matched
similarity refinement of preprocessing and coadds is :mod:`astrid.science.align`.

Conventions: 0-based pixels, x = column; arrays (ny, nx) on the reference grid, float32;
masks True = excluded; noise in image units. Errors subclass
:class:`~astrid.science.diffimage.DifferenceError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from astrid.science.background import refuse_constant
from astrid.science.diffimage import DifferenceError, PreparedImage, ShapeMismatchError
from astrid.science.prepared_reference import (
    ImageInput,
    PreparedReference,
    load_image_input,
    reference_side,
)

__all__ = [
    "AlignedPair",
    "FilterMismatchError",
    "NoOverlapError",
    "align_to_reference",
    "refine_shift",
]


class NoOverlapError(DifferenceError):
    """The new image and the reference do not overlap (enough) on the sky."""


class FilterMismatchError(DifferenceError):
    """The two images were taken through different filters."""


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
    # under cosmic rays (see astrid.science.difference._rescore_under_rays)
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
    refuse_constant(new_data, nmask, "new image")
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
        # (bicubic 'interp': the footprint is 1 where the resampled pixel is finite and 0
        # elsewhere, where rep.mask is already set, so ``rep.footprint < 1`` adds nothing)
        amask = rep.mask
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


def refine_shift(pair: AlignedPair, new_prep: PreparedImage, ref_prep: PreparedImage) -> float:
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
