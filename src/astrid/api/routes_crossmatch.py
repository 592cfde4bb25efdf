"""Triggers of the cross-match and of the TNS AT report (experts and admins).

``POST /objects/{id}/crossmatch`` annotates every detection of the object with its nearest
catalogue source and (when ``ASTRID_SKYBOT_URL`` is set) known solar-system bodies, and
answers with the annotations. ``POST /discoveries/{id}/tns-report`` builds the discovery's
AT report in TNS's bulk-report JSON and, when ``ASTRID_TNS_URL`` is set (and ``send`` is not
false), sends it; a report TNS accepts moves the discovery to ``reported``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from astrid.api.curation_common import actor_of, curation_problems
from astrid.api.deps import ExpertWrite, Rt
from astrid.api.problems import Problem
from astrid.catalog.crossmatch import CrossmatchError, crossmatch_objects
from astrid.catalog.tns import TnsError, at_report_for_object, send_at_report
from astrid.domain.merges import resolve_object_id
from astrid.domain.observations import NotFoundError
from astrid.domain.review import mark_reported
from astrid.store.tables import (
    DetectionAnnotation,
    Discovery,
    ObjectMember,
    SkyObject,
)

__all__ = ["router"]

router = APIRouter(tags=["review"])

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/objects/{object_id}/crossmatch", summary="Cross-match an object now")
def post_crossmatch(rt: Rt, _: ExpertWrite, object_id: Id) -> dict[str, Any]:
    """Nearest catalogue star/galaxy and SkyBoT bodies for each of the object's detections.

    A service that fails is listed in ``errors`` (the other matches are still stored); with
    nothing configured to match against the answer is a 409.
    """
    with rt.db.session() as session:
        resolved = resolve_object_id(session, object_id)
    if resolved is None:
        raise NotFoundError(f"no object with id {object_id}")
    try:
        report = crossmatch_objects(rt, [resolved])
    except CrossmatchError as exc:
        raise Problem(409, str(exc), kind="not-configured") from exc
    with rt.db.session() as session:
        obj = session.get(SkyObject, resolved)
        rows = session.scalars(
            select(DetectionAnnotation)
            .join(ObjectMember, ObjectMember.detection_id == DetectionAnnotation.detection_id)
            .where(
                ObjectMember.object_id == resolved,
                DetectionAnnotation.kind.in_(["star", "galaxy", "solar_system"]),
            )
            .order_by(DetectionAnnotation.detection_id, DetectionAnnotation.id)
        ).all()
        return {
            "object_id": resolved,
            "crossmatched_at": obj.crossmatched_at if obj is not None else None,
            "detections_annotated": report.annotated,
            "stars": report.stars,
            "solar_system": report.solar_system,
            "errors": report.errors,
            "annotations": [
                {
                    "detection_id": a.detection_id,
                    "kind": a.kind,
                    "name": a.name,
                    "separation_arcsec": a.separation_arcsec,
                    "mag": a.mag,
                    "source": a.source,
                    "data": a.data,
                }
                for a in rows
            ],
        }


@router.post(
    "/discoveries/{discovery_id}/tns-report",
    summary="TNS AT report of a discovery",
    responses={502: {"description": "TNS refused the report or could not be reached"}},
)
def post_tns_report(
    rt: Rt,
    principal: ExpertWrite,
    discovery_id: Id,
    send: Annotated[
        bool, Query(description="Send it when ASTRID_TNS_URL is set (false: only build it).")
    ] = True,
) -> dict[str, Any]:
    """The AT report (``report``, TNS bulk-report JSON); ``sent`` and TNS's ``answer`` when it
    was sent. A discovery without photometry is a 409; a TNS refusal or outage a 502."""
    actor = actor_of(principal)
    with rt.db.session() as session:
        d = session.get(Discovery, discovery_id)
        if d is None:
            raise NotFoundError(f"no discovery with id {discovery_id}")
        try:
            report = at_report_for_object(session, d.object_id, rt.settings)
        except TnsError as exc:
            raise Problem(409, str(exc), kind="conflict") from exc
    out: dict[str, Any] = {"discovery_id": discovery_id, "report": report, "sent": False}
    if not (send and rt.settings.tns_url):
        return out
    try:
        answer = send_at_report(rt.settings, report)
    except TnsError as exc:
        raise Problem(502, str(exc), kind="tns-failed") from exc
    out["sent"], out["answer"] = True, answer
    report_id = (answer.get("data") or {}).get("report_id")
    with curation_problems(), rt.db.session() as session:
        d = mark_reported(session, discovery_id, actor, report_id)
        out["status"] = d.status if d is not None else None
    return out
