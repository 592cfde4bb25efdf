"""Tables of notifications: rules (what a user wants to hear about, and how), deliveries
(the notification outbox: one row per rule and event) and the delivery log (every attempt).

Rules are data, not code: a rule matches events by minimum score / S/N, classification, new
objects, a sky region (cone), discovery status changes and @mentions of its user. A delivery
row is planned in its own transaction after the event is dispatched from the domain outbox
(never inside the request or pipeline transaction) and sent later, with retries, by
:mod:`astrid.notify.dispatcher`. Created by migration ``0007``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables import Base, TimestampMixin, utcnow

__all__ = ["NotificationAttempt", "NotificationDelivery", "NotificationRule"]


class NotificationRule(TimestampMixin, Base):
    """What one user (or one address) wants to be told about, on which channel, and when."""

    __tablename__ = "notification_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16), doc="email | webhook")
    target: Mapped[str] = mapped_column(String(1024), doc="Email address or webhook URL.")
    events: Mapped[list[Any]] = mapped_column(
        default=list, doc="Kinds: detection, new_object, classification, discovery, mention."
    )
    min_score: Mapped[float | None] = mapped_column(Float, doc="Calibrated P(real) >= this.")
    min_snr: Mapped[float | None] = mapped_column(Float)
    classification: Mapped[str | None] = mapped_column(
        String(256), doc="Taxonomy path prefix, e.g. 'transient/supernova'."
    )
    region: Mapped[dict[str, Any] | None] = mapped_column(
        nullable=True, doc="Cone {'ra', 'dec', 'radius'} in degrees; None = whole sky."
    )
    digest: Mapped[bool] = mapped_column(default=False, doc="Daily digest instead of at once.")
    quiet_start_hour: Mapped[int | None] = mapped_column(Integer, doc="UTC hour 0-23.")
    quiet_end_hour: Mapped[int | None] = mapped_column(Integer, doc="UTC hour 0-23 (exclusive).")
    max_per_hour: Mapped[int] = mapped_column(Integer, default=20, doc="Throttle.")
    is_active: Mapped[bool] = mapped_column(default=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationDelivery(TimestampMixin, Base):
    """One notification to send: a rule that matched an event (the notification outbox).

    ``status``: ``pending`` (to send at ``next_attempt_at``), ``sent``, ``failed`` (gave up
    after the retries), ``throttled`` (over the rule's hourly limit; folded into the next
    digest), ``digest`` (waiting for the rule's daily digest), ``digested`` (sent in one).
    """

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("rule_id", "event_id"),
        Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("notification_rules.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(Integer, doc="domain_events.id (None: digest).")
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    subject: Mapped[str] = mapped_column(String(512))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="What the message shows.")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationAttempt(Base):
    """The delivery log: every attempt to send a delivery, with its outcome."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notification_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ok: Mapped[bool] = mapped_column()
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(String(512), doc="SMTP reply or HTTP status.")
