"""Master calibration frames: bias, dark and flat masters built from raw frames.

Masters are sigma-clipped combinations (``astropy.stats.sigma_clip`` along the frame axis,
:func:`combine_frames`) carrying a variance map and a mask, plus the metadata that decides
whether they may be applied to an image: shape, binning, exposure time (darks) and filter
(flats), checked by :func:`check_master_matches`. A master that does not fit raises
:class:`CalibrationMismatchError` naming the mismatch.

Units: a bias in ADU; dark masters are stored as a *rate* (ADU/s, bias removed) so they scale
to any exposure time (a dark combined without a bias is only valid at its own exposure
time); a flat normalised to median 1. Variances are in those units squared; arrays are
(ny, nx) float64; masks True = excluded. Applying the masters to an image is
:func:`astrid.science.calibrate.calibrate_image`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clip

from astrid.errors import AstridError
from astrid.science.stats import robust_sigma

__all__ = [
    "CalibrationInputError",
    "CalibrationMismatchError",
    "MasterFrame",
    "check_master_matches",
    "combine_frames",
    "frame_binning",
    "header_value",
    "master_bias",
    "master_dark",
    "master_flat",
]


class CalibrationInputError(AstridError):
    """Calibration input is unusable (no frames, wrong dimensions, missing exposure time)."""


class CalibrationMismatchError(CalibrationInputError):
    """A calibration frame does not fit the image (shape, binning, exposure, filter)."""


@dataclass
class MasterFrame:
    """A master calibration frame.

    Attributes
    ----------
    kind : str
        ``'bias'``, ``'dark'`` (ADU/s) or ``'flat'`` (normalised to median 1).
    data : numpy.ndarray
        Shape (ny, nx), float64.
    variance : numpy.ndarray
        Variance of ``data``, same shape and units squared.
    mask : numpy.ndarray
        Bool, True = unusable pixel.
    n_frames : int
        Frames combined.
    exptime : float or None
        Dark: exposure time of the input frames in seconds.
    filter : str or None
        Flat: band.
    binning : tuple of int or None
        (x, y) binning.
    bias_subtracted : bool
        Dark: whether a bias was removed (only then can it be scaled in time).
    """

    kind: str
    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    n_frames: int
    exptime: float | None = None
    filter: str | None = None
    binning: tuple[int, int] | None = None
    bias_subtracted: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        """Shape (ny, nx)."""
        return (int(self.data.shape[0]), int(self.data.shape[1]))


def frame_binning(header: fits.Header | None) -> tuple[int, int] | None:
    """(x, y) binning from ``CCDSUM`` ('2 2') or ``XBINNING``/``YBINNING``; None if absent."""
    if header is None:
        return None
    ccdsum = header.get("CCDSUM")
    if isinstance(ccdsum, str) and len(ccdsum.split()) == 2:
        try:
            bx, by = (int(v) for v in ccdsum.split())
            return (bx, by)
        except ValueError:
            pass
    if "XBINNING" in header or "YBINNING" in header:
        return (int(header.get("XBINNING", 1)), int(header.get("YBINNING", 1)))
    return None


def header_value(header: fits.Header | None, *keys: str) -> Any:
    """The value of the first of ``keys`` present and not empty in ``header`` (as stored:
    str, float...), or None (no header, or none of the keys)."""
    if header is None:
        return None
    for key in keys:
        if header.get(key) not in (None, ""):
            return header[key]
    return None


def _stack(frames: Sequence[np.ndarray], kind: str) -> np.ndarray:
    if len(frames) == 0:
        raise CalibrationInputError(f"no {kind} frames given", hint="pass at least one frame")
    arrays = [np.asarray(f, dtype=float) for f in frames]
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise CalibrationInputError(f"{kind} frame {i} has shape {a.shape}, not 2-D")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise CalibrationMismatchError(
            f"{kind} frames have different shapes: {sorted(shapes)}",
            hint="combine frames of one detector and binning only",
        )
    return np.stack(arrays)


def combine_frames(
    frames: Sequence[np.ndarray],
    *,
    method: str = "mean",
    sigma: float = 3.0,
    masks: Sequence[np.ndarray] | None = None,
    scale: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped combination of frames along the stack axis.

    Parameters
    ----------
    frames : sequence of numpy.ndarray
        Frames of shape (ny, nx).
    method : {'mean', 'median'}
        Estimator of the clipped stack.
    sigma : float
        Clipping threshold in standard deviations (``astropy.stats.sigma_clip``, 5 iterations).
    masks : sequence of numpy.ndarray, optional
        Per-frame bool masks (True = excluded).
    scale : sequence of float, optional
        Each frame is divided by its scale before combining (e.g. flat medians).

    Returns
    -------
    combined, variance, mask, n_used : numpy.ndarray
        Combined frame, its variance (per-pixel sample variance of the kept values divided by
        their number, ×π/2 for the median), mask of pixels with no kept value, and the number of
        kept values per pixel.
    """
    if method not in ("mean", "median"):
        raise CalibrationInputError(f"unknown combine method {method!r}", hint="use mean or median")
    stack = _stack(frames, "input")
    if scale is not None:
        stack = stack / np.asarray(scale, dtype=float)[:, None, None]
    bad = ~np.isfinite(stack)
    if masks is not None:
        bad |= np.stack([np.asarray(m, dtype=bool) for m in masks])
    data = np.ma.masked_array(np.where(bad, 0.0, stack), mask=bad)
    if len(stack) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            clipped = sigma_clip(data, sigma=sigma, maxiters=5, axis=0, masked=True)
    else:
        clipped = data
    n_used = np.asarray((~np.ma.getmaskarray(clipped)).sum(axis=0))
    reducer = np.ma.mean if method == "mean" else np.ma.median
    combined = reducer(clipped, axis=0)
    if len(stack) >= 2:
        var_single = np.ma.var(clipped, axis=0, ddof=1)
        var = np.ma.filled(var_single, np.nan) / np.maximum(n_used, 1)
        if method == "median":
            var = var * (math.pi / 2.0)
    else:
        var = np.full(stack.shape[1:], np.nan)
    mask = n_used == 0
    return (
        np.asarray(np.ma.filled(combined, np.nan), dtype=float),
        np.asarray(var, dtype=float),
        mask,
        n_used,
    )


def master_bias(
    frames: Sequence[np.ndarray],
    *,
    headers: Sequence[fits.Header] | None = None,
    method: str = "mean",
    sigma: float = 3.0,
) -> MasterFrame:
    """Combine bias frames (ADU) into a master bias.

    Raises
    ------
    CalibrationInputError, CalibrationMismatchError
        No frames, non-2-D frames, or frames of different shape or binning.
    """
    binning = _common_binning(headers, "bias")
    _stack(frames, "bias")
    data, var, mask, _ = combine_frames(frames, method=method, sigma=sigma)
    var = _fill_variance(var, frames)
    return MasterFrame("bias", data, var, mask, len(frames), binning=binning)


def master_dark(
    frames: Sequence[np.ndarray],
    *,
    exptimes: Sequence[float] | None = None,
    headers: Sequence[fits.Header] | None = None,
    bias: MasterFrame | None = None,
    method: str = "mean",
    sigma: float = 3.0,
) -> MasterFrame:
    """Combine dark frames into a master dark *rate* in ADU per second.

    Parameters
    ----------
    frames : sequence of numpy.ndarray
        Raw dark frames in ADU.
    exptimes : sequence of float, optional
        Their exposure times in seconds (else ``EXPTIME`` of ``headers``).
    headers : sequence of astropy.io.fits.Header, optional
        Their headers.
    bias : MasterFrame, optional
        Master bias removed first; without it the dark holds the bias and can only be applied
        at its own exposure time.

    Raises
    ------
    CalibrationInputError
        If an exposure time is missing or not positive.
    CalibrationMismatchError
        If the bias does not fit the darks.
    """
    times = _exptimes(frames, exptimes, headers)
    binning = _common_binning(headers, "dark")
    stack = _stack(frames, "dark")
    var_bias: float | np.ndarray = 0.0
    if bias is not None:
        check_master_matches(bias, stack.shape[1:], binning, "dark frames")
        stack = stack - bias.data
        var_bias = bias.variance
    rates = [s / t for s, t in zip(stack, times, strict=True)]
    data, var, mask, _ = combine_frames(rates, method=method, sigma=sigma)
    var = _fill_variance(var, rates)
    mean_t = float(np.mean(times))
    var = var + np.asarray(var_bias) / mean_t**2
    if bias is not None:
        mask = mask | bias.mask
    return MasterFrame(
        "dark",
        data,
        var,
        mask,
        len(frames),
        exptime=mean_t,
        binning=binning,
        bias_subtracted=bias is not None,
    )


def master_flat(
    frames: Sequence[np.ndarray],
    *,
    filter: str | None = None,
    headers: Sequence[fits.Header] | None = None,
    exptimes: Sequence[float] | None = None,
    bias: MasterFrame | None = None,
    dark: MasterFrame | None = None,
    method: str = "median",
    sigma: float = 3.0,
    min_response: float = 0.2,
) -> MasterFrame:
    """Combine flat-field frames into a master flat normalised to median 1.

    Each frame is bias/dark-corrected, divided by its median, and the frames are combined.
    Pixels whose response is below ``min_response`` (or not finite) are masked.

    Parameters
    ----------
    frames : sequence of numpy.ndarray
        Raw flat frames in ADU.
    filter : str, optional
        Band; else the common ``FILTER`` of ``headers``.
    headers, exptimes :
        Headers and exposure times (needed only with ``dark``).
    bias, dark : MasterFrame, optional
        Masters removed first.
    min_response : float
        Lowest acceptable normalised response.

    Raises
    ------
    CalibrationMismatchError
        If the frames' filters differ, or the masters do not fit.
    """
    filters = {str(header_value(h, "FILTER", "FILTNAM", "BAND")).strip() for h in headers or []}
    filters.discard("None")
    if len(filters) > 1:
        raise CalibrationMismatchError(
            f"flat frames were taken through different filters: {sorted(filters)}",
            hint="build one master flat per filter",
        )
    band = filter if filter is not None else (filters.pop() if filters else None)
    binning = _common_binning(headers, "flat")
    stack = _stack(frames, "flat")
    shape = stack.shape[1:]
    var_extra = np.zeros(shape)
    mask = np.zeros(shape, dtype=bool)
    if bias is not None:
        check_master_matches(bias, shape, binning, "flat frames")
        stack = stack - bias.data
        var_extra = var_extra + bias.variance
        mask |= bias.mask
    if dark is not None:
        times = _exptimes(frames, exptimes, headers)
        check_master_matches(dark, shape, binning, "flat frames")
        stack = stack - dark.data * np.asarray(times)[:, None, None]
        var_extra = var_extra + dark.variance * float(np.mean(times)) ** 2
        mask |= dark.mask
    medians = np.array([np.nanmedian(s) for s in stack])
    if not np.all(medians > 0):
        raise CalibrationInputError(
            f"flat frames have non-positive medians {medians.tolist()}",
            hint="check that the flats are exposed and bias-corrected",
        )
    data, var, cmask, _ = combine_frames(
        list(stack), method=method, sigma=sigma, scale=medians.tolist()
    )
    var = _fill_variance(var, list(stack / medians[:, None, None]))
    var = var + var_extra / float(np.mean(medians)) ** 2
    norm = float(np.nanmedian(data[~cmask]))
    data, var = data / norm, var / norm**2
    mask |= cmask | ~np.isfinite(data) | (data < min_response)
    return MasterFrame("flat", data, var, mask, len(frames), filter=band, binning=binning)


def _fill_variance(var: np.ndarray, frames: Sequence[np.ndarray]) -> np.ndarray:
    """With a single frame the variance is unknown: use the frame's robust pixel scatter."""
    if np.all(np.isnan(var)):
        frame = np.asarray(frames[0], dtype=float)
        return np.full(frame.shape, robust_sigma(frame, ignore_nan=True) ** 2)
    return np.where(np.isfinite(var), var, np.nanmedian(var))


def _exptimes(
    frames: Sequence[np.ndarray],
    exptimes: Sequence[float] | None,
    headers: Sequence[fits.Header] | None,
) -> list[float]:
    if exptimes is None and headers is not None:
        exptimes = [header_value(h, "EXPTIME", "EXPOSURE") for h in headers]
    if exptimes is None or len(exptimes) != len(frames) or any(t is None for t in exptimes):
        raise CalibrationInputError(
            "exposure times of the dark/flat frames are missing",
            hint="pass exptimes= or headers with EXPTIME",
        )
    times = [float(t) for t in exptimes]
    if min(times) <= 0:
        raise CalibrationInputError(f"exposure times must be > 0 s, got {times}")
    return times


def _common_binning(headers: Sequence[fits.Header] | None, kind: str) -> tuple[int, int] | None:
    if not headers:
        return None
    values = {frame_binning(h) for h in headers}
    values.discard(None)
    if len(values) > 1:
        raise CalibrationMismatchError(
            f"{kind} frames have different binning: {sorted(values)}",  # type: ignore[type-var]
            hint="combine frames of one binning only",
        )
    return values.pop() if values else None


def check_master_matches(
    frame: MasterFrame,
    shape: tuple[int, ...],
    binning: tuple[int, int] | None,
    what: str,
) -> None:
    """Refuse a master that does not fit the frames it is applied to.

    ``shape`` (ny, nx) and ``binning`` (x, y; None = unknown, not checked) are those of the
    target; ``what`` names it in the message ("image", "dark frames"...).

    Raises
    ------
    CalibrationMismatchError
        The shapes differ, or both binnings are known and differ.
    """
    if frame.shape != tuple(shape):
        raise CalibrationMismatchError(
            f"master {frame.kind} has shape {frame.shape} but the {what} have {tuple(shape)}",
            hint="use calibration frames of the same detector, amplifier and trimming",
        )
    if frame.binning is not None and binning is not None and frame.binning != binning:
        raise CalibrationMismatchError(
            f"master {frame.kind} is binned {frame.binning} but the {what} are {binning}",
            hint="use calibration frames taken with the same binning",
        )
