"""Notification rules of the caller, the delivery log (admins) and the unsubscribe link.

Any signed-in user may subscribe (viewers too: being told is reading); admins see and manage
everyone's rules. ``GET``/``POST /notify/unsubscribe?token=`` is public: the token in every
message is an HMAC of the rule id, so the link works from a mail client with no login
(``POST`` is RFC 8058 one-click unsubscribe).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from astrid.api.auth import PUBLIC, Principal
from astrid.api.deps import Admin, Rt, Viewer, ViewerWrite
from astrid.api.pagination import PageParams, apply_page, page_of, page_params
from astrid.api.problems import Problem
from astrid.catalog.releases import iso_utc
from astrid.notify.manage import RuleError, create_rule, rule_dict, unsubscribe
from astrid.store.tables import NotificationAttempt, NotificationDelivery, NotificationRule

__all__ = ["router"]

router = APIRouter(prefix="/notify", tags=["notifications"])

Public = Annotated[Principal, Depends(PUBLIC)]
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


EventKind = Literal["detection", "new_object", "classification", "discovery", "mention"]


def _default_events() -> list[EventKind]:
    return ["detection"]


class Region(BaseModel):
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    radius: float = Field(gt=0, le=180, description="Degrees.")


class RuleIn(BaseModel):
    """A new rule: where to send (``to``) and what to match; everything else optional."""

    to: str = Field(min_length=3, max_length=1024, description="Email address or https URL.")
    channel: Literal["email", "webhook"] | None = Field(
        default=None, description="Default: webhook for an http(s) URL, else email."
    )
    events: list[EventKind] = Field(default_factory=_default_events, max_length=5)
    min_score: float | None = Field(default=None, ge=0, le=1)
    min_snr: float | None = Field(default=None, ge=-1e6, le=1e6)
    classification: str | None = Field(default=None, min_length=1, max_length=256)
    region: Region | None = None
    digest: bool = False
    quiet_hours: tuple[int, int] | None = Field(default=None, description="[start, end) UTC.")
    max_per_hour: int = Field(default=20, ge=1, le=10_000)
    name: str | None = Field(default=None, max_length=128)


def _problem(exc: RuleError) -> Problem:
    return Problem(
        422,
        str(exc),
        kind="validation",
        errors=[{"field": f"body.{exc.field}", "message": str(exc)}],
    )


@router.get("/rules", summary="Notification rules (yours; an admin's: everyone's)")
def list_rules(rt: Rt, who: Viewer) -> dict[str, Any]:
    with rt.db.session() as session:
        stmt = select(NotificationRule).order_by(NotificationRule.id)
        if who.role != "admin":
            stmt = stmt.where(NotificationRule.user_id == who.user_id)
        return {"items": [rule_dict(r) for r in session.scalars(stmt)]}


@router.post("/rules", status_code=201, summary="Subscribe: add a notification rule")
def add_rule(rt: Rt, who: ViewerWrite, body: RuleIn) -> dict[str, Any]:
    try:
        with rt.db.session() as session:
            rule = create_rule(
                session,
                body.to,
                user_id=who.user_id,
                channel=body.channel,
                events=list(body.events),
                min_score=body.min_score,
                min_snr=body.min_snr,
                classification=body.classification,
                region=body.region.model_dump() if body.region else None,
                digest=body.digest,
                quiet_hours=body.quiet_hours,
                max_per_hour=body.max_per_hour,
                name=body.name,
            )
            return rule_dict(rule)
    except RuleError as exc:
        raise _problem(exc) from exc


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove one of your rules")
def delete_rule(rt: Rt, who: ViewerWrite, rule_id: RuleId) -> Response:
    with rt.db.session() as session:
        rule = session.get(NotificationRule, rule_id)
        if rule is None or (who.role != "admin" and rule.user_id != who.user_id):
            raise Problem(404, f"no notification rule with id {rule_id}")
        rule.is_active = False  # kept (deliveries reference it), never sent again
    return Response(status_code=204)


@router.get("/deliveries", summary="Delivery log: notifications and their attempts (admin)")
def list_deliveries(
    rt: Rt,
    _: Admin,
    page: Annotated[PageParams, Depends(page_params)],
    status: Annotated[
        Literal["pending", "sent", "failed", "throttled", "digest", "digested", "cancelled"] | None,
        Query(),
    ] = None,
) -> dict[str, Any]:
    with rt.db.session() as session:
        stmt = select(NotificationDelivery)
        if status is not None:
            stmt = stmt.where(NotificationDelivery.status == status)
        rows = list(session.scalars(apply_page(stmt, NotificationDelivery.id, page)))
        attempts: dict[int, list[dict[str, Any]]] = {}
        ids = [r.id for r in rows]
        for a in session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.delivery_id.in_(ids))
            .order_by(NotificationAttempt.id)
        ):
            attempts.setdefault(a.delivery_id, []).append(
                {
                    "at": iso_utc(a.attempted_at),
                    "ok": a.ok,
                    "duration_ms": round(a.duration_ms, 1),
                    "error": a.error,
                    "response": a.response,
                }
            )

        def convert(r: NotificationDelivery) -> dict[str, Any]:
            return {
                "id": r.id,
                "rule_id": r.rule_id,
                "event_id": r.event_id,
                "kind": r.kind,
                "status": r.status,
                "subject": r.subject,
                "attempts": attempts.get(r.id, []),
                "next_attempt_at": iso_utc(r.next_attempt_at),
                "sent_at": iso_utc(r.sent_at),
                "last_error": r.last_error,
            }

        return page_of(rows, page, convert)


Token = Annotated[str, Query(min_length=3, max_length=64, description="From the message.")]


def _unsubscribe(rt: Rt, token: str) -> dict[str, Any]:
    with rt.db.session() as session:
        rule = unsubscribe(session, rt.settings.secret_key.get_secret_value(), token)
        if rule is None:
            raise Problem(
                404,
                "this unsubscribe link is not valid (or the rule is gone)",
                errors=[{"field": "query.token", "message": "invalid token"}],
            )
        return {"unsubscribed": True, "rule_id": rule.id, "to": rule.target}


_INVALID_LINK: dict[int | str, dict[str, Any]] = {
    404: {"description": "The link is not valid (or its rule is gone)"}
}


@router.get(
    "/unsubscribe",
    summary="Unsubscribe with the signed link of a message",
    responses=_INVALID_LINK,
)
def unsubscribe_get(rt: Rt, _: Public, token: Token) -> dict[str, Any]:
    return _unsubscribe(rt, token)


@router.post("/unsubscribe", summary="One-click unsubscribe (RFC 8058)", responses=_INVALID_LINK)
def unsubscribe_post(rt: Rt, _: Public, token: Token) -> dict[str, Any]:
    return _unsubscribe(rt, token)
