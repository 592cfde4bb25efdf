"""Dramatiq actors that wrap the pipeline's stages, and the worker loop.

Actors only unpack arguments, open the process's :class:`~astrid.runtime.Runtime` and call
a stage function; running in process or on Redis changes nothing in a stage. Retries are
the stage runner's job (:mod:`astrid.pipeline.runs`: transient failures with backoff,
permanent ones parked), so Dramatiq's own retries are off (``max_retries=0``); a message
lost with its worker (SIGKILL, power cut) is redelivered by the broker instead, and the
stage's key makes the redelivery store its result exactly once.

The one exception is ``process_observation`` (one message per observation of a batch, see
:func:`astrid.pipeline.process.enqueue_observations`): while an earlier observation it may
take as reference is not preprocessed yet it raises ``dramatiq.Retry`` and the broker hands
the message back after :data:`DEPENDENCY_DELAY_MS` (up to :data:`DEPENDENCY_MAX_RETRIES`
times, about an hour); every other failure is the stage runner's business as above.

``submit(name, **kwargs)`` runs the actor synchronously when no broker is configured and
enqueues it otherwise; ``enqueue(broker, name, **kwargs)`` targets an explicit broker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType
from typing import Any

import dramatiq

from astrid.pipeline.broker import (
    BrokerConfigError,
    broker_config,
    get_broker,
    is_in_process,
)
from astrid.pipeline.runs import Stage, StageContext, run_stage, stable_hash
from astrid.runtime import Runtime

__all__ = [
    "ACTORS",
    "DEPENDENCY_DELAY_MS",
    "DEPENDENCY_MAX_RETRIES",
    "FUNCTIONS",
    "PROBE_STAGE",
    "Submitted",
    "enqueue",
    "ingest_alert_file_task",
    "ingest_file_task",
    "ingest_position_task",
    "probe_task",
    "process_observation_task",
    "run_worker",
    "run_workers",
    "submit",
]

log = logging.getLogger(__name__)

_broker = get_broker()
_QUEUE = broker_config(_broker).queue
_OPTIONS: dict[str, Any] = {
    "broker": _broker,
    "queue_name": _QUEUE,
    "max_retries": 0,
    "time_limit": 6 * 3600 * 1000,
}


@lru_cache(maxsize=1)
def worker_runtime() -> Runtime:
    """The runtime of this worker process (from settings, opened once)."""
    return Runtime.from_settings()


def _runtime(runtime: Runtime | None) -> Runtime:
    return runtime if runtime is not None else worker_runtime()


# --------------------------------------------------------------------------- actors


def _ingest_file(
    path: str, survey: str | None = None, *, runtime: Runtime | None = None
) -> dict[str, Any]:
    from astrid.pipeline.runs import ingest_file

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
    from astrid.pipeline.archives import PositionRequest, ingest_position

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


def _ingest_alert_file(
    path: str, model: str | None = None, *, runtime: Runtime | None = None
) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from astrid.pipeline.alerts import ingest_alert_file

    scorer = _cached_scorer(model)
    return [asdict(o) for o in ingest_alert_file(_runtime(runtime), path, scorer=scorer)]


@lru_cache(maxsize=4)
def _cached_scorer(model: str | None) -> Any:
    """The scorer for ``model``, loaded once per worker; None (unscored) if it cannot load."""
    from astrid.errors import AstridError
    from astrid.pipeline.alerts import load_alert_scorer

    try:
        return load_alert_scorer(model)
    except AstridError as exc:
        log.warning("not scoring alerts: model %r unavailable (%s)", model, exc)
        return None


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


#: Wait between two looks at a message's unfinished dependencies, milliseconds.
DEPENDENCY_DELAY_MS = 250
#: Looks before the message is given up (dead-lettered): about an hour of waiting.
DEPENDENCY_MAX_RETRIES = 14_400


def _process_observation(
    observation_id: int,
    params: dict[str, Any] | None = None,
    batch: str | None = None,
    after: list[int] | None = None,
    retry_failed: bool = False,
    *,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Run the pipeline for one observation of a queued batch (see the module docstring).

    Preprocesses it; when one of ``after`` (earlier observations it may take as reference)
    is still unprocessed, raises ``dramatiq.Retry``; else runs reference, difference and
    detect inside the batch's ``process`` stage run, whose result is the report.
    """
    import uuid

    from astrid.pipeline.process import (
        PROCESS_STAGE,
        ObservationReport,
        batch_params,
        process_observation,
        report_from_dict,
        unsettled_dependencies,
    )
    from astrid.pipeline.stages import STAGES

    rt = _runtime(runtime)
    pre = process_observation(
        rt, observation_id, params, rerun_failed=retry_failed, stages=("preprocess",)
    )
    ready = bool(pre.stages) and pre.stages[-1].ok
    if ready:
        waiting = unsettled_dependencies(rt, after or [], params)
        if waiting:
            raise dramatiq.Retry(
                f"observation {observation_id} waits for the preprocessing of {waiting}",
                delay=DEPENDENCY_DELAY_MS,
            )

    def chain() -> ObservationReport:
        if not ready:
            return pre
        rest = process_observation(
            rt, observation_id, params, rerun_failed=retry_failed, stages=tuple(STAGES)[1:]
        )
        return ObservationReport(observation_id, pre.stages + rest.stages, rest.status, rest.reason)

    out = run_stage(
        rt,
        PROCESS_STAGE,
        params=batch_params(batch or uuid.uuid4().hex),
        inputs={"observation_id": observation_id, "after": list(after or [])},
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


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ingest_file": _ingest_file,
    "ingest_position": _ingest_position,
    "ingest_alert_file": _ingest_alert_file,
    "probe": _probe,
    "process_observation": _process_observation,
}
"""What each task runs; in process, :func:`submit` calls these and returns their result."""


def _wait_again(retries: int, exc: BaseException) -> bool:
    """Dramatiq ``retry_when``: only a dependency wait is retried by the broker."""
    return isinstance(exc, dramatiq.Retry) and retries < DEPENDENCY_MAX_RETRIES


_ACTOR_OPTIONS: dict[str, dict[str, Any]] = {
    "process_observation": {"retry_when": _wait_again},
}


def _declare(name: str) -> dramatiq.Actor[..., None]:
    fn = FUNCTIONS[name]

    def run(**kwargs: Any) -> None:  # results are in the database, not on the broker
        fn(**kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = fn.__doc__
    options = {**_OPTIONS, **_ACTOR_OPTIONS.get(name, {})}
    return dramatiq.actor(actor_name=name, **options)(run)


ACTORS: dict[str, dramatiq.Actor[..., None]] = {name: _declare(name) for name in FUNCTIONS}
ingest_file_task = ACTORS["ingest_file"]
ingest_position_task = ACTORS["ingest_position"]
ingest_alert_file_task = ACTORS["ingest_alert_file"]
probe_task = ACTORS["probe"]
process_observation_task = ACTORS["process_observation"]


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


def submit(actor_name: str, *, runtime: Runtime | None = None, **kwargs: Any) -> Submitted:
    """Run the actor now (no broker configured) or enqueue it on the configured broker.

    In process the actor runs with ``runtime`` (default: one from settings); queued, the
    worker opens its own runtime from its settings.
    """
    if actor_name not in ACTORS:
        raise BrokerConfigError(f"unknown task {actor_name!r}", hint=", ".join(sorted(ACTORS)))
    if is_in_process(_broker):
        return Submitted(actor_name, None, FUNCTIONS[actor_name](**kwargs, runtime=runtime))
    message = ACTORS[actor_name].send(**kwargs)
    return Submitted(actor_name, message.message_id)


def enqueue(broker: dramatiq.Broker, actor_name: str, **kwargs: Any) -> str:
    """Put one message for ``actor_name`` on ``broker`` (any process's workers run it)."""
    if actor_name not in ACTORS:
        raise BrokerConfigError(f"unknown task {actor_name!r}", hint=", ".join(sorted(ACTORS)))
    queue = broker_config(broker).queue
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=actor_name, args=(), kwargs=kwargs, options={}
    )
    return broker.enqueue(message).message_id


# --------------------------------------------------------------------------- workers


def run_worker(threads: int = 1, stop: threading.Event | None = None) -> None:
    """Consume the configured broker's queue in this process until SIGTERM/SIGINT.

    Raises
    ------
    BrokerConfigError
        No broker is configured (tasks already run in process).
    """
    if is_in_process(_broker):
        raise BrokerConfigError(
            "no broker configured: tasks run in process, there is nothing to consume",
            hint="set ASTRID_BROKER_URL=redis://host:6379/0 on this host and the submitters",
        )
    stop = stop or threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    worker = dramatiq.Worker(_broker, queues={_QUEUE}, worker_threads=threads, worker_timeout=500)
    # Pipeline tasks take seconds to minutes: hold one message per thread, not two, so an
    # idle worker is not left waiting while another sits on a prefetched one.
    worker.queue_prefetch = threads
    worker.start()
    log.info("astrid worker pid %d consuming %r with %d thread(s)", os.getpid(), _QUEUE, threads)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        worker.stop(timeout=10_000)
        _broker.close()


def run_workers(processes: int, threads: int = 1) -> int:
    """Start ``processes`` worker processes and wait; SIGTERM/SIGINT stop them all."""
    if is_in_process(_broker):
        run_worker(threads)  # raises the clear error
    cmd = [sys.executable, "-m", "astrid", "worker", "--processes", "1", "--threads", str(threads)]
    children = [subprocess.Popen(cmd) for _ in range(processes)]

    def _forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
