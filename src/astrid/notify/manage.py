"""Creating, listing and removing notification rules (shared by the API and the CLI).

Every check names the field it refused, so the API answers a problem naming it and the CLI
prints one clear line; nothing is stored unless every field is valid.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from astrid.errors import AstridError
from astrid.notify.render import verify_unsubscribe
from astrid.notify.rules import KINDS
from astrid.store.tables import NotificationRule, utcnow

__all__ = ["RuleError", "create_rule", "rule_dict", "unsubscribe"]

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


class RuleError(AstridError):
    """A notification rule field is invalid (``field`` names it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _channel(target: str, channel: str | None) -> str:
    parsed = urlparse(target)
    is_url = parsed.scheme in ("http", "https") and bool(parsed.netloc)
    if channel is None:
        channel = "webhook" if is_url else "email"
    if channel == "webhook" and not is_url:
        raise RuleError("to", f"{target!r} is not an http(s) URL")
    if channel == "email" and not _EMAIL.match(target):
        raise RuleError("to", f"{target!r} is neither an email address nor an http(s) URL")
    if channel not in ("email", "webhook"):
        raise RuleError("channel", f"{channel!r} is not email or webhook")
    return channel


def create_rule(
    session: Session,
    target: str,
    *,
    user_id: int | None = None,
    channel: str | None = None,
    events: list[str] | None = None,
    min_score: float | None = None,
    min_snr: float | None = None,
    classification: str | None = None,
    region: dict[str, float] | None = None,
    digest: bool = False,
    quiet_hours: tuple[int, int] | None = None,
    max_per_hour: int = 20,
    name: str | None = None,
) -> NotificationRule:
    """Validate and add a rule (flushed, so it has an id)."""
    target = target.strip()
    if not target or len(target) > 1024:
        raise RuleError("to", "give an email address or a webhook URL (at most 1024 characters)")
    chosen = _channel(target, channel)
    kinds = list(dict.fromkeys(events or ["detection"]))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise RuleError("events", f"unknown kind(s) {unknown}; choose from {list(KINDS)}")
    if min_score is not None and not (math.isfinite(min_score) and 0 <= min_score <= 1):
        raise RuleError("min_score", f"{min_score} is not in [0, 1]")
    if min_snr is not None and not math.isfinite(min_snr):
        raise RuleError("min_snr", "must be a finite number")
    if classification is not None and not (0 < len(classification.strip("/")) <= 256):
        raise RuleError("classification", "give a taxonomy path such as transient/supernova")
    if region is not None:
        try:
            ra, dec, radius = (float(region[k]) for k in ("ra", "dec", "radius"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError("region", "needs numeric ra, dec and radius (degrees)") from exc
        if not (0 <= ra < 360 and -90 <= dec <= 90 and 0 < radius <= 180):
            raise RuleError("region", "ra in [0, 360), dec in [-90, 90], radius in (0, 180]")
        region = {"ra": ra, "dec": dec, "radius": radius}
    start = end = None
    if quiet_hours is not None:
        start, end = quiet_hours
        if not (0 <= start <= 23 and 0 <= end <= 23):
            raise RuleError("quiet_hours", "hours are 0-23 (UTC)")
    if not 1 <= max_per_hour <= 10_000:
        raise RuleError("max_per_hour", "must be between 1 and 10000")
    rule = NotificationRule(
        user_id=user_id,
        name=name,
        channel=chosen,
        target=target,
        events=kinds,
        min_score=min_score,
        min_snr=min_snr,
        classification=classification.strip("/") if classification else None,
        region=region,
        digest=digest,
        quiet_start_hour=start,
        quiet_end_hour=end,
        max_per_hour=max_per_hour,
    )
    session.add(rule)
    session.flush()
    return rule


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def rule_dict(rule: NotificationRule) -> dict[str, Any]:
    """A rule as the API and CLI show it."""
    return {
        "id": rule.id,
        "user_id": rule.user_id,
        "name": rule.name,
        "channel": rule.channel,
        "to": rule.target,
        "events": list(rule.events or []),
        "min_score": rule.min_score,
        "min_snr": rule.min_snr,
        "classification": rule.classification,
        "region": rule.region,
        "digest": rule.digest,
        "quiet_hours": (
            [rule.quiet_start_hour, rule.quiet_end_hour]
            if rule.quiet_start_hour is not None
            else None
        ),
        "max_per_hour": rule.max_per_hour,
        "active": rule.is_active,
        "created_at": _iso(rule.created_at),
    }


def unsubscribe(session: Session, secret: str, token: str) -> NotificationRule | None:
    """Deactivate the rule a signed token names; None when the token is not valid."""
    rule_id = verify_unsubscribe(secret, token)
    if rule_id is None:
        return None
    rule = session.get(NotificationRule, rule_id)
    if rule is None:
        return None
    if rule.is_active:
        rule.is_active = False
        rule.unsubscribed_at = utcnow()
    return rule
