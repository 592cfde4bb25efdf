"""Expert review (ASTR-111) and discoveries.

The expert queue holds detections the curators disagree on (or that an expert decision is
waiting for: state ``expert_queue``) and objects whose best model score reaches
``curation_expert_min_score`` and that no expert has reviewed yet. An expert confirms or
disputes (a detection: the label it ends with; an object: whether it is real), rates the
scientific importance 1–5 and writes notes. A discovery is an object marked high priority,
with its own status (new → follow-up requested → confirmed → reported, or retracted) and
history (the audit trail of each change).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import (
    Actor,
    CurationConflictError,
    CurationInputError,
    audit,
    check_text,
)
from astrid.domain.events import EventType
from astrid.domain.observations import NotFoundError
from astrid.domain.taxonomy import resolve_path
from astrid.domain.votes import label_detection, lock_state
from astrid.store.tables import (
    CurationAudit,
    CurationState,
    CurationStateName,
    Detection,
    Discovery,
    DiscoveryStatus,
    ExpertReview,
    SkyObject,
)

__all__ = [
    "DISCOVERY_ORDER",
    "change_discovery",
    "discovery_history",
    "expert_queue",
    "mark_discovery",
    "mark_reported",
    "review_detection",
    "review_object",
]

VERDICTS = ("confirm", "dispute")
DISCOVERY_ORDER = [s.value for s in DiscoveryStatus if s is not DiscoveryStatus.RETRACTED]


def _importance(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 5:
        raise CurationInputError("body.importance", "must be an integer from 1 to 5")
    return value


def _verdict(value: str) -> str:
    if value not in VERDICTS:
        raise CurationInputError("body.verdict", "must be confirm or dispute")
    return value


def review_detection(
    session: Session,
    detection_id: int,
    actor: Actor,
    verdict: str,
    *,
    label: str | None = None,
    classification: str | None = None,
    importance: int | None = None,
    notes: str | None = None,
) -> ExpertReview:
    """An expert decides a detection: ``confirm`` keeps the curators' label (or sets
    ``label``), ``dispute`` overturns it (or sets ``label``). The decision is final."""
    _verdict(verdict)
    _importance(importance)
    notes = check_text("body.notes", notes)
    if label is not None and label not in ("real", "bogus"):
        raise CurationInputError("body.label", "must be real or bogus")
    path, _ = resolve_path(session, classification)
    det = session.get(Detection, detection_id)
    if det is None:
        raise NotFoundError(f"no detection with id {detection_id}")
    state = lock_state(session, det)
    current = state.label
    if label is None:
        if current is None:
            raise CurationInputError(
                "body.label", "the curators have not decided; say real or bogus"
            )
        label = current if verdict == "confirm" else ("bogus" if current == "real" else "real")
    before = {"state": state.state, "label": current}
    state.state = (
        CurationStateName.EXPERT_REAL.value
        if label == "real"
        else CurationStateName.EXPERT_BOGUS.value
    )
    state.label, state.reason = label, f"expert {verdict}"
    state.classification = path or state.classification
    label_detection(session, det, label, state.classification, actor)
    return _record_review(
        session,
        actor,
        ExpertReview(
            detection_id=det.id,
            user_id=actor.user_id,
            verdict=verdict,
            label=label,
            classification=path,
            importance=importance,
            notes=notes,
        ),
        before=before,
        after={"state": str(state.state), "label": label},
    )


def review_object(
    session: Session,
    object_id: int,
    actor: Actor,
    verdict: str,
    *,
    classification: str | None = None,
    importance: int | None = None,
    notes: str | None = None,
) -> ExpertReview:
    """An expert confirms (real) or disputes (bogus) an object, with importance and notes."""
    _verdict(verdict)
    _importance(importance)
    notes = check_text("body.notes", notes)
    path, _ = resolve_path(session, classification)
    obj = session.get(SkyObject, object_id)
    if obj is None:
        raise NotFoundError(f"no object with id {object_id}")
    before = {"label": obj.label, "classification": obj.classification}
    obj.label = "real" if verdict == "confirm" else "bogus"
    obj.classification = path or obj.classification
    return _record_review(
        session,
        actor,
        ExpertReview(
            object_id=obj.id,
            user_id=actor.user_id,
            verdict=verdict,
            label=obj.label,
            classification=path,
            importance=importance,
            notes=notes,
        ),
        before=before,
        after={"label": obj.label, "classification": obj.classification},
    )


def _record_review(
    session: Session,
    actor: Actor,
    review: ExpertReview,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
) -> ExpertReview:
    """Store ``review`` and its audit entry + ``expert.reviewed`` event (one transaction)."""
    session.add(review)
    session.flush()
    audit(
        session,
        "review",
        actor,
        event=EventType.EXPERT_REVIEWED,
        detection_id=review.detection_id,
        object_id=review.object_id,
        before=before,
        after={**after, "review_id": review.id},
        payload={
            "verdict": review.verdict,
            "importance": review.importance,
            "classification": review.classification,
        },
    )
    return review


def expert_queue(session: Session, min_score: float, limit: int = 100) -> dict[str, list[Any]]:
    """Detections in the expert queue and unreviewed objects scoring ≥ ``min_score``."""
    dets = list(
        session.execute(
            select(Detection, CurationState)
            .join(CurationState, CurationState.detection_id == Detection.id)
            .where(CurationState.state == CurationStateName.EXPERT_QUEUE.value)
            .order_by(CurationState.score.desc(), Detection.id)
            .limit(limit)
        )
    )
    reviewed = exists().where(ExpertReview.object_id == SkyObject.id)
    objs = list(
        session.scalars(
            select(SkyObject)
            .where(SkyObject.max_confidence >= min_score, ~reviewed)
            .order_by(SkyObject.max_confidence.desc(), SkyObject.id)
            .limit(limit)
        )
    )
    return {"detections": dets, "objects": objs}


def mark_discovery(
    session: Session,
    object_id: int,
    actor: Actor,
    *,
    name: str | None = None,
    classification: str | None = None,
    importance: int | None = None,
    notes: str | None = None,
) -> Discovery:
    """Mark an object a discovery (status ``new``); an object is one discovery at most."""
    _importance(importance)
    notes = check_text("body.notes", notes)
    if name is not None and (len(name) > 64 or "\x00" in name):
        raise CurationInputError("body.name", "at most 64 characters, no NUL")
    path, _ = resolve_path(session, classification)
    if session.get(SkyObject, object_id) is None:
        raise NotFoundError(f"no object with id {object_id}")
    if session.scalar(select(Discovery.id).where(Discovery.object_id == object_id)):
        raise CurationConflictError(f"object {object_id} is already a discovery")
    row = Discovery(
        object_id=object_id,
        status=DiscoveryStatus.NEW.value,
        name=name,
        classification=path,
        importance=importance,
        notes=notes,
        created_by=actor.user_id,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        "discovery",
        actor,
        event=EventType.DISCOVERY_CHANGED,
        object_id=object_id,
        before={},
        after={"discovery_id": row.id, "status": row.status},
    )
    return row


def change_discovery(
    session: Session,
    discovery_id: int,
    actor: Actor,
    status: str,
    *,
    note: str | None = None,
) -> Discovery:
    """Move a discovery forward (skipping steps is allowed) or retract it."""
    if status not in {s.value for s in DiscoveryStatus}:
        raise CurationInputError(
            "body.status", f"must be one of {', '.join(s.value for s in DiscoveryStatus)}"
        )
    note = check_text("body.note", note)
    row = session.get(Discovery, discovery_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no discovery with id {discovery_id}")
    current = row.status
    if status == DiscoveryStatus.RETRACTED.value:
        allowed = current not in (DiscoveryStatus.RETRACTED.value, DiscoveryStatus.REPORTED.value)
    else:
        allowed = current in DISCOVERY_ORDER and DISCOVERY_ORDER.index(
            status
        ) > DISCOVERY_ORDER.index(current)
    if not allowed:
        raise CurationConflictError(f"a {current} discovery cannot become {status}")
    row.status = status
    audit(
        session,
        "discovery",
        actor,
        event=EventType.DISCOVERY_CHANGED,
        object_id=row.object_id,
        before={"discovery_id": row.id, "status": current},
        after={"discovery_id": row.id, "status": status, "note": note},
    )
    return row


def mark_reported(
    session: Session, discovery_id: int, actor: Actor, report_id: object
) -> Discovery | None:
    """Record that TNS accepted a discovery's AT report (``report_id``, TNS's id for it).

    The discovery becomes ``reported`` unless it already is, or was retracted meanwhile
    (the report stands either way). Returns the discovery, None if it no longer exists.
    """
    row = session.get(Discovery, discovery_id)
    if row is not None and row.status not in (
        DiscoveryStatus.REPORTED.value,
        DiscoveryStatus.RETRACTED.value,
    ):
        change_discovery(session, discovery_id, actor, "reported", note=f"TNS report {report_id}")
    return row


def discovery_history(session: Session, discovery: Discovery) -> list[dict[str, Any]]:
    """Every status change of a discovery, oldest first."""
    rows = session.scalars(
        select(CurationAudit)
        .where(CurationAudit.object_id == discovery.object_id, CurationAudit.action == "discovery")
        .order_by(CurationAudit.id)
    )
    return [
        {
            "at": r.created_at,
            "by": r.username,
            "from": r.before.get("status"),
            "to": r.after.get("status"),
            "note": r.after.get("note"),
        }
        for r in rows
    ]
