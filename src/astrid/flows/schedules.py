"""Schedules as data, and running flows with retries and a logged history.

``add_schedule`` validates the cron expression (five fields, via croniter) and the IANA time
zone, and stores the next fire time in UTC. ``run_due`` runs every enabled schedule whose
time has come — each claimed with a conditional update, so two timers on two hosts never run
the same occurrence twice — and moves it to its next time after *now* (a machine that was off
for a week runs a missed schedule once, not seven times). ``run_flow`` records a ``FlowRun``:
transient failures (a database, broker or archive that is down) are retried with exponential
backoff, then the run fails with the reason; permanent failures (bad parameters) fail at once.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from astrid.errors import AstridError
from astrid.flows.library import FLOWS, FlowParamsError, FlowStepError
from astrid.logs import log_context
from astrid.runtime import Runtime
from astrid.store.tables import FlowRun, FlowRunStatus, Schedule

__all__ = [
    "RetryPlan",
    "ScheduleError",
    "add_schedule",
    "describe_failure",
    "flow_failures",
    "list_flow_runs",
    "list_schedules",
    "next_fire",
    "remove_schedule",
    "run_due",
    "run_flow",
    "run_queued_flow",
    "run_scheduled",
    "start_flow_run",
    "transient_failure",
]


class ScheduleError(AstridError):
    """A schedule is invalid (cron, time zone, flow, parameters) or does not exist."""


@dataclass(frozen=True)
class RetryPlan:
    """How a flow is retried after a transient failure: ``retries`` more attempts, waiting
    ``backoff_s * 2**k`` seconds before attempt ``k + 2``."""

    retries: int = 2
    backoff_s: float = 30.0


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r}", hint="use an IANA name such as UTC or Europe/Madrid"
        ) from exc


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``cron`` fires in ``timezone`` (UTC)."""
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise ScheduleError(
            f"invalid cron expression {cron!r}",
            hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'",
        )
    local = after.astimezone(_zone(timezone))
    fire: datetime = croniter(cron, local).get_next(datetime)
    return fire.astimezone(UTC)


def add_schedule(
    runtime: Runtime,
    name: str,
    flow: str,
    cron: str,
    timezone: str = "UTC",
    params: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Schedule:
    """Store a new schedule (validated) and return it."""
    if flow not in FLOWS:
        raise ScheduleError(f"unknown flow {flow!r}", hint=f"flows are: {', '.join(FLOWS)}")
    if not name or len(name) > 128:
        raise ScheduleError("a schedule name must be 1 to 128 characters")
    first = next_fire(cron, timezone, now or datetime.now(UTC))
    with runtime.db.session() as s:
        if s.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
            raise ScheduleError(f"a schedule named {name!r} already exists")
        row = Schedule(
            name=name,
            flow=flow,
            cron=cron,
            timezone=timezone,
            params=dict(params or {}),
            enabled=True,
            next_run_at=first,
        )
        s.add(row)
        s.flush()
        return row


def list_schedules(runtime: Runtime) -> list[Schedule]:
    """Every schedule, by name."""
    with runtime.db.session() as s:
        return list(s.scalars(select(Schedule).order_by(Schedule.name)))


def remove_schedule(runtime: Runtime, name: str) -> None:
    """Delete a schedule (its past runs stay in the history)."""
    with runtime.db.session() as s:
        row = s.scalar(select(Schedule).where(Schedule.name == name))
        if row is None:
            raise ScheduleError(f"no schedule named {name!r}")
        s.delete(row)


def transient_failure(exc: BaseException) -> bool:
    """True for a failure worth retrying: a dependency down (the database, the broker, an
    archive, the MLflow server: an error marked ``transient`` or a connection error), not a
    flow's bad parameters or a bug."""
    if isinstance(exc, FlowStepError):
        return exc.transient
    if isinstance(exc, FlowParamsError | ScheduleError):
        return False
    if getattr(exc, "transient", False) is True:  # e.g. RegistryUnavailableError
        return True
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def describe_failure(exc: BaseException) -> str:
    """One line saying why a flow failed (an AstrID error's message, else type: message)."""
    if isinstance(exc, AstridError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def start_flow_run(
    runtime: Runtime,
    flow: str,
    params: dict[str, Any] | None = None,
    schedule_id: int | None = None,
    *,
    queued: bool = False,
) -> int:
    """Record a :class:`FlowRun` of ``flow`` and return its id, for a caller that answers at
    once and runs the flow elsewhere: ``running`` (finished by ``run_flow(run_id=...)``) or,
    with ``queued``, ``queued`` with no start time (a worker's :func:`run_queued_flow`
    starts it)."""
    if flow not in FLOWS:
        raise ScheduleError(f"unknown flow {flow!r}", hint=f"flows are: {', '.join(FLOWS)}")
    with runtime.db.session() as s:
        row = FlowRun(
            schedule_id=schedule_id,
            flow=flow,
            params=dict(params or {}),
            status=(FlowRunStatus.QUEUED if queued else FlowRunStatus.RUNNING).value,
            started_at=None if queued else datetime.now(UTC),
        )
        s.add(row)
        s.flush()
        return int(row.id)


def run_flow(
    runtime: Runtime,
    flow: str,
    params: dict[str, Any] | None = None,
    *,
    schedule_id: int | None = None,
    retry: RetryPlan | None = None,
    sleep: Callable[[float], None] = time.sleep,
    run_id: int | None = None,
    note: str | None = None,
) -> FlowRun:
    """Run ``flow`` now, record it as a :class:`FlowRun` and return the finished row
    (``run_id``: a row made by :func:`start_flow_run` to finish instead of a new one;
    ``note``: a first line for its log)."""
    if flow not in FLOWS:
        raise ScheduleError(f"unknown flow {flow!r}", hint=f"flows are: {', '.join(FLOWS)}")
    retry = retry or RetryPlan()
    params = dict(params or {})
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {line}")

    if note:
        log(note)
    if run_id is None:
        run_id = start_flow_run(runtime, flow, params, schedule_id)
    status, error, result, attempts = FlowRunStatus.FAILED.value, None, {}, 0
    for attempt in range(retry.retries + 1):
        attempts = attempt + 1
        try:
            with log_context(run_id=f"flow:{run_id}"):
                result = FLOWS[flow].run(runtime, params, log)
            status, error = FlowRunStatus.SUCCEEDED.value, None
            break
        except Exception as exc:  # a flow's failure is recorded, never lost
            error = describe_failure(exc)
            transient = transient_failure(exc)
            log(f"attempt {attempts} failed ({'transient' if transient else 'permanent'}): {error}")
            if not isinstance(exc, AstridError):
                log("".join(traceback.format_exception(exc)).rstrip())
            if not transient or attempt == retry.retries:
                break
            wait = retry.backoff_s * 2**attempt
            log(f"retrying in {wait:g} s")
            sleep(wait)
    with runtime.db.session() as s:
        row = s.get_one(FlowRun, run_id)
        row.status, row.error, row.result, row.attempts = status, error, result, attempts
        row.log = "\n".join(lines)
        row.finished_at = datetime.now(UTC)
        return row


def run_queued_flow(runtime: Runtime, run_id: int, retry: RetryPlan | None = None) -> FlowRun:
    """Run the queued :class:`FlowRun` ``run_id`` (made by ``start_flow_run(queued=True)``)
    here, on a worker: it turns ``running`` with its start time, then finishes as
    :func:`run_flow` finishes it.

    A run already finished is returned as it is (a message delivered twice runs once). A
    run found ``running`` was started by a worker that died mid-run (its message came back):
    it is run again from the start and its log says so; flows are built to be re-run (the
    ``retrain`` flow then registers one more challenger version).

    Raises
    ------
    ScheduleError
        No flow run ``run_id``.
    """
    with runtime.db.session() as s:
        row = s.get(FlowRun, run_id)
        if row is None:
            raise ScheduleError(f"no flow run {run_id}")
        if row.status in (FlowRunStatus.SUCCEEDED.value, FlowRunStatus.FAILED.value):
            return row
        again = row.status == FlowRunStatus.RUNNING.value
        flow, params = row.flow, dict(row.params or {})
        row.status, row.started_at = FlowRunStatus.RUNNING.value, datetime.now(UTC)
    note = "started again: the worker that ran it stopped before it finished" if again else None
    return run_flow(runtime, flow, params, retry=retry, run_id=run_id, note=note)


def run_due(
    runtime: Runtime,
    now: datetime | None = None,
    *,
    retry: RetryPlan | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[FlowRun]:
    """Run every enabled schedule that is due at ``now``; return their runs."""
    now = now or datetime.now(UTC)
    with runtime.db.session() as s:
        due = list(
            s.scalars(
                select(Schedule)
                .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
                .order_by(Schedule.next_run_at)
            )
        )
    runs = []
    for sched in due:
        if not _claim(runtime, sched, now):
            continue  # another timer took this occurrence
        runs.append(
            run_flow(
                runtime, sched.flow, sched.params, schedule_id=sched.id, retry=retry, sleep=sleep
            )
        )
    return runs


def _claim(runtime: Runtime, sched: Schedule, now: datetime) -> bool:
    """Move ``sched`` to its next time after ``now`` unless another timer already did."""
    following = next_fire(sched.cron, sched.timezone, now)
    with runtime.db.session() as s:
        result = s.execute(
            update(Schedule)
            .where(Schedule.id == sched.id, Schedule.next_run_at == sched.next_run_at)
            .values(next_run_at=following, last_run_at=now)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def run_scheduled(
    runtime: Runtime,
    schedule_id: int,
    now: datetime | None = None,
    *,
    early_s: float = 60.0,
    retry: RetryPlan | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FlowRun | None:
    """Run one schedule's due occurrence, as an outside scheduler (Prefect) fires it.

    The occurrence is claimed exactly as :func:`run_due` claims it, so a schedule fired by
    Prefect and by a cron timer at once still runs once; ``early_s`` tolerates a scheduler
    whose clock fires slightly before ``next_run_at``. Returns ``None`` when the occurrence
    is not due (or was taken by another timer); a disabled or missing schedule is a
    :class:`ScheduleError`.
    """
    now = now or datetime.now(UTC)
    with runtime.db.session() as s:
        sched = s.get(Schedule, schedule_id)
    if sched is None or not sched.enabled:
        raise ScheduleError(f"schedule {schedule_id} does not exist or is disabled")
    fire_at = sched.next_run_at
    if fire_at.tzinfo is None:
        fire_at = fire_at.replace(tzinfo=UTC)
    if (fire_at - now).total_seconds() > early_s or not _claim(runtime, sched, now):
        return None
    return run_flow(
        runtime, sched.flow, sched.params, schedule_id=sched.id, retry=retry, sleep=sleep
    )


def list_flow_runs(runtime: Runtime, limit: int = 20, flow: str | None = None) -> list[FlowRun]:
    """The latest flow runs, newest first."""
    with runtime.db.session() as s:
        stmt = select(FlowRun).order_by(FlowRun.id.desc()).limit(limit)
        if flow:
            stmt = stmt.where(FlowRun.flow == flow)
        return list(s.scalars(stmt))


def flow_failures(runtime: Runtime, limit: int = 20) -> list[dict[str, Any]]:
    """The latest failed flow runs (for ``astrid status`` and the API)."""
    with runtime.db.session() as s:
        rows = s.scalars(
            select(FlowRun)
            .where(FlowRun.status == FlowRunStatus.FAILED.value)
            .order_by(FlowRun.id.desc())
            .limit(limit)
        )
        return [
            {
                "id": r.id,
                "flow": r.flow,
                "schedule_id": r.schedule_id,
                "attempts": r.attempts,
                "error": r.error,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            }
            for r in rows
        ]
