"""Worker processes and queue flags: what the operations page reads and the workers obey.

* :class:`WorkerProcess`: one row per ``astrid worker`` process, upserted by the worker
  itself every ``ASTRID_WORKER_HEARTBEAT_S`` (host, pid, queues, counts, the task it runs);
  a row whose ``last_seen`` is older than ``ASTRID_WORKER_LOST_AFTER_S`` is a lost worker,
  and a clean shutdown stamps ``stopped_at``.
* :class:`QueueState`: a queue's ``paused`` flag, set over the API by an admin; every worker
  reads it on each heartbeat and holds its worker threads while the queue is paused (the
  messages stay on the broker, none is started). Created by migration ``0010``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, UTCDateTime, utcnow

__all__ = ["QueueState", "WorkerProcess"]


class WorkerProcess(Base):
    """One worker process as it last reported itself."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True, doc="host:pid:nonce.")
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]] = mapped_column(default=list, doc="Queue names consumed.")
    threads: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="Clean shutdown.")
    current_task: Mapped[str | None] = mapped_column(String(255), doc="Task(s) running now.")
    processed: Mapped[int] = mapped_column(Integer, default=0, doc="Tasks finished.")
    failed: Mapped[int] = mapped_column(Integer, default=0, doc="Tasks that raised.")
    paused: Mapped[bool] = mapped_column(Boolean, default=False, doc="Holding its threads.")


class QueueState(Base):
    """The operator's flags on one queue (only ``paused`` today)."""

    __tablename__ = "queue_states"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str | None] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
