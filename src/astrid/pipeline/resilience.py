"""Riding out database and broker outages, and reclaiming runs whose worker vanished.

* :func:`is_outage` tells a lost or refused connection to the database or the broker (not
  the task's own failure) from everything else;
* :func:`ride_out` calls a function again, with exponential backoff, while it fails with an
  outage, for up to :data:`OUTAGE_PATIENCE_S`; then :class:`OutageError` (one line);
* :class:`Heartbeat` keeps a running stage run's ``updated_at`` fresh (every
  :data:`HEARTBEAT_S`) while its worker computes: the run's **lease**;
* :func:`reclaim_stale_runs` finds ``running``/``retrying`` runs whose lease expired
  (no heartbeat for :data:`LEASE_S`: the worker was killed, or lost its message) and marks
  them ``retrying`` so the next delivery or ``astrid process --pending`` resumes them; the
  workers call it every :data:`RECLAIM_EVERY_S` and re-send a reclaimed queued message.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from astrid.errors import AstridError
from astrid.runtime import Runtime
from astrid.store.tables import StageRun, StageRunStatus, utcnow

__all__ = [
    "HEARTBEAT_S",
    "LEASE_S",
    "OUTAGE_PATIENCE_S",
    "RECLAIM_EVERY_S",
    "Heartbeat",
    "OutageError",
    "ReclaimedRun",
    "is_outage",
    "outage_as_error",
    "reclaim_stale_runs",
    "ride_out",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

#: How long a worker waits for the database or broker to come back before giving up, s.
OUTAGE_PATIENCE_S = 300.0
#: Longest single wait between two tries during an outage, s.
OUTAGE_MAX_DELAY_S = 10.0
#: A running stage run's heartbeat period, s.
HEARTBEAT_S = 15.0
#: A run without a heartbeat for this long is stale (its worker is gone), s.
LEASE_S = 120.0
#: How often each worker looks for stale runs, s.
RECLAIM_EVERY_S = 60.0

_MESSAGES = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "connection timed out",
    "connection to server",
    "no connection to the server",
    "connection is closed",
    "connection already closed",
    "lost connection",
    "broken pipe",
    "ssl connection has been closed",
    "unable to open database file",
)


class OutageError(AstridError):
    """The database or the broker stayed unreachable longer than the patience allowed."""


def is_outage(exc: BaseException) -> bool:
    """True for a lost, refused or timed-out connection to the database or the broker.

    Such a failure is not the task's: it is waited out (:func:`ride_out`), not counted as
    an attempt. A locked SQLite database, a constraint violation or bad SQL are not outages.
    """
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return True
    if isinstance(exc, AstridError) and exc.__cause__ is not None:  # e.g. queue_stats' error
        return is_outage(exc.__cause__)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        return any(m in text for m in _MESSAGES)
    return False


def outage_delay(n: int) -> float:
    """Seconds to wait before try ``n + 1`` during an outage (0.5 s doubling, ≤ 10 s)."""
    return float(min(OUTAGE_MAX_DELAY_S, 0.5 * 2.0 ** max(n - 1, 0)))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def ride_out(
    fn: Callable[[], T],
    *,
    what: str = "database",
    patience_s: float = OUTAGE_PATIENCE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, called again while it fails with an outage, for up to ``patience_s``.

    Raises
    ------
    OutageError
        Still an outage after ``patience_s`` (one line naming the last error).
    """
    started = time.monotonic()
    n = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_outage(exc):
                raise
            n += 1
            waited = time.monotonic() - started
            if waited >= patience_s:
                raise OutageError(
                    f"the {what} stayed unreachable for {waited:.0f} s: {_first_line(exc)}",
                    hint="check that the database and the broker are up; the work resumes "
                    "where it stopped when run again",
                ) from exc
            if n == 1:
                log.warning("%s unreachable, waiting for it: %s", what, _first_line(exc))
            sleep(min(outage_delay(n), max(patience_s - waited, 0.0)))


def outage_as_error(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorate an entry point (``astrid process``'s calls): an outage that escapes it
    becomes one :class:`OutageError` line instead of a driver traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, OutageError) or not is_outage(exc):
                raise
            raise OutageError(
                f"the database or broker is unreachable: {_first_line(exc)}",
                hint="check that they are up; running the command again resumes the work",
            ) from exc

    return wrapper


class Heartbeat:
    """Refresh a stage run's lease (``updated_at``) every ``period_s`` while in a ``with``."""

    def __init__(self, runtime: Runtime, run_id: int, period_s: float = HEARTBEAT_S) -> None:
        self.runtime, self.run_id, self.period_s = runtime, run_id, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                with self.runtime.db.session() as session:
                    session.execute(
                        update(StageRun)
                        .where(
                            StageRun.id == self.run_id,
                            StageRun.status == StageRunStatus.RUNNING.value,
                        )
                        .values(updated_at=utcnow())
                    )
            except Exception as exc:  # an outage: the lease may lapse, a redelivery is harmless
                log.debug("heartbeat of stage run %d missed: %s", self.run_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


@dataclass(frozen=True)
class ReclaimedRun:
    """A stale run that was reclaimed (marked ``retrying``)."""

    id: int
    stage: str
    observation_id: int | None
    worker: str | None
    inputs: dict[str, Any]


def reclaim_stale_runs(runtime: Runtime, lease_s: float = LEASE_S) -> list[ReclaimedRun]:
    """Mark ``running``/``retrying`` runs without a heartbeat for ``lease_s`` as ``retrying``.

    Each stale run is reclaimed by one caller only (the update is conditioned on the
    ``updated_at`` it saw), which also renews its lease; the run keeps its attempts and
    the next claim of its key runs it again.
    """
    cutoff = utcnow() - timedelta(seconds=lease_s)
    stale = (StageRunStatus.RUNNING.value, StageRunStatus.RETRYING.value)
    out: list[ReclaimedRun] = []
    with runtime.db.session() as session:
        rows = session.execute(
            select(
                StageRun.id,
                StageRun.stage,
                StageRun.observation_id,
                StageRun.worker,
                StageRun.inputs,
                StageRun.updated_at,
            ).where(StageRun.status.in_(stale), StageRun.updated_at < cutoff)
        ).all()
    for run_id, stage, obs_id, worker, inputs, seen in rows:
        with runtime.db.session() as session:
            done = session.execute(
                update(StageRun)
                .where(
                    StageRun.id == run_id,
                    StageRun.updated_at == seen,
                    StageRun.status.in_(stale),
                )
                .values(
                    status=StageRunStatus.RETRYING.value,
                    error=f"lease expired: worker {worker} sent no heartbeat for {lease_s:.0f} s",
                    error_kind="transient",
                    updated_at=utcnow(),
                )
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                out.append(ReclaimedRun(run_id, stage, obs_id, worker, dict(inputs or {})))
    if out:
        log.warning("reclaimed %d stale stage run(s): %s", len(out), [r.id for r in out])
    return out
