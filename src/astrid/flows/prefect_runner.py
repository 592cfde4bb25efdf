"""AstrID's flows on Prefect (the optional extra ``astrid[prefect]``).

Without Prefect, ``astrid schedule serve`` (or ``run-due`` from cron) runs the schedules.
With it, ``astrid schedule serve --prefect`` turns every enabled schedule into a Prefect
deployment with the same cron expression, time zone and parameters, and serves them, so the
runs, their states and logs show in Prefect's UI; ``astrid schedule run FLOW --prefect``
runs one flow once as a Prefect flow run.

Each Prefect flow run calls the same :func:`~astrid.flows.schedules.run_flow` (or, when fired
by a schedule, :func:`~astrid.flows.schedules.run_scheduled`): AstrID's own run history,
retries with backoff, ``astrid status`` and the API see every run whoever started it, and a
scheduled occurrence is claimed once even when Prefect and a cron timer both fire it. A
failed AstrID run fails the Prefect flow run with the same reason.

A dependency that is down is retried, then fails with the reason, never skipped: inside the
AstrID run by :func:`~astrid.flows.schedules.run_flow` (an archive, the MLflow server, the
database mid-run), and around it here, when the database is down before the run can even be
recorded: the Prefect flow run tries again on the same :class:`RetryPlan` (exponential
backoff), logging each attempt, and then fails with "could not start after N attempts" and
the last error. A permanent error (an unknown or disabled schedule) fails at once.

Local mode needs no server: with ``ASTRID_PREFECT_API_URL`` unset, Prefect starts its
temporary local server (SQLite under ``PREFECT_HOME``) for the process; set the URL to report
to a Prefect server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from astrid.errors import AstridError
from astrid.flows.library import FLOWS
from astrid.flows.schedules import (
    RetryPlan,
    ScheduleError,
    describe_failure,
    list_schedules,
    run_flow,
    run_scheduled,
    transient_failure,
)
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.tables import FlowRun, FlowRunStatus

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "PrefectMissingError",
    "prefect_context",
    "prefect_deployments",
    "prefect_flow",
    "serve_on_prefect",
]


class PrefectMissingError(AstridError):
    """Prefect is not installed (it is an optional extra)."""


class AstridFlowFailed(AstridError):
    """An AstrID flow run failed; raised inside the Prefect flow so its run fails too."""


def _require_prefect() -> Any:
    try:
        import prefect
    except ImportError as exc:
        raise PrefectMissingError(
            "Prefect is not installed",
            hint="pip install 'astrid[prefect]', or run schedules without it: "
            "`astrid schedule serve` / `astrid schedule run-due` from cron",
        ) from exc
    return prefect


@contextmanager
def prefect_context(runtime: Runtime) -> Iterator[None]:
    """Point Prefect at ``ASTRID_PREFECT_API_URL`` for the block (local mode when unset)."""
    _require_prefect()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = runtime.settings.prefect_api_url
    if url:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    else:
        yield


def _outcome(run: FlowRun | None) -> dict[str, Any]:
    if run is None:
        return {"skipped": "not due, or another timer ran this occurrence"}
    if run.status != FlowRunStatus.SUCCEEDED.value:
        raise AstridFlowFailed(f"AstrID flow run {run.id} ({run.flow}) failed: {run.error}")
    return {"astrid_run_id": run.id, "attempts": run.attempts, **dict(run.result or {})}


def _run_once(
    name: str,
    settings: Settings | None,
    params: dict[str, Any] | None,
    schedule_id: int | None,
    retry: RetryPlan,
    sleep: Callable[[float], None],
) -> FlowRun | None:
    runtime = Runtime.from_settings(settings)
    try:
        if schedule_id is not None:
            return run_scheduled(runtime, schedule_id, retry=retry, sleep=sleep)
        return run_flow(runtime, name, params, retry=retry, sleep=sleep)
    finally:
        runtime.close()


def prefect_flow(
    name: str,
    settings: Settings | None = None,
    *,
    retry: RetryPlan | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Flow[..., dict[str, Any]]:
    """The Prefect flow that runs AstrID's flow ``name`` (see :data:`FLOWS`).

    Its parameters: ``params`` (the flow's JSON parameters) and ``schedule_id`` (set by a
    deployment made from a schedule: the occurrence is then claimed, see the module notes).
    Each run opens a runtime from ``settings`` (default: the process's ``ASTRID_*``).
    ``retry`` (default :class:`RetryPlan`: 2 more attempts, 30 s then 60 s) applies both
    inside the AstrID run and to starting it while the database is down.
    """
    prefect = _require_prefect()
    if name not in FLOWS:
        raise ScheduleError(f"unknown flow {name!r}", hint=f"flows are: {', '.join(FLOWS)}")
    spec = FLOWS[name]
    plan = retry or RetryPlan()

    def body(params: dict[str, Any] | None = None, schedule_id: int | None = None) -> dict:
        logger = prefect.get_run_logger()
        run: FlowRun | None = None
        for attempt in range(plan.retries + 1):
            try:
                run = _run_once(name, settings, params, schedule_id, plan, sleep)
                break
            except Exception as exc:  # the run could not even be recorded
                reason = describe_failure(exc)
                if not transient_failure(exc):
                    raise
                logger.warning("attempt %d could not start %s: %s", attempt + 1, name, reason)
                if attempt == plan.retries:
                    raise AstridFlowFailed(
                        f"AstrID flow {name} could not start after {attempt + 1} attempts "
                        f"(a dependency is down): {reason}"
                    ) from exc
                wait = plan.backoff_s * 2**attempt
                logger.warning("retrying in %g s", wait)
                sleep(wait)
        for line in (run.log or "").splitlines() if run is not None else ():
            logger.info(line)
        return _outcome(run)

    flow: Flow[..., dict[str, Any]] = prefect.flow(
        body, name=f"astrid-{name}", description=spec.description, validate_parameters=False
    )
    return flow


def prefect_deployments(runtime: Runtime) -> list[RunnerDeployment]:
    """One Prefect deployment per enabled schedule: same name, cron, time zone, parameters."""
    _require_prefect()
    from prefect.schedules import Cron

    deployments: list[RunnerDeployment] = []
    for sched in list_schedules(runtime):
        if not sched.enabled:
            continue
        flow = prefect_flow(sched.flow, runtime.settings)
        deployments.append(
            flow.to_deployment(  # type: ignore[arg-type]  # sync here (no running event loop)
                name=sched.name,
                schedule=Cron(sched.cron, timezone=sched.timezone),
                parameters={"params": dict(sched.params or {}), "schedule_id": sched.id},
                description=f"AstrID schedule {sched.name!r}: {FLOWS[sched.flow].description}",
                tags=["astrid", sched.flow],
            )
        )
    return deployments


def serve_on_prefect(runtime: Runtime) -> None:
    """Serve every enabled schedule as a Prefect deployment until interrupted."""
    prefect = _require_prefect()
    deployments = prefect_deployments(runtime)
    if not deployments:
        raise ScheduleError(
            "no enabled schedule to serve", hint="add one: astrid schedule add NAME --flow F ..."
        )
    with prefect_context(runtime):
        prefect.serve(*deployments)
