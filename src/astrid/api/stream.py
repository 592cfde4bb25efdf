"""Live events as Server-Sent Events, read from the domain-event outbox.

``GET /api/v1/stream/events?types=detections,status,failures`` sends every new outbox row as
``id: <event id>`` / ``event: <type>`` / ``data: <json>``. A client that reconnects with
``Last-Event-ID`` (header or ``last_event_id`` query) gets everything after that id, so nothing
is lost across reconnects; without it the stream starts at the newest event. A comment line
(``: heartbeat``) goes out every ``stream_heartbeat_s`` so proxies keep the connection open.

Each connection keeps its own cursor over the outbox ids (the dispatcher's ``dispatched_at``
is not used, so any number of clients can follow). On PostgreSQL, ids of concurrent
transactions can commit out of order: a gap in the ids is held back for up to
:data:`GAP_WAIT_S` seconds so a late commit is not skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from astrid.api.auth import Principal, require
from astrid.api.deps import Config, Rt
from astrid.api.problems import Problem
from astrid.runtime import Runtime
from astrid.store.tables import DomainEvent

__all__ = ["CATEGORIES", "matches", "router"]

router = APIRouter(prefix="/stream", tags=["stream"])

GAP_WAIT_S = 2.0
BATCH = 500

CATEGORIES = {
    "detections": "detection events (detection.*)",
    "status": "observation status changes",
    "failures": "processing and validation failures (*failed)",
    "ingestion": "new observations (observation.ingested)",
    "processing": "processing started/completed",
}


def matches(event_type: str, categories: frozenset[str] | None) -> bool:
    """Whether an event type belongs to one of ``categories`` (None = all)."""
    if categories is None:
        return True
    checks = {
        "detections": event_type.startswith("detection."),
        "status": event_type == "observation.status_changed",
        "failures": event_type.endswith("failed"),
        "ingestion": event_type == "observation.ingested",
        "processing": event_type.startswith("observation.processing_")
        and not event_type.endswith("failed"),
    }
    return any(checks[c] for c in categories)


def _parse_types(types: str | None) -> frozenset[str] | None:
    if not types:
        return None
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip())
    unknown = sorted(wanted - set(CATEGORIES))
    if unknown or not wanted:
        raise Problem(
            422,
            f"unknown event types: {', '.join(unknown) or '(empty)'}",
            kind="validation",
            errors=[{"field": "query.types", "message": f"choose from {', '.join(CATEGORIES)}"}],
        )
    return wanted


def _latest_id(rt: Runtime) -> int:
    with rt.db.session() as session:
        return int(session.scalar(select(func.max(DomainEvent.id))) or 0)


def _fetch(rt: Runtime, after: int) -> list[dict[str, Any]]:
    with rt.db.session() as session:
        rows = session.scalars(
            select(DomainEvent).where(DomainEvent.id > after).order_by(DomainEvent.id).limit(BATCH)
        ).all()
        return [
            {
                "id": r.id,
                "type": r.event_type,
                "aggregate_type": r.aggregate_type,
                "aggregate_id": r.aggregate_id,
                "payload": r.payload,
                "created_at": r.created_at.isoformat() if r.created_at else None,
            }
            for r in rows
        ]


def _frame(event: dict[str, Any]) -> str:
    data = json.dumps(event, separators=(",", ":"), default=str)
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


async def event_frames(
    rt: Runtime,
    after: int,
    categories: frozenset[str] | None,
    poll_s: float,
    heartbeat_s: float,
    duration_s: float | None,
) -> AsyncIterator[str]:
    """SSE frames of outbox events with id > ``after`` (forever, or for ``duration_s``)."""
    start = time.monotonic()
    deadline = start + duration_s if duration_s is not None else None
    next_beat = start + heartbeat_s
    gap_since: float | None = None
    yield f"retry: 3000\n: stream from event {after}\n\n"
    while deadline is None or time.monotonic() < deadline:
        rows = await anyio.to_thread.run_sync(_fetch, rt, after)
        now = time.monotonic()
        for event in rows:
            if event["id"] != after + 1:
                # A gap: a transaction that took this id may still commit. Wait a little.
                if gap_since is None:
                    gap_since = now
                if now - gap_since < GAP_WAIT_S:
                    break
            gap_since = None
            after = event["id"]
            if matches(event["type"], categories):
                yield _frame(event)
        if now >= next_beat:
            next_beat = now + heartbeat_s
            yield ": heartbeat\n\n"
        if len(rows) < BATCH or gap_since is not None:
            await anyio.sleep(poll_s)


@router.get(
    "/events",
    summary="Live domain events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    rt: Rt,
    config: Config,
    _: Annotated[Principal, Depends(require("viewer"))],
    types: Annotated[
        str | None,
        Query(max_length=200, description=f"Comma-separated: {', '.join(CATEGORIES)}."),
    ] = None,
    last_event_id_q: Annotated[
        int | None, Query(alias="last_event_id", ge=0, le=2**62, description="Resume after.")
    ] = None,
    duration: Annotated[
        float | None, Query(gt=0, le=86400, description="Close after this many seconds.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """Resumable with ``Last-Event-ID``; heartbeat comments keep idle connections alive."""
    categories = _parse_types(types)
    after: int | None = last_event_id_q
    if last_event_id is not None:
        try:
            after = int(last_event_id)
            if after < 0:
                raise ValueError(last_event_id)
        except ValueError as exc:
            raise Problem(
                422,
                "Last-Event-ID must be a non-negative event id",
                kind="validation",
                errors=[{"field": "header.last-event-id", "message": "not an event id"}],
            ) from exc
    if after is None:
        after = await anyio.to_thread.run_sync(_latest_id, rt)
    frames = event_frames(
        rt, after, categories, config.stream_poll_s, config.stream_heartbeat_s, duration
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
