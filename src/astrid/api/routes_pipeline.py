"""Pipeline runs over HTTP: start a batch, follow it, list parked failures, retry one.

A batch (``POST /pipeline/runs``) is processed **in this API process, in a background
thread** (:func:`astrid.pipeline.orchestrate.process_observations`), and the call answers 202
at once with the batch id. Batches are kept in memory (the last :data:`MAX_BATCHES`), so a
batch id does not survive a restart; the work itself is recorded durably as stage runs
(:class:`~astrid.store.tables.StageRun`), and ``GET /pipeline/runs/{run_id}``
reads those: stage runs per status for each observation of the batch. Processing many
observations belongs to the workers (``astrid process --queue``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import func, select

from astrid.api.auth import Principal
from astrid.api.deps import CuratorWrite, Rt, Viewer
from astrid.api.pagination import Page, PageParams, apply_page, page_of, page_params
from astrid.api.problems import Problem
from astrid.api.schemas import BatchOut, FailureOut, PipelineRunRequest
from astrid.pipeline.orchestrate import pending_observations, process_observations
from astrid.runtime import Runtime
from astrid.store.tables import Observation, StageRun, StageRunStatus

__all__ = ["MAX_BATCHES", "BatchRegistry", "router", "start_batch"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/pipeline", tags=["pipeline"])

MAX_BATCHES = 100

RunId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="Batch id (from POST /pipeline/runs).")
]
FailureId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Id of the parked stage run.")]


@dataclass
class Batch:
    """One batch started over HTTP (in memory)."""

    id: str
    observation_ids: list[int]
    retry_failed: bool
    requested_by: str | None
    state: str = "queued"  # queued | running | finished | failed
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    statuses: dict[int, str] = field(default_factory=dict)


class BatchRegistry:
    """The batches of one app, newest last, at most :data:`MAX_BATCHES`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        #: Held while a failure's retry is checked and started: concurrent retries of one
        #: failure get the same batch (idempotent), never a second, conflicting one.
        self.retry_lock = threading.Lock()
        self._retries: dict[int, str] = {}

    def retry_of(self, failure_id: int) -> Batch | None:
        """The batch retrying ``failure_id`` while it is queued or running, else None."""
        with self._lock:
            batch = self._batches.get(self._retries.get(failure_id, ""))
        return batch if batch is not None and batch.state in ("queued", "running") else None

    def set_retry(self, failure_id: int, batch: Batch) -> None:
        with self._lock:
            self._retries[failure_id] = batch.id

    def add(self, batch: Batch) -> None:
        with self._lock:
            self._batches[batch.id] = batch
            while len(self._batches) > MAX_BATCHES:
                self._batches.popitem(last=False)

    def get(self, batch_id: str) -> Batch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def newest_first(self) -> list[Batch]:
        with self._lock:
            return list(reversed(self._batches.values()))


def _registry(request: Request) -> BatchRegistry:
    registry = getattr(request.app.state, "batches", None)
    if registry is None:
        registry = request.app.state.batches = BatchRegistry()
    return registry


def _run(runtime: Runtime, batch: Batch) -> None:
    batch.state = "running"
    try:
        summary = process_observations(
            runtime, batch.observation_ids, retry_failed=batch.retry_failed
        )
        batch.statuses = {r.observation_id: r.status for r in summary.reports}
        batch.state = "finished"
    except Exception as exc:  # reported on the batch, never lost in the thread
        log.exception("pipeline batch %s failed", batch.id)
        batch.state = "failed"
        batch.error = f"{type(exc).__name__}: {exc}"
    finally:
        batch.finished_at = datetime.now(UTC)


def start_batch(
    request: Request, rt: Runtime, ids: list[int], retry: bool, who: Principal
) -> Batch:
    """Register a batch of ``ids`` and process it in a background thread of this process."""
    batch = Batch(uuid.uuid4().hex, ids, retry, who.username)
    _registry(request).add(batch)
    if not ids:
        batch.state = "finished"
        batch.finished_at = batch.created_at
        return batch
    thread = threading.Thread(
        target=_run, args=(rt, batch), name=f"astrid-batch-{batch.id[:8]}", daemon=True
    )
    thread.start()
    return batch


def _batch_out(rt: Runtime, batch: Batch) -> BatchOut:
    per_obs: dict[int, dict[str, Any]] = {
        i: {"observation_id": i, "status": None, "stage_runs": {}} for i in batch.observation_ids
    }
    if batch.observation_ids:
        with rt.db.session() as session:
            for obs_id, status in session.execute(
                select(Observation.id, Observation.status).where(
                    Observation.id.in_(batch.observation_ids)
                )
            ):
                per_obs[obs_id]["status"] = str(status)
            rows = session.execute(
                select(StageRun.observation_id, StageRun.stage, StageRun.status, func.count())
                .where(StageRun.observation_id.in_(batch.observation_ids))
                .group_by(StageRun.observation_id, StageRun.stage, StageRun.status)
            ).all()
        for run_obs, stage, run_status, n in rows:
            runs = per_obs[int(run_obs or 0)]["stage_runs"]
            runs.setdefault(stage, {})[run_status] = int(n)
    totals: dict[str, int] = {}
    for entry in per_obs.values():
        for by_status in entry["stage_runs"].values():
            for status, n in by_status.items():
                totals[status] = totals.get(status, 0) + n
    return BatchOut(
        id=batch.id,
        state=batch.state,
        retry_failed=batch.retry_failed,
        requested_by=batch.requested_by,
        created_at=batch.created_at,
        finished_at=batch.finished_at,
        error=batch.error,
        observation_ids=batch.observation_ids,
        stage_runs=totals,
        observations=list(per_obs.values()),
    )


@router.post("/runs", response_model=BatchOut, status_code=202, summary="Start a pipeline batch")
def start_run(request: Request, rt: Rt, who: CuratorWrite, body: PipelineRunRequest) -> BatchOut:
    """Process the given observations, or every pending one (``pending: true``).

    Answers 202 with the batch at once; the work runs in a background thread of the API.
    Unknown observation ids are refused (404) before anything starts.
    """
    if body.pending == bool(body.observation_ids):
        raise Problem(
            422,
            "give either observation_ids or pending: true (exactly one)",
            kind="validation",
            errors=[{"field": "body.observation_ids", "message": "or pending: true"}],
        )
    if body.pending:
        ids = pending_observations(rt, limit=body.limit)
    else:
        ids = list(dict.fromkeys(body.observation_ids or []))
        with rt.db.session() as session:
            found = set(session.scalars(select(Observation.id).where(Observation.id.in_(ids))))
        missing = [i for i in ids if i not in found]
        if missing:
            raise Problem(
                404,
                f"no observation with id {', '.join(map(str, missing[:10]))}",
                kind="not-found",
                errors=[{"field": "body.observation_ids", "message": "unknown id"}],
            )
    batch = start_batch(request, rt, ids, body.retry_failed, who)
    return _batch_out(rt, batch)


@router.get("/runs", response_model=list[BatchOut], summary="Batches started over HTTP")
def list_runs(
    request: Request,
    rt: Rt,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCHES)] = 20,
) -> list[BatchOut]:
    """The batches this API process started, newest first (kept in memory, not paged)."""
    return [_batch_out(rt, b) for b in _registry(request).newest_first()[:limit]]


@router.get("/runs/{run_id}", response_model=BatchOut, summary="One batch and its stage runs")
def get_run(request: Request, rt: Rt, _: Viewer, run_id: RunId) -> BatchOut:
    """State of the batch and, per observation, its status and stage runs per status."""
    batch = _registry(request).get(run_id)
    if batch is None:
        raise Problem(404, f"no batch {run_id} (batches are kept in memory)", kind="not-found")
    return _batch_out(rt, batch)


@router.get("/failures", response_model=Page[FailureOut], summary="Parked stage runs")
def list_failures(
    rt: Rt,
    _: Viewer,
    page: Annotated[PageParams, Depends(page_params)],
    stage: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Any:
    """Stage runs parked as failed, with their reasons (``order=desc`` for newest first)."""
    stmt = select(StageRun).where(StageRun.status == StageRunStatus.FAILED.value)
    if stage is not None:
        stmt = stmt.where(StageRun.stage == stage)
    with rt.db.session() as session:
        rows = list(session.scalars(apply_page(stmt, StageRun.id, page)))
        return page_of(rows, page, FailureOut.model_validate)


@router.post(
    "/failures/{failure_id}/retry",
    response_model=BatchOut,
    status_code=202,
    summary="Retry a parked failure",
)
def retry_failure(request: Request, rt: Rt, who: CuratorWrite, failure_id: FailureId) -> BatchOut:
    """Re-run the observation of a parked stage run (a batch of one, ``retry_failed``).

    Idempotent: while a retry of this failure runs, asking again returns the same batch.
    """
    registry = _registry(request)
    with registry.retry_lock:
        running = registry.retry_of(failure_id)
        if running is not None:
            return _batch_out(rt, running)
        with rt.db.session() as session:
            run = session.get(StageRun, failure_id)
            if run is None:
                raise Problem(404, f"no stage run {failure_id}", kind="not-found")
            status, obs_id, stage = run.status, run.observation_id, run.stage
        if status != StageRunStatus.FAILED.value:
            raise Problem(409, f"stage run {failure_id} is {status}, not failed", kind="conflict")
        if obs_id is None:
            raise Problem(
                409,
                f"stage run {failure_id} ({stage}) concerns no observation; "
                "ingest the file again to retry it",
                kind="conflict",
            )
        batch = start_batch(request, rt, [obs_id], True, who)
        registry.set_retry(failure_id, batch)
    return _batch_out(rt, batch)
