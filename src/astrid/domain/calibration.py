"""Master calibration frames: registering them per instrument, filter and date range, and
finding the ones that apply to an observation.

:func:`register_calibration` checks a master bias, dark or flat FITS file and stores it (data,
variance and mask as blobs, one ``CalibrationFrame`` row); every refusal is a
:class:`CalibrationFieldError` naming the input at fault (``file``, ``kind``,
``instrument``, ``filter``, ``valid_from``, ``valid_to``) and stores nothing. Conventions of
the stored masters (those of :mod:`astrid.science.master_frames`): a bias in ADU; a dark as a
rate in ADU/s with the bias removed (a file in ADU is divided by its ``EXPTIME``, one whose
``BUNIT`` ends in ``/s`` is taken as a rate); a flat normalised to median 1 with no zero,
negative or non-finite pixel outside its ``MASK`` extension. A ``VARIANCE`` extension gives
the master's variance; without one the master is taken as noiseless (said in ``notes``).

:func:`calibration_for` picks, for an observation's instrument, filter, MJD and shape, the
newest bias, dark and flat whose validity covers the MJD; a matching frame of another shape is
a :class:`~astrid.science.master_frames.CalibrationMismatchError`, never skipped silently.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.errors import AstridError
from astrid.science.fitsio import read_image
from astrid.science.master_frames import (
    CalibrationInputError,
    CalibrationMismatchError,
    MasterFrame,
    frame_binning,
)
from astrid.store.blobs import BlobStore
from astrid.store.db import Database
from astrid.store.tables import CalibrationFrame, Observation

__all__ = [
    "CALIBRATION_KINDS",
    "CalibrationFieldError",
    "CalibrationInfo",
    "calibration_for",
    "list_calibrations",
    "load_master",
    "parse_mjd",
    "register_calibration",
]

#: The kinds of master frame, in the order they are applied.
CALIBRATION_KINDS: tuple[str, ...] = ("bias", "dark", "flat")


class CalibrationFieldError(CalibrationInputError):
    """A calibration frame is refused; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


@dataclass(frozen=True)
class CalibrationInfo:
    """A registered master frame, dates as MJD (what the CLI and API show)."""

    id: int
    kind: str
    instrument: str | None
    filter: str | None
    width: int
    height: int
    valid_from: float | None
    valid_to: float | None
    exposure_time: float | None
    n_frames: int
    blob_key: str
    filename: str | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, row: CalibrationFrame, notes: list[str] | None = None) -> CalibrationInfo:
        """From a ``CalibrationFrame`` row."""
        return cls(
            row.id,
            row.kind,
            row.instrument,
            row.filter,
            row.width,
            row.height,
            row.valid_from,
            row.valid_to,
            row.exposure_time,
            row.n_frames,
            row.blob_key,
            row.filename,
            list(notes or []),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def parse_mjd(value: str | float | None, name: str) -> float | None:
    """An MJD from a number (``60300``) or an ISO date/time (``2026-01-31``); None stays None.

    Raises
    ------
    CalibrationFieldError
        Naming ``name`` when the value is neither.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        mjd = float(value)
    except (TypeError, ValueError):
        try:
            mjd = float(Time(str(value).strip(), scale="utc").mjd)
        except ValueError as exc:
            raise CalibrationFieldError(
                name, f"{value!r} is neither an MJD nor an ISO date", hint="e.g. 2026-01-31"
            ) from exc
    if not math.isfinite(mjd) or not 0.0 <= mjd <= 1e6:
        raise CalibrationFieldError(name, f"MJD {mjd} is out of range [0, 1e6]")
    return mjd


def _same(a: str | None, b: str | None) -> bool:
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def _extension(hdul: fits.HDUList, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if name not in hdul:
        return None
    data = hdul[name].data
    if data is None or data.shape != shape:
        raise CalibrationFieldError(
            "file", f"the {name} extension has shape {getattr(data, 'shape', None)}, not {shape}"
        )
    return np.asarray(data)


def _fits(data: np.ndarray, header: fits.Header | None = None) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buf)
    return buf.getvalue()


def register_calibration(
    db: Database,
    blobs: BlobStore,
    data: bytes,
    *,
    kind: str,
    instrument: str,
    filter: str | None = None,
    valid_from: str | float | None = None,
    valid_to: str | float | None = None,
    filename: str | None = None,
) -> CalibrationInfo:
    """Check and store one master frame (see the module docstring for the conventions).

    Parameters
    ----------
    db, blobs : Database, BlobStore
        Where the row and the pixel blobs go.
    data : bytes
        The FITS file: the master in its primary (or SCI) image, optional ``VARIANCE`` and
        ``MASK`` (non-zero = bad) extensions of the same shape.
    kind : {'bias', 'dark', 'flat'}
        What it is.
    instrument : str
        Instrument it belongs to (compared with the observations' ``instrument``; must agree
        with the file's ``INSTRUME`` when it has one).
    filter : str, optional
        Band of a flat (else the file's ``FILTER``); refused for a bias or dark.
    valid_from, valid_to : str or float, optional
        Validity range (MJD or ISO date; open when omitted).
    filename : str, optional
        Name shown in listings.

    Returns
    -------
    CalibrationInfo

    Raises
    ------
    CalibrationFieldError
        Naming the field at fault; nothing is stored.
    """
    kind = str(kind or "").strip().lower()
    if kind not in CALIBRATION_KINDS:
        raise CalibrationFieldError("kind", f"{kind!r} is not one of bias, dark, flat")
    instrument = str(instrument or "").strip()
    if not instrument or len(instrument) > 128:
        raise CalibrationFieldError("instrument", "give the instrument (1-128 characters)")
    start, end = parse_mjd(valid_from, "valid_from"), parse_mjd(valid_to, "valid_to")
    if start is not None and end is not None and end < start:
        raise CalibrationFieldError("valid_to", f"valid_to {end} is before valid_from {start}")
    try:
        image = read_image(data, validate=False)
        with fits.open(io.BytesIO(data)) as hdul:
            shape = image.data.shape
            var = _extension(hdul, "VARIANCE", shape)
            bad = _extension(hdul, "MASK", shape)
    except CalibrationFieldError:
        raise
    except (AstridError, OSError, ValueError, TypeError) as exc:
        raise CalibrationFieldError("file", f"not a readable FITS image: {exc}") from exc
    header = image.header
    pixels = np.asarray(image.data, dtype=np.float64)
    if pixels.ndim != 2:
        raise CalibrationFieldError("file", f"the image has shape {pixels.shape}, not 2-D")
    ny, nx = pixels.shape
    mask = np.zeros(pixels.shape, bool) if bad is None else bad.astype(bool)
    file_instrument = header.get("INSTRUME")
    if file_instrument and not _same(file_instrument, instrument):
        raise CalibrationFieldError(
            "instrument",
            f"the file says INSTRUME={str(file_instrument).strip()!r}, not {instrument!r}",
            hint="register it for the instrument that took it",
        )
    file_filter = header.get("FILTER") or header.get("BAND")
    notes: list[str] = []
    band: str | None = None
    if kind == "flat":
        band = (filter or "").strip() or (str(file_filter).strip() if file_filter else None)
        if not band:
            raise CalibrationFieldError(
                "filter", "a flat needs its filter (--filter or a FILTER keyword)"
            )
        if file_filter and not _same(file_filter, band):
            raise CalibrationFieldError(
                "filter", f"the file says FILTER={str(file_filter).strip()!r}, not {band!r}"
            )
    elif filter:
        raise CalibrationFieldError(
            "filter", f"a {kind} is not per filter", hint="give --filter for flats only"
        )
    with db.session() as session:
        _check_shape(session, kind, instrument, (ny, nx))
    exptime: float | None = None
    variance = np.zeros(pixels.shape) if var is None else np.asarray(var, dtype=np.float64)
    if var is None:
        notes.append("no VARIANCE extension: the master is taken as noiseless")
    if kind == "dark":
        unit = str(header.get("BUNIT", "")).replace(" ", "").lower()
        t = header.get("EXPTIME", header.get("EXPOSURE"))
        if unit.endswith("/s"):
            exptime = float(t) if isinstance(t, int | float) and t > 0 else None
        elif isinstance(t, int | float) and not isinstance(t, bool) and float(t) > 0:
            exptime = float(t)
            pixels, variance = pixels / exptime, variance / exptime**2
            notes.append(f"dark divided by its EXPTIME {exptime:g} s (stored in ADU/s)")
        else:
            raise CalibrationFieldError(
                "file",
                "a master dark needs EXPTIME > 0 (or BUNIT 'adu/s' for a rate)",
                hint="darks are stored as a rate in ADU/s, bias removed",
            )
    if kind == "flat":
        usable = ~mask
        wrong = usable & (~np.isfinite(pixels) | (pixels <= 0))
        if wrong.any():
            raise CalibrationFieldError(
                "file",
                f"the flat has {int(wrong.sum())} zero, negative or non-finite pixel(s) "
                "outside its MASK",
                hint="a flat divides the image: mask those pixels in a MASK extension",
            )
        med = float(np.median(pixels[usable])) if usable.any() else float("nan")
        if not (math.isfinite(med) and med > 0):
            raise CalibrationFieldError("file", "the flat has no usable pixel")
        pixels, variance = pixels / med, variance / med**2
        notes.append(f"flat normalised by its median {med:.6g}")
    elif not np.isfinite(pixels[~mask]).all():
        raise CalibrationFieldError("file", f"the {kind} has non-finite pixels outside its MASK")
    binning = frame_binning(header)
    data_key = blobs.put(_fits(pixels.astype(np.float32)))
    var_key = blobs.put(_fits(variance.astype(np.float32))) if var is not None else None
    mask_key = blobs.put(_fits(mask.astype(np.uint8))) if mask.any() else None
    with db.session() as session:
        row = CalibrationFrame(
            kind=kind,
            instrument=instrument,
            filter=band,
            exposure_time=exptime,
            binning=None if binning is None else f"{binning[0]}x{binning[1]}",
            width=nx,
            height=ny,
            mjd=header.get("MJD-OBS") if isinstance(header.get("MJD-OBS"), float) else None,
            blob_key=data_key,
            n_frames=_ncombine(header),
            valid_from=start,
            valid_to=end,
            variance_key=var_key,
            mask_key=mask_key,
            filename=filename,
        )
        session.add(row)
        session.flush()
        return CalibrationInfo.of(row, notes)


def _ncombine(header: fits.Header) -> int:
    value = header.get("NCOMBINE", 1)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def _check_shape(session: Session, kind: str, instrument: str, shape: tuple[int, int]) -> None:
    """The frame must have the shape of the instrument's images and other masters."""
    ny, nx = shape
    frames = session.execute(
        select(CalibrationFrame.id, CalibrationFrame.kind, CalibrationFrame.instrument,
               CalibrationFrame.height, CalibrationFrame.width)
    ).all()  # fmt: skip
    for fid, fkind, finst, h, w in frames:
        if _same(finst, instrument) and (h, w) != (ny, nx):
            raise CalibrationFieldError(
                "file",
                f"shape {ny}x{nx} differs from {instrument}'s registered {fkind} #{fid} ({h}x{w})",
                hint="register masters of the same detector, trimming and binning",
            )
    sizes = {
        (h, w)
        for inst, h, w in session.execute(
            select(Observation.instrument, Observation.height, Observation.width).distinct()
        )
        if _same(inst, instrument)
    }
    if sizes and (ny, nx) not in sizes:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        raise CalibrationFieldError(
            "file",
            f"shape {ny}x{nx} matches none of {instrument}'s images ({shown})",
            hint="a master must have the shape of the images it calibrates",
        )


def list_calibrations(
    db: Database, *, instrument: str | None = None, kind: str | None = None
) -> list[CalibrationInfo]:
    """Registered masters, newest first, optionally of one instrument or kind."""
    with db.session() as session:
        stmt = select(CalibrationFrame).order_by(CalibrationFrame.id.desc())
        if kind:
            stmt = stmt.where(CalibrationFrame.kind == kind)
        rows = list(session.scalars(stmt))
        return [
            CalibrationInfo.of(r)
            for r in rows
            if instrument is None or _same(r.instrument, instrument)
        ]


def calibration_for(
    session: Session,
    instrument: str | None,
    filter: str | None,
    mjd: float | None,
    shape: tuple[int, int],
) -> dict[str, CalibrationFrame]:
    """The newest bias, dark and flat (flat: same filter) valid for an observation.

    Returns ``{kind: row}`` for the kinds found (empty without an instrument).

    Raises
    ------
    CalibrationMismatchError
        A frame that applies by instrument, filter and date has another shape.
    """
    if not instrument:
        return {}
    out: dict[str, CalibrationFrame] = {}
    for row in session.scalars(select(CalibrationFrame).order_by(CalibrationFrame.id.desc())):
        if row.kind in out or not _same(row.instrument, instrument):
            continue
        if row.kind == "flat" and not _same(row.filter, filter):
            continue
        if mjd is None:
            if row.valid_from is not None or row.valid_to is not None:
                continue
        elif (row.valid_from is not None and mjd < row.valid_from) or (
            row.valid_to is not None and mjd > row.valid_to
        ):
            continue
        if (row.height, row.width) != tuple(shape):
            raise CalibrationMismatchError(
                f"master {row.kind} #{row.id} of {instrument} is {row.height}x{row.width} "
                f"but the image is {shape[0]}x{shape[1]}",
                hint="register masters of the image's shape (or narrow the other's dates)",
            )
        out[row.kind] = row
    return out


def load_master(blobs: BlobStore, row: CalibrationFrame) -> MasterFrame:
    """The stored master of a ``CalibrationFrame`` as a :class:`MasterFrame`."""

    def array(key: str) -> np.ndarray:
        with fits.open(io.BytesIO(blobs.get(key))) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float64)

    data = array(row.blob_key)
    variance = array(row.variance_key) if row.variance_key else np.zeros(data.shape)
    mask = array(row.mask_key).astype(bool) if row.mask_key else np.zeros(data.shape, bool)
    binning = None
    if row.binning and "x" in row.binning:
        bx, by = row.binning.split("x")
        binning = (int(bx), int(by))
    return MasterFrame(
        row.kind,
        data,
        variance,
        mask,
        row.n_frames,
        exptime=row.exposure_time,
        filter=row.filter,
        binning=binning,
        bias_subtracted=True,
    )
