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
A file of several science images (two chips ``SCI,1``/``SCI,2``, a mosaic's CCDs) gives one
master per call, the image named by ``hdu``; it is stored with its ``chip`` and applied to
that chip's observations only. :func:`register_calibrations` with ``hdu="all"`` registers
every chip of such a file in one call, one row per chip, or none: a broken chip is named in
a :class:`CalibrationChipsError` and nothing is stored (all or nothing, so that a mosaic is
never left half calibrated, its broken chip silently falling back to an instrument-wide
master, and a second call after the fix does not register the good chips twice). A
single-image master shipped per chip (one file per chip) is keyed to its chip with
``chip`` (``SCI,2``, ``N4``), checked as :func:`chip_name` says.

:func:`calibration_for` picks, for an observation's instrument, filter, MJD and shape, the
newest bias, dark and flat whose validity covers the MJD; a matching frame of another shape is
a :class:`~astrid.science.master_frames.CalibrationMismatchError`, never skipped silently.

Reading and checking one master file is :mod:`astrid.domain.calibration_files`.
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

from astrid.domain.calibration_files import (
    ALL_CHIPS,
    MAX_CHIP,
    CalibrationChipsError,
    CalibrationFieldError,
    PreparedMaster,
    chip_name,
    master_fits,
    prepare_master,
    read_master,
    same_name,
)
from astrid.errors import AstridError
from astrid.science.fitsio import science_hdus
from astrid.science.master_frames import (
    CalibrationMismatchError,
    MasterFrame,
    frame_binning,
)
from astrid.store.blobs import BlobStore
from astrid.store.db import Database
from astrid.store.tables import CalibrationFrame, Observation

__all__ = [
    "ALL_CHIPS",
    "CALIBRATION_KINDS",
    "MAX_CHIP",
    "CalibrationChipsError",
    "CalibrationFieldError",
    "CalibrationInfo",
    "calibration_for",
    "chip_name",
    "list_calibrations",
    "load_master",
    "parse_mjd",
    "register_calibration",
    "register_calibrations",
]

#: The kinds of master frame, in the order they are applied.
CALIBRATION_KINDS: tuple[str, ...] = ("bias", "dark", "flat")


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
    chip: str | None = None

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
            row.chip,
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


def _inputs(
    kind: str, instrument: str, valid_from: str | float | None, valid_to: str | float | None
) -> tuple[str, str, float | None, float | None]:
    kind = str(kind or "").strip().lower()
    if kind not in CALIBRATION_KINDS:
        raise CalibrationFieldError("kind", f"{kind!r} is not one of bias, dark, flat")
    instrument = str(instrument or "").strip()
    if not instrument or len(instrument) > 128:
        raise CalibrationFieldError("instrument", "give the instrument (1-128 characters)")
    start, end = parse_mjd(valid_from, "valid_from"), parse_mjd(valid_to, "valid_to")
    if start is not None and end is not None and end < start:
        raise CalibrationFieldError("valid_to", f"valid_to {end} is before valid_from {start}")
    return kind, instrument, start, end


def _store(
    db: Database,
    blobs: BlobStore,
    masters: list[PreparedMaster],
    *,
    kind: str,
    instrument: str,
    start: float | None,
    end: float | None,
    filename: str | None,
) -> list[CalibrationInfo]:
    """Store ``masters`` in one transaction (all rows or none), after the shape check."""
    with db.session() as session:
        for m in masters:
            _check_shape(session, kind, instrument, m.pixels.shape)
    rows: list[tuple[CalibrationFrame, list[str]]] = []
    keys = []
    for m in masters:
        binning = frame_binning(m.header)
        data_key = blobs.put(master_fits(m.pixels.astype(np.float32)))
        var_key = (
            blobs.put(master_fits(m.variance.astype(np.float32)))
            if m.variance is not None
            else None
        )
        mask_key = blobs.put(master_fits(m.mask.astype(np.uint8))) if m.mask.any() else None
        keys.append((m, binning, data_key, var_key, mask_key))
    with db.session() as session:
        for m, binning, data_key, var_key, mask_key in keys:
            ny, nx = m.pixels.shape
            mjd = m.header.get("MJD-OBS")
            row = CalibrationFrame(
                kind=kind,
                instrument=instrument,
                filter=m.band,
                exposure_time=m.exptime,
                binning=None if binning is None else f"{binning[0]}x{binning[1]}",
                width=nx,
                height=ny,
                mjd=mjd if isinstance(mjd, float) else None,
                blob_key=data_key,
                n_frames=_ncombine(m.header),
                valid_from=start,
                valid_to=end,
                variance_key=var_key,
                mask_key=mask_key,
                filename=filename,
                chip=m.chip,
            )
            session.add(row)
            rows.append((row, m.notes))
        session.flush()
        return [CalibrationInfo.of(row, notes) for row, notes in rows]


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
    hdu: int | str | None = None,
    chip: str | None = None,
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
    hdu : int or str, optional
        The image to register from a file of several (a two-chip ``SCI,1``/``SCI,2`` file,
        a mosaic's CCDs): its index or name, as ``astrid detect --hdu`` takes it. The
        master then belongs to that chip (``chip``, the name :func:`science_hdus` gives
        it) and is applied only to observations of that chip; its planes are that chip's
        (``VARIANCE,2``, ``N4_MASK``). Without it such a file is refused (field ``hdu``).
        ``"all"`` (every chip) is :func:`register_calibrations`'s, refused here.
    chip : str, optional
        The chip a single-image master belongs to (a per-chip master shipped as its own
        file): it then applies to observations of that chip only, as a chip of a
        multi-image master does. Checked by :func:`chip_name`; refused (field ``chip``) for
        a file of several science images, whose chips are named by the file.

    Returns
    -------
    CalibrationInfo

    Raises
    ------
    CalibrationFieldError
        Naming the field at fault; nothing is stored.
    """
    if isinstance(hdu, str) and hdu.strip().lower() == ALL_CHIPS:
        raise CalibrationFieldError(
            "hdu", "hdu=all registers several masters", hint="use register_calibrations"
        )
    (info,) = register_calibrations(
        db,
        blobs,
        data,
        kind=kind,
        instrument=instrument,
        filter=filter,
        valid_from=valid_from,
        valid_to=valid_to,
        filename=filename,
        hdu=hdu,
        chip=chip,
    )
    return info


def register_calibrations(
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
    hdu: int | str | None = None,
    chip: str | None = None,
) -> list[CalibrationInfo]:
    """:func:`register_calibration`, and with ``hdu="all"`` every science image of the file
    (:func:`science_hdus`: the chips ``SCI,1``, ``SCI,2``..., a mosaic's CCDs), each its own
    row with its ``chip`` and its own planes, in file order.

    All or nothing: every chip is checked before anything is stored, and the rows are
    written in one transaction. A file of one science image gives one master without a
    chip (or with ``chip``), as without ``hdu``.

    Raises
    ------
    CalibrationChipsError
        One or more chips refused (each named, with its field and reason); nothing stored.
    CalibrationFieldError
        Any other input at fault (``kind``, ``instrument``, dates, ``chip``, an unreadable
        file); nothing stored.
    """
    kind, instrument, start, end = _inputs(kind, instrument, valid_from, valid_to)
    own_chip = chip_name(chip)
    every = isinstance(hdu, str) and hdu.strip().lower() == ALL_CHIPS
    try:
        science = science_hdus(data)
    except AstridError as exc:
        raise CalibrationFieldError("file", f"not a readable FITS image: {exc}") from exc
    if own_chip is not None and len(science) > 1:
        raise CalibrationFieldError(
            "chip",
            f"the file holds {len(science)} science images, each named by the file "
            f"({', '.join(name for _, name in science)})",
            hint="--chip is for a single-image master; give --hdu NAME or --hdu all",
        )
    if not every or len(science) == 1:
        image, var, bad, found = read_master(data, None if every else hdu)
        one = prepare_master(image, var, bad, own_chip or found, kind=kind, instrument=instrument,
                       filter=filter)  # fmt: skip
        return _store(db, blobs, [one], kind=kind, instrument=instrument, start=start,
                      end=end, filename=filename)  # fmt: skip
    masters: list[PreparedMaster] = []
    failures: list[tuple[str, str, str]] = []
    for index, name in science:
        try:
            image, var, bad, found = read_master(data, index)
            masters.append(prepare_master(image, var, bad, found, kind=kind, instrument=instrument,
                                    filter=filter))  # fmt: skip
        except CalibrationFieldError as exc:
            failures.append((name, exc.field, str(exc).removeprefix(f"{exc.field}: ")))
    if failures:
        raise CalibrationChipsError(failures)
    return _store(db, blobs, masters, kind=kind, instrument=instrument, start=start, end=end,
                  filename=filename)  # fmt: skip


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
        if same_name(finst, instrument) and (h, w) != (ny, nx):
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
        if same_name(inst, instrument)
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
            if instrument is None or same_name(r.instrument, instrument)
        ]


def calibration_for(
    session: Session,
    instrument: str | None,
    filter: str | None,
    mjd: float | None,
    shape: tuple[int, int],
    chip: str | None = None,
) -> dict[str, CalibrationFrame]:
    """The newest bias, dark and flat (flat: same filter) valid for an observation.

    ``chip``: the observation's chip or CCD (``extra['hdu_name']`` of an observation of a
    multi-image file). A master registered for a chip applies to that chip only, and is
    preferred there to a master of the whole instrument; a master without a chip applies
    to every observation of the instrument, as before.

    Returns ``{kind: row}`` for the kinds found (empty without an instrument).

    Raises
    ------
    CalibrationMismatchError
        A frame that applies by instrument, filter and date has another shape.
    """
    if not instrument:
        return {}
    out: dict[str, CalibrationFrame] = {}
    rows = list(session.scalars(select(CalibrationFrame).order_by(CalibrationFrame.id.desc())))
    rows.sort(key=lambda r: r.chip is None)  # the chip's own masters first, newest first
    for row in rows:
        if row.kind in out or not same_name(row.instrument, instrument):
            continue
        if row.chip is not None and not same_name(row.chip, chip):
            continue
        if row.kind == "flat" and not same_name(row.filter, filter):
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
