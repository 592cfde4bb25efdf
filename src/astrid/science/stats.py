"""Robust noise and Gaussian-width constants: the one place the science core takes them from.

* :func:`robust_sigma` — the standard deviation of Gaussian noise estimated from the median
  absolute deviation (``astropy.stats.mad_std``: ``1.4826 × MAD``), insensitive to the stars,
  cosmic rays and transients that sit on top of the noise.
* ``FWHM_PER_SIGMA`` / ``SIGMA_PER_FWHM`` — ``2 sqrt(2 ln 2)`` ≈ 2.3548 and its inverse
  (``astropy.stats.gaussian_sigma_to_fwhm`` / ``gaussian_fwhm_to_sigma``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.stats import gaussian_fwhm_to_sigma, gaussian_sigma_to_fwhm, mad_std

__all__ = ["FWHM_PER_SIGMA", "MAD_PER_SIGMA", "SIGMA_PER_FWHM", "every_nth_valid", "robust_sigma"]

FWHM_PER_SIGMA: float = float(gaussian_sigma_to_fwhm)
SIGMA_PER_FWHM: float = float(gaussian_fwhm_to_sigma)
MAD_PER_SIGMA: float = float(1.0 / mad_std(np.array([-1.0, 1.0])))  # Φ⁻¹(3/4) ≈ 0.6745


def robust_sigma(
    values: Any,
    *,
    centre: float | np.ndarray | None = None,
    axis: int | None = None,
    ignore_nan: bool = False,
) -> Any:
    """Gaussian-equivalent standard deviation from the median absolute deviation.

    Parameters
    ----------
    values : array_like
        Any shape, any units.
    centre : float or numpy.ndarray, optional
        Point the deviations are taken from; default the median (then this is
        ``astropy.stats.mad_std``). A different centre (e.g. a stellar-locus percentile)
        measures the spread about that point.
    axis : int, optional
        Axis along which to reduce; default all values.
    ignore_nan : bool
        Skip NaN values (otherwise a NaN makes the result NaN).

    Returns
    -------
    float or numpy.ndarray
        ``1.4826 × median(|values − centre|)`` in the units of ``values``; a float when
        ``axis`` is None.
    """
    if centre is None:
        out = mad_std(values, axis=axis, ignore_nan=ignore_nan)
    else:
        med = np.nanmedian if ignore_nan else np.median
        out = med(np.abs(np.asarray(values) - centre), axis=axis) / MAD_PER_SIGMA
    return float(out) if axis is None else np.asarray(out)


def every_nth_valid(values: np.ndarray, excluded: np.ndarray, step: int) -> np.ndarray:
    """``values[~excluded][::step]``, gathered by blocks of rows.

    The same values in the same order, without first copying every valid value of the image
    (16 MB at 4 Mpix of float32) to keep one in ``step`` of them: a sample for a robust
    statistic.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (ny, nx).
    excluded : numpy.ndarray of bool
        True = left out, same shape.
    step : int
        Keep every ``step``-th valid value (>= 1), counting in C order from the first.

    Returns
    -------
    numpy.ndarray
        1-D, dtype of ``values``.
    """
    if step <= 1 or values.ndim != 2:
        return values[~excluded][:: max(1, step)]
    rows = max(1, (1 << 18) // max(1, values.shape[1]))  # ~256k pixels per block
    parts = []
    seen = 0  # valid values before the block
    for r0 in range(0, values.shape[0], rows):
        block = values[r0 : r0 + rows][~excluded[r0 : r0 + rows]]
        parts.append(block[(-seen) % step :: step])
        seen += block.size
    return np.concatenate(parts) if parts else values[:0, :0].ravel()
