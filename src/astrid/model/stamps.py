"""Stamp normalisation and pad/crop: the model's one input convention.

Real-bogus models fail on other pipelines' stamps mostly because the stamps are scaled
differently from those they were trained on (counts vs. calibrated flux, sky left in or
subtracted, different zero points). AstrID therefore normalises every stamp the same way,
whoever made it, using only the stamp itself:

1. ``z = (x - median(x)) / sigma``, where ``sigma = 1.4826 * MAD(x)`` is a robust noise
   estimate of that stamp (falling back to the standard deviation, then to 1, for flat
   stamps). This removes units, zero points and sky levels: new, reference and difference
   each become "signal in units of that stamp's own noise".
2. ``y = s * asinh(z / s)`` with ``s = 3``: linear within about 3 sigma, logarithmic beyond,
   so a saturated star and a faint transient both fit the network's dynamic range.
3. NaN pixels (masked, off-chip, or padding added for a stamp clipped by a CCD edge) become
   0, the normalised sky level (the **fill convention**: the model sees missing pixels as
   empty sky). :func:`make_triplet` refuses a stamp more than half NaN with
   :class:`InvalidStampError`; the alert path (:mod:`astrid.model.ztf`) scores such stamps
   with a ``problems`` note instead, down to :data:`MIN_VALID_FRACTION` valid pixels.
4. The difference channel is signed so that the candidate is positive (ZTF does the same:
   its difference cutout is reference minus science when ``isdiffpos`` is ``'f'``).

Geometry: the candidate sits at pixel ``(size // 2, size // 2)`` (row, column; 0-based).
:func:`fit_stamp` pads or crops any square stamp to ``size`` keeping that convention: a
63x63 ZTF cutout (centre index 31) gets one row and one column of zeros at the start, so
its centre lands on index 32 of a 64x64 stamp.
"""

from __future__ import annotations

import numpy as np

from astrid.errors import AstridError

__all__ = [
    "ASINH_SOFTENING",
    "MAX_NAN_FRACTION",
    "MIN_VALID_FRACTION",
    "InvalidStampError",
    "fit_stamp",
    "make_triplet",
    "nan_fraction",
    "normalise_stamp",
]

#: Softening ``s`` of the asinh stretch, in units of the stamp's robust sigma.
ASINH_SOFTENING = 3.0
#: Largest fraction of NaN pixels a stamp may have in :func:`make_triplet` (strict inputs).
MAX_NAN_FRACTION = 0.5
#: Smallest fraction of valid pixels with which an alert stamp is still scored (with a
#: ``problems`` note); below it the alert gets an empty score and the reason.
MIN_VALID_FRACTION = 0.1


class InvalidStampError(AstridError):
    """A cutout that cannot be scored: wrong shape, not 2-D, or mostly NaN."""


def nan_fraction(stamp: np.ndarray) -> float:
    """Fraction of the pixels of ``stamp`` that are NaN or infinite (0 to 1)."""
    arr = np.asarray(stamp, dtype=np.float64)
    return float(1.0 - np.isfinite(arr).mean()) if arr.size else 1.0


def normalise_stamp(
    stamp: np.ndarray, *, name: str = "stamp", max_nan_fraction: float = MAX_NAN_FRACTION
) -> np.ndarray:
    """Normalise one cutout by its own robust statistics (see the module docstring).

    Parameters
    ----------
    stamp : numpy.ndarray
        2-D cutout of shape ``(H, W)`` in any units.
    name : str
        How to call the stamp in error messages.
    max_nan_fraction : float
        Largest fraction of NaN/infinite pixels accepted (0 to 1).

    Returns
    -------
    numpy.ndarray
        ``float32`` array of the same shape, dimensionless.

    Raises
    ------
    InvalidStampError
        If the stamp is not 2-D, is empty, or more than ``max_nan_fraction`` of it is NaN
        or infinite (always when every pixel is).
    """
    arr = np.asarray(stamp, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidStampError(
            f"{name} has shape {arr.shape}; expected a non-empty 2-D cutout",
            hint="pass one image per stamp, shape (H, W)",
        )
    finite = np.isfinite(arr)
    if not finite.any() or finite.mean() < 1.0 - max_nan_fraction:
        raise InvalidStampError(
            f"{name} is {100 * (1 - finite.mean()):.0f}% NaN or infinite",
            hint=f"stamps need at least {100 * (1 - max_nan_fraction):.0f}% valid pixels",
        )
    values = arr[finite]
    med = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - med)))
    if not sigma > 0:
        sigma = float(np.std(values))
    if not sigma > 0:
        sigma = 1.0
    z = np.where(finite, (arr - med) / sigma, 0.0)
    s = ASINH_SOFTENING
    return (s * np.arcsinh(z / s)).astype(np.float32)


def fit_stamp(stamp: np.ndarray, size: int = 64) -> np.ndarray:
    """Pad (with zeros) or crop a square stamp to ``size`` x ``size``, centre preserved.

    The pixel at ``(n // 2, n // 2)`` of the input lands at ``(size // 2, size // 2)``.

    Parameters
    ----------
    stamp : numpy.ndarray
        Normalised stamp of shape ``(n, n)`` (or ``(C, n, n)``).
    size : int
        Output side, in pixels.

    Returns
    -------
    numpy.ndarray
        Shape ``(size, size)`` (or ``(C, size, size)``).
    """
    arr = np.asarray(stamp)
    h, w = arr.shape[-2:]
    if h != w:
        raise InvalidStampError(
            f"stamp is {h}x{w} pixels; expected a square cutout",
            hint="cut stamps centred on the candidate with equal sides",
        )
    if h == size:
        return arr
    before = size // 2 - h // 2
    if before >= 0:
        after = size - h - before
        pad = [(0, 0)] * (arr.ndim - 2) + [(before, after), (before, after)]
        return np.pad(arr, pad, mode="constant")
    start = -before
    return arr[..., start : start + size, start : start + size]


def make_triplet(
    new: np.ndarray,
    ref: np.ndarray,
    diff: np.ndarray,
    *,
    size: int = 64,
    negative: bool = False,
) -> np.ndarray:
    """Stack new, reference and difference cutouts into the model's input.

    Parameters
    ----------
    new, ref, diff : numpy.ndarray
        Square cutouts of equal shape ``(n, n)`` centred on the candidate.
    size : int
        Side of the output stamps, in pixels.
    negative : bool
        True when the candidate is negative in ``diff`` (a fading source); the
        difference is then negated so that the candidate is positive.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(3, size, size)``.
    """
    shapes = {np.shape(new), np.shape(ref), np.shape(diff)}
    if len(shapes) != 1:
        raise InvalidStampError(
            f"new, reference and difference stamps differ in shape: {sorted(shapes)}",
            hint="cut the three stamps with the same size around the same position",
        )
    d = -np.asarray(diff, dtype=np.float64) if negative else diff
    channels = [
        normalise_stamp(new, name="new stamp"),
        normalise_stamp(ref, name="reference stamp"),
        normalise_stamp(d, name="difference stamp"),
    ]
    return fit_stamp(np.stack(channels), size).astype(np.float32)
