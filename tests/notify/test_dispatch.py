"""The notification dispatcher end to end: a detection and its outbox event are stored, the
dispatcher plans and sends through a real SMTP server (aiosmtpd) and a real loopback webhook
receiver; failures are retried and logged; throttling and digests; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from astrid.domain.events import EventType, record_event
from astrid.notify.dispatcher import deliver_due, dispatch_once, queue_digests
from astrid.runtime import Runtime
from astrid.science.display import triplet_png
from astrid.store.sky_index import healpix_index
from astrid.store.tables import (
    Detection,
    NotificationAttempt,
    NotificationDelivery,
    NotificationRule,
    utcnow,
)
from tests.notify.servers import SmtpServer, WebhookReceiver, free_port


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def store_detection(runtime: Runtime, score: float, snr: float = 12.0) -> int:
    """A detection with a stored triplet PNG and its outbox event, in one transaction."""
    rng = np.random.default_rng(1)
    png = triplet_png([rng.normal(size=(21, 21)) for _ in range(3)])
    key = runtime.blobs.put(png)
    with runtime.db.session() as session:
        det = Detection(
            ra=150.1,
            dec=2.2,
            healpix=int(healpix_index(150.1, 2.2)),
            mjd=60000.5,
            snr=snr,
            mag=19.5,
            confidence=score,
            cutout_keys={"png": key},
        )
        session.add(det)
        session.flush()
        record_event(
            session,
            EventType.DETECTION_CREATED,
            "detection",
            det.id,
            {"ra": det.ra, "dec": det.dec, "confidence": score, "snr": snr},
        )
        return det.id


def add_rule(runtime: Runtime, **kw: object) -> int:
    with runtime.db.session() as session:
        rule = NotificationRule(**{"channel": "email", "target": "a@example.org", **kw})
        session.add(rule)
        session.flush()
        return rule.id


@pytest.fixture
def smtp() -> SmtpServer:
    with SmtpServer() as server:
        yield server  # type: ignore[misc]


def _runtime(make_runtime: Callable[..., Runtime], url: str, port: int, **kw: object) -> Runtime:
    return make_runtime(
        url, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="off", notify_retry_base_s=60, **kw
    )


def test_email_with_inline_triplet_and_unsubscribe_link(
    migrated_url: str, make_runtime: Callable[..., Runtime], smtp: SmtpServer
) -> None:
    runtime = _runtime(make_runtime, migrated_url, smtp.port)
    rule_id = add_rule(runtime, min_score=0.5)
    low = store_detection(runtime, 0.2)
    det_id = store_detection(runtime, 0.93, snr=15.0)
    report = dispatch_once(runtime)
    assert report.sent == 1 and report.failed == 0 and report.events == 2
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    assert msg["To"] == "a@example.org"
    assert f"Detection {det_id}" in msg["Subject"] and str(low) not in msg["Subject"]
    assert "/api/v1/notify/unsubscribe?token=" in msg["List-Unsubscribe"]
    types = [part.get_content_type() for part in msg.walk()]
    assert {"text/plain", "text/html", "image/png"} <= set(types)
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "S/N: 15" in plain.get_content()
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"cid:{image['Content-ID'][1:-1]}" in html.get_content()
    # Idempotent: nothing more to plan or send.
    again = dispatch_once(runtime)
    assert (again.events, again.sent) == (0, 0)
    with runtime.db.session() as session:
        rows = session.scalars(select(NotificationDelivery)).all()
        assert [(r.rule_id, r.status, r.attempts) for r in rows] == [(rule_id, "sent", 1)]
        log = session.scalars(select(NotificationAttempt)).all()
        assert len(log) == 1 and log[0].ok and log[0].response.startswith("250")


def test_smtp_down_is_retried_and_logged_then_sent(
    migrated_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    port = free_port()  # nothing listens yet
    runtime = _runtime(make_runtime, migrated_url, port, smtp_timeout_s=2)
    add_rule(runtime)
    started = time.perf_counter()
    store_detection(runtime, 0.9)
    stored_s = time.perf_counter() - started
    report = dispatch_once(runtime)
    assert stored_s < 1.0  # storing never waits on mail: planning happens afterwards
    assert (report.sent, report.failed) == (0, 1)
    with runtime.db.session() as session:
        row = session.scalars(select(NotificationDelivery)).one()
        assert row.status == "pending" and row.attempts == 1
        assert "SMTP 127.0.0.1" in (row.last_error or "")
        assert aware(row.next_attempt_at) > utcnow() + timedelta(seconds=50)  # backoff
        attempt = session.scalars(select(NotificationAttempt)).one()
        assert not attempt.ok and attempt.error
    assert deliver_due(runtime) == (0, 0)  # not due yet
    with SmtpServer(port) as smtp:
        assert deliver_due(runtime, now=utcnow() + timedelta(minutes=2)) == (1, 0)
        assert len(smtp.messages) == 1
    with runtime.db.session() as session:
        assert session.scalars(select(NotificationDelivery.status)).one() == "sent"
        assert [a.ok for a in session.scalars(select(NotificationAttempt))] == [False, True]


def test_refusing_server_gives_up_after_max_attempts(
    migrated_url: str, make_runtime: Callable[..., Runtime], smtp: SmtpServer
) -> None:
    smtp.refuse = True
    runtime = _runtime(make_runtime, migrated_url, smtp.port, notify_max_attempts=2)
    add_rule(runtime)
    store_detection(runtime, 0.9)
    dispatch_once(runtime)
    assert deliver_due(runtime, now=utcnow() + timedelta(hours=1)) == (0, 1)
    with runtime.db.session() as session:
        row = session.scalars(select(NotificationDelivery)).one()
        assert row.status == "failed" and row.attempts == 2
        assert "refused" in (row.last_error or "")
    assert smtp.messages == []


def test_webhook_slack_payload_and_retry_on_5xx(
    migrated_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(migrated_url, notify_retry_base_s=0)
    with WebhookReceiver() as hook:
        add_rule(runtime, channel="webhook", target=hook.url, min_snr=10)
        store_detection(runtime, 0.7, snr=11.0)
        hook.status = 503
        assert dispatch_once(runtime).failed == 1
        hook.status = 200
        assert deliver_due(runtime) == (1, 0)
        assert len(hook.bodies) == 2
        body = hook.bodies[-1]
        assert body["text"].startswith("[AstrID] Detection")
        assert body["blocks"][0]["type"] == "section"
        assert body["astrid"]["snr"] == pytest.approx(11.0)
        assert "token=" in body["astrid"]["unsubscribe_url"]


def test_throttle_parks_the_excess_in_one_digest(
    migrated_url: str, make_runtime: Callable[..., Runtime], smtp: SmtpServer
) -> None:
    runtime = _runtime(make_runtime, migrated_url, smtp.port)
    add_rule(runtime, max_per_hour=2)
    for _ in range(5):
        store_detection(runtime, 0.9)
    report = dispatch_once(runtime)
    assert report.sent == 2
    with runtime.db.session() as session:
        statuses = sorted(session.scalars(select(NotificationDelivery.status)))
        assert statuses == ["sent", "sent", "throttled", "throttled", "throttled"]
    assert queue_digests(runtime) == 0  # not a day old yet
    assert dispatch_once(runtime, force_digests=True).sent == 1
    assert len(smtp.messages) == 3
    digest = smtp.messages[-1]
    assert "3 notifications" in digest["Subject"]
    body = digest.get_body(("plain",))
    assert body is not None and body.get_content().count("* [AstrID] Detection") == 3


def test_digest_rule_and_quiet_hours(
    migrated_url: str, make_runtime: Callable[..., Runtime], smtp: SmtpServer
) -> None:
    runtime = _runtime(make_runtime, migrated_url, smtp.port)
    add_rule(runtime, digest=True)
    hour = utcnow().hour
    add_rule(runtime, target="b@example.org", quiet_start_hour=hour, quiet_end_hour=(hour + 2) % 24)
    store_detection(runtime, 0.9)
    assert dispatch_once(runtime).sent == 0  # one waits for the digest, one for the morning
    with runtime.db.session() as session:
        rows = {r.status: r for r in session.scalars(select(NotificationDelivery))}
        assert set(rows) == {"digest", "pending"}
        assert aware(rows["pending"].next_attempt_at) > utcnow() and rows["pending"].attempts == 0
    assert queue_digests(runtime, utcnow() + timedelta(days=1, minutes=1)) == 1
    assert deliver_due(runtime, now=utcnow() + timedelta(days=1, hours=2)) == (2, 0)
    assert sorted(m["To"] for m in smtp.messages) == ["a@example.org", "b@example.org"]
