"""Ingestion beyond FITS upload: by sky position from a public archive, and ZTF alert files.

``POST /observations/ingest/position`` validates archive, survey, RA/Dec and field of view
(:func:`astrid.pipeline.archives.validate_request`; the survey against the list the archive
publishes) and refuses bad input with 422 naming the field before anything is fetched; the
fetch and ingest then run in the request (idempotent stage runs). ``POST /alerts`` takes one
ZTF Avro alert file and stores its packets as detections (:mod:`astrid.pipeline.alerts`;
not scored here).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from astrid.api.bodyguard import read_upload
from astrid.api.deps import Config, CuratorWrite, Rt
from astrid.api.problems import Problem
from astrid.api.schemas import (
    AlertIngestResult,
    AlertPacketOut,
    PositionImage,
    PositionIngest,
    PositionResult,
)
from astrid.domain.observations import InvalidCoordinatesError
from astrid.errors import AstridError
from astrid.pipeline.alerts import AlertError, ingest_alert_file, read_packets
from astrid.pipeline.archives import (
    InvalidFieldError,
    PositionRequest,
    UnknownArchiveError,
    UnknownSurveyError,
    ingest_position,
    open_archive,
    validate_request,
)
from astrid.pipeline.runner import TransientError

__all__ = ["alerts_router", "router"]

router = APIRouter(prefix="/observations", tags=["observations"])
alerts_router = APIRouter(prefix="/alerts", tags=["alerts"])


def _invalid(field: str, exc: AstridError) -> Problem:
    return Problem(
        422,
        f"{field}: {exc}",
        kind="validation",
        errors=[{"field": field, "message": str(exc)}],
    )


def _field_of(exc: AstridError) -> str:
    if isinstance(exc, UnknownArchiveError):
        return "body.archive"
    if isinstance(exc, UnknownSurveyError):
        return "body.survey"
    if isinstance(exc, InvalidCoordinatesError):
        return "body.ra" if "RA" in exc.message else "body.dec"
    if isinstance(exc, InvalidFieldError):
        text = str(exc)
        if "image size" in text:
            return "body.pixels"
        if "max images" in text:
            return "body.max_images"
        return "body.fov"
    return "body"


@router.post(
    "/ingest/position",
    response_model=PositionResult,
    summary="Fetch and ingest the images of a field from an archive",
)
def ingest_by_position(rt: Rt, config: Config, _: CuratorWrite, body: PositionIngest) -> Any:
    """Validate first (422 naming the field, nothing fetched), then fetch and ingest.

    Unreachable archive: 503. The same request again reuses the stored images.
    """
    request = PositionRequest(
        body.archive, body.survey, body.ra, body.dec, body.fov, body.pixels, body.max_images
    )
    try:
        request = validate_request(request)  # offline checks first: cheap and certain
    except AstridError as exc:
        raise _invalid(_field_of(exc), exc) from exc
    try:
        validate_request(request, open_archive(request.archive, config.archive_base_url))
    except UnknownSurveyError as exc:
        raise _invalid("body.survey", exc) from exc
    except (TransientError, AstridError) as exc:
        raise Problem(
            503, f"the {request.archive} archive cannot be reached: {exc}", kind="unavailable"
        ) from exc
    outcome = ingest_position(rt, request, base_url=config.archive_base_url, check_survey=False)
    return PositionResult(
        archive=request.archive,
        survey=request.survey,
        fetch_status=outcome.fetch.status,
        fetch_error=outcome.fetch.error,
        images=[
            PositionImage(
                status=o.status,
                observation_id=o.result.get("observation_id"),
                error=o.error,
            )
            for o in outcome.ingests
        ],
    )


@alerts_router.post(
    "",
    response_model=AlertIngestResult,
    status_code=201,
    summary="Upload a ZTF Avro alert file",
)
def upload_alert(
    rt: Rt,
    config: Config,
    _: CuratorWrite,
    file: Annotated[UploadFile, File(description="A ZTF alert: Avro container file.")],
) -> Any:
    """Store every packet of the file as a detection (``source='alert'``); idempotent.

    A file that is not Avro alert data is refused (422 naming the file), nothing stored.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", FsPath(file.filename or "").name)[:128]
    if name.strip(".") == "":
        name = "alert.avro"
    data = read_upload(file, name, config.max_upload_bytes)
    try:
        read_packets(data, name)
    except AlertError as exc:
        raise Problem(
            422, str(exc), kind="invalid-alert", errors=[{"field": "file", "message": str(exc)}]
        ) from exc
    with tempfile.TemporaryDirectory(prefix="astrid-alert-") as tmp:
        path = FsPath(tmp) / name
        path.write_bytes(data)
        outcomes = ingest_alert_file(rt, path, scorer=None)
    return AlertIngestResult(
        filename=name,
        packets=[
            AlertPacketOut(
                index=o.index,
                status=o.status,
                candid=o.candid,
                detection_id=o.detection_id,
                problems=list(o.problems),
                error=o.error,
            )
            for o in outcomes
        ],
    )
