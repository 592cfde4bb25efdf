"""Master calibration frames: register one (admin), list them (viewer).

The same checks as ``astrid calibration add``
(:func:`astrid.domain.calibration.register_calibration`): a refused frame is a 422 problem
whose ``errors[0].field`` names the input at fault (``file``, ``kind``, ``instrument``,
``filter``, ``valid_from``, ``valid_to``, ``hdu``, ``chip``), and nothing is stored.
``hdu=all`` registers every chip of a multi-chip file (201 with the list of masters, one per
chip) or none: a refused chip is one entry of ``errors`` each, with its ``chip``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from astrid.api.bodyguard import read_upload
from astrid.api.deps import AdminWrite, Config, Rt, Viewer
from astrid.api.problems import Problem
from astrid.api.schemas import MAX_FILENAME, NO_NUL
from astrid.domain.calibration import (
    ALL_CHIPS,
    MAX_CHIP,
    CalibrationChipsError,
    CalibrationFieldError,
    CalibrationInfo,
    list_calibrations,
    register_calibrations,
)

__all__ = ["router"]

router = APIRouter(prefix="/calibration", tags=["calibration"])

Text = Annotated[str | None, Form(min_length=1, max_length=128, pattern=NO_NUL)]


@router.post(
    "",
    response_model=CalibrationInfo | list[CalibrationInfo],
    status_code=201,
    summary="Register a master frame (hdu=all: every chip of the file)",
)
def add_calibration(
    rt: Rt,
    config: Config,
    _: AdminWrite,
    file: Annotated[UploadFile, File(description="The master frame (FITS).")],
    kind: Annotated[str, Form(min_length=1, max_length=16, pattern=NO_NUL)],
    instrument: Annotated[str, Form(min_length=1, max_length=128, pattern=NO_NUL)],
    filter: Text = None,
    valid_from: Annotated[str | None, Form(max_length=64, pattern=NO_NUL)] = None,
    valid_to: Annotated[str | None, Form(max_length=64, pattern=NO_NUL)] = None,
    hdu: Annotated[
        str | None,
        Form(
            max_length=72,
            pattern=NO_NUL,
            description="The chip of a multi-chip file (4, N4, SCI,2): the master then "
            "calibrates that chip's observations only; 'all': every chip, one master each "
            "(the answer is then their list; all registered or none)",
        ),
    ] = None,
    chip: Annotated[
        str | None,
        Form(
            max_length=MAX_CHIP,
            pattern=NO_NUL,
            description="The chip a single-image master belongs to (N4, SCI,2): a per-chip "
            "master shipped as its own file then calibrates that chip's observations only",
        ),
    ] = None,
) -> Any:
    """Bias, dark (ADU with EXPTIME, stored as ADU/s) or flat (no zero pixel outside its
    MASK) for an instrument (and filter, flats) over an MJD or ISO date range; from a file
    of several chips, the one named by ``hdu`` (refused with field ``hdu`` without it), or
    every chip with ``hdu=all``; a single-image master keyed to ``chip``."""
    name = (file.filename or "upload")[:MAX_FILENAME]
    data = read_upload(file, name, config.max_upload_bytes)
    every = hdu is not None and hdu.strip().lower() == ALL_CHIPS
    try:
        infos = register_calibrations(
            rt.db,
            rt.blobs,
            data,
            kind=kind,
            instrument=instrument,
            filter=filter,
            valid_from=valid_from,
            valid_to=valid_to,
            filename=name,
            hdu=hdu,
            chip=chip,
        )
    except CalibrationChipsError as exc:
        raise Problem(
            422,
            f"invalid input in: {exc}",
            kind="validation",
            errors=[{"field": f, "chip": c, "message": f"{f}: {m}"} for c, f, m in exc.failures],
        ) from exc
    except CalibrationFieldError as exc:
        raise Problem(
            422,
            f"invalid input in: {exc}",
            kind="validation",
            errors=[{"field": exc.field, "message": str(exc)}],
        ) from exc
    return infos if every else infos[0]


@router.get("", response_model=list[CalibrationInfo], summary="List master frames")
def get_calibrations(
    rt: Rt,
    _: Viewer,
    instrument: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    kind: Annotated[str | None, Query(pattern="^(bias|dark|flat)$")] = None,
) -> Any:
    """Newest first."""
    return list_calibrations(rt.db, instrument=instrument, kind=kind)
