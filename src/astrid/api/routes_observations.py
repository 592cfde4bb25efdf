"""Observations: list/filter, cone search, detail, status changes, metrics, surveys,
pre-ingest validation, FITS upload (the one ingest path,
:func:`astrid.pipeline.stages.ingest.ingest_upload`) and per-difference detection limits."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from sqlalchemy import func, select

from astrid.api.bodyguard import read_upload
from astrid.api.deps import Config, CuratorWrite, Rt, Viewer
from astrid.api.pagination import Page, PageParams, apply_page, page_of, page_params
from astrid.api.problems import Problem
from astrid.api.schemas import (
    MAX_FILENAME,
    NO_NUL,
    ConeHit,
    IngestedImage,
    IngestResult,
    ObservationDetail,
    ObservationOut,
    ObservationValidate,
    StatusChange,
    ValidationReport,
)
from astrid.domain.observations import (
    InvalidCoordinatesError,
    ObservationService,
    validate_coordinates,
)
from astrid.errors import AstridError
from astrid.pipeline.stages.ingest import ingest_upload
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    DetectionLimit,
    Difference,
    Observation,
    ObservationStatus,
    Reference,
    Survey,
)

__all__ = ["router"]

router = APIRouter(prefix="/observations", tags=["observations"])

ObsId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Observation id.")]
Ra = Annotated[float, Query(ge=0, lt=360, description="Right ascension, degrees.")]
Dec = Annotated[float, Query(ge=-90, le=90, description="Declination, degrees.")]
Radius = Annotated[float, Query(gt=0, le=10, description="Cone radius, degrees.")]
Mjd = Annotated[float | None, Query(ge=0, le=1e6)]
Text64 = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("", response_model=Page[ObservationOut], summary="List observations")
def list_observations(
    rt: Rt,
    _: Viewer,
    page: Annotated[PageParams, Depends(page_params)],
    survey: Text64 = None,
    status: ObservationStatus | None = None,
    filter: Text64 = None,
    mjd_min: Mjd = None,
    mjd_max: Mjd = None,
) -> Any:
    """Filters combine with AND; paging follows ``next_cursor``."""
    stmt = select(Observation)
    if survey is not None:
        stmt = stmt.join(Survey).where(Survey.name == survey)
    if status is not None:
        stmt = stmt.where(Observation.status == status)
    if filter is not None:
        stmt = stmt.where(Observation.filter == filter)
    if mjd_min is not None:
        stmt = stmt.where(Observation.mjd >= mjd_min)
    if mjd_max is not None:
        stmt = stmt.where(Observation.mjd <= mjd_max)
    with rt.db.read_session() as session:
        rows = list(session.scalars(apply_page(stmt, Observation.id, page)))
        return page_of(rows, page, ObservationOut.model_validate)


@router.get("/cone", response_model=list[ConeHit], summary="Cone search, nearest first")
def cone_search(
    rt: Rt,
    _: Viewer,
    ra: Ra,
    dec: Dec,
    radius: Radius,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: ObservationStatus | None = None,
) -> Any:
    """Observations whose centre is within ``radius`` degrees of (ra, dec)."""
    rows = ObservationService(rt.db).cone_search(ra, dec, radius, status=status, limit=limit)
    if not rows:
        return []
    sep = angular_separation_deg(
        np.array([r.ra for r in rows]), np.array([r.dec for r in rows]), ra, dec
    )
    return [
        ConeHit(**ObservationOut.model_validate(r).model_dump(), separation_deg=float(s))
        for r, s in zip(rows, sep, strict=True)
    ]


@router.get("/metrics", summary="Observation counts by status")
def observation_metrics(rt: Rt, _: Viewer) -> dict[str, Any]:
    """Counts per status (zeros included), total, and the MJD span, from the database."""
    service = ObservationService(rt.db)
    by_status = service.counts_by_status()
    with rt.db.session() as session:
        mjd_min, mjd_max, n_surveys = session.execute(
            select(
                func.min(Observation.mjd),
                func.max(Observation.mjd),
                func.count(func.distinct(Observation.survey_id)),
            )
        ).one()
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "surveys": int(n_surveys),
        "mjd_min": mjd_min,
        "mjd_max": mjd_max,
    }


@router.get("/footprints", summary="Observation footprints (sky polygons) for the sky map")
def observation_footprints(
    rt: Rt,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=20000)] = 5000,
    status: ObservationStatus | None = None,
) -> dict[str, Any]:
    """The newest ``limit`` observations with a footprint: id, status, filter, MJD, centre and
    the four corners ``[[ra, dec] x 4]`` in degrees (ICRS), for drawing them as polygons.
    ``truncated`` says more exist."""
    stmt = (
        select(
            Observation.id,
            Observation.status,
            Observation.filter,
            Observation.mjd,
            Observation.ra,
            Observation.dec,
            Observation.footprint,
        )
        .order_by(Observation.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(Observation.status == status)
    with rt.db.session() as session:
        rows = session.execute(stmt).all()
    items = [
        {
            "id": r.id,
            "status": str(getattr(r.status, "value", r.status)),
            "filter": r.filter,
            "mjd": r.mjd,
            "ra": r.ra,
            "dec": r.dec,
            "corners": [[float(c[0]), float(c[1])] for c in r.footprint],
        }
        for r in rows[:limit]
        if r.footprint and len(r.footprint) >= 3
    ]
    return {"items": items, "truncated": len(rows) > limit}


@router.get("/surveys", summary="Per-survey summary")
def survey_summary(
    rt: Rt,
    _: Viewer,
    survey: Text64 = None,
) -> list[dict[str, Any]]:
    """For each survey: observation count, counts per status, filters, MJD span."""
    return ObservationService(rt.db).survey_statistics(survey)


@router.post("/validate", response_model=ValidationReport, summary="Check metadata, store nothing")
def validate_observation(_: Viewer, body: ObservationValidate) -> ValidationReport:
    """Run the ingest checks on metadata without storing anything."""
    errors: list[dict[str, str]] = []
    try:
        validate_coordinates(body.ra, body.dec)
    except InvalidCoordinatesError as exc:
        field = "body.ra" if "RA" in exc.message else "body.dec"
        errors.append({"field": field, "message": str(exc)})
    if body.mjd is not None and not (math.isfinite(body.mjd) and 0 <= body.mjd <= 1e6):
        errors.append({"field": "body.mjd", "message": "MJD must be in [0, 1e6]"})
    if body.exposure_time is not None and not (
        math.isfinite(body.exposure_time) and body.exposure_time > 0
    ):
        errors.append({"field": "body.exposure_time", "message": "exposure time must be > 0 s"})
    for name in ("width", "height"):
        value = getattr(body, name)
        if value is not None and value < 1:
            errors.append({"field": f"body.{name}", "message": f"{name} must be >= 1 pixel"})
    return ValidationReport(valid=not errors, errors=errors)


@router.post(
    "/ingest/upload",
    response_model=IngestResult,
    status_code=201,
    summary="Upload and ingest a FITS file",
)
def upload_fits(
    rt: Rt,
    config: Config,
    _: CuratorWrite,
    file: Annotated[UploadFile, File(description="A FITS image with a celestial WCS.")],
    survey: Annotated[str | None, Form(min_length=1, max_length=64, pattern=NO_NUL)] = None,
) -> Any:
    """Store the bytes and create the observation (same bytes again = the same observation).

    A mosaic (several same-shaped CCD images, none named SCI) makes one observation per
    CCD (``observation_ids``; ``images`` lists each CCD, a refused one with its reason).
    A file that is not a FITS image with a celestial WCS (for a mosaic: no CCD is) is
    refused and nothing is stored.
    """
    name = file.filename or "upload"
    if len(name) > MAX_FILENAME or not name.isprintable():
        raise Problem(
            422,
            f"invalid input in: file (its name, {len(name)} characters)",
            kind="validation",
            errors=[
                {
                    "field": "file",
                    "message": f"file name must be printable, at most {MAX_FILENAME} characters",
                }
            ],
        )
    data = read_upload(file, name, config.max_upload_bytes)
    if not data:
        raise Problem(
            422,
            f"{name} is empty",
            kind="invalid-fits",
            errors=[{"field": "file", "message": "empty"}],
        )
    try:
        ids, created, images = ingest_upload(
            rt, data, source=f"upload:{name}", filename=name, survey=survey
        )
    except AstridError as exc:
        raise Problem(
            422,
            f"{name}: {exc}",
            kind="invalid-fits",
            errors=[{"field": "file", "message": str(exc)}],
        ) from exc
    return IngestResult(
        observation_id=ids[0],
        created=created,
        filename=name,
        observation_ids=ids,
        images=None if images is None else [IngestedImage(**i.as_dict()) for i in images],
    )


@router.get("/{observation_id}", response_model=ObservationDetail, summary="One observation")
def get_observation(rt: Rt, _: Viewer, observation_id: ObsId) -> Any:
    return ObservationDetail.model_validate(ObservationService(rt.db).get(observation_id))


@router.get("/{observation_id}/limits", summary="Detection limits of its differences")
def get_limits(rt: Rt, _: Viewer, observation_id: ObsId) -> list[dict[str, Any]]:
    """Per difference of the observation (newest first): the 50 % / 90 % limiting
    magnitudes and the completeness curve measured with fake point sources injected into
    that difference (``ASTRID_LIMITS_FAKES``), and the reference (id, version) it used.
    404 for an unknown observation; an empty list when none was measured."""
    ObservationService(rt.db).get(observation_id)
    with rt.db.session() as session:
        rows = session.execute(
            select(DetectionLimit, Difference, Reference)
            .join(Difference, Difference.id == DetectionLimit.difference_id)
            .join(Reference, Reference.id == Difference.reference_id)
            .where(DetectionLimit.observation_id == observation_id)
            .order_by(DetectionLimit.id.desc())
        ).all()
        return [
            {
                "difference_id": d.id,
                "method": d.method,
                "reference_id": r.id,
                "reference_version": d.reference_version,
                "reference_observation_ids": list(r.observation_ids or []),
                "m50": lim.m50,
                "m90": lim.m90,
                "zero_point": lim.zero_point,
                "threshold": lim.threshold,
                "n_injected": lim.n_injected,
                "n_recovered": lim.n_recovered,
                "curve": list(lim.curve or []),
            }
            for lim, d, r in rows
        ]


@router.put("/{observation_id}/status", response_model=ObservationOut, summary="Change the status")
def change_status(rt: Rt, _: CuratorWrite, observation_id: ObsId, body: StatusChange) -> Any:
    """A checked transition (409 when the state machine forbids it), with its events."""
    service = ObservationService(rt.db)
    service.transition(observation_id, body.status, body.reason)
    return ObservationOut.model_validate(service.get(observation_id))
