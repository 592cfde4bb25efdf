"""Dramatiq actors that wrap the pipeline's entry points, bound to the broker lazily.

Actors only unpack arguments, open the process's :class:`~astrid.runtime.Runtime` and call
a pipeline function; running in process or on Redis changes nothing in a stage. Retries are
the stage runner's job (:mod:`astrid.pipeline.runner`: transient failures with backoff,
permanent ones parked), so Dramatiq's own retries are off (``max_retries=0``); a message
lost with its worker (SIGKILL, power cut) is redelivered by the broker instead, and the
stage's key makes the redelivery store its result exactly once.

The one exception is ``process_observation`` (:func:`astrid.pipeline.queue.batch.run_batch_member`):
while an earlier observation it may take as reference is not preprocessed yet it raises
``dramatiq.Retry`` and the broker hands the message back after
:data:`~astrid.pipeline.queue.batch.DEPENDENCY_DELAY_MS` (up to
:data:`~astrid.pipeline.queue.batch.DEPENDENCY_MAX_RETRIES` times, about an hour).

Nothing is built at import: :func:`declare_actors` binds the actors to a broker on first
use (a worker, :func:`submit`). ``submit(name, **kwargs)`` runs the function synchronously
when no broker is configured and enqueues it otherwise.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from typing import Any

import dramatiq

from astrid.errors import AstridError
from astrid.pipeline.alerts import ingest_alert_file, load_alert_scorer
from astrid.pipeline.archives import PositionRequest, ingest_position
from astrid.pipeline.queue.batch import DEPENDENCY_MAX_RETRIES, PROCESS_TASK, run_batch_member
from astrid.pipeline.queue.broker import (
    BrokerConfigError,
    broker_config,
    get_broker,
    is_in_process,
    send,
)
from astrid.pipeline.resilience import ride_out
from astrid.pipeline.runner import Stage, StageContext, run_stage, stable_hash
from astrid.pipeline.stages.ingest import ingest_file
from astrid.runtime import Runtime

__all__ = [
    "FLOW_TASK",
    "FUNCTIONS",
    "PROBE_STAGE",
    "TIME_LIMIT_MS",
    "Submitted",
    "declare_actors",
    "enqueue",
    "submit",
    "worker_runtime",
]

log = logging.getLogger(__name__)

#: Longest a task may run before Dramatiq interrupts it (6 h: a 4096² field takes minutes).
TIME_LIMIT_MS = 6 * 3600 * 1000


@lru_cache(maxsize=1)
def worker_runtime() -> Runtime:
    """The runtime of this worker process (from settings, opened once)."""
    return Runtime.from_settings()


def _runtime(runtime: Runtime | None) -> Runtime:
    return runtime if runtime is not None else worker_runtime()


# --------------------------------------------------------------------------- functions


def _ingest_file(
    path: str, survey: str | None = None, *, runtime: Runtime | None = None
) -> dict[str, Any]:
    out = ingest_file(_runtime(runtime), path, survey=survey)
    return {"status": out.status, "reused": out.reused, "result": out.result, "error": out.error}


def _ingest_position(
    archive: str,
    survey: str,
    ra: float,
    dec: float,
    fov: float,
    pixels: int = 300,
    max_images: int = 5,
    base_url: str | None = None,
    refresh: bool = False,
    *,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    out = ingest_position(
        _runtime(runtime),
        PositionRequest(archive, survey, ra, dec, fov, pixels, max_images),
        base_url=base_url,
        refresh=refresh,
        check_survey=False,  # checked by the submitter, before queueing
    )
    return {
        "fetch": {
            "status": out.fetch.status,
            "error": out.fetch.error,
            "n_images": out.fetch.result.get("n_images"),
        },
        "ingests": [
            {
                "status": o.status,
                "reused": o.reused,
                "error": o.error,
                "observation_id": o.result.get("observation_id"),
            }
            for o in out.ingests
        ],
        "manifest": out.manifest,
    }


@lru_cache(maxsize=4)
def _cached_scorer(model: str | None) -> Any:
    """The scorer for ``model``, loaded once per worker; None (unscored) if it cannot load."""
    try:
        return load_alert_scorer(model)
    except AstridError as exc:
        log.warning("not scoring alerts: model %r unavailable (%s)", model, exc)
        return None


def _ingest_alert_file(
    path: str, model: str | None = None, *, runtime: Runtime | None = None
) -> list[dict[str, Any]]:
    scorer = _cached_scorer(model)
    return [asdict(o) for o in ingest_alert_file(_runtime(runtime), path, scorer=scorer)]


def _probe_compute(ctx: StageContext) -> dict[str, Any]:
    time.sleep(float(ctx.params.get("seconds", 0.0)))
    return {"pid": os.getpid(), "attempt": ctx.attempt}


PROBE_STAGE: Stage[dict[str, Any]] = Stage(
    name="probe",
    version="1",
    compute=_probe_compute,
    persist=lambda session, ctx, value: value,
)


def _probe(token: str, seconds: float = 0.0, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """Health check of the task path: waits ``seconds``, records one stage run per token."""
    out = run_stage(
        _runtime(runtime),
        PROBE_STAGE,
        params={"seconds": float(seconds)},
        inputs={"token": token},
        input_hash=stable_hash({"token": token}),
    )
    return {"status": out.status, "reused": out.reused, "result": out.result}


def _process_observation(
    observation_id: int,
    params: dict[str, Any] | None = None,
    batch: str | None = None,
    after: list[int] | None = None,
    retry_failed: bool = False,
    *,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """One observation of a queued batch (:func:`~astrid.pipeline.queue.batch.run_batch_member`)."""
    return run_batch_member(_runtime(runtime), observation_id, params, batch, after, retry_failed)


#: The task that runs a queued flow run (``POST /models/{name}/retrain`` sends it).
FLOW_TASK = "run_flow"


def _run_flow(run_id: int, retries: int = 0, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """A queued flow run (:func:`astrid.flows.schedules.run_queued_flow`), with ``retries``
    more attempts after a transient failure; its status, error and result go to its row."""
    from astrid.flows.schedules import RetryPlan, run_queued_flow

    row = run_queued_flow(_runtime(runtime), int(run_id), RetryPlan(retries=int(retries)))
    return {"run_id": row.id, "status": row.status, "error": row.error}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ingest_file": _ingest_file,
    "ingest_position": _ingest_position,
    "ingest_alert_file": _ingest_alert_file,
    "probe": _probe,
    PROCESS_TASK: _process_observation,
    FLOW_TASK: _run_flow,
}
"""What each task runs; in process, :func:`submit` calls these and returns their result."""


def _wait_again(retries: int, exc: BaseException) -> bool:
    """Dramatiq ``retry_when``: only a dependency wait is retried by the broker."""
    return isinstance(exc, dramatiq.Retry) and retries < DEPENDENCY_MAX_RETRIES


def _declare(broker: dramatiq.Broker, name: str) -> dramatiq.Actor[..., None]:
    fn = FUNCTIONS[name]

    def run(**kwargs: Any) -> None:  # results are in the database, not on the broker
        # A database or broker outage is waited out here (the work is idempotent), not
        # failed: a failed message would be dead-lettered, since Dramatiq's retries are off.
        patience = worker_runtime().settings.outage_patience_s
        ride_out(partial(fn, **kwargs), what="database or broker", patience_s=patience)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = fn.__doc__
    options: dict[str, Any] = {
        "broker": broker,
        "queue_name": broker_config(broker).queue,
        "max_retries": 0,
        "time_limit": TIME_LIMIT_MS,
    }
    if name == PROCESS_TASK:
        options["retry_when"] = _wait_again
    return dramatiq.actor(actor_name=name, **options)(run)


_declared: dict[int, dict[str, dramatiq.Actor[..., None]]] = {}


def declare_actors(broker: dramatiq.Broker | None = None) -> dict[str, dramatiq.Actor[..., None]]:
    """The actors bound to ``broker`` (default: the configured one), declared once per broker."""
    broker = broker if broker is not None else get_broker()
    if id(broker) not in _declared:
        _declared[id(broker)] = {name: _declare(broker, name) for name in FUNCTIONS}
    return _declared[id(broker)]


# --------------------------------------------------------------------------- producers


@dataclass(frozen=True)
class Submitted:
    """A submitted task: ``message_id`` when queued, ``result`` when run in process."""

    actor: str
    message_id: str | None
    result: Any = None

    @property
    def queued(self) -> bool:
        return self.message_id is not None


def _check(actor_name: str) -> None:
    if actor_name not in FUNCTIONS:
        raise BrokerConfigError(f"unknown task {actor_name!r}", hint=", ".join(sorted(FUNCTIONS)))


def submit(actor_name: str, *, runtime: Runtime | None = None, **kwargs: Any) -> Submitted:
    """Run the task now (no broker configured) or enqueue it on the configured broker.

    In process the task runs with ``runtime`` (default: one from settings); queued, the
    worker opens its own runtime from its settings.
    """
    _check(actor_name)
    broker = get_broker()
    if is_in_process(broker):
        return Submitted(actor_name, None, FUNCTIONS[actor_name](**kwargs, runtime=runtime))
    return Submitted(actor_name, send(broker, actor_name, **kwargs))


def enqueue(broker: dramatiq.Broker, actor_name: str, **kwargs: Any) -> str:
    """Put one message for ``actor_name`` on ``broker`` (any process's workers run it)."""
    _check(actor_name)
    return send(broker, actor_name, **kwargs)
