"""Domain events and the transactional outbox.

A change and the event that describes it are written in the same database transaction
(:func:`record_event` adds a :class:`~astrid.store.tables.DomainEvent` row to the caller's
session). :class:`EventDispatcher` later delivers undispatched rows, in order, to subscribers
registered in process (the API's live stream, notifications) and marks them dispatched, so a
crash between the change and the delivery loses nothing.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.store.db import Database
from astrid.store.tables import DomainEvent, utcnow

__all__ = ["Event", "EventDispatcher", "EventType", "record_event"]

log = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    """Event types written to the outbox."""

    OBSERVATION_INGESTED = "observation.ingested"
    STATUS_CHANGED = "observation.status_changed"
    PROCESSING_STARTED = "observation.processing_started"
    PROCESSING_COMPLETED = "observation.processing_completed"
    PROCESSING_FAILED = "observation.processing_failed"
    VALIDATION_FAILED = "observation.validation_failed"
    ARCHIVED = "observation.archived"
    DETECTION_CREATED = "detection.created"
    # Curation (astrid.domain.votes, comments, review, objects).
    OBJECT_CREATED = "object.created"
    OBJECT_MERGED = "object.merged"
    VOTE_CAST = "vote.cast"
    VOTE_UNDONE = "vote.undone"
    CURATION_CHANGED = "detection.curation_changed"
    CONSENSUS_REACHED = "detection.consensus_reached"
    COMMENT_ADDED = "comment.added"
    USER_MENTIONED = "user.mentioned"
    EXPERT_REVIEWED = "review.created"
    DISCOVERY_CHANGED = "discovery.status_changed"
    TAXONOMY_PUBLISHED = "taxonomy.published"
    CURATION_CONFIG_CHANGED = "curation.config_changed"
    # Model operations (astrid.domain.model_drift).
    MODEL_DRIFT = "model.drift"


@dataclass(frozen=True)
class Event:
    """A dispatched event as subscribers see it."""

    id: int
    type: str
    aggregate_type: str
    aggregate_id: int | None
    payload: dict[str, Any]
    created_at: datetime


def record_event(
    session: Session,
    event_type: EventType | str,
    aggregate_type: str,
    aggregate_id: int | None,
    payload: dict[str, Any] | None = None,
) -> DomainEvent:
    """Add an event to ``session`` (it commits or rolls back with the change)."""
    row = DomainEvent(
        event_type=str(event_type),
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        payload=payload or {},
    )
    session.add(row)
    return row


Subscriber = Callable[[Event], None]


class EventDispatcher:
    """Delivers outbox rows to in-process subscribers, at least once and in id order."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)

    def subscribe(self, event_type: EventType | str, handler: Subscriber) -> None:
        """Call ``handler`` for each event of ``event_type`` (``"*"`` for every event)."""
        self._subscribers[str(event_type)].append(handler)

    def dispatch_pending(self, limit: int = 500) -> int:
        """Deliver up to ``limit`` undispatched events; return how many were delivered.

        A subscriber that raises is logged and does not stop the others; the event is still
        marked dispatched (subscribers must be idempotent and handle their own retries).
        """
        with self.db.session() as session:
            rows = session.scalars(
                select(DomainEvent)
                .where(DomainEvent.dispatched_at.is_(None))
                .order_by(DomainEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                event = Event(
                    id=row.id,
                    type=row.event_type,
                    aggregate_type=row.aggregate_type,
                    aggregate_id=row.aggregate_id,
                    payload=dict(row.payload),
                    created_at=row.created_at,
                )
                for handler in [*self._subscribers[row.event_type], *self._subscribers["*"]]:
                    try:
                        handler(event)
                    except Exception:
                        log.exception("subscriber %r failed on event %s", handler, row.id)
                row.dispatched_at = utcnow()
            return len(rows)
