"""The curation part of ``astrid demo``: demo users and a few votes on the best detections.

Users (password :data:`DEMO_PASSWORD`, documented in docs/curation.md): ``curator`` (role
curator) and ``expert`` (role expert). The curator votes on the highest-scoring detections
in the queue (real when P(real) ≥ 0.5, else bogus); the expert agrees on the top two, which
reaches consensus (one expert decides by default). A second demo run changes nothing.
"""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor
from astrid.domain.votes import ConsensusRule, cast_vote, load_rule
from astrid.store.auth_tables import User
from astrid.store.tables import CurationState, ObjectMember, Vote

__all__ = ["DEMO_PASSWORD", "seed_demo_curation"]

DEMO_PASSWORD = "astrid-demo"


def _user(session: Session, name: str, role: str, password_hash: str) -> Actor:
    user = session.scalar(select(User).where(User.username == name))
    if user is None:
        user = User(username=name, role=role, password_hash=password_hash, is_active=True)
        session.add(user)
        session.flush()
    return Actor(user.id, user.username, user.role)


def seed_demo_curation(session: Session, rule: ConsensusRule, n_votes: int = 6) -> dict[str, Any]:
    """Create the demo users and cast their votes (once); return what was done."""
    # argon2id, the API's password format (astrid.api.security verifies it).
    password_hash = PasswordHasher().hash(DEMO_PASSWORD)
    curator = _user(session, "curator", "curator", password_hash)
    expert = _user(session, "expert", "expert", password_hash)
    rule = load_rule(session, rule)
    already = session.scalar(select(Vote.id).where(Vote.user_id == curator.user_id).limit(1))
    votes: list[dict[str, Any]] = []
    if already is None:
        top = session.scalars(
            select(CurationState)
            .where(CurationState.state == "awaiting", CurationState.score >= 0)
            .order_by(CurationState.score.desc(), CurationState.detection_id)
            .limit(n_votes)
        ).all()
        for i, state in enumerate(top):
            det_id, score = state.detection_id, state.score
            label = "real" if score >= 0.5 else "bogus"
            path = "transient" if label == "real" else "artefact"
            cast_vote(session, det_id, curator, label, classification=path, rule=rule)
            outcome = None
            if i < 2:
                outcome = cast_vote(session, det_id, expert, label, classification=path, rule=rule)
            votes.append(
                {
                    "detection_id": det_id,
                    "label": label,
                    "consensus": bool(outcome and outcome.consensus_reached),
                }
            )
    first_object = None
    if votes:
        first_object = session.scalar(
            select(ObjectMember.object_id).where(
                ObjectMember.detection_id == votes[0]["detection_id"]
            )
        )
    return {
        "users": ["curator", "expert"],
        "password": DEMO_PASSWORD,
        "votes": votes,
        "first_object_id": first_object,
    }
