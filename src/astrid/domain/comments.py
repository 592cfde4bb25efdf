"""Comments on detections and objects: plain text with @mentions.

A comment is stored exactly as typed, as plain text: markup is kept literally and never
interpreted (faces render it escaped). ``@name`` of an existing user is a mention; each
mention is a ``user.mentioned`` event on the outbox (notifications deliver it).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor, CurationInputError, check_text
from astrid.domain.events import EventType, record_event
from astrid.domain.observations import NotFoundError
from astrid.store.auth_tables import User
from astrid.store.tables import Comment, Detection, SkyObject

__all__ = ["MENTION", "add_comment", "list_comments"]

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_.\-]{1,128})")


def add_comment(
    session: Session,
    actor: Actor,
    body: str,
    *,
    detection_id: int | None = None,
    object_id: int | None = None,
) -> Comment:
    """Store a comment on exactly one of a detection or an object; announce its mentions."""
    text = check_text("body.body", body, required=True)
    assert text is not None
    if (detection_id is None) == (object_id is None):
        raise CurationInputError("target", "a comment is on one detection or one object")
    if detection_id is not None and session.get(Detection, detection_id) is None:
        raise NotFoundError(f"no detection with id {detection_id}")
    if object_id is not None and session.get(SkyObject, object_id) is None:
        raise NotFoundError(f"no object with id {object_id}")
    names = list(dict.fromkeys(m.rstrip(".") for m in MENTION.findall(text)))
    users = (
        list(session.scalars(select(User).where(User.username.in_(names), User.is_active)))
        if names
        else []
    )
    row = Comment(
        detection_id=detection_id,
        object_id=object_id,
        user_id=actor.user_id,
        body=text,
        mentions=sorted(u.username for u in users),
    )
    session.add(row)
    session.flush()
    target = ("detection", detection_id) if detection_id is not None else ("object", object_id)
    excerpt = text[:280]
    record_event(
        session,
        EventType.COMMENT_ADDED,
        target[0],
        target[1],
        {"comment_id": row.id, "user_id": actor.user_id, "username": actor.username},
    )
    for user in users:
        record_event(
            session,
            EventType.USER_MENTIONED,
            target[0],
            target[1],
            {
                "comment_id": row.id,
                "mentioned_user_id": user.id,
                "mentioned_username": user.username,
                "by": actor.username,
                "excerpt": excerpt,
                "detection_id": detection_id,
                "object_id": object_id,
            },
        )
    return row


def list_comments(
    session: Session,
    *,
    detection_id: int | None = None,
    object_id: int | None = None,
    limit: int = 200,
) -> list[tuple[Comment, str]]:
    """Comments (oldest first) with their authors' usernames."""
    stmt = select(Comment, User.username).join(User, User.id == Comment.user_id)
    if detection_id is not None:
        stmt = stmt.where(Comment.detection_id == detection_id)
    if object_id is not None:
        stmt = stmt.where(Comment.object_id == object_id)
    return [(c, str(u)) for c, u in session.execute(stmt.order_by(Comment.id).limit(limit))]
