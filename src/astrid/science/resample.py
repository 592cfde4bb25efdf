"""Resampling an image onto a target WCS grid (the reprojection step of alignment).

* :func:`reproject_to` resamples an image (with its variance and mask) onto a target WCS:
  bicubic spline interpolation (the ``reproject_interp`` convention) at input positions from
  :func:`affine_pixel_map` when the WCS-to-WCS map is affine to 0.005 px (a shift, rotation,
  scale: the usual case of two TAN pointings of one field; no per-pixel coordinate arrays)
  or else :func:`pixel_map` (evaluated on a coarse grid, interpolated, verified to
  0.005 px), or the flux-conserving ``reproject_adaptive`` (imported only then).

Kept apart from :mod:`astrid.science.align` (refinement), :mod:`astrid.science.starmatch` and
:mod:`astrid.science.coadd` so that ``astrid detect``, which only reprojects, imports none of
skimage, astroscrappy or the image-quality modules. Conventions: 0-based pixels, x = column;
masks True = excluded; variances in image units².

Errors: :class:`AlignError`, :class:`NonOverlappingError` (footprints do not intersect).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from scipy import ndimage

from astrid.errors import AstridError
from astrid.science.morphology import dilate_cross
from astrid.science.stats import median_float64

__all__ = [
    "AlignError",
    "NonOverlappingError",
    "ReprojectedImage",
    "affine_pixel_map",
    "pixel_map",
    "reproject_to",
]


class AlignError(AstridError):
    """Alignment failed."""


class NonOverlappingError(AlignError):
    """The image does not overlap the target grid."""


@dataclass
class ReprojectedImage:
    """An image resampled onto a target grid.

    Attributes
    ----------
    data : numpy.ndarray
        Shape of the target, float32, NaN outside the footprint or where masked.
    variance : numpy.ndarray or None
        Resampled variance (same kernel as the data).
    mask : numpy.ndarray
        True = no valid data (outside, masked input pixel within the kernel, NaN).
    footprint : numpy.ndarray
        Fraction of each target pixel covered by the input (0..1); with ``interp``, 1
        where the resampled data are finite and 0 elsewhere (where ``mask`` is set).
    wcs : astropy.wcs.WCS
        The target WCS.
    """

    data: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    footprint: np.ndarray
    wcs: WCS


def _footprint_overlaps(
    wcs: WCS, shape: tuple[int, int], target_wcs: WCS, target_shape: tuple[int, int]
) -> bool:
    ny, nx = shape
    # sample the border of the input, project into the target, test the bounding box
    t = np.linspace(0, 1, 25)
    xs = np.concatenate([t * (nx - 1), np.full(25, nx - 1.0), t * (nx - 1), np.zeros(25)])
    ys = np.concatenate([np.zeros(25), t * (ny - 1), np.full(25, ny - 1.0), t * (ny - 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(xs, ys)
        tx, ty = target_wcs.world_to_pixel_values(*world)
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        return False
    tny, tnx = target_shape
    return bool(
        tx[ok].max() >= -0.5
        and tx[ok].min() <= tnx - 0.5
        and ty[ok].max() >= -0.5
        and ty[ok].min() <= tny - 0.5
    )


_SPLINE_ORDER = {"nearest-neighbor": 0, "bilinear": 1, "biquadratic": 2, "bicubic": 3}


def _exact_map(
    wcs: WCS, target_wcs: WCS, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel (x, y) of target pixels (x, y) through both WCSs, NaN where undefined.

    Like ``reproject``'s round trip: a target pixel whose sky position does not map back onto
    itself (within 1 px per axis; e.g. behind a projection's horizon) gets NaN.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        world = target_wcs.pixel_to_world_values(x, y)
        xin, yin = wcs.world_to_pixel_values(*world)
        world2 = wcs.pixel_to_world_values(xin, yin)
        xback, yback = target_wcs.world_to_pixel_values(*world2)
    bad = ~((np.abs(xback - x) <= 1.0) & (np.abs(yback - y) <= 1.0))
    xin = np.where(bad, np.nan, xin)
    yin = np.where(bad, np.nan, yin)
    return np.asarray(xin, dtype=np.float64), np.asarray(yin, dtype=np.float64)


def pixel_map(
    wcs: WCS,
    target_wcs: WCS,
    shape: tuple[int, int],
    *,
    step: int = 32,
    tolerance: float = 0.005,
) -> np.ndarray:
    """Input-pixel coordinates of every target pixel, shape (2, ny, nx) as (y, x).

    Evaluating two WCSs for every pixel of a large image dominates the cost of resampling.
    The map is smooth (TAN, TPV, SIP, ... vary over hundreds of pixels), so it is evaluated
    exactly on a grid every ``step`` pixels (plus the last row and column) and interpolated
    by a bicubic spline. The interpolation is verified at the centres of the grid cells
    (where its error is largest); if any differs from the exact map by more than
    ``tolerance`` pixels, or the map is undefined (NaN) anywhere on the grid, the step is
    halved, down to the exact per-pixel evaluation.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        WCS of the input image.
    target_wcs : astropy.wcs.WCS
        WCS of the output grid.
    shape : tuple of int
        Output shape (ny, nx).
    step : int
        Initial grid spacing in pixels.
    tolerance : float
        Largest accepted interpolation error in pixels.

    Returns
    -------
    numpy.ndarray
        float64 (2, ny, nx): row (y) and column (x) in the input image of each output pixel,
        0-based; NaN where the sky position has no input pixel.
    """
    from scipy.interpolate import RectBivariateSpline

    ny, nx = int(shape[0]), int(shape[1])
    while step >= 4 and min(ny, nx) > 4 * step:
        gy = np.unique(np.append(np.arange(0, ny, step), ny - 1)).astype(np.float64)
        gx = np.unique(np.append(np.arange(0, nx, step), nx - 1)).astype(np.float64)
        xx, yy = np.meshgrid(gx, gy)
        xin, yin = _exact_map(wcs, target_wcs, xx, yy)
        if np.all(np.isfinite(xin)) and np.all(np.isfinite(yin)):
            sx = RectBivariateSpline(gy, gx, xin, kx=3, ky=3)
            sy = RectBivariateSpline(gy, gx, yin, kx=3, ky=3)
            cy = 0.5 * (gy[1:] + gy[:-1])
            cx = 0.5 * (gx[1:] + gx[:-1])
            cxx, cyy = np.meshgrid(cx, cy)
            ex, ey = _exact_map(wcs, target_wcs, cxx, cyy)
            err = np.hypot(sx(cy, cx) - ex, sy(cy, cx) - ey)
            if np.all(np.isfinite(err)) and float(err.max()) <= tolerance:
                ys = np.arange(ny, dtype=np.float64)
                xs = np.arange(nx, dtype=np.float64)
                return np.stack([sy(ys, xs), sx(ys, xs)])
        step //= 2
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    xin, yin = _exact_map(wcs, target_wcs, xx, yy)
    return np.stack([yin, xin])


def affine_pixel_map(
    wcs: WCS,
    target_wcs: WCS,
    shape: tuple[int, int],
    *,
    tolerance: float = 0.005,
    grid: int = 9,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The target → input pixel map as an affine transform, when it is one to ``tolerance``.

    Two pointings of one field with TAN projections (and no or mild distortion) differ by a
    shift, rotation and scale to far better than a thousandth of a pixel over a detector;
    the map then needs no per-pixel coordinates (``scipy.ndimage.affine_transform``). The
    map is evaluated exactly on a ``grid`` × ``grid`` lattice and at the centres of its cells,
    an affine transform is fitted by least squares, and it is accepted only if it reproduces
    every point within ``tolerance`` pixels.

    Parameters
    ----------
    wcs, target_wcs, shape
        As for :func:`pixel_map`: WCS of the input image, WCS and shape (ny, nx) of the
        output grid.
    tolerance : float
        Largest accepted deviation of the affine map from the exact one, pixels.
    grid : int
        Lattice points per axis.

    Returns
    -------
    (matrix, offset) or None
        ``matrix`` (2, 2) and ``offset`` (2,) in (y, x) order such that the input pixel of
        output pixel ``(i, j)`` is ``matrix @ (i, j) + offset`` (the convention of
        ``scipy.ndimage.affine_transform``); None if the map is not affine to ``tolerance``
        or is undefined somewhere.
    """
    ny, nx = int(shape[0]), int(shape[1])
    gy = np.linspace(0.0, ny - 1.0, grid)
    gx = np.linspace(0.0, nx - 1.0, grid)
    cy, cx = 0.5 * (gy[1:] + gy[:-1]), 0.5 * (gx[1:] + gx[:-1])
    yy = np.concatenate([np.repeat(gy, grid), np.repeat(cy, grid - 1)])
    xx = np.concatenate([np.tile(gx, grid), np.tile(cx, grid - 1)])
    xin, yin = _exact_map(wcs, target_wcs, xx, yy)
    if not (np.all(np.isfinite(xin)) and np.all(np.isfinite(yin))):
        return None
    design = np.column_stack([yy, xx, np.ones_like(yy)])
    coef_y, *_ = np.linalg.lstsq(design, yin, rcond=None)
    coef_x, *_ = np.linalg.lstsq(design, xin, rcond=None)
    err = np.hypot(design @ coef_y - yin, design @ coef_x - xin)
    if not float(err.max()) <= tolerance:
        return None
    matrix = np.array([coef_y[:2], coef_x[:2]])
    offset = np.array([coef_y[2], coef_x[2]])
    return matrix, offset


def _bspline_weights(t: float, order: int) -> np.ndarray:
    """Weights of the ``order + 1`` B-spline taps (1 or 3) at fractional position ``t``."""
    if order == 1:
        return np.array([1.0 - t, t])
    u = 1.0 - t
    return np.array(
        [u**3 / 6.0, (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0, (3.0 * u**3 - 6.0 * u**2 + 4.0) / 6.0,
         t**3 / 6.0]
    )  # fmt: skip


def _shift_axis_range(shift: float, n_in: int, n_out: int, order: int) -> tuple[int, int, int]:
    """For output index ``i`` at input position ``i + shift``: the first tap's offset
    (``floor(shift) - order // 2``, added to ``i``) and the output range [lo, hi) whose taps
    all lie inside the ``n_in`` input samples."""
    first = math.floor(shift) - order // 2
    lo = max(0, -first)
    hi = min(n_out, n_in - order - first)
    return first, lo, max(lo, hi)


def _shift_separable(
    coef: np.ndarray, offset: np.ndarray, shape: tuple[int, int], order: int, dtype: type
) -> np.ndarray | None:
    """``affine_transform`` of spline coefficients ``coef`` by a pure shift (identity matrix,
    ``offset`` (y, x) pixels), ``constant`` mode with NaN outside, computed as two 1-D
    passes: a shift moves every pixel by the same fraction, so the ``(order + 1)²`` taps of
    scipy's shift path factor into ``order + 1`` rows then ``order + 1`` columns (the same
    sums in another order: equal to rounding, ~1e-16 relative). The pixels whose taps reach
    beyond the image (a band as wide as the spline, and everything off the image) are
    scipy's own (:func:`scipy.ndimage.map_coordinates`, the same spline and edge rule).
    None (use scipy throughout) for orders other than 1 and 3 or when that band is large.
    """
    if order not in (1, 3):
        return None
    ny, nx = int(shape[0]), int(shape[1])
    sy, sx = float(offset[0]), float(offset[1])
    fy, r0, r1 = _shift_axis_range(sy, coef.shape[0], ny, order)
    fx, c0, c1 = _shift_axis_range(sx, coef.shape[1], nx, order)
    if (r1 - r0) * (c1 - c0) < 0.75 * ny * nx:
        return None  # mostly off the image or near its edges: scipy's path is as quick
    wy = _bspline_weights(sy - math.floor(sy), order)
    wx = _bspline_weights(sx - math.floor(sx), order)
    rows = wy[0] * coef[r0 + fy : r1 + fy, :]
    tmp = np.empty_like(rows)
    for a in range(1, order + 1):
        rows += np.multiply(coef[r0 + fy + a : r1 + fy + a, :], wy[a], out=tmp)
    inner = wx[0] * rows[:, c0 + fx : c1 + fx]
    tmp = np.empty_like(inner)
    for b in range(1, order + 1):
        inner += np.multiply(rows[:, c0 + fx + b : c1 + fx + b], wx[b], out=tmp)
    out: np.ndarray = np.empty((ny, nx), dtype=dtype)
    out[r0:r1, c0:c1] = inner
    band = np.ones((ny, nx), dtype=bool)
    band[r0:r1, c0:c1] = False
    iy, ix = np.nonzero(band)
    out[iy, ix] = ndimage.map_coordinates(
        coef, [iy + sy, ix + sx], order=order, mode="constant", cval=np.nan, prefilter=False
    )
    return out


def _resample_affine(
    arr: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    shape: tuple[int, int],
    order: int,
    dtype: type = np.float64,
) -> np.ndarray:
    """:func:`_resample` for an affine map, without per-pixel coordinate arrays.

    ``scipy.ndimage.affine_transform`` runs the same spline as ``map_coordinates`` (same
    prefilter, same ``constant`` mode); only output pixels whose input position falls in the
    outer half of a border pixel (where :func:`_resample` moves it onto the pixel's centre)
    are recomputed that way. A pure shift (identity matrix) takes scipy's faster
    shift path. ``arr`` must be finite (excluded pixels filled). ``dtype`` is that of the
    output: scipy interpolates in float64 and rounds each value on storing it, so a float32
    output is the float64 one cast (without the float64 image in between).
    """
    ny, nx = arr.shape
    # the spline coefficients are computed once and shared by the affine pass and the border
    # pass below (each would otherwise prefilter the whole image again); for ``constant``
    # mode scipy's own prefilter is exactly this call (no padding). It reads a float32
    # ``arr`` as float64 itself, so no converted copy is made for it.
    if order > 1:
        coef = ndimage.spline_filter(arr, order, output=np.float64, mode="constant")
    else:
        coef = np.asarray(arr, dtype=np.float64)
    ident = np.abs(matrix - np.eye(2)).max() * max(shape) < 1e-6
    out = _shift_separable(coef, offset, shape, order, dtype) if ident else None
    if out is None:
        out = ndimage.affine_transform(
            coef, np.ones(2) if ident else matrix, offset, output_shape=tuple(shape),
            order=order, mode="constant", cval=np.nan, prefilter=False, output=dtype,
        )  # fmt: skip
    # ``constant`` mode gives NaN beyond the outermost pixel centres (the input has no NaN:
    # callers fill excluded pixels); of those output pixels, the ones in the outer half of a
    # border pixel get the border value as in _resample, the rest stay NaN
    iy, ix = np.nonzero(np.isnan(out))
    if iy.size:
        cy = matrix[0, 0] * iy + matrix[0, 1] * ix + offset[0]
        cx = matrix[1, 0] * iy + matrix[1, 1] * ix + offset[1]
        band = (cy >= -0.5) & (cy <= ny - 0.5) & (cx >= -0.5) & (cx <= nx - 0.5)
        if band.any():
            by = np.clip(cy[band], 0, ny - 1)
            bx = np.clip(cx[band], 0, nx - 1)
            out[iy[band], ix[band]] = ndimage.map_coordinates(
                coef, [by, bx], order=order, mode="constant", cval=np.nan, prefilter=False
            )
    return out


def _resample(arr: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Spline-interpolate ``arr`` at ``coords`` (2, ny, nx) as ``reproject_interp`` does.

    Values are defined at pixel centres; points in the outer half of a border pixel are moved
    onto its centre, points beyond the image (or NaN) give NaN.
    """
    ny, nx = arr.shape
    cy = coords[0].copy()
    cx = coords[1].copy()
    outside = ~((cy >= -0.5) & (cy <= ny - 0.5) & (cx >= -0.5) & (cx <= nx - 0.5))
    np.clip(cy, 0, ny - 1, out=cy)
    np.clip(cx, 0, nx - 1, out=cx)
    cy[outside] = 0.0
    cx[outside] = 0.0
    out = ndimage.map_coordinates(
        np.asarray(arr, dtype=np.float64), [cy, cx], order=order, mode="constant", cval=np.nan
    )
    out[outside] = np.nan
    return out


def _is_float32(value: float) -> bool:
    """Whether float64 ``value`` is a float32 value (so casting it loses nothing)."""
    return bool(float(np.float32(value)) == value)


def reproject_to(
    data: np.ndarray,
    wcs: WCS,
    target_wcs: WCS,
    shape: tuple[int, int],
    *,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    method: str = "interp",
    order: str = "bicubic",
) -> ReprojectedImage:
    """Resample an image onto a target WCS grid.

    ``method='interp'`` gives ``reproject_interp``'s result (same spline, same edge rule) but
    evaluates the WCSs once, on a coarse verified grid (:func:`pixel_map`), for the data,
    variance and mask together.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx).
    wcs : astropy.wcs.WCS
        Its celestial WCS.
    target_wcs, shape
        WCS and shape (ny, nx) of the output grid, as for :func:`pixel_map`.
    variance : numpy.ndarray, optional
        Variance of ``data``.
    mask : numpy.ndarray, optional
        True = excluded; such pixels are filled before resampling and every output pixel
        that a (grown) excluded pixel touches is masked and NaN.
    method : {'interp', 'adaptive'}
        Spline interpolation or the flux-conserving ``reproject_adaptive``.
    order : str
        Interpolation order for ``interp``: 'nearest-neighbor', 'bilinear', 'biquadratic'
        or 'bicubic'.

    Returns
    -------
    ReprojectedImage

    Raises
    ------
    NonOverlappingError
        If the image does not overlap the target grid.
    """
    arr = np.asarray(data)
    # float32 goes to the affine spline as it is (scipy's prefilter computes in float64
    # anyway, so the result is the same without a 32-MB float64 copy at 4 Mpix)
    if arr.dtype != np.float32:
        arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise AlignError(f"image has shape {arr.shape}, not 2-D")
    if method not in ("interp", "adaptive"):
        raise AlignError(f"unknown reprojection method {method!r}", hint="interp or adaptive")
    if order not in _SPLINE_ORDER:
        raise AlignError(
            f"unknown interpolation order {order!r}", hint=", ".join(sorted(_SPLINE_ORDER))
        )
    if not _footprint_overlaps(wcs, arr.shape, target_wcs, shape):
        raise NonOverlappingError(
            "the image does not overlap the target grid (footprints are disjoint)",
            hint="check the WCS of both images; pick a reference covering the same sky",
        )
    bad = ~np.isfinite(arr)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    if bad.all():
        raise AlignError("every pixel of the image is masked or not finite")
    # spline interpolation spreads a NaN over the whole image: fill bad pixels, resample,
    # then mask every output pixel that a (1-pixel grown) bad input pixel touches
    has_bad = bool(bad.any())
    # the target -> input pixel map is computed once (on a coarse grid, verified) and
    # reused for the data, the variance and the mask
    # (an affine map, the common case, needs no per-pixel coordinates at all)
    affine = affine_pixel_map(wcs, target_wcs, shape) if method == "interp" else None
    coords = pixel_map(wcs, target_wcs, shape) if method == "interp" and affine is None else None
    # (the median of a 4-Mpix image costs ~50 ms: skipped when there is nothing to fill;
    # of float32 pixels, the float64 median without their float64 copy)
    fill = median_float64(arr[~bad], overwrite_input=True) if has_bad else 0.0
    if affine is None or (has_bad and not (arr.dtype == np.float32 and _is_float32(fill))):
        arr = np.asarray(arr, dtype=np.float64)  # the fill value and the other paths: float64
    # a float32 image filled with a float32 value stays float32: the spline reads it as the
    # float64 array it would otherwise be given
    work = np.where(bad, arr.dtype.type(fill), arr) if has_bad else arr

    def _run(
        a: np.ndarray, how: str = order, dtype: type = np.float64, footprint: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        # (``footprint`` False: the caller drops it, so the spline paths skip building a
        # float64 map of the image's size for it)
        if affine is not None:
            res = _resample_affine(a, affine[0], affine[1], shape, _SPLINE_ORDER[how], dtype)
            return res, np.isfinite(res).astype(np.float64) if footprint else res[:0, :0]
        if coords is not None:
            res = _resample(a, coords, _SPLINE_ORDER[how])
            return res, np.isfinite(res).astype(np.float64) if footprint else res[:0, :0]
        from reproject import reproject_adaptive

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how != order:
                from reproject import reproject_interp

                out, fp = reproject_interp(
                    (a, wcs), target_wcs, shape_out=shape, order=how, return_footprint=True
                )
            else:
                out, fp = reproject_adaptive(
                    (a, wcs),
                    target_wcs,
                    shape_out=shape,
                    return_footprint=True,
                    conserve_flux=True,
                )
        return np.asarray(out), np.asarray(fp)

    # the data are returned as float32: resampled straight into float32 (the same values)
    out, footprint = _run(work, dtype=np.float32)
    out_mask = ~np.isfinite(out)
    # spline interpolation: the footprint is 1 where the output is finite, 0 elsewhere, so
    # ``footprint <= 0`` is ``out_mask`` itself (two passes over a float64 map saved)
    spline = affine is not None or coords is not None
    if out_mask.all() if spline else not np.any(footprint > 0):
        raise NonOverlappingError(
            "the image does not overlap the target grid (empty footprint)",
            hint="check the WCS of both images",
        )
    var_out = None
    if variance is not None:
        v = np.asarray(variance, dtype=np.float64)
        vfill = float(np.nanmedian(v[~bad])) if np.any(np.isfinite(v[~bad])) else 0.0
        var_out, _ = _run(np.where(bad | ~np.isfinite(v), vfill, v), footprint=False)
        var_out = np.clip(var_out, 0, None).astype(np.float32)
    if not spline:
        out_mask |= footprint <= 0
    if has_bad:
        grown = dilate_cross(bad, 1 if method == "interp" else 2)
        mfrac, _ = _run(grown.astype(np.float64), "bilinear", footprint=False)
        out_mask |= ~np.isfinite(mfrac) | (mfrac > 1e-3)
    if var_out is not None:
        out_mask |= ~np.isfinite(var_out)
    # cast (a no-op for the float32 paths), then blank: no whole-image temporary
    out = out.astype(np.float32, copy=False)
    out[out_mask] = np.nan
    return ReprojectedImage(
        data=out, variance=var_out, mask=out_mask, footprint=footprint, wcs=target_wcs
    )
