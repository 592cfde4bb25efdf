"""Worker presence and queue pauses: heartbeats written by the workers themselves.

Each ``astrid worker`` process runs one :class:`WorkerPresence`: a Dramatiq middleware that
counts the tasks it finishes (``processed``) and those that raised (``failed``) and knows
the task each thread runs now, plus a thread that every ``ASTRID_WORKER_HEARTBEAT_S``
upserts the process's row in ``workers`` (:class:`~astrid.store.tables.WorkerProcess`) and
reads the ``paused`` flags of its queues (:class:`~astrid.store.tables.QueueState`).

A paused queue holds the worker's **worker threads** (``WorkerThread.pause``): no message is
started; the consumer keeps heart-beating to the broker, so the messages it prefetched (at
most one per thread) stay acknowledged-late and are not re-delivered elsewhere, and every
other message stays waiting on the broker. Resuming releases the threads. A pause takes
effect within one heartbeat period; a task already running finishes.

The readers, :func:`list_workers` (lost = silent for ``ASTRID_WORKER_LOST_AFTER_S``) and
:func:`paused_queues`, and the writer :func:`set_queue_paused` are used by the API.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import select

from astrid.runtime import Runtime
from astrid.store.tables import QueueState, WorkerProcess, utcnow

__all__ = [
    "WorkerPresence",
    "WorkerStatus",
    "list_workers",
    "paused_queues",
    "set_queue_paused",
]

log = logging.getLogger(__name__)


class WorkerPresence(Middleware):
    """Counts, current tasks and the heartbeat row of one worker process.

    Parameters
    ----------
    runtime : Runtime
        Where the row is written (the worker's own runtime).
    queues : set of str
        Queue names this process consumes.
    threads : int
        Worker threads of the process.
    """

    def __init__(self, runtime: Runtime, queues: set[str], threads: int) -> None:
        self.runtime = runtime
        self.queues = sorted(queues)
        self.threads = threads
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"[:128]
        self.started_at = utcnow()
        self.processed = 0
        self.failed = 0
        self.paused = False
        self._running: dict[str, tuple[str, float]] = {}  # message id -> (actor, start)
        self._lock = threading.Lock()
        self._worker: dramatiq.Worker | None = None

    # ------------------------------------------------------------------ middleware hooks

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running[message.message_id] = (message.actor_name, time.monotonic())

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)
            if exception is None:
                self.processed += 1
            elif not isinstance(exception, dramatiq.Retry):  # a dependency wait is no failure
                self.failed += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)

    # ------------------------------------------------------------------ heartbeat

    def current_task(self) -> str | None:
        """What the threads run now, e.g. ``probe (3 s)``; None when idle."""
        now = time.monotonic()
        with self._lock:
            tasks = [f"{actor} ({now - t0:.0f} s)" for actor, t0 in self._running.values()]
        return ", ".join(tasks)[:255] or None

    def beat(self, stopped: bool = False) -> None:
        """Upsert this process's row, then pause or resume the threads to match the flags."""
        with self._lock:
            processed, failed = self.processed, self.failed
        now = utcnow()
        with self.runtime.db.session() as session:
            row = session.get(WorkerProcess, self.id)
            if row is None:
                row = WorkerProcess(id=self.id, host=self.host, pid=self.pid)
                row.started_at = self.started_at
                session.add(row)
            row.queues = list(self.queues)
            row.threads = self.threads
            row.last_seen = now
            row.stopped_at = now if stopped else None
            row.current_task = None if stopped else self.current_task()
            row.processed, row.failed = processed, failed
            row.paused = self.paused
        if not stopped:
            self._obey(bool(set(self.queues) & paused_queues(self.runtime)))

    def _obey(self, pause: bool) -> None:
        worker = self._worker
        if worker is None or pause == self.paused:
            return
        # Not Worker.pause(): it also stops the consumers (no broker heartbeat: the held
        # messages would be re-delivered elsewhere) and waits for running tasks to end.
        for thread in worker.workers:
            thread.pause() if pause else thread.resume()
        if pause:
            # An idle thread notices within one fetch timeout (it may be waiting for a
            # message); report "paused" once it did. A busy thread pauses after its task.
            deadline = time.monotonic() + 2 * worker.worker_timeout / 1000 + 0.5
            for thread in worker.workers:
                thread.paused_event.wait(max(0.0, deadline - time.monotonic()))
        self.paused = pause
        log.warning("queue(s) %s %s", ",".join(self.queues), "paused" if pause else "resumed")
        self.beat()  # report the new state at once

    def run(self, worker: dramatiq.Worker, stop: threading.Event) -> threading.Thread:
        """Beat now and then every ``ASTRID_WORKER_HEARTBEAT_S`` until ``stop``, in a thread."""
        self._worker = worker
        period = self.runtime.settings.worker_heartbeat_s

        def loop() -> None:
            while True:
                try:
                    self.beat()
                except Exception as exc:  # an outage: the next beat tries again
                    log.warning("worker heartbeat failed: %s: %s", type(exc).__name__, exc)
                if stop.wait(period):
                    return

        thread = threading.Thread(target=loop, name="astrid-worker-heartbeat", daemon=True)
        thread.start()
        return thread


@dataclass(frozen=True)
class WorkerStatus:
    """A worker row with its derived state: ``alive``, ``lost`` or ``stopped``."""

    row: WorkerProcess
    state: str
    heartbeat_age_s: float


def list_workers(runtime: Runtime, *, keep_stopped_s: float = 24 * 3600) -> list[WorkerStatus]:
    """Every worker seen within ``keep_stopped_s``, newest first, with its state.

    A worker is ``lost`` when its last heartbeat is older than
    ``ASTRID_WORKER_LOST_AFTER_S`` without a clean stop (killed, host down, hung).
    """
    now = utcnow()
    lost_after = runtime.settings.worker_lost_after_s
    with runtime.db.session() as session:
        rows = list(
            session.scalars(
                select(WorkerProcess)
                .where(WorkerProcess.last_seen >= now - timedelta(seconds=keep_stopped_s))
                .order_by(WorkerProcess.started_at.desc())
            )
        )
        session.expunge_all()
    out = []
    for row in rows:
        age = max(0.0, (now - row.last_seen).total_seconds())
        state = "stopped" if row.stopped_at else ("lost" if age > lost_after else "alive")
        out.append(WorkerStatus(row, state, age))
    return out


def paused_queues(runtime: Runtime) -> set[str]:
    """Names of the queues an admin paused."""
    with runtime.db.session() as session:
        return set(session.scalars(select(QueueState.name).where(QueueState.paused.is_(True))))


def set_queue_paused(runtime: Runtime, name: str, paused: bool, by: str | None) -> datetime:
    """Set (or clear) ``name``'s paused flag; the workers obey it at their next heartbeat.

    Returns the time of the change.
    """
    now = utcnow()
    with runtime.db.session() as session:
        row = session.get(QueueState, name)
        if row is None:
            row = QueueState(name=name)
            session.add(row)
        row.paused, row.changed_by, row.changed_at = paused, by, now
    return now
