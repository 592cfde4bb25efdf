"""Votes and consensus: curators say real / bogus / skip; a configurable rule decides.

Rule (configuration, :class:`ConsensusRule`; default two agreeing curators, or one expert):

* ``agreeing`` active real (or bogus) votes and none of the other label → consensus;
* an expert's real/bogus vote decides alone when ``expert_decides`` (experts who disagree
  with each other send the detection to the expert queue);
* real and bogus votes both present → the expert queue (also after a consensus: disputed);
* skips never decide; a decision by expert review (``expert_real``/``expert_bogus``) is final
  for votes.

A vote by a user who already voted on the detection supersedes the earlier one (both stay in
the audit). A vote carries the caller's login session (``session_id``, the token family);
:func:`undo_vote` and :func:`undo_last_vote` take back only votes of the caller's session.
Concurrency: :func:`cast_vote` first bumps the detection's ``curation_states``
row (``UPDATE ... version = version + 1``), which locks it on PostgreSQL (and takes SQLite's
write lock), then counts votes; concurrent votes on one detection are therefore serialised
and a consensus is reached, and announced, exactly once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
from astrid.settings import Settings
from astrid.store.tables import (
    CurationConfig,
    CurationState,
    CurationStateName,
    Detection,
    DetectionStatus,
    ObjectMember,
    SkyObject,
    Vote,
    VoteState,
    utcnow,
)

__all__ = [
    "LABELS",
    "ConsensusRule",
    "VoteOutcome",
    "cast_vote",
    "decide",
    "ensure_state",
    "escalate",
    "label_detection",
    "load_rule",
    "lock_state",
    "save_rule",
    "undo_last_vote",
    "undo_vote",
]

LABELS = ("real", "bogus", "skip")
S = CurationStateName
_DECIDED = {S.CONSENSUS_REAL.value, S.CONSENSUS_BOGUS.value}
_FINAL = {S.EXPERT_REAL.value, S.EXPERT_BOGUS.value}


@dataclass(frozen=True)
class ConsensusRule:
    """When votes decide a detection (stored under ``curation_config['consensus']``)."""

    agreeing: int = 2
    expert_decides: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsensusRule:
        return cls(settings.curation_consensus_agreeing, settings.curation_expert_decides)


def load_rule(session: Session, default: ConsensusRule | None = None) -> ConsensusRule:
    """The rule an admin stored, else ``default`` (from settings), else the built-in one."""
    row = session.get(CurationConfig, "consensus")
    if row is None:
        return default or ConsensusRule()
    return ConsensusRule(int(row.value["agreeing"]), bool(row.value["expert_decides"]))


def save_rule(session: Session, rule: ConsensusRule, actor: Actor) -> ConsensusRule:
    """Store a new rule (admins); it applies to votes cast from now on."""
    if not 1 <= rule.agreeing <= 20:
        raise CurationInputError("body.agreeing", "must be between 1 and 20")
    row = session.get(CurationConfig, "consensus")
    before = dict(row.value) if row is not None else {}
    if row is None:
        row = CurationConfig(key="consensus", value={})
        session.add(row)
    row.value = asdict(rule)
    row.updated_by = actor.username
    audit(
        session,
        "config",
        actor,
        event=EventType.CURATION_CONFIG_CHANGED,
        before=before,
        after={"consensus": asdict(rule)},
    )
    return rule


def ensure_state(session: Session, det: Detection) -> None:
    """Give ``det`` its curation-state row (queued) unless it has one; safe under races."""
    score = -1.0 if det.confidence is None else float(det.confidence)
    margin = 0.5 if det.confidence is None else abs(float(det.confidence) - 0.5)
    values = {
        "detection_id": det.id,
        "state": S.AWAITING.value,
        "score": score,
        "margin": margin,
        "n_real": 0,
        "n_bogus": 0,
        "n_skip": 0,
        "version": 0,
        "updated_at": utcnow(),
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(CurationState).values(**values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["detection_id"]))
    # A rescored detection keeps its state but moves in the queue.
    session.execute(
        update(CurationState)
        .where(CurationState.detection_id == det.id)
        .values(score=score, margin=margin)
    )


def decide(votes: list[Vote], rule: ConsensusRule) -> tuple[str, str | None, str]:
    """(state, label, reason) that the active ``votes`` give under ``rule``."""
    deciding = [v for v in votes if v.label in ("real", "bogus")]
    if rule.expert_decides:
        expert = {v.label for v in deciding if v.role in ("expert", "admin")}
        if len(expert) == 1:
            label = expert.pop()
            return f"consensus_{label}", label, "an expert voted"
        if len(expert) > 1:
            return S.EXPERT_QUEUE.value, None, "experts disagree"
    labels = Counter(v.label for v in deciding)
    if labels["real"] and labels["bogus"]:
        return S.EXPERT_QUEUE.value, None, "curators disagree"
    for label in ("real", "bogus"):
        if labels[label] >= rule.agreeing:
            return f"consensus_{label}", label, f"{labels[label]} curators agree"
    return S.AWAITING.value, None, "waiting for votes"


@dataclass
class VoteOutcome:
    """What a vote did: the vote, the state before and after, whether consensus was reached."""

    vote: Vote | None
    state_before: str
    state_after: str
    label: str | None
    consensus_reached: bool
    replaced_vote_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _vote_summary(v: Vote) -> dict[str, Any]:
    return {
        "vote_id": v.id,
        "label": v.label,
        "classification": v.classification,
        "probability": v.probability,
        "state": v.state,
    }


def lock_state(session: Session, det: Detection) -> CurationState:
    """Lock the detection's state row (bump ``version``), creating it first if missing."""
    bump = (
        update(CurationState)
        .where(CurationState.detection_id == det.id)
        .values(version=CurationState.version + 1)
    )
    if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
        ensure_state(session, det)
        session.execute(bump)
    return session.scalars(
        select(CurationState)
        .where(CurationState.detection_id == det.id)
        .execution_options(populate_existing=True)
    ).one()


def _active_votes(session: Session, detection_id: int) -> list[Vote]:
    return list(
        session.scalars(
            select(Vote)
            .where(Vote.detection_id == detection_id, Vote.state == VoteState.ACTIVE.value)
            .order_by(Vote.id)
        )
    )


def _get_detection(session: Session, detection_id: int) -> Detection:
    det = session.get(Detection, detection_id)
    if det is None:
        raise NotFoundError(f"no detection with id {detection_id}")
    return det


def _apply(
    session: Session, det: Detection, state: CurationState, actor: Actor, rule: ConsensusRule
) -> VoteOutcome:
    """Recount the active votes, move the state if the rule says so, audit the change."""
    votes = _active_votes(session, det.id)
    counts = Counter(v.label for v in votes)
    state.n_real, state.n_bogus, state.n_skip = counts["real"], counts["bogus"], counts["skip"]
    before = state.state
    if before in _FINAL:
        return VoteOutcome(None, before, before, state.label, False, counts=dict(counts))
    new_state, label, reason = decide(votes, rule)
    if before == S.EXPERT_QUEUE.value and label is None and _escalated(state):
        new_state, reason = before, state.reason or reason  # stays with the experts
    if before in _DECIDED and new_state == S.AWAITING.value:
        reason = "consensus withdrawn: " + reason
    if new_state != before:
        classes = Counter(v.classification for v in votes if v.label == label and v.classification)
        classification = classes.most_common(1)[0][0] if classes else None
        audit(
            session,
            "state",
            actor,
            event=(
                EventType.CONSENSUS_REACHED if new_state in _DECIDED else EventType.CURATION_CHANGED
            ),
            detection_id=det.id,
            before={"state": before, "label": state.label},
            after={"state": new_state, "label": label, "reason": reason},
            payload={"classification": classification, "confidence": det.confidence},
        )
        state.state, state.label, state.reason = new_state, label, reason
        state.classification = classification
        state.decided_at = utcnow() if label else None
        label_detection(session, det, label, classification, actor)
    return VoteOutcome(
        None,
        before,
        new_state,
        label,
        new_state in _DECIDED and new_state != before,
        counts=dict(counts),
    )


ESCALATED = "escalated by "


def _escalated(state: CurationState) -> bool:
    return (state.reason or "").startswith(ESCALATED)


def escalate(
    session: Session, detection_id: int, actor: Actor, reason: str | None = None
) -> CurationState:
    """Send a detection to the expert queue (a curator's ``e`` on the scanning page).

    It stays there, whatever later curator votes say, until a vote or review decides it.
    Escalating a detection that is already there changes nothing; one that is already
    decided is a conflict.
    """
    det = _get_detection(session, detection_id)
    state = lock_state(session, det)
    if state.state == S.EXPERT_QUEUE.value:
        return state
    if state.state in _FINAL or state.state in _DECIDED:
        raise CurationConflictError(
            f"detection {detection_id} is already decided ({state.state}); "
            "an expert review can still change it"
        )
    why = ESCALATED + actor.username + (f": {reason}" if reason else "")
    audit(
        session,
        "state",
        actor,
        event=EventType.CURATION_CHANGED,
        detection_id=det.id,
        before={"state": state.state, "label": state.label},
        after={"state": S.EXPERT_QUEUE.value, "label": None, "reason": why},
    )
    state.state, state.reason = S.EXPERT_QUEUE.value, why
    return state


def label_detection(
    session: Session, det: Detection, label: str | None, classification: str | None, actor: Actor
) -> None:
    det.label = label
    det.status = {
        "real": DetectionStatus.VALIDATED,
        "bogus": DetectionStatus.REJECTED,
    }.get(label or "", DetectionStatus.PENDING)
    det.validated_by = actor.username if label else None
    det.validated_at = utcnow() if label else None
    if label == "real":  # an object with a real detection is a real object
        obj = session.scalar(
            select(SkyObject).join(ObjectMember).where(ObjectMember.detection_id == det.id)
        )
        if obj is not None:
            obj.label = "real"
            obj.classification = classification or obj.classification


def cast_vote(
    session: Session,
    detection_id: int,
    actor: Actor,
    label: str,
    *,
    classification: str | None = None,
    probability: float | None = None,
    comment: str | None = None,
    session_id: str | None = None,
    rule: ConsensusRule | None = None,
) -> VoteOutcome:
    """Record ``actor``'s vote on a detection and apply the consensus rule.

    Raises :class:`CurationInputError` (naming the field) for a bad label, probability,
    comment or taxonomy path and :class:`NotFoundError` for an unknown detection, before
    anything is written.
    """
    if label not in LABELS:
        raise CurationInputError("body.label", f"must be one of {', '.join(LABELS)}")
    if probability is not None and not 0.0 <= probability <= 1.0:
        raise CurationInputError("body.probability", "must be between 0 and 1")
    comment = check_text("body.comment", comment)
    path, tax_version = resolve_path(session, classification)
    det = _get_detection(session, detection_id)
    rule = rule or load_rule(session)
    state = lock_state(session, det)
    old = session.scalar(
        select(Vote).where(
            Vote.detection_id == det.id,
            Vote.user_id == actor.user_id,
            Vote.state == VoteState.ACTIVE.value,
        )
    )
    if old is not None:
        old.state, old.ended_at = VoteState.SUPERSEDED.value, utcnow()
        session.flush()  # frees the one-active-vote index slot before the new vote
    vote = Vote(
        detection_id=det.id,
        user_id=actor.user_id,
        role=actor.role,
        label=label,
        classification=path,
        taxonomy_version=tax_version,
        probability=probability,
        comment=comment,
        session_id=session_id,
    )
    session.add(vote)
    session.flush()
    audit(
        session,
        "vote",
        actor,
        event=EventType.VOTE_CAST,
        detection_id=det.id,
        vote_id=vote.id,
        before=_vote_summary(old) if old is not None else {},
        after=_vote_summary(vote),
    )
    outcome = _apply(session, det, state, actor, rule)
    outcome.vote = vote
    outcome.replaced_vote_id = old.id if old is not None else None
    return outcome


def _take_back(
    session: Session,
    det: Detection,
    state: CurationState,
    vote: Vote,
    actor: Actor,
    rule: ConsensusRule,
) -> VoteOutcome:
    before = _vote_summary(vote)
    vote.state, vote.ended_at = VoteState.UNDONE.value, utcnow()
    audit(
        session,
        "undo",
        actor,
        event=EventType.VOTE_UNDONE,
        detection_id=det.id,
        vote_id=vote.id,
        before=before,
        after=_vote_summary(vote),
        payload={"session_id": vote.session_id},
    )
    outcome = _apply(session, det, state, actor, rule)
    outcome.vote = vote
    return outcome


def undo_vote(
    session: Session,
    detection_id: int,
    actor: Actor,
    *,
    session_id: str | None = None,
    window_s: int = 1800,
    rule: ConsensusRule | None = None,
) -> VoteOutcome:
    """Take back ``actor``'s active vote on a detection, cast in this scanning session.

    ``session_id`` is the caller's login session (the token family): a vote cast in another
    session is a :class:`CurationConflictError` naming why. A caller without a session id
    (an external token that names none) may undo votes cast within the last ``window_s``
    seconds instead.
    """
    det = _get_detection(session, detection_id)
    rule = rule or load_rule(session)
    state = lock_state(session, det)
    vote = session.scalar(
        select(Vote).where(
            Vote.detection_id == det.id,
            Vote.user_id == actor.user_id,
            Vote.state == VoteState.ACTIVE.value,
        )
    )
    if vote is None:
        raise CurationConflictError(f"you have no vote on detection {detection_id} to undo")
    if session_id is not None:
        if vote.session_id != session_id:
            raise CurationConflictError(
                f"vote {vote.id} on detection {detection_id} was cast in an earlier session"
                " (another login); undo works within the session that cast the vote: "
                "vote again instead"
            )
    else:
        created = (
            vote.created_at if vote.created_at.tzinfo else vote.created_at.replace(tzinfo=None)
        )
        now = utcnow() if vote.created_at.tzinfo else utcnow().replace(tzinfo=None)
        if now - created > timedelta(seconds=window_s):
            raise CurationConflictError(
                f"vote {vote.id} is older than the undo window of {window_s} s; vote again instead"
            )
    return _take_back(session, det, state, vote, actor, rule)


def undo_last_vote(
    session: Session,
    actor: Actor,
    session_id: str,
    *,
    rule: ConsensusRule | None = None,
) -> VoteOutcome:
    """Take back ``actor``'s most recent still-active vote of the login session ``session_id``.

    Repeated, it walks back through the session's votes, newest first. Votes of earlier
    sessions are never touched (a :class:`CurationConflictError` says so when nothing of this
    session is left).
    """
    vote = session.scalar(
        select(Vote)
        .where(
            Vote.user_id == actor.user_id,
            Vote.session_id == session_id,
            Vote.state == VoteState.ACTIVE.value,
        )
        .order_by(Vote.id.desc())
        .limit(1)
    )
    if vote is None:
        raise CurationConflictError(
            "you have no vote left to undo in this session; votes of earlier sessions "
            "cannot be undone, only replaced by a new vote"
        )
    det = _get_detection(session, vote.detection_id)
    rule = rule or load_rule(session)
    state = lock_state(session, det)
    session.refresh(vote)  # after the lock: a concurrent undo may have taken it back
    if vote.state != VoteState.ACTIVE.value:
        raise CurationConflictError(f"vote {vote.id} was taken back meanwhile; try again")
    return _take_back(session, det, state, vote, actor, rule)
