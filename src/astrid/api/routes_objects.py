"""Sky objects (list, one with its light curve) and comments on detections and objects."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import select

from astrid.api.auth import Principal
from astrid.api.curation_common import actor_of, curation_problems
from astrid.api.deps import CuratorWrite, Rt, Viewer
from astrid.api.pagination import PageParams, apply_page, page_of, page_params
from astrid.api.problems import Problem
from astrid.api.routes_scanning import cutout_urls
from astrid.api.schemas_curation import CommentIn, CommentOut, ObjectOut
from astrid.domain.comments import add_comment, list_comments
from astrid.domain.merges import merged_ids, resolve_object_id
from astrid.domain.objects import light_curve
from astrid.domain.observations import ConeQuery, NotFoundError, cone_filter
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    Comment,
    CurationState,
    Detection,
    DetectionAnnotation,
    Discovery,
    ExpertReview,
    ObjectMember,
    SkyObject,
    User,
)

__all__ = ["router"]

router = APIRouter(tags=["objects"])

ObjId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Object id.")]
DetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Detection id.")]


@router.get("/objects", summary="List sky objects")
def list_objects(
    rt: Rt,
    _: Viewer,
    page: Annotated[PageParams, Depends(page_params)],
    label: Annotated[str | None, Query(pattern="^(real|bogus|none)$")] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    min_detections: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    mjd_min: Annotated[float | None, Query(ge=0, le=1e6, description="Last seen after.")] = None,
    mjd_max: Annotated[float | None, Query(ge=0, le=1e6, description="First seen before.")] = None,
    ra: Annotated[float | None, Query(ge=0, lt=360)] = None,
    dec: Annotated[float | None, Query(ge=-90, le=90)] = None,
    radius: Annotated[float | None, Query(gt=0, le=10, description="Degrees.")] = None,
) -> dict[str, Any]:
    """Objects by id (``order``), filtered; a cone needs ra, dec and radius together."""
    o = SkyObject
    stmt = select(o)
    for value, cond in (
        (min_score, lambda v: o.max_confidence >= v),
        (min_detections, lambda v: o.n_detections >= v),
        (mjd_min, lambda v: o.last_mjd >= v),
        (mjd_max, lambda v: o.first_mjd <= v),
    ):
        if value is not None:
            stmt = stmt.where(cond(value))
    if label == "none":
        stmt = stmt.where(o.label.is_(None))
    elif label is not None:
        stmt = stmt.where(o.label == label)
    cone_parts = [ra, dec, radius]
    if any(v is not None for v in cone_parts) and not all(v is not None for v in cone_parts):
        raise Problem(
            422,
            "a cone needs ra, dec and radius together",
            kind="validation",
            errors=[
                {"field": f"query.{n}", "message": "required with a cone"}
                for n, v in zip(("ra", "dec", "radius"), cone_parts, strict=True)
                if v is None
            ],
        )
    with rt.db.session() as session:
        if ra is not None and dec is not None and radius is not None:
            cone = ConeQuery.make(ra, dec, radius)
            rows = list(
                session.scalars(
                    apply_page(
                        stmt.where(cone_filter(o.healpix, cone)),
                        o.id,
                        PageParams(100_000, None, page.order),
                    )
                )
            )
            if rows:
                sep = angular_separation_deg(
                    np.array([r.ra for r in rows]), np.array([r.dec for r in rows]), ra, dec
                )
                rows = [r for r, s in zip(rows, sep, strict=True) if s <= cone.radius]
            if page.after is not None:
                rows = [
                    r
                    for r in rows
                    if (r.id > page.after if page.order == "asc" else r.id < page.after)
                ]
            rows = rows[: page.limit + 1]
        else:
            rows = list(session.scalars(apply_page(stmt, o.id, page)))
        return page_of(rows, page, lambda r: ObjectOut.model_validate(r).model_dump(mode="json"))


@router.get("/objects/{object_id}", summary="One object with its light curve")
def get_object(
    rt: Rt,
    _: Viewer,
    object_id: ObjId,
    forced: Annotated[bool, Query(description="Add forced photometry / upper limits.")] = True,
) -> dict[str, Any]:
    """The object, its detections (with curation state), light curve (detections, forced
    photometry and upper limits), annotations, expert reviews and discovery. An id merged
    into another object answers with that object (``requested_id`` is the id asked,
    ``merged_ids`` the ids merged into it)."""
    requested = object_id
    with rt.db.session() as session:
        resolved = resolve_object_id(session, object_id)
        obj = session.get(SkyObject, resolved) if resolved is not None else None
        if obj is None:
            raise NotFoundError(f"no object with id {object_id}")
        object_id = obj.id
        dets = session.execute(
            select(Detection, CurationState)
            .join(ObjectMember, ObjectMember.detection_id == Detection.id)
            .outerjoin(CurationState, CurationState.detection_id == Detection.id)
            .where(ObjectMember.object_id == object_id)
            .order_by(Detection.mjd, Detection.id)
        ).all()
        det_ids = [d.id for d, _ in dets]
        annotations = session.scalars(
            select(DetectionAnnotation).where(
                (DetectionAnnotation.object_id == object_id)
                | DetectionAnnotation.detection_id.in_(det_ids or [-1])
            )
        ).all()
        reviews = session.execute(
            select(ExpertReview, User.username)
            .join(User, User.id == ExpertReview.user_id)
            .where(
                (ExpertReview.object_id == object_id)
                | ExpertReview.detection_id.in_(det_ids or [-1])
            )
            .order_by(ExpertReview.id)
        ).all()
        discovery = session.scalar(select(Discovery).where(Discovery.object_id == object_id))
        curve = light_curve(session, rt.blobs, object_id, forced=forced)
        return {
            **ObjectOut.model_validate(obj).model_dump(mode="json"),
            "detections": [
                {
                    "detection_id": d.id,
                    "mjd": d.mjd,
                    "ra": d.ra,
                    "dec": d.dec,
                    "mag": d.mag,
                    "snr": d.snr,
                    "score": d.confidence,
                    "source": d.source,
                    "external_id": d.external_id,
                    "state": s.state if s else None,
                    "label": s.label if s else d.label,
                    "classification": s.classification if s else None,
                    "cutouts": cutout_urls(d.id, dict(d.cutout_keys or {})),
                }
                for d, s in dets
            ],
            "light_curve": curve["points"],
            "annotations": [
                {
                    "kind": a.kind,
                    "name": a.name,
                    "separation_arcsec": a.separation_arcsec,
                    "mag": a.mag,
                    "source": a.source,
                    "detection_id": a.detection_id,
                    "data": a.data,
                }
                for a in annotations
            ],
            "reviews": [
                {
                    "id": r.id,
                    "detection_id": r.detection_id,
                    "object_id": r.object_id,
                    "username": name,
                    "verdict": r.verdict,
                    "label": r.label,
                    "classification": r.classification,
                    "importance": r.importance,
                    "notes": r.notes,
                    "created_at": r.created_at,
                }
                for r, name in reviews
            ],
            "discovery": None
            if discovery is None
            else {"id": discovery.id, "status": discovery.status, "name": discovery.name},
            "merged_ids": merged_ids(session, object_id),
            "requested_id": requested,
        }


@router.get("/objects/{object_id}/light-curve", summary="An object's light curve")
def get_light_curve(
    rt: Rt, _: Viewer, object_id: ObjId, forced: Annotated[bool, Query()] = True
) -> dict[str, Any]:
    """Points sorted by MJD; ``kind`` detection | forced | upper_limit."""
    with rt.db.session() as session:
        return light_curve(session, rt.blobs, object_id, forced=forced)


def _comment_out(c: Comment, username: str) -> dict[str, Any]:
    return CommentOut(
        id=c.id,
        detection_id=c.detection_id,
        object_id=c.object_id,
        user_id=c.user_id,
        username=username,
        body=c.body,
        mentions=list(c.mentions or []),
        created_at=c.created_at,
    ).model_dump(mode="json")


def _comments(rt: Rt, detection_id: int | None, object_id: int | None) -> dict[str, Any]:
    with rt.db.session() as session:
        table, ident = (Detection, detection_id) if detection_id else (SkyObject, object_id)
        if session.get(table, ident) is None:
            raise NotFoundError(f"no {'detection' if detection_id else 'object'} with id {ident}")
        rows = list_comments(session, detection_id=detection_id, object_id=object_id)
        return {"items": [_comment_out(c, u) for c, u in rows]}


def _post(rt: Rt, principal: Principal, body: CommentIn, **target: int) -> dict[str, Any]:
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        row = add_comment(session, actor, body.body, **target)
        return _comment_out(row, actor.username)


@router.get("/detections/{detection_id}/comments", summary="Comments on a detection")
def get_detection_comments(rt: Rt, _: Viewer, detection_id: DetId) -> dict[str, Any]:
    return _comments(rt, detection_id, None)


@router.post(
    "/detections/{detection_id}/comments", status_code=201, summary="Comment on a detection"
)
def post_detection_comment(
    rt: Rt, principal: CuratorWrite, detection_id: DetId, body: CommentIn
) -> dict[str, Any]:
    """Plain text (stored as typed, never HTML); ``@username`` notifies that user."""
    return _post(rt, principal, body, detection_id=detection_id)


@router.get("/objects/{object_id}/comments", summary="Comments on an object")
def get_object_comments(rt: Rt, _: Viewer, object_id: ObjId) -> dict[str, Any]:
    return _comments(rt, None, object_id)


@router.post("/objects/{object_id}/comments", status_code=201, summary="Comment on an object")
def post_object_comment(
    rt: Rt, principal: CuratorWrite, object_id: ObjId, body: CommentIn
) -> dict[str, Any]:
    return _post(rt, principal, body, object_id=object_id)
