"""Instrumental calibration applied to an image: bias and dark removed, flat divided.

:func:`calibrate_image` applies the masters of :mod:`astrid.science.master_frames` (built
there; re-exported here with its errors) after checking that each fits the image (shape,
binning, exposure time, filter: :class:`CalibrationMismatchError` otherwise).

Model of a raw frame in ADU: ``raw = bias + dark_rate * t + flat * sky_and_stars``. Dark
masters are stored as a *rate* (ADU/s, bias removed) so they scale to any exposure time; a dark
combined without a bias is only valid at its own exposure time.

Variance propagation (ADU²) of :func:`calibrate_image`::

    d = raw - bias - rate * t                 var_d = var_raw + var_bias + t² var_rate
    out = d / flat                            var_out = var_d / flat² + d² var_flat / flat⁴

with ``var_raw = max(raw - bias, 0) / gain + (read_noise / gain)²`` when gain and read noise are
known. Masks: True = excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from astrid.science.master_frames import (
    CalibrationInputError,
    CalibrationMismatchError,
    MasterFrame,
    check_master_matches,
    combine_frames,
    frame_binning,
    header_value,
    master_bias,
    master_dark,
    master_flat,
)

__all__ = [
    "CalibratedImage",
    "CalibrationInputError",
    "CalibrationMismatchError",
    "CalibrationSet",
    "MasterFrame",
    "calibrate_image",
    "combine_frames",
    "frame_binning",
    "master_bias",
    "master_dark",
    "master_flat",
]


@dataclass
class CalibrationSet:
    """The masters to apply to one image (any may be ``None``)."""

    bias: MasterFrame | None = None
    dark: MasterFrame | None = None
    flat: MasterFrame | None = None


@dataclass
class CalibratedImage:
    """Result of :func:`calibrate_image`: image (ADU), variance (ADU²), mask, steps done."""

    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    steps: list[str] = field(default_factory=list)


def calibrate_image(
    data: np.ndarray,
    header: fits.Header | None = None,
    *,
    calibration: CalibrationSet | None = None,
    bias: MasterFrame | None = None,
    dark: MasterFrame | None = None,
    flat: MasterFrame | None = None,
    exptime: float | None = None,
    filter: str | None = None,
    gain: float | None = None,
    read_noise: float | None = None,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    dark_time_tolerance: float = 0.01,
) -> CalibratedImage:
    """Remove bias and dark, divide by the flat, and propagate variance and mask.

    Parameters
    ----------
    data : numpy.ndarray
        Raw image in ADU, shape (ny, nx).
    header : astropy.io.fits.Header, optional
        Supplies ``EXPTIME``, ``FILTER``, ``GAIN``, ``RDNOISE`` and binning when the keyword
        arguments do not.
    calibration : CalibrationSet, optional
        Masters; individual ``bias``/``dark``/``flat`` arguments take precedence.
    exptime : float, optional
        Exposure time in seconds (needed with a dark).
    filter : str, optional
        Band (checked against the flat's).
    gain, read_noise : float, optional
        e-/ADU and e-; used for the raw variance when ``variance`` is not given.
    variance : numpy.ndarray, optional
        Variance of ``data`` in ADU².
    mask : numpy.ndarray, optional
        Bool, True = excluded.
    dark_time_tolerance : float
        Relative exposure-time difference allowed when applying a dark that still holds the
        bias (it cannot be scaled).

    Returns
    -------
    CalibratedImage

    Raises
    ------
    CalibrationMismatchError
        Shape, binning, filter or exposure mismatch between the image and a master.
    CalibrationInputError
        A dark is given but the exposure time is unknown.
    """
    image = np.asarray(data, dtype=float)
    if image.ndim != 2:
        raise CalibrationInputError(f"image has shape {image.shape}, not 2-D")
    cal = calibration or CalibrationSet()
    bias = bias or cal.bias
    dark = dark or cal.dark
    flat = flat or cal.flat
    binning = frame_binning(header)
    exptime = exptime if exptime is not None else header_value(header, "EXPTIME", "EXPOSURE")
    filter = filter if filter is not None else header_value(header, "FILTER", "FILTNAM", "BAND")
    gain = gain if gain is not None else header_value(header, "GAIN", "EGAIN")
    read_noise = (
        read_noise if read_noise is not None else header_value(header, "RDNOISE", "READNOIS")
    )
    out_mask = np.zeros(image.shape, dtype=bool) if mask is None else np.asarray(mask, bool).copy()
    out_mask |= ~np.isfinite(image)
    steps: list[str] = []
    level = image.copy()
    if bias is not None:
        check_master_matches(bias, image.shape, binning, "image")
        level = level - bias.data
    if variance is not None:
        var = np.asarray(variance, dtype=float).copy()
    elif gain:
        rn = float(read_noise or 0.0)
        var = np.clip(level, 0, None) / float(gain) + (rn / float(gain)) ** 2
    else:
        var = np.zeros(image.shape)
    if bias is not None:
        var = var + bias.variance
        out_mask |= bias.mask
        steps.append("bias")
    if dark is not None:
        check_master_matches(dark, image.shape, binning, "image")
        if exptime is None:
            raise CalibrationInputError(
                "a dark is to be applied but the image's exposure time is unknown",
                hint="pass exptime= or a header with EXPTIME",
            )
        t = float(exptime)
        if not dark.bias_subtracted:
            dark_t = float(dark.exptime or 0.0)
            if abs(t - dark_t) > dark_time_tolerance * max(dark_t, 1e-9):
                raise CalibrationMismatchError(
                    f"the master dark still contains the bias and was taken at {dark_t:g} s; "
                    f"it cannot be scaled to the image's {t:g} s",
                    hint="build the dark with bias= or use darks of the same exposure time",
                )
        level = level - dark.data * t
        var = var + dark.variance * t**2
        out_mask |= dark.mask
        steps.append("dark")
    if flat is not None:
        check_master_matches(flat, image.shape, binning, "image")
        if (
            flat.filter is not None
            and filter is not None
            and str(flat.filter).strip().lower() != str(filter).strip().lower()
        ):
            raise CalibrationMismatchError(
                f"master flat is for filter {flat.filter!r} but the image is {filter!r}",
                hint="use a flat taken through the image's filter",
            )
        f = np.where(flat.mask | (flat.data <= 0), np.nan, flat.data)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = var / f**2 + level**2 * flat.variance / f**4
            level = level / f
        out_mask |= flat.mask
        steps.append("flat")
    out_mask |= ~np.isfinite(level) | ~np.isfinite(var)
    return CalibratedImage(
        data=level.astype(np.float32), variance=var.astype(np.float32), mask=out_mask, steps=steps
    )
