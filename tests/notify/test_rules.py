"""Rule matching and quiet hours: pure functions, every threshold both ways."""

from __future__ import annotations

from datetime import UTC, datetime

from astrid.notify.render import sign_unsubscribe, verify_unsubscribe
from astrid.notify.rules import EventFacts, RuleSpec, facts_from_event, quiet_until, rule_matches


def _det(**kw: object) -> EventFacts:
    base: dict[str, object] = {"kind": "detection", "event_type": "detection.created"}
    base.update(kw)
    return EventFacts(**base)  # type: ignore[arg-type]


def test_thresholds_match_at_and_above_only() -> None:
    rule = RuleSpec(min_score=0.8, min_snr=5.0)
    assert rule_matches(rule, _det(score=0.8, snr=5.0))
    assert not rule_matches(rule, _det(score=0.79, snr=9.0))
    assert not rule_matches(rule, _det(score=0.9, snr=4.9))
    assert not rule_matches(rule, _det(score=None, snr=9.0))  # unscored never passes a min
    assert rule_matches(RuleSpec(), _det())


def test_classification_is_a_taxonomy_prefix() -> None:
    rule = RuleSpec(events=("classification",), classification="transient/supernova")
    cls = {"kind": "classification", "event_type": "detection.consensus"}
    assert rule_matches(rule, EventFacts(**cls, classification="transient/supernova/Ia"))  # type: ignore[arg-type]
    assert rule_matches(rule, EventFacts(**cls, classification="Transient/Supernova"))  # type: ignore[arg-type]
    assert not rule_matches(rule, EventFacts(**cls, classification="transient/supernovae"))  # type: ignore[arg-type]
    assert not rule_matches(rule, _det(classification="transient/supernova"))  # kind differs


def test_region_is_a_cone_across_ra_zero() -> None:
    rule = RuleSpec(region={"ra": 359.9, "dec": 0.0, "radius": 0.2})
    assert rule_matches(rule, _det(ra=0.05, dec=0.0))  # 0.15 deg away across RA = 0
    assert not rule_matches(rule, _det(ra=0.2, dec=0.0))  # 0.3 deg
    assert not rule_matches(rule, _det())


def test_mentions_go_to_the_mentioned_user_only() -> None:
    facts = facts_from_event("comment.created", "comment", 7, {"mentions": [3, "5"], "text": "hi"})
    assert facts is not None and facts.mentioned_user_ids == (3, 5)
    assert rule_matches(RuleSpec(events=("mention",), user_id=5), facts)
    assert not rule_matches(RuleSpec(events=("mention",), user_id=4), facts)
    assert not rule_matches(RuleSpec(events=("mention",)), facts)
    assert facts_from_event("observation.ingested", "observation", 1, {}) is None


def test_quiet_hours_wrap_midnight() -> None:
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert quiet_until(22, 6, at) == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert quiet_until(22, 6, at.replace(hour=5)) == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert quiet_until(22, 6, at.replace(hour=12)) is None
    assert quiet_until(9, 17, at.replace(hour=9)) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert quiet_until(None, 6, at) is None


def test_unsubscribe_tokens_are_signed() -> None:
    token = sign_unsubscribe("s3cret", 42)
    assert verify_unsubscribe("s3cret", token) == 42
    assert verify_unsubscribe("other", token) is None
    assert verify_unsubscribe("s3cret", "43." + token.split(".")[1]) is None
    assert verify_unsubscribe("s3cret", "garbage") is None
