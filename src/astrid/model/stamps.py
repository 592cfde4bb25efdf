"""Stamp normalisation, pad/crop and ZTF alert reading: the model's one input convention.

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
3. NaN pixels (masked or off-chip) become 0, the normalised sky level; a stamp more than
   half NaN is refused with :class:`InvalidStampError`.
4. The difference channel is signed so that the candidate is positive (ZTF does the same:
   its difference cutout is reference minus science when ``isdiffpos`` is ``'f'``).

Geometry: the candidate sits at pixel ``(size // 2, size // 2)`` (row, column; 0-based).
:func:`fit_stamp` pads or crops any square stamp to ``size`` keeping that convention: a
63x63 ZTF cutout (centre index 31) gets one row and one column of zeros at the start, so
its centre lands on index 32 of a 64x64 stamp.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from astrid.errors import AstridError

__all__ = [
    "ASINH_SOFTENING",
    "AlertReadError",
    "InvalidStampError",
    "ZtfAlert",
    "alert_triplet",
    "fit_stamp",
    "iter_ztf_alerts",
    "make_triplet",
    "normalise_stamp",
    "read_ztf_alert_file",
]

#: Softening ``s`` of the asinh stretch, in units of the stamp's robust sigma.
ASINH_SOFTENING = 3.0
#: Largest fraction of NaN pixels a stamp may have.
MAX_NAN_FRACTION = 0.5


class InvalidStampError(AstridError):
    """A cutout that cannot be scored: wrong shape, not 2-D, or mostly NaN."""


class AlertReadError(AstridError):
    """A ZTF alert file that cannot be read (not Avro, missing cutouts, bad FITS stamp)."""


def normalise_stamp(stamp: np.ndarray, *, name: str = "stamp") -> np.ndarray:
    """Normalise one cutout by its own robust statistics (see the module docstring).

    Parameters
    ----------
    stamp : numpy.ndarray
        2-D cutout of shape ``(H, W)`` in any units.
    name : str
        How to call the stamp in error messages.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of the same shape, dimensionless.

    Raises
    ------
    InvalidStampError
        If the stamp is not 2-D, is empty, or more than half of it is NaN or infinite.
    """
    arr = np.asarray(stamp, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidStampError(
            f"{name} has shape {arr.shape}; expected a non-empty 2-D cutout",
            hint="pass one image per stamp, shape (H, W)",
        )
    finite = np.isfinite(arr)
    if finite.mean() < 1.0 - MAX_NAN_FRACTION:
        raise InvalidStampError(
            f"{name} is {100 * (1 - finite.mean()):.0f}% NaN or infinite",
            hint=f"stamps need at least {100 * (1 - MAX_NAN_FRACTION):.0f}% valid pixels",
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


@dataclass(frozen=True)
class ZtfAlert:
    """The parts of a ZTF alert packet that AstrID scores and reports.

    Attributes
    ----------
    object_id : str
        ZTF object name (``objectId``).
    candid : int
        Candidate id.
    ra, dec : float
        Position in degrees (ICRS).
    drb, rb : float or None
        ZTF's deep real-bogus and random-forest scores (not truth).
    isdiffpos : bool
        True when the candidate is positive in science minus template.
    science, template, difference : numpy.ndarray
        The 63x63 cutouts (``float64``; NaN where ZTF masked pixels).
    source : str
        File the alert came from.
    """

    object_id: str
    candid: int
    ra: float
    dec: float
    drb: float | None
    rb: float | None
    isdiffpos: bool
    science: np.ndarray
    template: np.ndarray
    difference: np.ndarray
    source: str


def _stamp_from_cutout(cutout: dict | None, what: str, source: str) -> np.ndarray:
    if not cutout or not cutout.get("stampData"):
        raise AlertReadError(f"{source}: alert has no {what} cutout")
    data = cutout["stampData"]
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(io.BytesIO(data)) as hdul:
                image = np.asarray(hdul[0].data, dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise AlertReadError(
            f"{source}: {what} cutout is not a readable FITS image: {exc}"
        ) from exc
    if image.ndim != 2:
        raise AlertReadError(f"{source}: {what} cutout has shape {image.shape}, not 2-D")
    return image


def read_ztf_alert_file(path: str | Path) -> list[ZtfAlert]:
    """Read every alert packet in one ZTF Avro file.

    Parameters
    ----------
    path : str or pathlib.Path
        An Avro file (ZTF alert schema 3.x).

    Returns
    -------
    list of ZtfAlert

    Raises
    ------
    AlertReadError
        If the file is missing, not Avro, or an alert lacks its cutouts.
    """
    import fastavro

    path = Path(path)
    if not path.is_file():
        raise AlertReadError(f"{path}: no such alert file", hint="pass .avro files or folders")
    alerts = []
    try:
        with path.open("rb") as handle:
            records: list[dict[str, Any]] = [
                r for r in fastavro.reader(handle) if isinstance(r, dict)
            ]
    except Exception as exc:  # fastavro raises several unrelated types on bad input
        raise AlertReadError(
            f"{path}: not a readable Avro alert file ({exc})",
            hint="ZTF alerts are Avro files, one or more packets each",
        ) from exc
    for rec in records:
        cand = rec.get("candidate") or {}
        if "candid" not in rec or "ra" not in cand:
            raise AlertReadError(f"{path}: record is not a ZTF alert (no candidate/candid)")
        alerts.append(
            ZtfAlert(
                object_id=str(rec.get("objectId")),
                candid=int(rec["candid"]),
                ra=float(cand["ra"]),
                dec=float(cand["dec"]),
                drb=None if cand.get("drb") is None else float(cand["drb"]),
                rb=None if cand.get("rb") is None else float(cand["rb"]),
                isdiffpos=str(cand.get("isdiffpos", "t")).lower() in {"t", "1", "true"},
                science=_stamp_from_cutout(rec.get("cutoutScience"), "science", str(path)),
                template=_stamp_from_cutout(rec.get("cutoutTemplate"), "template", str(path)),
                difference=_stamp_from_cutout(rec.get("cutoutDifference"), "difference", str(path)),
                source=str(path),
            )
        )
    return alerts


def iter_ztf_alerts(paths: Iterable[str | Path]) -> Iterator[ZtfAlert]:
    """Yield the alerts of files and of ``*.avro`` files in folders, in sorted order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(p.glob("*.avro"))
            if not files:
                raise AlertReadError(f"{p}: folder holds no .avro files")
            for f in files:
                yield from read_ztf_alert_file(f)
        else:
            yield from read_ztf_alert_file(p)


def alert_triplet(alert: ZtfAlert, size: int = 64) -> np.ndarray:
    """Return the model input ``(3, size, size)`` for a ZTF alert.

    ZTF's difference cutout already shows the candidate positive (it is reference minus
    science for ``isdiffpos = 'f'``), so no sign flip is applied.
    """
    return make_triplet(alert.science, alert.template, alert.difference, size=size)
