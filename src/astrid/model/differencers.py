"""Differencing functions for the simulator driver: AstrID's ZOGY, and a quick PSF-matched one.

A :data:`DifferenceFn` is ``fn(new, ref, meta) -> (difference, significance)``; both
``(ny, nx)`` arrays on the new image's grid, significance in sigma and positive where the new
image is brighter. ``meta`` holds ``new_mask``, ``ref_mask`` (True = excluded), ``new_gain``,
``ref_gain`` (e-/ADU), ``new_saturation``, ``ref_saturation`` (ADU), ``new_fwhm``,
``ref_fwhm`` (px).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from astrid.science.difference import difference_images

__all__ = ["DifferenceFn", "default_difference_fn", "psf_matched_difference"]

DifferenceFn = Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], tuple[np.ndarray, np.ndarray]]


def psf_matched_difference(
    new: np.ndarray, ref: np.ndarray, meta: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """FALLBACK difference: Gaussian PSF matching of the sharper image, then subtraction.

    Only for when AstrID's own differencing is unavailable. Backgrounds are removed by
    medians, the sharper image is blurred by a Gaussian of width
    ``sqrt(sigma_broad**2 - sigma_sharp**2)`` (FWHMs from ``meta``), and the significance is
    the difference filtered by the broad Gaussian PSF and divided by its robust scatter.
    """
    to_sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    s_new = float(meta.get("new_fwhm", 3.0)) * to_sigma
    s_ref = float(meta.get("ref_fwhm", 3.0)) * to_sigma
    n = np.nan_to_num(new - np.nanmedian(new))
    r = np.nan_to_num(ref - np.nanmedian(ref))
    if s_ref < s_new:
        r = ndimage.gaussian_filter(r, np.sqrt(s_new**2 - s_ref**2))
    elif s_new < s_ref:
        n = ndimage.gaussian_filter(n, np.sqrt(s_ref**2 - s_new**2))
    diff = n - r
    matched = ndimage.gaussian_filter(diff, max(s_new, s_ref))
    mad = 1.4826 * np.median(np.abs(matched - np.median(matched)))
    score = matched / (mad if mad > 0 else 1.0)
    for key in ("new_mask", "ref_mask"):
        if meta.get(key) is not None:
            score[np.asarray(meta[key])] = 0.0
    return diff.astype(np.float32), score.astype(np.float32)


def default_difference_fn() -> tuple[str, DifferenceFn]:
    """Return ``(name, fn)``: AstrID's ZOGY difference (:func:`astrid.science.difference.
    difference_images` with ``method="zogy"``), the one the pipeline runs."""

    def _astrid(
        new: np.ndarray, ref: np.ndarray, meta: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        res = difference_images(
            new,
            ref,
            method="zogy",
            new_mask=meta.get("new_mask"),
            ref_mask=meta.get("ref_mask"),
            new_gain=meta.get("new_gain"),
            ref_gain=meta.get("ref_gain"),
            new_saturation=meta.get("new_saturation"),
            ref_saturation=meta.get("ref_saturation"),
        )
        return np.asarray(res.diff), np.asarray(res.score)

    return "astrid.science.difference.difference_images(method='zogy')", _astrid
