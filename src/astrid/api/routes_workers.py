"""Workers and queues over HTTP: heartbeats, depths, throughput, parked runs and the
operator's actions (pause/resume, retry parked runs, purge), for the ``/workers`` page.

* ``GET /workers`` (viewer): every worker process seen in the last 24 h, as it reported
  itself (:mod:`astrid.pipeline.queue.presence`), with ``alive`` / ``lost`` / ``stopped``;
* ``GET /queues`` (viewer): per queue its depth **from the broker** (Redis when
  ``ASTRID_BROKER_URL`` is set; in process nothing waits, all zero), its paused flag and
  live workers; the stage runs finished (processed) and parked (failed) over 1 h / 6 h /
  24 h with 5-minute buckets for trend charts; the newest parked runs with their reasons;
* ``POST /queues/{name}/pause`` and ``/resume`` (admin): the flag every worker reads on each
  heartbeat (a paused queue's messages are not started);
* ``POST /queues/{name}/purge`` (admin, body ``{"confirm": name}``): drop its messages;
* ``POST /failures/retry`` (admin, ``{"ids": [...]}`` or ``{"all": true}``): re-run the
  observations of parked runs, queued when a broker is configured, else in this process.

Pause and purge need a broker: in process there is no queue and they answer 409.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import dramatiq
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Integer, case, cast, func, select

from astrid.api.auth import Principal
from astrid.api.deps import AdminWrite, Rt, Viewer
from astrid.api.problems import Problem
from astrid.api.routes_pipeline import start_batch
from astrid.api.schemas import FailureOut
from astrid.errors import AstridError
from astrid.pipeline.queue.batch import enqueue_observations
from astrid.pipeline.queue.broker import (
    broker_config,
    is_in_process,
    make_broker,
    purge_queue,
    queue_stats,
)
from astrid.pipeline.queue.presence import list_workers, set_queue_paused
from astrid.runtime import Runtime
from astrid.store.tables import QueueState, StageRun, StageRunStatus, utcnow

__all__ = ["BUCKET_S", "WINDOWS", "router"]

router = APIRouter(tags=["workers"])

QueueName = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$", description="Queue.")
]

#: Throughput windows of ``GET /queues``, seconds.
WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
#: Width of the trend buckets of ``GET /queues``, seconds.
BUCKET_S = 300
PARKED_SHOWN = 50


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    threads: int
    state: str = Field(description="alive | lost (silent too long) | stopped (clean exit).")
    heartbeat_age_s: float
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None
    current_task: str | None
    processed: int
    failed: int
    paused: bool = Field(description="The worker holds its threads (a queue is paused).")


class QueueOut(BaseModel):
    name: str
    paused: bool
    changed_by: str | None = None
    changed_at: datetime | None = None
    waiting: int | None = None
    delayed: int | None = None
    in_flight: int | None = None
    dead: int | None = None
    workers: int = Field(description="Live workers consuming this queue.")
    error: str | None = Field(default=None, description="Why the depth is unknown.")


class Counts(BaseModel):
    processed: int
    failed: int


class Bucket(BaseModel):
    start: datetime
    processed: int
    failed: int


class QueuesOut(BaseModel):
    broker: str = Field(description="inprocess | redis | rabbitmq")
    queues: list[QueueOut]
    windows: dict[str, Counts] = Field(description="Stage runs finished per window.")
    bucket_s: int
    buckets: list[Bucket] = Field(description="Non-empty buckets of the last 24 h, oldest first.")
    parked_total: int
    parked: list[FailureOut] = Field(description=f"The newest {PARKED_SHOWN} parked runs.")


class PurgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str = Field(min_length=1, max_length=128, description="The queue's name again.")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, max_length=1000, description="Parked stage runs to retry."
    )
    all: bool = Field(default=False, description="Retry every parked run.")


class Skipped(BaseModel):
    id: int
    reason: str


class RetryOut(BaseModel):
    observation_ids: list[int]
    queued: bool = Field(description="Sent to the workers (else run in this process).")
    batch: str = Field(description="Queued batch token, or the in-process batch id.")
    retried: list[int] = Field(description="Parked runs whose observation is re-run.")
    skipped: list[Skipped]


class PurgeOut(BaseModel):
    name: str
    purged: int


def _broker(request: Request, rt: Runtime) -> dramatiq.Broker:
    broker = getattr(request.app.state, "ops_broker", None)
    if broker is None:
        broker = request.app.state.ops_broker = make_broker(rt.settings.broker_url)
    return broker


def _known_queues(rt: Runtime, broker: dramatiq.Broker) -> dict[str, QueueState | None]:
    names: dict[str, QueueState | None] = {broker_config(broker).queue: None}
    for w in list_workers(rt):
        if w.state == "alive":
            names.update({q: names.get(q) for q in w.row.queues})
    with rt.db.session() as session:
        for state in session.scalars(select(QueueState)):
            names[state.name] = state
        session.expunge_all()
    return names


@router.get("/workers", response_model=list[WorkerOut], summary="Worker processes")
def get_workers(rt: Rt, _: Viewer) -> list[WorkerOut]:
    """Workers seen in the last 24 h, newest first, with heartbeat age and state."""
    return [
        WorkerOut(
            id=w.row.id,
            host=w.row.host,
            pid=w.row.pid,
            queues=list(w.row.queues),
            threads=w.row.threads,
            state=w.state,
            heartbeat_age_s=round(w.heartbeat_age_s, 1),
            started_at=w.row.started_at,
            last_seen=w.row.last_seen,
            stopped_at=w.row.stopped_at,
            current_task=w.row.current_task,
            processed=w.row.processed,
            failed=w.row.failed,
            paused=w.row.paused,
        )
        for w in list_workers(rt)
    ]


def _epoch(column: Any, dialect: str) -> Any:
    """Seconds since 1970 of a timestamp column, in SQL (SQLite stores naive UTC text)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return func.extract("epoch", column)


def _throughput(rt: Runtime) -> tuple[dict[str, Counts], list[Bucket]]:
    """Counted in the database: one row per window sum and per (bucket, status)."""
    now = utcnow()
    since = now - timedelta(seconds=max(WINDOWS.values()))
    failed_v = StageRunStatus.FAILED.value
    done = (StageRunStatus.SUCCEEDED.value, failed_v)
    where = (StageRun.finished_at >= since, StageRun.status.in_(done))
    sums = []
    for span in WINDOWS.values():
        recent = StageRun.finished_at >= now - timedelta(seconds=span)
        sums.append(func.sum(case((recent & (StageRun.status != failed_v), 1), else_=0)))
        sums.append(func.sum(case((recent & (StageRun.status == failed_v), 1), else_=0)))
    slot = cast(
        func.floor(_epoch(StageRun.finished_at, rt.db.engine.dialect.name) / BUCKET_S), Integer
    )
    with rt.db.session() as session:
        totals = session.execute(select(*sums).where(*where)).one()
        per_slot = session.execute(
            select(slot, StageRun.status, func.count())
            .where(*where)
            .group_by(slot, StageRun.status)
        ).all()
    windows = {
        key: Counts(processed=int(totals[2 * i] or 0), failed=int(totals[2 * i + 1] or 0))
        for i, key in enumerate(WINDOWS)
    }
    buckets: dict[int, Bucket] = {}
    for index, status, n in per_slot:
        start = datetime.fromtimestamp(int(index) * BUCKET_S, UTC)
        bucket = buckets.setdefault(int(index), Bucket(start=start, processed=0, failed=0))
        if status == failed_v:
            bucket.failed += int(n)
        else:
            bucket.processed += int(n)
    return windows, [buckets[k] for k in sorted(buckets)]


@router.get("/queues", response_model=QueuesOut, summary="Queues, throughput, parked runs")
def get_queues(request: Request, rt: Rt, _: Viewer) -> QueuesOut:
    """Depth per queue from the broker, processed/failed over 1/6/24 h, parked runs."""
    broker = _broker(request, rt)
    alive: dict[str, int] = {}
    for w in list_workers(rt):
        if w.state == "alive":
            for q in w.row.queues:
                alive[q] = alive.get(q, 0) + 1
    queues = []
    for name, state in _known_queues(rt, broker).items():
        out = QueueOut(
            name=name,
            paused=bool(state and state.paused),
            changed_by=state.changed_by if state else None,
            changed_at=state.changed_at if state else None,
            workers=alive.get(name, 0),
        )
        try:
            out = out.model_copy(update=queue_stats(broker, name))
        except AstridError as exc:
            out.error = str(exc)
        queues.append(out)
    windows, buckets = _throughput(rt)
    parked_q = select(StageRun).where(StageRun.status == StageRunStatus.FAILED.value)
    with rt.db.session() as session:
        total = session.scalar(select(func.count()).select_from(parked_q.subquery())) or 0
        parked = [
            FailureOut.model_validate(r)
            for r in session.scalars(parked_q.order_by(StageRun.id.desc()).limit(PARKED_SHOWN))
        ]
    return QueuesOut(
        broker=broker_config(broker).kind,
        queues=queues,
        windows=windows,
        bucket_s=BUCKET_S,
        buckets=buckets,
        parked_total=int(total),
        parked=parked,
    )


def _queue_for_action(request: Request, rt: Runtime, name: str, action: str) -> dramatiq.Broker:
    broker = _broker(request, rt)
    if name not in _known_queues(rt, broker):
        raise Problem(404, f"no queue {name!r}", kind="not-found")
    if is_in_process(broker):
        raise Problem(
            409,
            f"cannot {action} {name!r}: no broker is configured, tasks run in process "
            "(set ASTRID_BROKER_URL and start `astrid worker`)",
            kind="conflict",
        )
    return broker


def _state(rt: Runtime, request: Request, name: str) -> QueueOut:
    for q in get_queues(request, rt, Principal(None, None, "admin", "jwt")).queues:
        if q.name == name:
            return q
    raise Problem(404, f"no queue {name!r}", kind="not-found")  # pragma: no cover


@router.post("/queues/{name}/pause", response_model=QueueOut, summary="Pause a queue")
def pause_queue(request: Request, rt: Rt, who: AdminWrite, name: QueueName) -> QueueOut:
    """Workers stop starting this queue's messages within one heartbeat (running ones end)."""
    _queue_for_action(request, rt, name, "pause")
    set_queue_paused(rt, name, True, who.username)
    return _state(rt, request, name)


@router.post("/queues/{name}/resume", response_model=QueueOut, summary="Resume a queue")
def resume_queue(request: Request, rt: Rt, who: AdminWrite, name: QueueName) -> QueueOut:
    """Workers start this queue's messages again at their next heartbeat."""
    _queue_for_action(request, rt, name, "resume")
    set_queue_paused(rt, name, False, who.username)
    return _state(rt, request, name)


@router.post("/queues/{name}/purge", response_model=PurgeOut, summary="Purge a queue")
def purge(request: Request, rt: Rt, _: AdminWrite, name: QueueName, body: PurgeIn) -> PurgeOut:
    """Drop the queue's waiting, delayed and dead messages; ``confirm`` must repeat the name."""
    if body.confirm != name:
        raise Problem(
            422,
            f"confirm must repeat the queue's name {name!r}",
            kind="validation",
            errors=[{"field": "body.confirm", "message": f"must be {name!r}"}],
        )
    broker = _queue_for_action(request, rt, name, "purge")
    try:
        return PurgeOut(name=name, purged=purge_queue(broker, name))
    except AstridError as exc:
        raise Problem(503, str(exc), kind="unavailable") from exc


@router.post("/failures/retry", response_model=RetryOut, status_code=202, summary="Retry parked")
def retry_parked(request: Request, rt: Rt, who: AdminWrite, body: RetryIn) -> RetryOut:
    """Re-run the observations of the given (or every) parked stage run.

    Queued on the broker when one is configured, else a batch in this API process. A
    parked run that concerns no observation (a failed ingest) is skipped with its reason;
    an unknown or not-parked id too.
    """
    if body.all == bool(body.ids):
        raise Problem(
            422,
            "give either ids or all: true (exactly one)",
            kind="validation",
            errors=[{"field": "body.ids", "message": "or all: true"}],
        )
    stmt = select(StageRun.id, StageRun.status, StageRun.observation_id, StageRun.stage)
    if body.ids:
        stmt = stmt.where(StageRun.id.in_(body.ids))
    else:
        stmt = stmt.where(StageRun.status == StageRunStatus.FAILED.value)
    with rt.db.session() as session:
        rows = {r.id: r for r in session.execute(stmt)}
    skipped: list[Skipped] = []
    retried: list[int] = []
    obs: list[int] = []
    for run_id in body.ids or sorted(rows):
        row = rows.get(run_id)
        if row is None:
            skipped.append(Skipped(id=run_id, reason="no such stage run"))
        elif row.status != StageRunStatus.FAILED.value:
            skipped.append(Skipped(id=run_id, reason=f"{row.status}, not parked"))
        elif row.observation_id is None:
            skipped.append(Skipped(id=run_id, reason=f"{row.stage} concerns no observation"))
        else:
            retried.append(run_id)
            obs.append(int(row.observation_id))
    obs = list(dict.fromkeys(obs))
    broker = _broker(request, rt)
    if obs and not is_in_process(broker):
        queued = enqueue_observations(rt, obs, retry_failed=True, broker=broker)
        return RetryOut(
            observation_ids=obs, queued=True, batch=queued.batch, retried=retried, skipped=skipped
        )
    batch = start_batch(request, rt, obs, True, who)
    return RetryOut(
        observation_ids=obs, queued=False, batch=batch.id, retried=retried, skipped=skipped
    )
