"""The notification dispatcher: outbox events → deliveries → email / webhook, with retries.

Two steps, each in its own short transactions and never in the one that wrote the event:

1. :func:`plan_event` (subscribed to the domain :class:`~astrid.domain.events.EventDispatcher`)
   matches an event against the active rules and adds one delivery row per match; the pair
   (rule, event) is unique, so an event delivered twice plans once. A rule over its hourly
   throttle gets its match parked as ``throttled`` (folded into its next digest); a digest
   rule gets ``digest``.
2. :func:`deliver_due` sends due ``pending`` deliveries (quiet hours postpone them), logs
   every attempt in ``notification_attempts`` and retries failures with exponential backoff
   up to ``notify_max_attempts``; :func:`queue_digests` turns a day of parked matches into one
   digest delivery per rule.

:func:`dispatch_once` runs the whole cycle; ``astrid notify dispatch [--follow]`` and
:class:`NotifyWorker` (a background thread for in-process set-ups) call it in a loop, and a
Dramatiq actor can call it the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from astrid.domain.events import Event, EventDispatcher
from astrid.notify.channels import DeliveryError, SmtpConfig, post_webhook, send_email
from astrid.notify.render import render_email, render_webhook, sign_unsubscribe, subject_for
from astrid.notify.rules import EventFacts, RuleSpec, facts_from_event, quiet_until, rule_matches
from astrid.runtime import Runtime
from astrid.store.tables import (
    Detection,
    NotificationAttempt,
    NotificationDelivery,
    NotificationRule,
    utcnow,
)

__all__ = [
    "DispatchReport",
    "NotifyWorker",
    "deliver_due",
    "dispatch_once",
    "plan_event",
    "queue_digests",
    "register",
    "rule_spec",
]

log = logging.getLogger(__name__)
DIGEST_PERIOD = timedelta(days=1)


def rule_spec(rule: NotificationRule) -> RuleSpec:
    """The matching part of a rule row."""
    return RuleSpec(
        events=tuple(rule.events or ("detection",)),
        user_id=rule.user_id,
        min_score=rule.min_score,
        min_snr=rule.min_snr,
        classification=rule.classification,
        region=dict(rule.region) if rule.region else None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _context(runtime: Runtime, session: Session, facts: EventFacts) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        k: v
        for k, v in {
            "kind": facts.kind,
            "event_type": facts.event_type,
            "detection_id": facts.detection_id,
            "object_id": facts.object_id,
            "score": facts.score,
            "snr": facts.snr,
            "mag": facts.mag,
            "ra": facts.ra,
            "dec": facts.dec,
            "classification": facts.classification,
            "status": facts.status,
            "text": facts.text,
        }.items()
        if v is not None
    }
    base = runtime.settings.public_url.rstrip("/")
    if facts.detection_id is not None:
        det = session.get(Detection, facts.detection_id)
        if det is not None:
            for key, value in (("score", det.confidence), ("snr", det.snr), ("mag", det.mag)):
                if value is not None:
                    ctx.setdefault(key, value)
            ctx.setdefault("ra", det.ra)
            ctx.setdefault("dec", det.dec)
            png = (det.cutout_keys or {}).get("png")
            if png:
                ctx["png_key"] = png
                ctx["image_url"] = f"{base}/api/v1/detections/{det.id}/cutouts/difference"
        ctx["url"] = f"{base}/api/v1/detections/{facts.detection_id}"
    elif facts.object_id is not None:
        ctx["url"] = f"{base}/api/v1/objects/{facts.object_id}"
    return ctx


def _sent_last_hour(session: Session, rule_id: int, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(NotificationDelivery.id)).where(
                NotificationDelivery.rule_id == rule_id,
                NotificationDelivery.status.in_(("pending", "sent")),
                NotificationDelivery.event_id.is_not(None),
                NotificationDelivery.created_at >= now - timedelta(hours=1),
            )
        )
        or 0
    )


def plan_event(runtime: Runtime, event: Event) -> int:
    """Add a delivery for every active rule that matches ``event``; returns how many."""
    facts = facts_from_event(
        event.type, event.aggregate_type, event.aggregate_id, dict(event.payload)
    )
    if facts is None:
        return 0
    planned = 0
    now = utcnow()
    with runtime.db.session() as session:
        rules = session.scalars(
            select(NotificationRule).where(NotificationRule.is_active.is_(True))
        ).all()
        matching = [r for r in rules if rule_matches(rule_spec(r), facts)]
        if not matching:
            return 0
        context = _context(runtime, session, facts)
        for rule in matching:
            exists = session.scalar(
                select(NotificationDelivery.id).where(
                    NotificationDelivery.rule_id == rule.id,
                    NotificationDelivery.event_id == event.id,
                )
            )
            if exists is not None:
                continue
            if rule.digest:
                status = "digest"
            elif _sent_last_hour(session, rule.id, now) >= rule.max_per_hour:
                status = "throttled"
            else:
                status = "pending"
            session.add(
                NotificationDelivery(
                    rule_id=rule.id,
                    event_id=event.id,
                    kind=facts.kind,
                    status=status,
                    subject=subject_for(context)[:512],
                    context=context,
                    next_attempt_at=now,
                )
            )
            session.flush()
            planned += 1
    return planned


def register(dispatcher: EventDispatcher, runtime: Runtime) -> None:
    """Subscribe the planner to every event of ``dispatcher``."""

    def _handler(event: Event) -> None:
        try:
            plan_event(runtime, event)
        except IntegrityError:  # a concurrent dispatcher planned it first: nothing to do
            log.info("event %s already planned", event.id)

    dispatcher.subscribe("*", _handler)


def queue_digests(runtime: Runtime, now: datetime | None = None, *, force: bool = False) -> int:
    """One digest delivery per rule whose parked matches are a day old (or all, ``force``)."""
    now = now or utcnow()
    made = 0
    with runtime.db.session() as session:
        oldest = session.execute(
            select(NotificationDelivery.rule_id, func.min(NotificationDelivery.created_at))
            .where(NotificationDelivery.status.in_(("digest", "throttled")))
            .group_by(NotificationDelivery.rule_id)
        ).all()
        for rule_id, first in oldest:
            if not force and _aware(first) > now - DIGEST_PERIOD:
                continue
            items = session.scalars(
                select(NotificationDelivery)
                .where(
                    NotificationDelivery.rule_id == rule_id,
                    NotificationDelivery.status.in_(("digest", "throttled")),
                )
                .order_by(NotificationDelivery.id)
            ).all()
            context = {"kind": "digest", "items": [dict(i.context) for i in items]}
            session.add(
                NotificationDelivery(
                    rule_id=rule_id,
                    event_id=None,
                    kind="digest",
                    status="pending",
                    subject=subject_for(context)[:512],
                    context=context,
                    next_attempt_at=now,
                )
            )
            session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id.in_([i.id for i in items]))
                .values(status="digested")
            )
            made += 1
    return made


def _send(runtime: Runtime, rule: NotificationRule, context: dict[str, Any]) -> str:
    s = runtime.settings
    unsubscribe = (
        f"{s.public_url.rstrip('/')}/api/v1/notify/unsubscribe"
        f"?token={sign_unsubscribe(s.secret_key.get_secret_value(), rule.id)}"
    )
    if rule.channel == "webhook":
        return post_webhook(
            rule.target, render_webhook(context, unsubscribe), s.notify_webhook_timeout_s
        )
    png = None
    key = context.get("png_key")
    if key is None and context.get("kind") == "digest":
        key = next((i["png_key"] for i in context.get("items", []) if i.get("png_key")), None)
    if key:
        try:
            png = runtime.blobs.get(key)
        except Exception as exc:  # a missing image must not stop the message
            log.warning("notification image %s unreadable: %s", key, exc)
    config = SmtpConfig.from_settings(s)
    message = render_email(
        context, sender=config.sender, to=rule.target, unsubscribe_url=unsubscribe, png=png
    )
    return send_email(config, message)


def deliver_due(runtime: Runtime, now: datetime | None = None, limit: int = 100) -> tuple[int, int]:
    """Send up to ``limit`` due deliveries; returns (sent, failed attempts).

    Each delivery is claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so several
    dispatchers never send the same one twice.
    """
    s = runtime.settings
    sent = failed = 0
    seen: list[int] = []  # one attempt per delivery per call, even with a zero backoff
    for _ in range(limit):
        current = now or utcnow()
        with runtime.db.session() as session:
            row = session.scalars(
                select(NotificationDelivery)
                .where(
                    NotificationDelivery.status == "pending",
                    NotificationDelivery.next_attempt_at <= current,
                    NotificationDelivery.id.not_in(seen),
                )
                .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                break
            seen.append(row.id)
            rule = session.get(NotificationRule, row.rule_id)
            if rule is None or not rule.is_active:
                row.status = "cancelled"
                continue
            quiet = quiet_until(rule.quiet_start_hour, rule.quiet_end_hour, current)
            if quiet is not None:
                row.next_attempt_at = quiet
                continue
            started = time.perf_counter()
            try:
                answer = _send(runtime, rule, dict(row.context))
            except DeliveryError as exc:
                error: str | None = str(exc)
                answer = None
            else:
                error = None
            ms = (time.perf_counter() - started) * 1000
            row.attempts += 1
            session.add(
                NotificationAttempt(
                    delivery_id=row.id,
                    attempted_at=utcnow(),
                    ok=error is None,
                    duration_ms=ms,
                    error=error,
                    response=answer[:512] if answer else None,
                )
            )
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", utcnow(), None
                sent += 1
            else:
                failed += 1
                row.last_error = error
                log.warning("notification %s attempt %d failed: %s", row.id, row.attempts, error)
                if row.attempts >= s.notify_max_attempts:
                    row.status = "failed"
                else:
                    delay = s.notify_retry_base_s * 2 ** (row.attempts - 1)
                    row.next_attempt_at = current + timedelta(seconds=delay)
    return sent, failed


@dataclass(frozen=True)
class DispatchReport:
    """What one dispatcher cycle did."""

    events: int
    digests: int
    sent: int
    failed: int


def dispatch_once(
    runtime: Runtime, dispatcher: EventDispatcher | None = None, *, force_digests: bool = False
) -> DispatchReport:
    """Plan deliveries for new outbox events, queue due digests, send what is due."""
    if dispatcher is None:
        dispatcher = EventDispatcher(runtime.db)
        register(dispatcher, runtime)
    events = 0
    while True:
        n = dispatcher.dispatch_pending()
        events += n
        if n == 0:
            break
    digests = queue_digests(runtime, force=force_digests)
    sent, failed = deliver_due(runtime)
    return DispatchReport(events, digests, sent, failed)


class NotifyWorker:
    """A background thread running :func:`dispatch_once` every ``poll_s`` seconds."""

    def __init__(self, runtime: Runtime, poll_s: float | None = None) -> None:
        self.runtime = runtime
        self.poll_s = poll_s or runtime.settings.notify_poll_s
        self.dispatcher = EventDispatcher(runtime.db)
        register(self.dispatcher, runtime)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="astrid-notify", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                dispatch_once(self.runtime, self.dispatcher)
            except Exception:  # keep the loop alive; the next cycle retries
                log.exception("notification dispatch cycle failed")
            self._stop.wait(self.poll_s)

    def start(self) -> NotifyWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
