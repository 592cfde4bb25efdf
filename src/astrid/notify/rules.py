"""Which rule wants which event: events reduced to facts, rules matched against facts.

Pure functions over plain values (no database), so matching is cheap to test exhaustively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "EVENT_KINDS",
    "KINDS",
    "EventFacts",
    "RuleSpec",
    "facts_from_event",
    "quiet_until",
    "rule_matches",
]

# Kinds of event a rule can ask for.
KINDS = ("detection", "new_object", "classification", "discovery", "mention")

# Outbox event type -> rule kind (curation events included; unknown types notify nobody).
EVENT_KINDS: dict[str, str] = {
    "detection.created": "detection",
    "object.created": "new_object",
    "detection.consensus": "classification",
    "detection.classified": "classification",
    "discovery.status_changed": "discovery",
    "discovery.created": "discovery",
    "comment.created": "mention",
    "comment.mention": "mention",
}


@dataclass(frozen=True)
class EventFacts:
    """What rules look at in one event (missing values are None)."""

    kind: str
    event_type: str
    detection_id: int | None = None
    object_id: int | None = None
    score: float | None = None
    snr: float | None = None
    mag: float | None = None
    ra: float | None = None
    dec: float | None = None
    classification: str | None = None
    status: str | None = None
    mentioned_user_ids: tuple[int, ...] = ()
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSpec:
    """The matching part of a rule (the ORM row converts to this)."""

    events: tuple[str, ...] = ("detection",)
    user_id: int | None = None
    min_score: float | None = None
    min_snr: float | None = None
    classification: str | None = None
    region: dict[str, float] | None = None


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def facts_from_event(
    event_type: str, aggregate_type: str, aggregate_id: int | None, payload: dict[str, Any]
) -> EventFacts | None:
    """The facts of an outbox event, or None when no rule kind listens to its type."""
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        return None
    det_id = aggregate_id if aggregate_type == "detection" else _int(payload.get("detection_id"))
    obj_id = aggregate_id if aggregate_type == "object" else _int(payload.get("object_id"))
    mentions = payload.get("mentions") or payload.get("mentioned_user_ids") or []
    return EventFacts(
        kind=kind,
        event_type=event_type,
        detection_id=det_id,
        object_id=obj_id,
        score=_num(payload.get("confidence", payload.get("score"))),
        snr=_num(payload.get("snr")),
        mag=_num(payload.get("mag")),
        ra=_num(payload.get("ra")),
        dec=_num(payload.get("dec")),
        classification=payload.get("classification") or None,
        status=payload.get("status") or payload.get("to") or None,
        mentioned_user_ids=tuple(i for i in (_int(m) for m in mentions) if i is not None),
        text=payload.get("text") or payload.get("body") or None,
    )


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    # Haversine: accurate at the arcsecond radii rules use.
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def rule_matches(rule: RuleSpec, facts: EventFacts) -> bool:
    """True when ``rule`` wants to hear about ``facts``.

    A threshold (score, S/N, classification, region) that the event cannot answer (the value
    is missing) does not match: a rule for "score ≥ 0.9" never fires on an unscored event.
    @mentions go only to the mentioned user's rules.
    """
    if facts.kind not in (rule.events or ("detection",)):
        return False
    if facts.kind == "mention" and (
        rule.user_id is None or rule.user_id not in facts.mentioned_user_ids
    ):
        return False
    if rule.min_score is not None and (facts.score is None or facts.score < rule.min_score):
        return False
    if rule.min_snr is not None and (facts.snr is None or facts.snr < rule.min_snr):
        return False
    if rule.classification:
        want = rule.classification.strip("/").lower()
        got = (facts.classification or "").strip("/").lower()
        if not (got == want or got.startswith(want + "/")):
            return False
    if rule.region:
        if facts.ra is None or facts.dec is None:
            return False
        sep = _separation_deg(rule.region["ra"], rule.region["dec"], facts.ra, facts.dec)
        if sep > rule.region["radius"]:
            return False
    return True


def quiet_until(start_hour: int | None, end_hour: int | None, now: datetime) -> datetime | None:
    """End of the quiet period ``now`` (UTC) falls in, or None when it is not quiet.

    Quiet hours ``[start, end)`` in UTC; ``start > end`` wraps midnight (22 → 6).
    """
    if start_hour is None or end_hour is None or start_hour == end_hour:
        return None
    h = now.hour
    quiet = (
        start_hour <= h < end_hour if start_hour < end_hour else (h >= start_hour or h < end_hour)
    )
    if not quiet:
        return None
    end = now.replace(hour=end_hour, minute=0, second=0, microsecond=0)
    if end <= now:
        end += timedelta(days=1)
    return end
