"""Queued processing: one ``process_observation`` message per observation of a batch.

With a broker (``ASTRID_BROKER_URL``), :func:`enqueue_observations` puts one message per
observation on the queue and :func:`wait_for_batch` follows the batch in the database; in
the worker, :func:`run_batch_member` (the ``process_observation`` actor of
:mod:`.actors`) runs :func:`astrid.pipeline.orchestrate.process_observation`.

The queued path gives the same products as the in-process one because it keeps the one
ordering that matters: an observation's reference is chosen among the *earlier*
observations of its field that are preprocessed at that moment, and in process every
observation of the batch is preprocessed before any reference is chosen. So each message
carries ``after``, the earlier batch members that could be its reference (same filter,
centre within the reference cone; :func:`batch_dependencies`); the worker preprocesses its
observation, and while one of ``after`` is not yet preprocessed (nor failed) it hands the
message back to the broker with a short delay (``dramatiq.Retry``) instead of choosing a
reference from an incomplete set. Messages are enqueued oldest MJD first, so dependencies
are normally done by the time they are needed. The stages are idempotent, so a
redelivered or repeated message stores nothing twice; the message's own bookkeeping is
one ``process`` stage run per (batch, observation), which is how :func:`wait_for_batch`
knows it is finished.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dramatiq
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky
from sqlalchemy import func, select

from astrid.domain.observations import ObservationService
from astrid.errors import AstridError
from astrid.pipeline.orchestrate import (
    ObservationReport,
    ProcessSummary,
    account,
    final_report,
    prepare,
    process_observation,
)
from astrid.pipeline.params import PipelineParams
from astrid.pipeline.queue.broker import (
    BrokerConfigError,
    get_broker,
    is_in_process,
    queue_stats,
    send,
)
from astrid.pipeline.resilience import outage_as_error, reclaim_stale_runs, ride_out
from astrid.pipeline.runner import Stage, StageContext, run_stage, stable_hash
from astrid.pipeline.stages.common import STAGE_NAMES, StageResult
from astrid.pipeline.stages.preprocess import current_preprocess_identity
from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    Observation,
    ObservationStatus,
    PreprocessResult,
    StageRun,
    StageRunStatus,
)

__all__ = [
    "DEPENDENCY_DELAY_MS",
    "DEPENDENCY_MAX_RETRIES",
    "PROCESS_STAGE",
    "PROCESS_TASK",
    "BatchTimeoutError",
    "QueuedBatch",
    "batch_dependencies",
    "batch_params",
    "enqueue_observations",
    "report_from_dict",
    "report_to_dict",
    "resend_reclaimed",
    "run_batch_member",
    "unsettled_dependencies",
    "wait_for_batch",
]

S = ObservationStatus

#: The actor that runs one observation of a batch.
PROCESS_TASK = "process_observation"
#: Wait between two looks at a message's unfinished dependencies, milliseconds.
DEPENDENCY_DELAY_MS = 250
#: Looks before the message is given up (dead-lettered): about an hour of waiting.
DEPENDENCY_MAX_RETRIES = 14_400


class BatchTimeoutError(AstridError):
    """A queued batch did not finish within the time allowed."""


def report_to_dict(report: ObservationReport) -> dict[str, Any]:
    """JSON form of a report (stored as the result of the ``process`` stage run)."""
    return {
        "observation_id": report.observation_id,
        "status": report.status,
        "reason": report.reason,
        "stages": [
            {
                "stage": r.stage,
                "status": r.status,
                "value": r.value,
                "duration_s": r.duration_s,
                "error": r.error,
            }
            for r in report.stages
        ],
    }


def report_from_dict(data: Mapping[str, Any]) -> ObservationReport:
    """The inverse of :func:`report_to_dict`."""
    obs_id = int(data["observation_id"])
    stages = [
        StageResult(
            str(r["stage"]),
            obs_id,
            str(r["status"]),
            dict(r.get("value") or {}),
            float(r.get("duration_s") or 0.0),
            r.get("error"),
        )
        for r in data.get("stages") or []
    ]
    return ObservationReport(obs_id, stages, str(data.get("status") or ""), data.get("reason"))


def _process_compute(ctx: StageContext) -> dict[str, Any]:
    chain: Callable[[], ObservationReport] = ctx.payload
    return report_to_dict(chain())


#: One run per (batch, observation): the bookkeeping of a queued ``process_observation``
#: message. Its ``attempts`` count deliveries that got as far as the chain after preprocess.
PROCESS_STAGE: Stage[dict[str, Any]] = Stage(
    name="process",
    version="1",
    compute=_process_compute,
    persist=lambda session, ctx, value: value,
)


def batch_params(batch: str) -> dict[str, Any]:
    """Parameters of the ``process`` stage runs of a batch (their hash finds them)."""
    return {"batch": batch}


def _radii_deg(rows: Sequence[Any], max_offset: float) -> np.ndarray:
    """Reference cone radius per observation: ``max_offset`` × centre-to-corner radius."""
    out = np.zeros(len(rows))
    for k, r in enumerate(rows):
        if r.footprint:
            corners = np.asarray(r.footprint, dtype=float)
            sep = angular_separation_deg(corners[:, 0], corners[:, 1], r.ra, r.dec)
            out[k] = float(np.max(sep))
        else:
            out[k] = 0.5 * float(np.hypot(r.width, r.height)) * (r.pixel_scale or 1.0) / 3600.0
    return max_offset * out


def batch_dependencies(
    runtime: Runtime,
    observation_ids: Iterable[int],
    params: Mapping[str, Any] | PipelineParams | None = None,
) -> dict[int, list[int]]:
    """For each observation, the earlier batch members that could be its reference.

    Same filter, strictly earlier MJD, centre within the reference stage's cone
    (``reference.max_offset`` × the image's centre-to-corner radius, with a 5 % margin:
    waiting for one image too many costs a little time, one too few could change the
    choice). Pairs are found with :func:`astropy.coordinates.search_around_sky`.
    """
    ids = list(dict.fromkeys(int(i) for i in observation_ids))
    out: dict[int, list[int]] = {i: [] for i in ids}
    if len(ids) < 2:
        return out
    max_offset = PipelineParams.from_mapping(params).reference.max_offset
    cols = (
        Observation.id,
        Observation.ra,
        Observation.dec,
        Observation.mjd,
        Observation.filter,
        Observation.footprint,
        Observation.width,
        Observation.height,
        Observation.pixel_scale,
    )
    rows: list[Any] = []
    with runtime.require_migrated().session() as session:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            rows += session.execute(select(*cols).where(Observation.id.in_(chunk))).all()
    if len(rows) < 2:
        return out
    radius = _radii_deg(rows, max_offset) * 1.05 + 1e-9
    coords = SkyCoord([r.ra for r in rows], [r.dec for r in rows], unit="deg")
    first, second, sep, _ = search_around_sky(coords, coords, float(radius.max()) * u.deg)
    for a, b, d in zip(first, second, sep.deg, strict=True):
        new, old = rows[a], rows[b]
        if (
            a != b
            and new.mjd is not None
            and old.mjd is not None
            and old.mjd < new.mjd
            and old.filter == new.filter
            and d <= radius[a]
        ):
            out[int(new.id)].append(int(old.id))
    return {i: sorted(v) for i, v in out.items()}


def unsettled_dependencies(
    runtime: Runtime,
    after: Iterable[int],
    params: Mapping[str, Any] | PipelineParams | None = None,
) -> list[int]:
    """Those of ``after`` not yet preprocessed (with these parameters) nor failed/archived."""
    wanted = [int(i) for i in after]
    if not wanted:
        return []
    p = PipelineParams.from_mapping(params).preprocess
    with runtime.require_migrated().session() as session:
        observations = list(session.scalars(select(Observation).where(Observation.id.in_(wanted))))
        rows = [(o.id, current_preprocess_identity(session, o, p), o.status) for o in observations]
        stored = {
            (int(i), h)
            for i, h in session.execute(
                select(PreprocessResult.observation_id, PreprocessResult.params_hash).where(
                    PreprocessResult.observation_id.in_(wanted)
                )
            ).all()
        }
    waiting = []
    for obs_id, identity, status in rows:
        if S(status) in (S.FAILED, S.ARCHIVED):
            continue
        if (int(obs_id), identity) in stored:
            continue
        waiting.append(int(obs_id))
    return sorted(waiting)


@dataclass
class QueuedBatch:
    """A batch of observations queued for the workers (see :func:`enqueue_observations`)."""

    batch: str
    observation_ids: list[int]
    message_ids: list[str]
    dependencies: dict[int, list[int]]
    started: float = field(default_factory=time.perf_counter)


def _ordered(runtime: Runtime, ids: Sequence[int]) -> list[int]:
    service = ObservationService(runtime.require_migrated())
    for i in ids:
        service.get(i)  # NotFoundError for an unknown id, before any work
    with runtime.db.session() as session:
        rows = session.execute(
            select(Observation.id, Observation.mjd).where(Observation.id.in_(list(ids)))
        ).all()
    mjd = {int(i): m for i, m in rows}
    return sorted(ids, key=lambda i: (mjd.get(i) is None, mjd.get(i) or 0.0, i))


@outage_as_error
def enqueue_observations(
    runtime: Runtime,
    observation_ids: Iterable[int],
    params: Mapping[str, Any] | PipelineParams | None = None,
    *,
    retry_failed: bool = False,
    broker: Any = None,
) -> QueuedBatch:
    """Queue one ``process_observation`` message per observation, oldest MJD first.

    Each message carries the batch token, the full parameters and its ``after`` list
    (:func:`batch_dependencies`). With ``retry_failed`` the failed observations are moved
    back to ``ingested`` here, before anything is queued, so that their dependants wait
    for them as the in-process two passes would.

    Raises
    ------
    BrokerConfigError
        No broker is configured (use :func:`process_observations`).
    NotFoundError
        An unknown observation id.
    """
    broker = broker if broker is not None else get_broker()
    if is_in_process(broker):
        raise BrokerConfigError(
            "no broker configured: nothing would consume the queued observations",
            hint="set ASTRID_BROKER_URL, or run them in process with process_observations",
        )
    merged = PipelineParams.from_mapping(params)
    ids = _ordered(runtime, list(dict.fromkeys(int(i) for i in observation_ids)))
    for i in ids:
        prepare(runtime, i, retry_failed)
    deps = batch_dependencies(runtime, ids, merged)
    batch = QueuedBatch(uuid.uuid4().hex, ids, [], deps)
    for i in ids:
        batch.message_ids.append(
            send(
                broker,
                PROCESS_TASK,
                observation_id=i,
                params=merged.as_dict(),
                batch=batch.batch,
                after=deps[i],
                retry_failed=retry_failed,
            )
        )
    return batch


def _finished_runs(runtime: Runtime, batch: str) -> int:
    with runtime.db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(StageRun)
                .where(
                    StageRun.stage == PROCESS_STAGE.name,
                    StageRun.params_hash == stable_hash(batch_params(batch)),
                    StageRun.status.in_(
                        [StageRunStatus.SUCCEEDED.value, StageRunStatus.FAILED.value]
                    ),
                )
            )
            or 0
        )


@outage_as_error
def wait_for_batch(
    runtime: Runtime,
    batch: QueuedBatch,
    *,
    broker: Any = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProcessSummary:
    """Follow a queued batch in the database until every observation is finished.

    Finished = its ``process`` stage run succeeded or was parked. Stops early when the
    broker holds nothing more (no message waiting, delayed or in flight) while some are
    not finished: those messages were lost (dead-lettered); their reports say so.

    Parameters
    ----------
    on_progress : callable, optional
        ``on_progress(finished, total)`` after each poll.
    timeout_s : float, optional
        Give up after this many seconds (:class:`BatchTimeoutError`).
    """
    broker = broker if broker is not None else get_broker()
    total = len(batch.observation_ids)
    patience = runtime.settings.outage_patience_s
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    idle_polls, idle_since = 0, time.monotonic()
    while True:
        finished = ride_out(partial(_finished_runs, runtime, batch.batch), patience_s=patience)
        if on_progress is not None:
            on_progress(finished, total)
        if finished >= total:
            break
        stats = ride_out(partial(queue_stats, broker), what="broker", patience_s=patience)
        busy = [stats[k] for k in ("waiting", "delayed", "in_flight")]
        if None not in busy and not any(busy):
            idle_polls += 1
            idle_since = idle_since if idle_polls > 1 else time.monotonic()
        else:
            idle_polls = 0
        if idle_polls >= 3 and time.monotonic() - idle_since >= 2.0:
            break  # nothing left on the broker: the unfinished messages were lost
        if deadline is not None and time.monotonic() > deadline:
            raise BatchTimeoutError(
                f"batch {batch.batch}: {finished} of {total} observation(s) finished "
                f"after {timeout_s:.0f} s",
                hint="are workers running? start `astrid worker`; `astrid status` shows the queue",
            )
        sleep(poll_s)
    return ride_out(partial(_batch_summary, runtime, batch), patience_s=patience)


def _batch_summary(runtime: Runtime, batch: QueuedBatch) -> ProcessSummary:
    with runtime.db.session() as session:
        runs = {
            int(r.observation_id): (r.status, dict(r.result or {}), r.error)
            for r in session.scalars(
                select(StageRun).where(
                    StageRun.stage == PROCESS_STAGE.name,
                    StageRun.params_hash == stable_hash(batch_params(batch.batch)),
                )
            )
            if r.observation_id is not None
        }
    summary = ProcessSummary()
    for i in batch.observation_ids:
        status, result, error = runs.get(i, (None, {}, None))
        if status == StageRunStatus.SUCCEEDED.value:
            report = report_from_dict(result)
        else:
            why = error or "its message was lost (see the dead-letter count in `astrid status`)"
            report = final_report(runtime, ObservationReport(i))
            report.reason = f"not processed: {why}"
        for r in report.stages:
            account(summary, r)
        summary.reports.append(report)
    summary.wall_s = time.perf_counter() - batch.started
    return summary


def run_batch_member(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    batch: str | None = None,
    after: list[int] | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run the pipeline for one observation of a queued batch (in a worker).

    Preprocesses it; when one of ``after`` (earlier observations it may take as reference)
    is still unprocessed, raises ``dramatiq.Retry``; else runs reference, difference and
    detect inside the batch's ``process`` stage run, whose result is the report.
    """
    pre = process_observation(
        runtime, observation_id, params, rerun_failed=retry_failed, stages=STAGE_NAMES[:1]
    )
    ready = bool(pre.stages) and pre.stages[-1].ok
    if ready:
        waiting = unsettled_dependencies(runtime, after or [], params)
        if waiting:
            raise dramatiq.Retry(
                f"observation {observation_id} waits for the preprocessing of {waiting}",
                delay=DEPENDENCY_DELAY_MS,
            )

    def chain() -> ObservationReport:
        if not ready:
            return pre
        rest = process_observation(
            runtime,
            observation_id,
            params,
            rerun_failed=retry_failed,
            stages=STAGE_NAMES[1:],
            earlier=pre.stages,
        )
        return ObservationReport(observation_id, pre.stages + rest.stages, rest.status, rest.reason)

    batch = batch or uuid.uuid4().hex
    message = {
        "observation_id": observation_id,
        "params": dict(params or {}),
        "batch": batch,
        "after": list(after or []),
        "retry_failed": retry_failed,
    }
    out = run_stage(
        runtime,
        PROCESS_STAGE,
        params=batch_params(batch),
        # the message itself, so that a reclaimed run can be sent again (resend_reclaimed)
        inputs={"observation_id": observation_id, "after": list(after or []), "message": message},
        input_hash=stable_hash({"observation": observation_id}),
        payload=chain,
        observation_id=observation_id,
    )
    report = report_from_dict(out.result) if out.ok else ObservationReport(observation_id)
    return {
        "status": out.status,
        "reused": out.reused,
        "observation_status": report.status,
        "error": out.error,
    }


def resend_reclaimed(runtime: Runtime, broker: dramatiq.Broker) -> list[int]:
    """Reclaim stale stage runs (:func:`~astrid.pipeline.resilience.reclaim_stale_runs`) and
    send the message of each reclaimed ``process`` run again; the observation ids re-sent.

    Called by every worker every ``ASTRID_RECLAIM_EVERY_S``: a batch whose worker died and
    whose message was lost (or dead-lettered) finishes without a human.
    """
    settings = runtime.settings
    sent = []
    for run in reclaim_stale_runs(runtime, settings.stage_lease_s):
        message = run.inputs.get("message")
        if run.stage == PROCESS_STAGE.name and isinstance(message, dict):
            send(broker, PROCESS_TASK, **message)
            sent.append(int(message["observation_id"]))
    return sent
