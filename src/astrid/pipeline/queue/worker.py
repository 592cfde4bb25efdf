"""``astrid worker``: consume the configured broker's queue in one or several processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

import dramatiq

from astrid.pipeline.heap import retain_freed_memory
from astrid.pipeline.queue.actors import declare_actors, worker_runtime
from astrid.pipeline.queue.batch import resend_reclaimed
from astrid.pipeline.queue.broker import BrokerConfigError, broker_config, get_broker, is_in_process
from astrid.pipeline.queue.presence import WorkerPresence
from astrid.settings import get_settings

__all__ = ["require_broker", "run_worker", "run_workers"]

log = logging.getLogger(__name__)


def require_broker() -> dramatiq.Broker:
    """The configured broker, or a clear error when tasks run in process (no broker)."""
    broker = get_broker()
    if is_in_process(broker):
        raise BrokerConfigError(
            "no broker configured: tasks run in process, there is nothing to consume",
            hint="set ASTRID_BROKER_URL=redis://host:6379/0 on this host and the submitters",
        )
    return broker


def _reclaim_loop(broker: dramatiq.Broker, stop: threading.Event) -> None:
    """Every ``ASTRID_RECLAIM_EVERY_S``: reclaim stale stage runs, re-send lost messages."""
    runtime = worker_runtime()
    while not stop.wait(runtime.settings.reclaim_every_s):
        try:
            sent = resend_reclaimed(runtime, broker)
            if sent:
                log.warning("re-sent the messages of observations %s (stale runs)", sent)
        except Exception as exc:  # an outage: try again next round
            log.warning("could not reclaim stale runs: %s: %s", type(exc).__name__, exc)


def run_worker(threads: int = 1, stop: threading.Event | None = None) -> None:
    """Consume the configured broker's queue in this process until SIGTERM/SIGINT.

    Raises
    ------
    BrokerConfigError
        No broker is configured (tasks already run in process).
    """
    broker = require_broker()
    declare_actors(broker)
    queue = broker_config(broker).queue
    stop = stop or threading.Event()
    if get_settings().pipeline_retain_heap:
        retain_freed_memory()  # large image arrays reuse freed pages (astrid.pipeline.heap)
    if get_settings().pipeline_one_blas_thread:
        from astrid.pipeline.threads import one_blas_thread

        one_blas_thread()  # one observation per core (astrid.pipeline.threads)

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    # Heartbeat row, task counts and the queues' paused flags (the /workers page).
    presence = WorkerPresence(worker_runtime(), {queue}, threads)
    broker.add_middleware(presence)
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=threads, worker_timeout=500)
    # Pipeline tasks take seconds to minutes: hold one message per thread, not two, so an
    # idle worker is not left waiting while another sits on a prefetched one.
    worker.queue_prefetch = threads
    worker.start()
    beating = presence.run(worker, stop)
    threading.Thread(target=_reclaim_loop, args=(broker, stop), daemon=True).start()
    log.info("astrid worker pid %d consuming %r with %d thread(s)", os.getpid(), queue, threads)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        beating.join(timeout=5)
        worker.stop(timeout=10_000)
        try:
            presence.beat(stopped=True)
        except Exception as exc:  # the database is gone: the row will read as lost
            log.warning("could not record the worker's stop: %s", exc)
        broker.close()


def run_workers(processes: int, threads: int = 1) -> int:
    """Start ``processes`` worker processes and wait; SIGTERM/SIGINT stop them all."""
    require_broker()
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
