"""Run the stages for one observation, or for everything pending, in data-flow order.

The orchestrator is where the data path reads forward::

    preprocess ─→ reference ─→ difference (+ extract) ─→ detect (score, cutouts, detections)
    ingested → preprocessing → preprocessed → differencing → differenced → detecting → completed

Each stage function (:mod:`astrid.pipeline.stages`) sees only its own inputs: the results
of the stages before it, which the orchestrator hands on. :func:`process_observation` runs
them in order for one observation and reports what each did; :func:`process_observations`
and :func:`process_pending` do it for many, in two passes so that references exist before
they are needed: first every observation is preprocessed (oldest MJD first), then each
goes through reference, difference and detect.

Where a stage runs is one seam, a :class:`Runner`; :class:`InProcessRunner` (the default)
calls the stage functions here. Queued processing (one message per observation, Redis
workers) is :mod:`astrid.pipeline.queue.batch`, which calls :func:`process_observation`
in the worker.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from sqlalchemy import func, select

from astrid.domain.observations import NotFoundError, ObservationService
from astrid.pipeline.params import PipelineParams
from astrid.pipeline.resilience import outage_as_error, ride_out
from astrid.pipeline.stages.common import STAGE_NAMES, StageResult
from astrid.pipeline.stages.detect import detect_observation
from astrid.pipeline.stages.difference import difference_observation
from astrid.pipeline.stages.preprocess import preprocess_observation
from astrid.pipeline.stages.reference import choose_reference
from astrid.runtime import Runtime
from astrid.store.tables import Observation, ObservationStatus, StageRun, StageRunStatus

__all__ = [
    "PENDING_STATUSES",
    "InProcessRunner",
    "ObservationReport",
    "ProcessSummary",
    "Runner",
    "account",
    "final_report",
    "pending_observations",
    "prepare",
    "process_observation",
    "process_observations",
    "process_pending",
    "run_stage_of",
    "stage_timings",
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
    """Where a stage runs.

    ``runner(stage_name, runtime, observation_id, params, rerun_failed, earlier)``, where
    ``earlier`` holds the results of the stages before it (by name), its inputs.
    """

    def __call__(
        self,
        stage: str,
        runtime: Runtime,
        observation_id: int,
        params: PipelineParams,
        rerun_failed: bool,
        earlier: Mapping[str, StageResult],
    ) -> StageResult: ...


def run_stage_of(
    stage: str,
    runtime: Runtime,
    observation_id: int,
    params: PipelineParams,
    rerun_failed: bool,
    earlier: Mapping[str, StageResult],
) -> StageResult:
    """Call the stage function ``stage`` with its inputs taken from ``earlier``."""
    if stage == "preprocess":
        return preprocess_observation(
            runtime, observation_id, params.preprocess, rerun_failed=rerun_failed
        )
    if stage == "reference":
        return choose_reference(
            runtime,
            observation_id,
            earlier["preprocess"],
            params.reference,
            params.preprocess,
            rerun_failed=rerun_failed,
        )
    if stage == "difference":
        return difference_observation(
            runtime,
            observation_id,
            earlier["preprocess"],
            earlier["reference"],
            params.difference,
            rerun_failed=rerun_failed,
        )
    if stage == "detect":
        return detect_observation(
            runtime, observation_id, earlier["difference"], params.detect, rerun_failed=rerun_failed
        )
    raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGE_NAMES)}")


class InProcessRunner:
    """Runs each stage function in this process, now (a :class:`Runner` that is
    :func:`run_stage_of` itself)."""

    __call__ = staticmethod(run_stage_of)


def _run_forward(
    runner: Runner,
    stage: str,
    runtime: Runtime,
    observation_id: int,
    params: PipelineParams,
    rerun_failed: bool,
    earlier: dict[str, StageResult],
) -> StageResult:
    """Run ``stage``; inputs missing from ``earlier`` come from running the stages before it
    first (they answer at once, ``reused``, when stored) without being reported."""
    for before in STAGE_NAMES[: STAGE_NAMES.index(stage)]:
        if before not in earlier:
            earlier[before] = _ride(
                runner, before, runtime, observation_id, params, rerun_failed, earlier
            )
        if not earlier[before].ok:
            prev = earlier[before]
            return StageResult(stage, observation_id, prev.status, {}, 0.0, prev.error)
    return _ride(runner, stage, runtime, observation_id, params, rerun_failed, earlier)


def _ride(
    runner: Runner,
    stage: str,
    runtime: Runtime,
    observation_id: int,
    params: PipelineParams,
    rerun_failed: bool,
    earlier: Mapping[str, StageResult],
) -> StageResult:
    """One stage call, called again while the database is unreachable (stages are
    idempotent); :class:`~astrid.pipeline.resilience.OutageError` after the patience."""
    call = partial(runner, stage, runtime, observation_id, params, rerun_failed, earlier)
    return ride_out(call, patience_s=runtime.settings.outage_patience_s)


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


def account(summary: ProcessSummary, result: StageResult) -> None:
    """Add one stage result to the batch's time and counts per stage."""
    summary.stage_seconds[result.stage] = summary.stage_seconds.get(result.stage, 0.0)
    if result.status == "done":
        summary.stage_seconds[result.stage] += result.duration_s
    counts = summary.stage_counts.setdefault(result.stage, {})
    counts[result.status] = counts.get(result.status, 0) + 1


def final_report(runtime: Runtime, report: ObservationReport) -> ObservationReport:
    with runtime.db.session() as session:
        obs = session.get(Observation, report.observation_id)
        if obs is not None:
            report.status = S(obs.status).value
            report.reason = obs.status_reason
    return report


def prepare(runtime: Runtime, observation_id: int, retry_failed: bool) -> None:
    """Move a failed observation back to ``ingested`` when ``retry_failed``.

    Checked and moved in one transaction with the row locked, so two concurrent retries
    move it once (the second finds it no longer failed).

    Raises
    ------
    NotFoundError
        No observation with that id.
    """
    with runtime.require_migrated().session() as session:
        obs = session.get(Observation, observation_id, with_for_update=True)
        if obs is None:
            raise NotFoundError(f"no observation with id {observation_id}")
        if retry_failed and S(obs.status) == S.FAILED:
            ObservationService.apply_transition(session, obs, S.INGESTED, "retry requested")


def process_observation(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | PipelineParams | None = None,
    *,
    retry_failed: bool = False,
    runner: Runner | None = None,
    on_stage: ProgressFn | None = None,
    stages: Sequence[str] = STAGE_NAMES,
    rerun_failed: bool | None = None,
    earlier: Sequence[StageResult] = (),
) -> ObservationReport:
    """Run the stages for one observation and report the outcome.

    Parameters
    ----------
    runtime : Runtime
        Database and blob store.
    observation_id : int
        The observation.
    params : PipelineParams or mapping, optional
        Pipeline parameters (:class:`~astrid.pipeline.params.PipelineParams`, or a partial
        mapping by stage).
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
    earlier : sequence of StageResult
        Results of stages run before this call (a worker's preprocess), handed on as the
        later stages' inputs.

    Raises
    ------
    NotFoundError
        No observation with that id.
    """
    merged = PipelineParams.from_mapping(params)
    runner = runner or InProcessRunner()
    rerun = retry_failed if rerun_failed is None else rerun_failed
    prepare(runtime, observation_id, retry_failed)
    report = ObservationReport(observation_id)
    done = {r.stage: r for r in earlier}
    for name in stages:
        result = _run_forward(runner, name, runtime, observation_id, merged, rerun, done)
        done[name] = result
        report.stages.append(result)
        if on_stage is not None:
            on_stage(observation_id, result)
        if not result.ok:
            break
    return final_report(runtime, report)


@outage_as_error
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


@outage_as_error
def process_observations(
    runtime: Runtime,
    observation_ids: Iterable[int],
    params: Mapping[str, Any] | PipelineParams | None = None,
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
    merged = PipelineParams.from_mapping(params)
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
        account(summary, result)
        if on_stage is not None:
            on_stage(obs_id, result)

    for i in order:  # pass 1: preprocess everything, so references are ready
        prepare(runtime, i, retry_failed)
        record(i, _run_forward(runner, "preprocess", runtime, i, merged, retry_failed, {}))
    for i in order:  # pass 2: reference, difference, detect
        if not reports[i].stages[-1].ok:
            continue
        done = {r.stage: r for r in reports[i].stages}
        for name in STAGE_NAMES[1:]:
            result = _run_forward(runner, name, runtime, i, merged, retry_failed, done)
            done[name] = result
            record(i, result)
            if not result.ok:
                break
    summary.reports = [final_report(runtime, reports[i]) for i in order]
    summary.wall_s = time.perf_counter() - started
    return summary


@outage_as_error
def process_pending(
    runtime: Runtime,
    params: Mapping[str, Any] | PipelineParams | None = None,
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
        .where(StageRun.stage.in_(list(STAGE_NAMES)))
        .group_by(StageRun.stage)
    )
    if observation_ids is not None:
        stmt = stmt.where(StageRun.observation_id.in_(list(observation_ids)))
    with runtime.require_migrated().session() as session:
        rows = {stage: (int(n), float(t or 0.0)) for stage, n, t in session.execute(stmt).all()}
    return {stage: rows[stage] for stage in STAGE_NAMES if stage in rows}
