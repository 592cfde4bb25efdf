"""Run the pipeline's stages for one observation or for everything pending.

:func:`process_observation` runs :data:`astrid.pipeline.stages.STAGES` in order for one
observation and reports what each stage did; :func:`process_pending` does it for every
observation that still has work (ingested, waiting for a reference, or interrupted), in
two passes so that references exist before they are needed: first every pending
observation is preprocessed (oldest first), then each goes through reference, difference
and detect.

Where the work runs is one seam, a :class:`Runner`: :class:`InProcessRunner` (the default)
calls the stage functions here, sequentially.

With a broker (``ASTRID_BROKER_URL``), :func:`enqueue_observations` puts **one message per
observation** on the queue (the ``process_observation`` actor of
:mod:`astrid.pipeline.tasks`, which calls :func:`process_observation` in a worker) and
:func:`wait_for_batch` follows the batch in the database. The queued path gives the same
products as the in-process one because it keeps the one ordering that matters: an
observation's reference is chosen among the *earlier* observations of its field that are
preprocessed at that moment, and in process every observation of the batch is preprocessed
before any reference is chosen. So each message carries ``after``, the earlier batch
members that could be its reference (same filter, centre within the reference cone;
:func:`batch_dependencies`); the worker preprocesses its observation, and while one of
``after`` is not yet preprocessed (nor failed) it hands the message back to the broker
with a short delay (``dramatiq.Retry``) instead of choosing a reference from an
incomplete set. Messages are enqueued oldest MJD first, so dependencies are normally done
by the time they are needed. The stages are idempotent, so a redelivered or repeated
message stores nothing twice; the message's own bookkeeping is one ``process`` stage run
per (batch, observation), which is how :func:`wait_for_batch` knows it is finished.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy import func, select

from astrid.domain.observations import ObservationService
from astrid.errors import AstridError
from astrid.pipeline.runs import Stage, StageContext, stable_hash
from astrid.pipeline.stages import STAGES, StageResult, identity_hash, merge_params
from astrid.runtime import Runtime
from astrid.store.tables import (
    Observation,
    ObservationStatus,
    PreprocessResult,
    StageRun,
    StageRunStatus,
)

__all__ = [
    "PENDING_STATUSES",
    "PROCESS_STAGE",
    "BatchTimeoutError",
    "InProcessRunner",
    "ObservationReport",
    "ProcessSummary",
    "QueuedBatch",
    "Runner",
    "batch_dependencies",
    "batch_params",
    "enqueue_observations",
    "pending_observations",
    "process_observation",
    "process_observations",
    "process_pending",
    "report_from_dict",
    "report_to_dict",
    "stage_timings",
    "unsettled_dependencies",
    "wait_for_batch",
]

S = ObservationStatus

#: Statuses with work left: new, waiting for a reference (``preprocessed``), or a stage
#: interrupted mid-way (a crashed worker); re-running them resumes where they stopped.
PENDING_STATUSES = (
    S.INGESTED,
    S.PREPROCESSING,
    S.PREPROCESSED,
    S.DIFFERENCING,
    S.DIFFERENCED,
    S.DETECTING,
)

ProgressFn = Callable[[int, StageResult], None]


class Runner(Protocol):
    """Where a stage runs: ``runner(stage_name, runtime, observation_id, params, rerun)``."""

    def __call__(
        self,
        stage: str,
        runtime: Runtime,
        observation_id: int,
        params: Mapping[str, Any],
        rerun_failed: bool,
    ) -> StageResult: ...


class InProcessRunner:
    """Runs each stage function in this process, now."""

    def __call__(
        self,
        stage: str,
        runtime: Runtime,
        observation_id: int,
        params: Mapping[str, Any],
        rerun_failed: bool,
    ) -> StageResult:
        return STAGES[stage](runtime, observation_id, params, rerun_failed=rerun_failed)


@dataclass
class ObservationReport:
    """What processing did to one observation."""

    observation_id: int
    stages: list[StageResult] = field(default_factory=list)
    status: str = ""
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == S.FAILED.value

    def value(self, key: str) -> Any:
        """The last stage value called ``key`` (e.g. ``n_candidates``), or None."""
        for r in reversed(self.stages):
            if key in r.value:
                return r.value[key]
        return None


@dataclass
class ProcessSummary:
    """What a batch did: one report per observation and the time spent per stage."""

    reports: list[ObservationReport] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_s: float = 0.0

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.reports:
            out[r.status] += 1
        return dict(out)


def _account(summary: ProcessSummary, result: StageResult) -> None:
    # Nested calls re-check the earlier stages (cheap, "reused"); their time is counted once,
    # under the stage that did the work.
    summary.stage_seconds[result.stage] = summary.stage_seconds.get(result.stage, 0.0)
    if result.status == "done":
        summary.stage_seconds[result.stage] += result.duration_s
    counts = summary.stage_counts.setdefault(result.stage, {})
    counts[result.status] = counts.get(result.status, 0) + 1


def _final(runtime: Runtime, report: ObservationReport) -> ObservationReport:
    with runtime.db.session() as session:
        obs = session.get(Observation, report.observation_id)
        if obs is not None:
            report.status = S(obs.status).value
            report.reason = obs.status_reason
    return report


def _prepare(runtime: Runtime, observation_id: int, retry_failed: bool) -> None:
    obs = ObservationService(runtime.require_migrated()).get(observation_id)
    if retry_failed and S(obs.status) == S.FAILED:
        ObservationService(runtime.db).transition(observation_id, S.INGESTED, "retry requested")


def process_observation(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    *,
    retry_failed: bool = False,
    runner: Runner | None = None,
    on_stage: ProgressFn | None = None,
    stages: Sequence[str] = tuple(STAGES),
    rerun_failed: bool | None = None,
) -> ObservationReport:
    """Run the stages for one observation and report the outcome.

    Parameters
    ----------
    runtime : Runtime
        Database and blob store.
    observation_id : int
        The observation.
    params : mapping, optional
        Pipeline parameters by stage (see :data:`astrid.pipeline.stages.DEFAULT_PARAMS`).
    retry_failed : bool
        Give a ``failed`` observation another go (``failed → ingested``, parked stage runs
        re-run).
    runner : Runner, optional
        Where stages run (default: in process).
    on_stage : callable, optional
        Called ``on_stage(observation_id, result)`` after each stage.
    stages : sequence of str
        Stage names to run, in order (default: all).
    rerun_failed : bool, optional
        Re-run parked stage runs (default: ``retry_failed``). A queued batch moves failed
        observations back to ``ingested`` when it is submitted and passes
        ``retry_failed=False, rerun_failed=True`` here.

    Raises
    ------
    NotFoundError
        No observation with that id.
    """
    merged = merge_params(params)
    runner = runner or InProcessRunner()
    rerun = retry_failed if rerun_failed is None else rerun_failed
    _prepare(runtime, observation_id, retry_failed)
    report = ObservationReport(observation_id)
    for name in stages:
        result = runner(name, runtime, observation_id, merged, rerun)
        report.stages.append(result)
        if on_stage is not None:
            on_stage(observation_id, result)
        if not result.ok:
            break
    return _final(runtime, report)


def pending_observations(runtime: Runtime, limit: int | None = None) -> list[int]:
    """Ids of observations with work left (:data:`PENDING_STATUSES`), oldest MJD first."""
    with runtime.require_migrated().session() as session:
        stmt = (
            select(Observation.id)
            .where(Observation.status.in_(PENDING_STATUSES))
            .order_by(Observation.mjd.is_(None), Observation.mjd, Observation.id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return [int(i) for i in session.scalars(stmt)]


def process_observations(
    runtime: Runtime,
    observation_ids: Iterable[int],
    params: Mapping[str, Any] | None = None,
    *,
    retry_failed: bool = False,
    runner: Runner | None = None,
    on_stage: ProgressFn | None = None,
) -> ProcessSummary:
    """Process several observations: preprocess them all first, then the other stages.

    Observations are taken in MJD order so that earlier images are ready as references
    when later ones need them. A failure parks that observation (``failed`` with its
    reason) and the others go on.
    """
    started = time.perf_counter()
    merged = merge_params(params)
    runner = runner or InProcessRunner()
    ids = list(dict.fromkeys(int(i) for i in observation_ids))
    service = ObservationService(runtime.require_migrated())
    for i in ids:
        service.get(i)  # NotFoundError for an unknown id, before any work
    known = ids
    with runtime.db.session() as session:
        rows = session.execute(
            select(Observation.id, Observation.mjd).where(Observation.id.in_(known))
        ).all()
        mjd = {int(i): m for i, m in rows}
    order = sorted(known, key=lambda i: (mjd.get(i) is None, mjd.get(i) or 0.0, i))
    summary = ProcessSummary()
    reports = {i: ObservationReport(i) for i in order}

    def record(obs_id: int, result: StageResult) -> None:
        reports[obs_id].stages.append(result)
        _account(summary, result)
        if on_stage is not None:
            on_stage(obs_id, result)

    for i in order:  # pass 1: preprocess everything, so references are ready
        _prepare(runtime, i, retry_failed)
        record(i, runner("preprocess", runtime, i, merged, retry_failed))
    for i in order:  # pass 2: reference, difference, detect
        if not reports[i].stages[-1].ok:
            continue
        for name in [s for s in STAGES if s != "preprocess"]:
            result = runner(name, runtime, i, merged, retry_failed)
            record(i, result)
            if not result.ok:
                break
    summary.reports = [_final(runtime, reports[i]) for i in order]
    summary.wall_s = time.perf_counter() - started
    return summary


def process_pending(
    runtime: Runtime,
    params: Mapping[str, Any] | None = None,
    *,
    retry_failed: bool = False,
    runner: Runner | None = None,
    on_stage: ProgressFn | None = None,
    limit: int | None = None,
) -> ProcessSummary:
    """Process every observation with work left (and the failed ones if ``retry_failed``)."""
    ids = pending_observations(runtime, limit)
    if retry_failed:
        ids += [o.id for o in ObservationService(runtime.db).list(status=S.FAILED, limit=10_000)]
    return process_observations(
        runtime, ids, params, retry_failed=retry_failed, runner=runner, on_stage=on_stage
    )


def stage_timings(
    runtime: Runtime, observation_ids: Iterable[int] | None = None
) -> dict[str, tuple[int, float]]:
    """Stored successful stage runs per stage: ``{stage: (runs, total seconds)}``.

    Reads the stage runner's records, so it includes the work of earlier runs that a
    re-run reused. ``observation_ids`` restricts it to those observations.
    """
    stmt = (
        select(StageRun.stage, func.count(), func.sum(StageRun.duration_s))
        .where(StageRun.status == StageRunStatus.SUCCEEDED.value)
        .where(StageRun.stage.in_(list(STAGES)))
        .group_by(StageRun.stage)
    )
    if observation_ids is not None:
        stmt = stmt.where(StageRun.observation_id.in_(list(observation_ids)))
    with runtime.require_migrated().session() as session:
        rows = {stage: (int(n), float(t or 0.0)) for stage, n, t in session.execute(stmt).all()}
    return {stage: rows[stage] for stage in STAGES if stage in rows}


# --------------------------------------------------------------------------- queued batches


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
    from astrid.store.sky_index import angular_separation_deg

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
    runtime: Runtime, observation_ids: Iterable[int], params: Mapping[str, Any] | None = None
) -> dict[int, list[int]]:
    """For each observation, the earlier batch members that could be its reference.

    Same filter, strictly earlier MJD, centre within the reference stage's cone
    (``reference.max_offset`` × the image's centre-to-corner radius, with a 5 % margin:
    waiting for one image too many costs a little time, one too few could change the
    choice). Pairs are found with :func:`astropy.coordinates.search_around_sky`.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    ids = list(dict.fromkeys(int(i) for i in observation_ids))
    out: dict[int, list[int]] = {i: [] for i in ids}
    if len(ids) < 2:
        return out
    max_offset = float(merge_params(params)["reference"]["max_offset"])
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
    runtime: Runtime, after: Iterable[int], params: Mapping[str, Any] | None = None
) -> list[int]:
    """Those of ``after`` not yet preprocessed (with these parameters) nor failed/archived."""
    wanted = [int(i) for i in after]
    if not wanted:
        return []
    p = merge_params(params)["preprocess"]
    with runtime.require_migrated().session() as session:
        rows = session.execute(
            select(Observation.id, Observation.content_hash, Observation.status).where(
                Observation.id.in_(wanted)
            )
        ).all()
        stored = {
            (int(i), h)
            for i, h in session.execute(
                select(PreprocessResult.observation_id, PreprocessResult.params_hash).where(
                    PreprocessResult.observation_id.in_(wanted)
                )
            ).all()
        }
    waiting = []
    for obs_id, content_hash, status in rows:
        if S(status) in (S.FAILED, S.ARCHIVED):
            continue
        if (int(obs_id), identity_hash("preprocess", p, {"observation": content_hash})) in stored:
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


def enqueue_observations(
    runtime: Runtime,
    observation_ids: Iterable[int],
    params: Mapping[str, Any] | None = None,
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
    import uuid

    from astrid.pipeline.broker import BrokerConfigError, get_broker, is_in_process
    from astrid.pipeline.tasks import enqueue

    broker = broker if broker is not None else get_broker()
    if is_in_process(broker):
        raise BrokerConfigError(
            "no broker configured: nothing would consume the queued observations",
            hint="set ASTRID_BROKER_URL, or run them in process with process_observations",
        )
    merged = merge_params(params)
    ids = _ordered(runtime, list(dict.fromkeys(int(i) for i in observation_ids)))
    for i in ids:
        _prepare(runtime, i, retry_failed)
    deps = batch_dependencies(runtime, ids, merged)
    batch = QueuedBatch(uuid.uuid4().hex, ids, [], deps)
    for i in ids:
        batch.message_ids.append(
            enqueue(
                broker,
                "process_observation",
                observation_id=i,
                params=merged,
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
    from astrid.pipeline.broker import get_broker, queue_stats

    broker = broker if broker is not None else get_broker()
    total = len(batch.observation_ids)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    idle_polls, idle_since = 0, time.monotonic()
    while True:
        finished = _finished_runs(runtime, batch.batch)
        if on_progress is not None:
            on_progress(finished, total)
        if finished >= total:
            break
        stats = queue_stats(broker)
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
    return _batch_summary(runtime, batch)


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
            report = _final(runtime, ObservationReport(i))
            report.reason = f"not processed: {why}"
        for r in report.stages:
            _account(summary, r)
        summary.reports.append(report)
    summary.wall_s = time.perf_counter() - batch.started
    return summary
