"""The audit trail and errors shared by the curation modules.

Every vote, undo, state change, review and discovery change is written twice, in the caller's
transaction: as a :class:`~astrid.store.tables.CurationAudit` row (who, when, before, after;
never updated) and as a domain event on the outbox (for the live stream and notifications).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.errors import AstridError
from astrid.store.tables import CurationAudit

__all__ = [
    "MAX_TEXT_CHARS",
    "Actor",
    "CurationConflictError",
    "CurationInputError",
    "audit",
    "check_text",
]

MAX_TEXT_CHARS = 10_000  # comments, notes, vote comments: a paragraph, not a document


class CurationInputError(AstridError):
    """A value of a curation request is wrong; ``field`` names it (``body.label``)."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field
        self.reason = message


class CurationConflictError(AstridError):
    """The change conflicts with the current state (undo of nothing, a closed discovery)."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a user id, name and role (viewer | curator | expert | admin)."""

    user_id: int
    username: str
    role: str

    @property
    def is_expert(self) -> bool:
        return self.role in ("expert", "admin")


def check_text(field: str, value: str | None, *, required: bool = False) -> str | None:
    """Plain text as given (markup is kept literally); refuse empty, NUL or over-long text."""
    if value is None or not value.strip():
        if required:
            raise CurationInputError(field, "must not be empty")
        return None
    if "\x00" in value:
        raise CurationInputError(field, "contains a NUL character")
    if len(value) > MAX_TEXT_CHARS:
        raise CurationInputError(
            field, f"is {len(value)} characters long; the limit is {MAX_TEXT_CHARS}"
        )
    return value


def audit(
    session: Session,
    action: str,
    actor: Actor | None,
    *,
    event: EventType,
    detection_id: int | None = None,
    object_id: int | None = None,
    vote_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
) -> CurationAudit:
    """Add an audit row and its outbox event to ``session`` (committed with the change)."""
    row = CurationAudit(
        action=action,
        detection_id=detection_id,
        object_id=object_id,
        vote_id=vote_id,
        user_id=actor.user_id if actor else None,
        username=actor.username if actor else None,
        before=before or {},
        after=after or {},
    )
    session.add(row)
    aggregate = ("detection", detection_id) if detection_id is not None else ("object", object_id)
    record_event(
        session,
        event,
        aggregate[0],
        aggregate[1],
        {
            "action": action,
            "user_id": row.user_id,
            "username": row.username,
            "detection_id": detection_id,
            "object_id": object_id,
            "vote_id": vote_id,
            "before": row.before,
            "after": row.after,
            **(payload or {}),
        },
    )
    return row
