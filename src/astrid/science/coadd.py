"""Coadding: the weighted mean of images already on one pixel grid.

:func:`coadd` combines images (or :class:`~astrid.science.align.AlignmentResult` s, which bring
their variance and mask) with inverse-variance or uniform weights and optional photometric
scales, into a :class:`Coadd` with its propagated variance and per-pixel image count. Putting
the images on one grid first is :func:`astrid.science.align.register_many`.

Masks are True = excluded; variances in image units².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astrid.science.align import AlignmentResult
from astrid.science.resample import AlignError
from astrid.science.stats import robust_sigma

__all__ = ["Coadd", "coadd"]


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
