"""Schedules and flow runs: when each operational flow runs, and what happened when it did.

A schedule is data (a cron expression in a time zone, a flow name and its parameters), so
`astrid schedule run-due` from cron/systemd, a Prefect deployment or a worker all read the
same rows. Each execution of a flow, scheduled or by hand, is a ``FlowRun`` with its log.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime

__all__ = ["FlowRun", "FlowRunStatus", "Schedule"]


class FlowRunStatus(enum.StrEnum):
    """Where one flow run stands (``queued``: sent to a worker, not started yet)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Schedule(TimestampMixin, Base):
    """A flow that runs on a cron schedule in a time zone."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    flow: Mapped[str] = mapped_column(String(64))
    cron: Mapped[str] = mapped_column(String(128), doc="Five-field cron expression.")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", doc="IANA time zone.")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FlowRun(TimestampMixin, Base):
    """One execution of a flow: status, attempts, error and log lines."""

    __tablename__ = "flow_runs"
    __table_args__ = (Index("ix_flow_runs_flow_status", "flow", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    flow: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=FlowRunStatus.RUNNING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
