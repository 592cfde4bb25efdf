"""Expert review, discoveries and the taxonomy.

Experts read the expert queue, confirm or dispute detections and objects (with an importance
rating 1–5 and notes), merge two objects that are one source, and mark and move discoveries;
everyone reads the taxonomy, admins
publish a new version of it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from astrid.api.curation_common import actor_of, curation_problems
from astrid.api.deps import AdminWrite, Expert, ExpertWrite, Rt, Viewer
from astrid.api.routes_scanning import cutout_urls
from astrid.api.schemas_curation import (
    DiscoveryIn,
    DiscoveryPatch,
    MergeIn,
    ObjectOut,
    ObjectReviewIn,
    ReviewIn,
    TaxonomyIn,
)
from astrid.domain.merges import merge_chosen, merged_ids
from astrid.domain.observations import NotFoundError
from astrid.domain.review import (
    change_discovery,
    discovery_history,
    expert_queue,
    mark_discovery,
    review_detection,
    review_object,
)
from astrid.domain.taxonomy import current_taxonomy, publish
from astrid.store.tables import Discovery, ExpertReview, SkyObject, TaxonomyVersion

__all__ = ["router"]

router = APIRouter(tags=["review"])

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _review_out(r: ExpertReview) -> dict[str, Any]:
    return {
        "id": r.id,
        "detection_id": r.detection_id,
        "object_id": r.object_id,
        "user_id": r.user_id,
        "verdict": r.verdict,
        "label": r.label,
        "classification": r.classification,
        "importance": r.importance,
        "notes": r.notes,
        "created_at": r.created_at,
    }


def _discovery_out(d: Discovery, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "object_id": d.object_id,
        "status": d.status,
        "name": d.name,
        "classification": d.classification,
        "importance": d.importance,
        "notes": d.notes,
        "created_by": d.created_by,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }
    if history is not None:
        out["history"] = history
    return out


@router.get("/review/queue", summary="The expert queue")
def get_expert_queue(
    rt: Rt, _: Expert, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    """Detections curators disagree on, and unreviewed objects scoring at or above
    ``ASTRID_CURATION_EXPERT_MIN_SCORE``."""
    with rt.db.session() as session:
        q = expert_queue(session, rt.settings.curation_expert_min_score, limit)
        return {
            "detections": [
                {
                    "detection_id": d.id,
                    "ra": d.ra,
                    "dec": d.dec,
                    "mjd": d.mjd,
                    "score": d.confidence,
                    "snr": d.snr,
                    "mag": d.mag,
                    "state": s.state,
                    "reason": s.reason,
                    "votes": {"real": s.n_real, "bogus": s.n_bogus, "skip": s.n_skip},
                    "cutouts": cutout_urls(d.id, dict(d.cutout_keys or {})),
                }
                for d, s in q["detections"]
            ],
            "objects": [ObjectOut.model_validate(o).model_dump(mode="json") for o in q["objects"]],
            "min_score": rt.settings.curation_expert_min_score,
        }


@router.post(
    "/detections/{detection_id}/reviews", status_code=201, summary="Expert decision on a detection"
)
def post_detection_review(
    rt: Rt, principal: ExpertWrite, detection_id: Id, body: ReviewIn
) -> dict[str, Any]:
    """``confirm`` keeps the curators' label (or sets ``label``); ``dispute`` overturns it."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        review = review_detection(
            session,
            detection_id,
            actor,
            body.verdict,
            label=body.label,
            classification=body.classification,
            importance=body.importance,
            notes=body.notes,
        )
        return _review_out(review)


@router.post("/objects/{object_id}/reviews", status_code=201, summary="Expert review of an object")
def post_object_review(
    rt: Rt, principal: ExpertWrite, object_id: Id, body: ObjectReviewIn
) -> dict[str, Any]:
    """``confirm``: the object is real (it can enter the catalog); ``dispute``: it is not."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        review = review_object(
            session,
            object_id,
            actor,
            body.verdict,
            classification=body.classification,
            importance=body.importance,
            notes=body.notes,
        )
        return _review_out(review)


@router.post("/objects/{object_id}/merge", summary="Merge two objects that are one source")
def post_object_merge(
    rt: Rt, principal: ExpertWrite, object_id: Id, body: MergeIn
) -> dict[str, Any]:
    """Fold one object into the other (the older id is kept; the other stays its alias).

    404 for an unknown id, 409 when both are already one object or both are discoveries, 422
    when they lie farther apart than ``ASTRID_CURATION_MERGE_MAX_ARCSEC``.
    """
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        kept = merge_chosen(
            session,
            object_id,
            body.other_id,
            actor,
            max_separation_arcsec=rt.settings.curation_merge_max_arcsec,
        )
        session.flush()
        return {
            "object": ObjectOut.model_validate(kept).model_dump(mode="json"),
            "merged_ids": merged_ids(session, kept.id),
        }


@router.get("/discoveries", summary="Discoveries")
def list_discoveries(
    rt: Rt,
    _: Viewer,
    status: Literal["new", "follow_up_requested", "confirmed", "reported", "retracted"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with rt.db.session() as session:
        stmt = select(Discovery, SkyObject).join(SkyObject, SkyObject.id == Discovery.object_id)
        if status is not None:
            stmt = stmt.where(Discovery.status == status)
        rows = session.execute(stmt.order_by(Discovery.id.desc()).limit(limit)).all()
        return {
            "items": [
                {
                    **_discovery_out(d),
                    "object": ObjectOut.model_validate(o).model_dump(mode="json"),
                }
                for d, o in rows
            ]
        }


@router.get("/discoveries/{discovery_id}", summary="One discovery with its history")
def get_discovery(rt: Rt, _: Viewer, discovery_id: Id) -> dict[str, Any]:
    with rt.db.session() as session:
        d = session.get(Discovery, discovery_id)
        if d is None:
            raise NotFoundError(f"no discovery with id {discovery_id}")
        return _discovery_out(d, discovery_history(session, d))


@router.post("/objects/{object_id}/discovery", status_code=201, summary="Mark a discovery")
def post_discovery(
    rt: Rt, principal: ExpertWrite, object_id: Id, body: DiscoveryIn
) -> dict[str, Any]:
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        d = mark_discovery(
            session,
            object_id,
            actor,
            name=body.name,
            classification=body.classification,
            importance=body.importance,
            notes=body.notes,
        )
        return _discovery_out(d, discovery_history(session, d))


@router.patch("/discoveries/{discovery_id}", summary="Move a discovery on")
def patch_discovery(
    rt: Rt, principal: ExpertWrite, discovery_id: Id, body: DiscoveryPatch
) -> dict[str, Any]:
    """new → follow_up_requested → confirmed → reported (steps may be skipped), or
    retracted; anything else is a 409."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        d = change_discovery(session, discovery_id, actor, body.status, note=body.note)
        return _discovery_out(d, discovery_history(session, d))


@router.get("/taxonomy", summary="The current classification taxonomy")
def get_taxonomy(rt: Rt, _: Viewer) -> dict[str, Any]:
    """``tree`` ({name: {child: ...}}) and ``paths`` ('transient/supernova/Ia', ...)."""
    with rt.db.session() as session:
        t = current_taxonomy(session)
        return {"version": t.version, "tree": t.tree, "paths": list(t.paths)}


@router.get("/taxonomy/versions/{version}", summary="One version of the taxonomy")
def get_taxonomy_version(rt: Rt, _: Viewer, version: Id) -> dict[str, Any]:
    with rt.db.session() as session:
        row = session.get(TaxonomyVersion, version)
        if row is None:
            current = current_taxonomy(session)
            if version == current.version:
                return {"version": version, "tree": current.tree, "paths": list(current.paths)}
            raise NotFoundError(f"no taxonomy version {version}")
        return {
            "version": row.version,
            "tree": row.tree,
            "paths": row.paths,
            "note": row.note,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }


@router.put("/taxonomy", summary="Publish a new taxonomy version (admins)")
def put_taxonomy(rt: Rt, principal: AdminWrite, body: TaxonomyIn) -> dict[str, Any]:
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        t = publish(session, body.tree, actor, body.note)
        return {"version": t.version, "tree": t.tree, "paths": list(t.paths)}
