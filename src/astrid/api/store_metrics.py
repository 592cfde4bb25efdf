"""Prometheus gauges read from the store at scrape time: the pipeline's state for alerting.

Each scrape runs a few grouped counts (indexed columns), so the figures are exact and shared
by every API process without any process-local counter: stage runs by stage and status and
the time spent in succeeded runs, observations by status, detections, flow runs by flow and
status, notification deliveries by channel and status, the latest per-night drift PSI of
each model's scores and inputs, and the broker's queue depths. A store that does not answer
sets ``astrid_store_up`` to 0 (the alert rules fire on it) instead of failing the scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from astrid.runtime import Runtime
from astrid.store.tables import (
    Detection,
    DriftCheck,
    FlowRun,
    NotificationDelivery,
    NotificationRule,
    Observation,
    StageRun,
)

__all__ = ["StoreCollector"]

QueueStats = Callable[[], dict[str, int | None]]


class StoreCollector(Collector):
    """Collects pipeline gauges from ``runtime``'s database (and queues from ``queue_stats``)."""

    def __init__(self, runtime: Runtime, queue_stats: QueueStats | None = None) -> None:
        self.runtime = runtime
        self.queue_stats = queue_stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("astrid_store_up", "1 when the database answered the scrape.")
        try:
            families = list(self._from_database())
        except Exception:  # any database error: report it as a metric, not a failed scrape
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        if self.queue_stats is not None:
            queue = GaugeMetricFamily(
                "astrid_queue_messages", "Broker messages by state.", labels=["state"]
            )
            try:
                for state, n in self.queue_stats().items():
                    if n is not None:
                        queue.add_metric([state], n)
            except Exception:  # broker down: no samples, the alert on absent() fires
                return
            yield queue

    def _from_database(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "astrid_stage_runs", "Stage runs by stage and status.", labels=["stage", "status"]
        )
        seconds = GaugeMetricFamily(
            "astrid_stage_seconds_total",
            "Time spent in succeeded stage runs, by stage (seconds).",
            labels=["stage"],
        )
        observations = GaugeMetricFamily(
            "astrid_observations", "Observations by status.", labels=["status"]
        )
        detections = GaugeMetricFamily("astrid_detections", "Detections stored.")
        flows = GaugeMetricFamily(
            "astrid_flow_runs", "Flow runs by flow and status.", labels=["flow", "status"]
        )
        deliveries = GaugeMetricFamily(
            "astrid_notification_deliveries",
            "Notification deliveries by channel (email, webhook) and status (pending, sent, "
            "failed, throttled, digest, digested).",
            labels=["channel", "status"],
        )
        with self.runtime.db.session() as s:
            for channel, status, n in s.execute(
                select(NotificationRule.channel, NotificationDelivery.status, func.count())
                .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
                .group_by(NotificationRule.channel, NotificationDelivery.status)
            ):
                deliveries.add_metric([channel, status], n)
            for stage, status, n, total in s.execute(
                select(
                    StageRun.stage, StageRun.status, func.count(), func.sum(StageRun.duration_s)
                ).group_by(StageRun.stage, StageRun.status)
            ):
                runs.add_metric([stage, status], n)
                if status == "succeeded":
                    seconds.add_metric([stage], float(total or 0.0))
            for status, n in s.execute(
                select(Observation.status, func.count()).group_by(Observation.status)
            ):
                observations.add_metric([str(getattr(status, "value", status))], n)
            detections.add_metric([], s.scalar(select(func.count()).select_from(Detection)) or 0)
            for flow, status, n in s.execute(
                select(FlowRun.flow, FlowRun.status, func.count()).group_by(
                    FlowRun.flow, FlowRun.status
                )
            ):
                flows.add_metric([flow, status], n)
            drift = GaugeMetricFamily(
                "astrid_model_drift_psi",
                "Population stability index of the latest drift check, per model and quantity.",
                labels=["model", "night", "quantity"],
            )
            latest = (
                select(func.max(DriftCheck.id)).group_by(DriftCheck.model_name).scalar_subquery()
            )
            for check in s.scalars(select(DriftCheck).where(DriftCheck.id.in_(latest))):
                for quantity, psi in sorted((check.psi or {}).items()):
                    drift.add_metric([check.model_name, check.night, quantity], float(psi))
        yield from (runs, seconds, observations, detections, flows, deliveries, drift)
