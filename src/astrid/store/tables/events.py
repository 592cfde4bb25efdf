"""The transactional outbox of domain events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, UTCDateTime, utcnow

__all__ = ["DomainEvent"]


class DomainEvent(Base):
    """Transactional outbox: events written with the change they describe, dispatched later."""

    __tablename__ = "domain_events"
    __table_args__ = (Index("ix_domain_events_undispatched", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    aggregate_type: Mapped[str] = mapped_column(String(32))
    aggregate_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
