"""The stage runner: idempotent, timed, retried and parked execution of pipeline stages.

Every stage of the data path (ingest, and later preprocess, reference, difference, extract,
score) runs through :func:`run_stage`. A run is identified by a key, the sha256 of
``(stage name, stage version, parameters hash, input hash)``, stored once in
:class:`~astrid.store.tables.StageRun`:

* a key that already **succeeded** is not run again: its stored result comes back
  (``reused=True``), so re-running a batch resumes without duplicating work;
* a stage is split into ``compute`` (outside any transaction: read, fetch, crunch, write
  content-addressed blobs, which are idempotent by construction) and ``persist`` (inside the
  one transaction that also marks the run succeeded). A run interrupted at any point, even by
  SIGKILL, leaves either nothing or the whole result; a duplicate delivery of the same key
  stores its result exactly once (the second finds the run already succeeded);
* **transient** failures (:class:`TransientError`, lost connections, timeouts, locked
  databases, HTTP 5xx) are retried with exponential backoff (:class:`RetryPolicy`);
* **permanent** failures (any :class:`~astrid.errors.AstridError`, anything unexpected, or
  retries exhausted) are **parked**: status ``failed`` with the reason, re-runnable with
  ``rerun_failed=True`` (``astrid status`` lists them);
* a stage that concerns one observation moves it through its status machine
  (``running_status`` at start, ``done_status`` on success, ``failed`` when parked).

Every stage of :mod:`astrid.pipeline.stages` declares itself as a :class:`Stage` here;
this module knows nothing of the stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Generic, TypeVar

import requests
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from astrid.domain.observations import ObservationService
from astrid.errors import AstridError
from astrid.logs import log_context
from astrid.pipeline.resilience import (
    OUTAGE_PATIENCE_S,
    Heartbeat,
    is_outage,
    outage_delay,
    ride_out,
)
from astrid.runtime import Runtime
from astrid.store.blobs import BlobStoreError
from astrid.store.db import Database
from astrid.store.tables import Observation, ObservationStatus, StageRun, StageRunStatus, utcnow

__all__ = [
    "RetryPolicy",
    "Stage",
    "StageContext",
    "StageOutcome",
    "TransientError",
    "classify_error",
    "failed_runs",
    "retried_runs",
    "run_counts",
    "run_key",
    "run_stage",
    "stable_hash",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class TransientError(AstridError):
    """A failure worth retrying: the same call may succeed later (network, lock, timeout)."""


def stable_hash(value: Any) -> str:
    """sha256 (hex) of a JSON-serialisable value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(stage: str, version: str, params_hash: str, input_hash: str) -> str:
    """The identity of a stage run: sha256 of stage, version, parameters and input hashes."""
    return hashlib.sha256("\0".join((stage, version, params_hash, input_hash)).encode()).hexdigest()


def classify_error(exc: BaseException) -> str:
    """``"transient"`` for failures worth retrying, else ``"permanent"``.

    Transient: :class:`TransientError`, connection errors, timeouts, a locked or unreachable
    database (SQLAlchemy ``OperationalError``), a unique-constraint race with a concurrent
    writer (``IntegrityError``), HTTP 5xx/429 answers. Everything else,
    including every other :class:`~astrid.errors.AstridError` (bad input) and missing
    files, is permanent.
    """
    if isinstance(exc, TransientError):
        return "transient"
    if type(exc) is BlobStoreError and exc.__cause__ is not None:
        # The blob store wraps its client's errors: an unreachable S3 endpoint (a network
        # partition, a restarting server) is worth retrying, a refused request is not.
        return "transient" if _storage_unreachable(exc.__cause__) else "permanent"
    if isinstance(exc, AstridError):
        return "permanent"
    if isinstance(exc, OperationalError):
        return "transient"
    if isinstance(exc, IntegrityError):
        # Two workers inserting the same unique product (e.g. the Reference row shared by
        # the observations of a field) at once: the next attempt finds it and reuses it.
        return "transient"
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "code", None)
    if isinstance(code, int) and (code >= 500 or code == 429):
        return "transient"
    if isinstance(code, int) and 400 <= code < 500:
        return "permanent"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "transient"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return "transient"
    return "permanent"


def _storage_unreachable(exc: BaseException) -> bool:
    """True for an S3 client failure to reach the endpoint or a 5xx/throttling answer."""
    try:  # botocore is an optional dependency (the s3 extra)
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # pragma: no cover - without boto3 there is no S3 store
        return isinstance(exc, (ConnectionError, TimeoutError))
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(code, int) and (code >= 500 or code == 429)
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AstridError):
        return f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient failures.

    Attempt ``n`` (1-based) that fails transiently waits
    ``min(max_delay_s, base_delay_s * factor ** (n - 1))`` seconds before attempt ``n + 1``;
    after ``max_attempts`` attempts the run is parked.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    #: How long a database outage is waited out (not counted as attempts), seconds.
    outage_patience_s: float = OUTAGE_PATIENCE_S

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * self.factor ** (attempt - 1)))


@dataclass
class StageContext:
    """What a stage's functions see: the runtime, parameters, inputs and the attempt number.

    ``payload`` carries in-memory inputs (bytes, arrays) that are not stored with the run;
    ``inputs`` is their JSON description (paths, keys, hashes), stored with the run.
    """

    runtime: Runtime
    params: dict[str, Any]
    inputs: dict[str, Any]
    payload: Any = None
    attempt: int = 1
    run_id: int = 0
    observation_id: int | None = None


@dataclass(frozen=True)
class Stage(Generic[T]):
    """A pipeline stage: a name and version, and the two halves of its work.

    Parameters
    ----------
    name, version : str
        Identity; bump ``version`` when the stage's output changes, so old results are not
        reused.
    compute : callable
        ``compute(ctx) -> T``, run outside any transaction; may write blobs.
    persist : callable
        ``persist(session, ctx, value) -> dict``: write the rows, inside the transaction that
        marks the run succeeded; returns the small JSON result stored with the run.
    running_status, done_status : ObservationStatus, optional
        Status the run's observation moves to when the run starts / succeeds.
    """

    name: str
    version: str
    compute: Callable[[StageContext], T]
    persist: Callable[[Session, StageContext, T], dict[str, Any]]
    running_status: ObservationStatus | None = None
    done_status: ObservationStatus | None = None


@dataclass(frozen=True)
class StageOutcome:
    """What one :func:`run_stage` call did."""

    stage: str
    key: str
    run_id: int
    status: str  # "succeeded" | "failed"
    result: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    attempts: int = 0
    error: str | None = None
    error_kind: str | None = None
    duration_s: float | None = None
    #: The exception that parked the run, when this call ran it (not stored).
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == StageRunStatus.SUCCEEDED.value


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def _outcome(row: StageRun, reused: bool, exc: BaseException | None = None) -> StageOutcome:
    return StageOutcome(
        stage=row.stage,
        key=row.key,
        run_id=row.id,
        status=row.status,
        result=dict(row.result or {}),
        reused=reused,
        attempts=row.attempts,
        error=row.error,
        error_kind=row.error_kind,
        duration_s=row.duration_s,
        exception=exc,
    )


def _move(
    session: Session,
    observation_id: int | None,
    status: ObservationStatus | None,
    reason: str | None = None,
) -> None:
    if observation_id is None or status is None:
        return
    obs = session.get(Observation, observation_id, with_for_update=True)
    if obs is not None and obs.status != status:
        ObservationService.apply_transition(session, obs, status, reason)


def run_stage(
    runtime: Runtime,
    stage: Stage[Any],
    *,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    input_hash: str,
    payload: Any = None,
    observation_id: int | None = None,
    retry: RetryPolicy | None = None,
    rerun_failed: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> StageOutcome:
    """Run ``stage`` once per key; see the module docstring for the guarantees.

    Parameters
    ----------
    runtime : Runtime
        Database and blob store.
    stage : Stage
        What to run.
    params : dict, optional
        Parameters (JSON); part of the key through their :func:`stable_hash`.
    inputs : dict, optional
        JSON description of the inputs, stored with the run (not part of the key).
    input_hash : str
        Content hash of the inputs (e.g. the sha256 of a file); part of the key.
    payload : any, optional
        In-memory inputs handed to ``compute`` (not stored).
    observation_id : int, optional
        The observation the run concerns (status moves, failure reason).
    retry : RetryPolicy, optional
        Backoff for transient failures (default :class:`RetryPolicy()`).
    rerun_failed : bool
        Run again a key that was parked (default: report it parked, do nothing).
    sleep : callable
        Used for the backoff waits.

    Returns
    -------
    StageOutcome
        ``status`` ``"succeeded"`` (``reused`` when an earlier run did the work) or
        ``"failed"`` (parked, with ``error``). Interrupts (``KeyboardInterrupt``,
        ``SystemExit``) propagate and leave the run ``running`` for a redelivery.
    """
    db = ride_out(runtime.require_migrated, patience_s=runtime.settings.outage_patience_s)
    params = dict(params or {})
    retry = retry or RetryPolicy(outage_patience_s=runtime.settings.outage_patience_s)
    params_hash = stable_hash(params)
    key = run_key(stage.name, stage.version, params_hash, input_hash)

    def claim() -> StageOutcome | tuple[int, int]:
        """Find or create the run row and mark an attempt: (run id, attempt) or the outcome."""
        for _ in range(3):
            try:
                with db.session() as session:
                    row = session.scalar(
                        select(StageRun).where(StageRun.key == key).with_for_update()
                    )
                    if row is None:
                        row = StageRun(
                            key=key,
                            stage=stage.name,
                            stage_version=stage.version,
                            params_hash=params_hash,
                            input_hash=input_hash,
                            params=params,
                            inputs=dict(inputs or {}),
                            observation_id=observation_id,
                            status=StageRunStatus.RUNNING.value,
                            attempts=0,
                        )
                        session.add(row)
                        session.flush()
                    if row.status == StageRunStatus.SUCCEEDED.value:
                        return _outcome(row, reused=True)
                    if row.status == StageRunStatus.FAILED.value and not rerun_failed:
                        return _outcome(row, reused=True)
                    _start_attempt(row)
                    _move(session, observation_id, stage.running_status)
                    return row.id, row.attempts
            except IntegrityError:  # another worker created the same key at the same moment
                continue
        raise TransientError(f"could not claim stage run {stage.name} {key[:12]}")

    claimed = ride_out(claim, patience_s=retry.outage_patience_s, sleep=sleep)
    if isinstance(claimed, StageOutcome):
        return claimed
    run_id, attempt = claimed
    ctx = StageContext(
        runtime=runtime,
        params=params,
        inputs=dict(inputs or {}),
        payload=payload,
        attempt=attempt,
        run_id=run_id,
        observation_id=observation_id,
    )
    computed: list[Any] = []  # the value, once computed (kept across an outage in persist)
    outage_since: float | None = None
    outages = 0
    while True:
        t0 = time.perf_counter()
        try:
            if not computed:
                with (
                    Heartbeat(runtime, run_id, runtime.settings.stage_heartbeat_s),
                    log_context(run_id=f"stage:{run_id}"),
                ):
                    computed.append(stage.compute(ctx))
            done = _persist(db, stage, ctx, run_id, computed[0], t0)
            return done
        except Exception as exc:
            if is_outage(exc):
                # The database went away: not the task's failure. Wait for it (the value,
                # if computed, is kept) without spending an attempt.
                outages += 1
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since < retry.outage_patience_s:
                    log.warning(
                        "stage %s run %s: database unreachable, waiting", stage.name, run_id
                    )
                    sleep(outage_delay(outages))
                    continue
            computed.clear()
            record = partial(
                _record_failure,
                db,
                stage,
                ctx,
                run_id,
                exc,
                retry,
                time.perf_counter() - t0,
                observation_id,
            )
            parked = ride_out(record, patience_s=retry.outage_patience_s, sleep=sleep)
            if parked is not None:
                return parked
            sleep(retry.delay(ctx.attempt))
            again = ride_out(
                partial(_next_attempt, db, run_id),
                patience_s=retry.outage_patience_s,
                sleep=sleep,
            )
            if isinstance(again, StageOutcome):
                return again
            ctx = replace(ctx, attempt=again)


def _start_attempt(row: StageRun) -> None:
    row.status = StageRunStatus.RUNNING.value
    row.attempts += 1
    row.started_at = utcnow()
    row.worker = _worker_id()


def _persist(
    db: Database, stage: Stage[Any], ctx: StageContext, run_id: int, value: Any, t0: float
) -> StageOutcome:
    """Write the stage's rows and mark the run succeeded, in one transaction."""
    with db.session() as session:
        # Taking the row (and on SQLite the write lock) first makes the check and the write
        # one step: a duplicate delivery that finished meanwhile wins, we reuse its result.
        claimed = session.execute(
            update(StageRun)
            .where(StageRun.id == run_id, StageRun.status != StageRunStatus.SUCCEEDED.value)
            .values(updated_at=utcnow())
        )
        if claimed.rowcount == 0:  # type: ignore[attr-defined]
            done = session.get(StageRun, run_id)
            assert done is not None
            return _outcome(done, reused=True)
        result = stage.persist(session, ctx, value)
        row = session.get(StageRun, run_id)
        assert row is not None
        if row.observation_id is None and ctx.observation_id is not None:
            row.observation_id = ctx.observation_id
        _move(session, ctx.observation_id, stage.done_status)
        row.status = StageRunStatus.SUCCEEDED.value
        row.result = result
        row.error = None
        row.error_kind = None
        row.duration_s = time.perf_counter() - t0
        row.finished_at = utcnow()
        return _outcome(row, reused=False)


def _record_failure(
    db: Database,
    stage: Stage[Any],
    ctx: StageContext,
    run_id: int,
    exc: Exception,
    retry: RetryPolicy,
    elapsed: float,
    observation_id: int | None,
) -> StageOutcome | None:
    """Record a failed attempt: the parked outcome, or None when it will be retried."""
    kind = classify_error(exc)
    reason = _reason(exc)
    retrying = kind == "transient" and ctx.attempt < retry.max_attempts
    if not retrying and kind == "transient":
        reason = f"gave up after {ctx.attempt} attempts: {reason}"
    log.warning(
        "stage %s run %s attempt %d failed (%s): %s", stage.name, run_id, ctx.attempt, kind, reason
    )
    with db.session() as session:
        row = session.get(StageRun, run_id, with_for_update=True)
        assert row is not None
        if row.status == StageRunStatus.SUCCEEDED.value:  # a duplicate finished it
            return _outcome(row, reused=True)
        if row.attempts != ctx.attempt:
            # A newer delivery claimed the run meanwhile (this worker was cut off past its
            # lease and its message requeued): that attempt owns the row; parking it here
            # would fail work that is still going on.
            log.warning("stage %s run %s: attempt %d superseded", stage.name, run_id, ctx.attempt)
            return _outcome(row, reused=False, exc=exc)
        row.error = reason
        row.error_kind = kind
        row.duration_s = elapsed
        if not retrying:
            row.status = StageRunStatus.FAILED.value
            row.finished_at = utcnow()
            _move(
                session,
                observation_id or ctx.observation_id,
                ObservationStatus.FAILED if stage.running_status else None,
                reason,
            )
            return _outcome(row, reused=False, exc=exc)
        row.status = StageRunStatus.RETRYING.value
    return None


def _next_attempt(db: Database, run_id: int) -> StageOutcome | int:
    """Start the next attempt after a backoff: its number, or the outcome a duplicate stored."""
    with db.session() as session:
        row = session.get(StageRun, run_id, with_for_update=True)
        assert row is not None
        if row.status == StageRunStatus.SUCCEEDED.value:
            return _outcome(row, reused=True)
        _start_attempt(row)
        return row.attempts


# --------------------------------------------------------------------------- queries


def run_counts(runtime: Runtime) -> dict[str, dict[str, int]]:
    """Stage runs per stage and status: ``{stage: {status: n}}``."""
    with runtime.require_migrated().session() as session:
        rows = session.execute(
            select(StageRun.stage, StageRun.status, func.count()).group_by(
                StageRun.stage, StageRun.status
            )
        ).all()
    out: dict[str, dict[str, int]] = {}
    for stage, status, n in rows:
        out.setdefault(stage, {})[status] = int(n)
    return out


def failed_runs(runtime: Runtime, limit: int = 50) -> list[StageRun]:
    """Parked runs, newest first, with their reasons."""
    with runtime.require_migrated().session() as session:
        return list(
            session.scalars(
                select(StageRun)
                .where(StageRun.status == StageRunStatus.FAILED.value)
                .order_by(StageRun.id.desc())
                .limit(limit)
            )
        )


def retried_runs(runtime: Runtime, limit: int = 50) -> list[StageRun]:
    """Runs that took more than one attempt (redelivered after a lost worker, or retried
    after a transient failure), most recently started first."""
    with runtime.require_migrated().session() as session:
        return list(
            session.scalars(
                select(StageRun)
                .where(StageRun.attempts > 1)
                .order_by(StageRun.started_at.desc(), StageRun.id.desc())
                .limit(limit)
            )
        )
