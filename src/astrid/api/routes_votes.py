"""Votes on detections: cast, list, undo, bulk; the curation state, its audit and the rule.

``POST /detections/{id}/votes`` (curator) replaces the caller's earlier vote on that
detection; the answer says whether this vote reached consensus. A vote belongs to the
caller's login session (the token family: one login and its refreshes). ``DELETE
/detections/{id}/votes/mine`` takes the caller's vote back if it was cast in this session;
``DELETE /votes/mine/last`` takes back the latest vote of this session (the page's ``u``). Bulk
votes apply one vote per detection, each in its own transaction: one bad id never stops the
rest. Admins read and change the consensus rule at ``/curation/rule``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.api.auth import Principal
from astrid.api.curation_common import actor_of, curation_problems, scan_session
from astrid.api.deps import AdminWrite, CuratorWrite, Rt, Viewer
from astrid.api.problems import Problem
from astrid.api.schemas_curation import (
    BulkVoteIn,
    ConsensusRuleIn,
    CurationStateOut,
    EscalateIn,
    VoteIn,
    VoteOut,
)
from astrid.domain.curation_audit import Actor
from astrid.domain.observations import NotFoundError
from astrid.domain.votes import (
    ConsensusRule,
    VoteOutcome,
    cast_vote,
    escalate,
    load_rule,
    save_rule,
    undo_last_vote,
    undo_vote,
)
from astrid.runtime import Runtime
from astrid.store.tables import CurationAudit, CurationState, Detection, User, Vote, VoteState

__all__ = ["router"]

router = APIRouter(tags=["votes"])

DetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Detection id.")]


def _rule(rt: Runtime) -> ConsensusRule:
    return ConsensusRule.from_settings(rt.settings)


def _cast(
    session: Session,
    rt: Runtime,
    principal: Principal,
    actor: Actor,
    detection_id: int,
    body: VoteIn,
) -> VoteOutcome:
    """The caller's vote ``body`` on one detection, under the configured consensus rule."""
    return cast_vote(
        session,
        detection_id,
        actor,
        body.label,
        classification=body.classification,
        probability=body.probability,
        comment=body.comment,
        session_id=scan_session(principal, body.session_id),
        rule=load_rule(session, _rule(rt)),
    )


def _outcome(o: VoteOutcome, username: str, state: CurationState) -> dict[str, Any]:
    vote = VoteOut.model_validate(o.vote).model_copy(update={"username": username})
    return {
        "vote": vote.model_dump(mode="json"),
        "replaced_vote_id": o.replaced_vote_id,
        "consensus_reached": o.consensus_reached,
        "state": CurationStateOut.model_validate(state).model_dump(mode="json"),
    }


@router.post("/detections/{detection_id}/votes", status_code=201, summary="Vote on a detection")
def post_vote(rt: Rt, principal: CuratorWrite, detection_id: DetId, body: VoteIn) -> dict[str, Any]:
    """``label`` real | bogus | skip, optional ``classification`` (taxonomy path),
    ``probability`` and ``comment``. A second vote by the same user replaces the first."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        outcome = _cast(session, rt, principal, actor, detection_id, body)
        state = session.get(CurationState, detection_id)
        assert state is not None
        return _outcome(outcome, actor.username, state)


@router.post("/detections/{detection_id}/escalate", summary="Send a detection to the expert queue")
def post_escalate(
    rt: Rt, principal: CuratorWrite, detection_id: DetId, body: EscalateIn | None = None
) -> dict[str, Any]:
    """The detection waits for an expert whatever later curator votes say; idempotent."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        state = escalate(session, detection_id, actor, body.reason if body else None)
        return {
            "detection_id": detection_id,
            "state": CurationStateOut.model_validate(state).model_dump(mode="json"),
        }


@router.get("/detections/{detection_id}/votes", summary="Votes on a detection")
def get_votes(
    rt: Rt,
    _: Viewer,
    detection_id: DetId,
    history: Annotated[bool, Query(description="Also superseded and undone votes.")] = False,
) -> dict[str, Any]:
    """Active votes (user, label, classification, time) and the curation state."""
    with rt.db.session() as session:
        det = session.get(Detection, detection_id)
        if det is None:
            raise NotFoundError(f"no detection with id {detection_id}")
        stmt = (
            select(Vote, User.username)
            .join(User, User.id == Vote.user_id)
            .where(Vote.detection_id == detection_id)
            .order_by(Vote.id)
        )
        if not history:
            stmt = stmt.where(Vote.state == VoteState.ACTIVE.value)
        items = [
            VoteOut.model_validate(v).model_copy(update={"username": name}).model_dump(mode="json")
            for v, name in session.execute(stmt)
        ]
        state = session.get(CurationState, detection_id)
        return {
            "detection_id": detection_id,
            "items": items,
            "state": CurationStateOut.model_validate(state).model_dump(mode="json")
            if state
            else None,
        }


@router.delete("/detections/{detection_id}/votes/mine", summary="Undo my vote")
def undo_my_vote(rt: Rt, principal: CuratorWrite, detection_id: DetId) -> dict[str, Any]:
    """Take back the caller's active vote if it was cast in this login session (a vote of an
    earlier session is a 409 saying so; tokens without a session fall back to
    ``ASTRID_CURATION_UNDO_WINDOW_S``)."""
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        outcome = undo_vote(
            session,
            detection_id,
            actor,
            session_id=scan_session(principal),
            window_s=rt.settings.curation_undo_window_s,
            rule=load_rule(session, _rule(rt)),
        )
        state = session.get(CurationState, detection_id)
        assert state is not None
        return _outcome(outcome, actor.username, state)


@router.delete("/votes/mine/last", summary="Undo my last vote of this session")
def undo_my_last_vote(rt: Rt, principal: CuratorWrite) -> dict[str, Any]:
    """The scanning page's ``u``: takes back the caller's most recent active vote of this
    login session (again: the one before). Nothing left in this session is a 409."""
    actor = actor_of(principal)
    sid = scan_session(principal)
    if sid is None:
        raise Problem(
            409,
            "your token names no login session, so there is no session to undo in; "
            "use DELETE /detections/{id}/votes/mine",
            kind="conflict",
        )
    with curation_problems(), rt.db.session() as session:
        outcome = undo_last_vote(session, actor, sid, rule=load_rule(session, _rule(rt)))
        assert outcome.vote is not None
        state = session.get(CurationState, outcome.vote.detection_id)
        assert state is not None
        return {
            "detection_id": outcome.vote.detection_id,
            **_outcome(outcome, actor.username, state),
        }


@router.post("/votes/bulk", summary="The same vote on a selection of detections")
def bulk_votes(rt: Rt, principal: CuratorWrite, body: BulkVoteIn) -> dict[str, Any]:
    """Each detection is voted in its own transaction; failures are listed, never fatal."""
    actor = actor_of(principal)
    results: list[dict[str, Any]] = []
    for det_id in dict.fromkeys(body.detection_ids):
        try:
            with curation_problems(), rt.db.session() as session:
                outcome = _cast(session, rt, principal, actor, det_id, body)
                results.append(
                    {
                        "detection_id": det_id,
                        "ok": True,
                        "vote_id": outcome.vote.id if outcome.vote else None,
                        "state": outcome.state_after,
                        "consensus_reached": outcome.consensus_reached,
                    }
                )
        except NotFoundError as exc:
            results.append({"detection_id": det_id, "ok": False, "status": 404, "error": str(exc)})
        except Problem as exc:
            results.append(
                {"detection_id": det_id, "ok": False, "status": exc.status, "error": exc.detail}
            )
    n_ok = sum(1 for r in results if r["ok"])
    return {"results": results, "n_ok": n_ok, "n_failed": len(results) - n_ok}


@router.get("/detections/{detection_id}/curation", summary="Curation state and audit trail")
def get_curation(rt: Rt, _: Viewer, detection_id: DetId) -> dict[str, Any]:
    """The state and every vote, undo and state change (who, when, before, after)."""
    with rt.db.session() as session:
        det = session.get(Detection, detection_id)
        if det is None:
            raise NotFoundError(f"no detection with id {detection_id}")
        state = session.get(CurationState, detection_id)
        trail = session.scalars(
            select(CurationAudit)
            .where(CurationAudit.detection_id == detection_id)
            .order_by(CurationAudit.id)
        )
        return {
            "detection_id": detection_id,
            "state": CurationStateOut.model_validate(state).model_dump(mode="json")
            if state
            else None,
            "audit": [
                {
                    "id": a.id,
                    "action": a.action,
                    "user_id": a.user_id,
                    "username": a.username,
                    "vote_id": a.vote_id,
                    "before": a.before,
                    "after": a.after,
                    "at": a.created_at,
                }
                for a in trail
            ],
        }


@router.get("/curation/rule", summary="The consensus rule")
def get_rule(rt: Rt, _: Viewer) -> dict[str, Any]:
    with rt.db.session() as session:
        return asdict(load_rule(session, _rule(rt)))


@router.put("/curation/rule", summary="Change the consensus rule (admins)")
def put_rule(rt: Rt, principal: AdminWrite, body: ConsensusRuleIn) -> dict[str, Any]:
    actor = actor_of(principal)
    with curation_problems(), rt.db.session() as session:
        return asdict(save_rule(session, ConsensusRule(body.agreeing, body.expert_decides), actor))
