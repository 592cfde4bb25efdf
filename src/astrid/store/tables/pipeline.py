"""Pipeline bookkeeping: one row per stage run, the key of idempotent task execution.

A stage run is identified by ``key`` = sha256 of (stage name, stage version, parameters
hash, input hash): running the same stage on the same inputs with the same parameters finds
the existing row instead of doing the work twice. The row records the attempts, timing,
the result (small JSON) and, for a parked failure, the reason; a parked run is re-runnable.

Status of a run::

    running → succeeded
    running → retrying → running ...      (transient failure, backoff)
    running | retrying → failed           (permanent failure or retries exhausted: parked)
    failed → running                      (explicit re-run)
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, UTCDateTime, utcnow

__all__ = ["StageRun", "StageRunStatus"]


class StageRunStatus(enum.StrEnum):
    """Where one stage run stands."""

    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StageRun(Base):
    """One idempotent execution of a pipeline stage on one set of inputs."""

    __tablename__ = "stage_runs"
    __table_args__ = (Index("ix_stage_runs_stage_status", "stage", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 of the run identity.")
    stage: Mapped[str] = mapped_column(String(64))
    stage_version: Mapped[str] = mapped_column(String(32))
    params_hash: Mapped[str] = mapped_column(String(64))
    input_hash: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="What the inputs were.")
    observation_id: Mapped[int | None] = mapped_column(
        ForeignKey("observations.id"), index=True, doc="Set when the run concerns one."
    )
    status: Mapped[str] = mapped_column(String(16), default=StageRunStatus.RUNNING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, doc="Reason of the last failure.")
    error_kind: Mapped[str | None] = mapped_column(String(16), doc="transient | permanent")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    worker: Mapped[str | None] = mapped_column(String(128), doc="host:pid of the last attempt.")
    duration_s: Mapped[float | None] = mapped_column(Float, doc="Seconds of the last attempt.")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
