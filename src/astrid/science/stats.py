"""Robust noise and Gaussian-width constants: the one place the science core takes them from.

* :func:`robust_sigma` — the standard deviation of Gaussian noise estimated from the median
  absolute deviation (``astropy.stats.mad_std``: ``1.4826 × MAD``), insensitive to the stars,
  cosmic rays and transients that sit on top of the noise.
* :func:`median_float64` — ``np.median`` of float32 values as the float64 copy would give it,
  without that copy.
* :func:`median_by_selection` — ``np.median`` of a large array, the same value, from a
  partition of the few values around the middle only.
* ``FWHM_PER_SIGMA`` / ``SIGMA_PER_FWHM`` — ``2 sqrt(2 ln 2)`` ≈ 2.3548 and its inverse
  (``astropy.stats.gaussian_sigma_to_fwhm`` / ``gaussian_fwhm_to_sigma``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.stats import gaussian_fwhm_to_sigma, gaussian_sigma_to_fwhm, mad_std

__all__ = [
    "FWHM_PER_SIGMA",
    "MAD_PER_SIGMA",
    "SIGMA_PER_FWHM",
    "every_nth_valid",
    "median_by_selection",
    "median_float64",
    "robust_sigma",
]

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


def median_float64(values: np.ndarray, *, overwrite_input: bool = False) -> float:
    """``float(np.median(values.astype(np.float64)))``, without the float64 copy of float32
    ``values``.

    Casting float32 to float64 is exact and keeps the order, so the float32 partition finds
    the same middle values; the two of an even count are averaged in float64 as
    ``np.median`` does (``(a + b) / 2``). NaN when any value is NaN, as ``np.median``.
    Other dtypes go to ``np.median`` of their float64 values. ``overwrite_input``: the
    caller's array may be reordered (e.g. a fresh boolean selection).

    Parameters
    ----------
    values : numpy.ndarray
        Any shape (flattened).
    """
    v = np.asarray(values)
    if v.dtype != np.float32 or v.size == 0:
        return float(np.median(np.asarray(v, dtype=np.float64)))
    v = v.reshape(-1)
    n = v.size
    k = n // 2
    kth = [k - 1, k, n - 1] if n % 2 == 0 else [k, n - 1]  # n - 1: a NaN sorts last
    if overwrite_input and v.flags.writeable:
        v.partition(kth)
        part = v
    else:
        part = np.partition(v, kth)
    if np.isnan(part[-1]):
        return float("nan")
    if n % 2:
        return float(part[k])
    return float((np.float64(part[k - 1]) + np.float64(part[k])) / 2.0)


#: below this many values :func:`median_by_selection` is ``np.median`` itself
_SELECT_MIN = 1 << 16
#: values per chunk of :func:`median_by_selection`'s pass (its temporaries stay in cache)
_SELECT_CHUNK = 1 << 16


def median_by_selection(values: np.ndarray) -> Any:
    """``np.median(values)`` (flattened; the same value and dtype), by partitioning only the
    values between two bracketing order statistics, taken from a regular sample.

    ``np.median`` partitions all ``n`` values (~25 ms for 4 M float32). Here a strided
    sample of ~16,000 values gives ``lo`` and ``hi`` around the middle (±6 standard
    deviations of the sample median's rank); one pass counts the values below ``lo`` and
    keeps those up to ``hi`` (a few percent), and the middle order statistics are found
    among these. When the count shows that they are not there (a sample far from
    typical), or with NaN, or for small arrays, ``np.median`` of all values answers. The
    one or two middle values are averaged by ``np.mean`` as ``np.median`` does, so the
    result is the same bit for bit.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, a real dtype.
    """
    v = np.asarray(values).reshape(-1)
    n = v.size
    if n < _SELECT_MIN or v.dtype.kind not in "fiu":
        return np.median(v)
    k = [n // 2 - 1, n // 2] if n % 2 == 0 else [n // 2]
    sample = v[:: max(1, n // 16384)].copy()
    m = sample.size
    half = int(3 * np.sqrt(m)) + 2
    ia, ib = max(m // 2 - half, 0), min(m // 2 + half, m - 1)
    sample.partition([ia, ib])
    lo, hi = sample[ia], sample[ib]
    below = 0
    parts = []
    out = np.empty(min(n, _SELECT_CHUNK), dtype=bool)
    tmp = np.empty_like(out)
    for i in range(0, n, _SELECT_CHUNK):
        c = v[i : i + _SELECT_CHUNK]
        lt, gt = np.less(c, lo, out=out[: c.size]), np.greater(c, hi, out=tmp[: c.size])
        below += int(np.count_nonzero(lt))
        np.logical_or(lt, gt, out=lt)
        np.logical_not(lt, out=lt)
        parts.append(c[lt])
    inside = np.concatenate(parts)  # with any NaN (it compares with nothing)
    if (v.dtype.kind == "f" and bool(np.isnan(inside).any())) or not (
        below <= k[0] and k[-1] < below + inside.size
    ):
        return np.median(v)  # NaN, or the bracket missed the middle
    ranks = [i - below for i in k]
    inside.partition(ranks)
    return np.mean(inside[ranks[0] : ranks[-1] + 1])
