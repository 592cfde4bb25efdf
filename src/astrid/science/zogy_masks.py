"""Where a ZOGY score cannot be trusted: mask growth and the PSF-model-error term.

* :func:`_grow_mask`: masked pixels (True = excluded, shape (ny, nx)) grown by the PSF
  radius around saturated pixels, as far as their predicted residual reaches around holes in
  bright static sources (:func:`_hole_residuals`), by one pixel elsewhere, plus the image edge.
* :func:`_psf_error_fraction`: the fraction ``eps`` (dimensionless) of ``min(|S_N|, |S_R|)``
  whose square, added to V(S), keeps bright reference stars' residuals within 3 sigma.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from astrid.science.diffimage import PreparedImage
from astrid.science.morphology import dilate_cross, dilate_square
from astrid.science.psf_stars import StarList

__all__: list[str] = []


def _grow_mask(
    mask: np.ndarray,
    saturated: np.ndarray,
    pn_: PreparedImage,
    pr_: PreparedImage,
    half: int,
    source_sigma: float = 30.0,
) -> np.ndarray:
    """Pixels whose score is unreliable because of masked pixels or the image edge.

    Saturated pixels (whose light is unknown) leave residuals as far as the PSF reaches:
    grown by the PSF radius ``half``. Masked pixels on or next to a bright static source
    (more than ``source_sigma`` times the noise in both images) are grown as far as their
    predicted residual exceeds half a sigma (:func:`_hole_residuals`; at most ``half``). A
    hole's residual is roughly a point source of the masked light times the PSF mismatch
    (about 0.07 of the masked pixel's own S/N for FWHM ~3 px), so holes in fainter light (a
    bad column across a faint galaxy: it hid the transients on it at the former 5 sigma) are
    treated like the rest. Other
    masked pixels (cosmic rays, bad columns on the sky) are zeroed in both images and only
    remove part of a matched filter's weight (the score there is slightly conservative, as
    its variance counts sky noise in the zeroed pixels): grown by one pixel, against the
    unmasked fringe of a cosmic ray. The outer ``half / 2`` pixels of the image are
    excluded too.
    """
    grown = np.zeros_like(mask)
    if mask.any():
        # a static source (in both images): a hole in it leaves the two PSFs' difference
        on_source = (pn_.data > source_sigma * pn_.noise) & (pr_.data > source_sigma * pr_.noise)
        near = dilate_cross(on_source, 2) & mask & ~saturated
        grown = _dilate_disk(mask, 1)
        if saturated.any():
            grown |= _dilate_disk(saturated, half)
        if near.any():
            grown |= _hole_residuals(near, pn_, pr_, half)
    edge = max(half // 2, 2)
    grown[:edge, :] = grown[-edge:, :] = True
    grown[:, :edge] = grown[:, -edge:] = True
    return grown


#: S_corr left by a hole, per sigma of the masked light (two PSFs ~30 % apart in FWHM).
HOLE_RESIDUAL = 0.07
#: Where the holes' predicted residual exceeds this (sigma), the score is masked.
HOLE_RESIDUAL_LIMIT = 0.5


def _hole_residuals(
    holes: np.ndarray, pn_: PreparedImage, pr_: PreparedImage, half: int
) -> np.ndarray:
    """Pixels where masked holes in bright sources leave a residual above the limit.

    Each hole leaves roughly a point source of ``HOLE_RESIDUAL`` times the light it masked
    (in sigma, the brightest of either image within 2 px, since a hole is zeroed). Their
    sum, spread by the broader PSF (peak 1), is the predicted residual on S_corr; it is
    masked where above ``HOLE_RESIDUAL_LIMIT``, and never beyond ``half``. Growing every
    such hole by the PSF array's half-size instead hid a transient 9 px from a bright star
    crossed by a bad column, where the predicted residual is below 0.5 sigma.
    """
    out = np.zeros_like(holes)
    # everything below happens within ``half`` of a hole: on the holes' bounding box grown
    # by it (the same groups and boxes as on the whole image, without labelling every pixel
    # of it for a few holes)
    crop = _bounding_box(holes, half)
    if crop is None:
        return out
    (cy0, cx0) = (crop[0].start, crop[1].start)
    reach = _dilate_disk(holes[crop], half)
    psf = max((pn_.psf.array, pr_.psf.array), key=lambda a: float(a.sum() / a.max()))
    spread = np.asarray(psf / psf.max(), float)
    # per group of holes whose reaches touch (a few small boxes, not the whole image)
    labels, _ = ndimage.label(reach)
    for local in ndimage.find_objects(labels):
        if local is None:
            continue
        box = (slice(local[0].start + cy0, local[0].stop + cy0),
               slice(local[1].start + cx0, local[1].stop + cx0))  # fmt: skip
        light = np.maximum(pn_.data[box] / max(pn_.noise, 1e-12),
                           pr_.data[box] / max(pr_.noise, 1e-12))  # fmt: skip
        light = ndimage.maximum_filter(light, size=5)
        src = np.where(holes[box], HOLE_RESIDUAL * light, 0.0)
        pred = _convolve_same(src, spread)
        out[box] |= (pred > HOLE_RESIDUAL_LIMIT) & reach[local]
    return out


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The rows and columns holding set pixels of ``mask``, grown by ``margin`` pixels
    (clipped to the image); None when no pixel is set."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    ny, nx = mask.shape
    return (slice(max(0, int(rows[0]) - margin), min(ny, int(rows[-1]) + 1 + margin)),
            slice(max(0, int(cols[0]) - margin), min(nx, int(cols[-1]) + 1 + margin)))  # fmt: skip


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` (ny, nx) convolved with ``kernel`` (ky, kx), cropped to ``image``'s shape.

    The same as ``scipy.signal.fftconvolve(image, kernel, mode="same")``, through
    :mod:`scipy.fft` (already loaded for ZOGY): importing ``scipy.signal`` costs about 2.5 s
    of a 2-s ``astrid detect``.
    """
    ny, nx = image.shape
    ky, kx = kernel.shape
    full = (ny + ky - 1, nx + kx - 1)
    shape = tuple(sfft.next_fast_len(n, real=True) for n in full)
    conv = sfft.irfft2(sfft.rfft2(image, shape) * sfft.rfft2(kernel, shape), shape)
    oy, ox = (ky - 1) // 2, (kx - 1) // 2
    return np.asarray(conv[oy : oy + ny, ox : ox + nx])


def _dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by a disk of ``radius`` pixels.

    Radius 1 is one 3x3 binary dilation; larger radii take a Euclidean distance transform
    of each connected group of masked pixels within its own bounding box plus the radius
    (the groups are few and small: saturated stars, trails), not of the whole image.
    """
    if radius <= 0 or not mask.any():
        return mask.copy()
    if radius == 1:
        return dilate_square(mask)
    out = mask.copy()
    # the groups are labelled within the set pixels' bounding box grown by the radius (the
    # same groups and boxes as on the whole image: every box lies inside it)
    crop = _bounding_box(mask, radius)
    assert crop is not None
    part = mask[crop]
    ny, nx = part.shape
    view = out[crop]
    # merge groups closer than the radius first so their boxes do not overlap much
    labels, _ = ndimage.label(dilate_cross(part, 2))
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        y0, y1 = max(0, sl[0].start - radius), min(ny, sl[0].stop + radius)
        x0, x1 = max(0, sl[1].start - radius), min(nx, sl[1].stop + radius)
        sub = part[y0:y1, x0:x1]
        view[y0:y1, x0:x1] |= ndimage.distance_transform_edt(~sub) <= radius
    return out


def _psf_error_fraction(
    s_map: np.ndarray,
    var: np.ndarray,
    s_ref: np.ndarray,
    stars: StarList,
    mask: np.ndarray,
    quantile: float = 0.9,
    cap: float = 0.2,
) -> float:
    """Fraction ``eps`` of S_R that bounds the residuals of bright reference stars.

    For each reference star with ``S_R / sqrt(V) > 20`` the excess of the largest ``|S|``
    within 2 pixels over ``3 sqrt(V)`` is divided by ``S_R``; ``eps`` is the ``quantile`` of
    those ratios (0 when fewer than 5 stars), capped at ``cap``.
    """
    if len(stars) == 0:
        return 0.0
    ny, nx = s_map.shape
    xi = np.round(stars.x).astype(int)
    yi = np.round(stars.y).astype(int)
    inside = (xi >= 2) & (yi >= 2) & (xi < nx - 2) & (yi < ny - 2)
    xi, yi = xi[inside], yi[inside]
    ok = ~mask[yi, xi]
    xi, yi = xi[ok], yi[ok]
    if xi.size == 0:
        return 0.0
    sr = s_ref[yi, xi]
    v = var[yi, xi]
    bright = sr > 20 * np.sqrt(v)
    if bright.sum() < 5:
        return 0.0
    xi, yi, sr, v = xi[bright], yi[bright], sr[bright], v[bright]
    peaks = np.array(
        [np.abs(s_map[y - 2 : y + 3, x - 2 : x + 3]).max() for x, y in zip(xi, yi, strict=True)]
    )
    excess = np.sqrt(np.clip(peaks**2 - 9.0 * v, 0, None)) / sr
    return float(min(np.quantile(excess, quantile), cap))
