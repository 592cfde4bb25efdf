"""A real ``astrid worker`` on Redis reports itself and honours a paused queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from astrid.pipeline.queue.actors import enqueue
from astrid.pipeline.queue.broker import make_broker, queue_stats
from astrid.pipeline.queue.presence import list_workers, set_queue_paused
from astrid.runtime import Runtime
from astrid.store.tables import StageRun


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_worker_heartbeats_and_a_paused_queue_is_not_started(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    runtime = make_runtime(migrated_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env.update(
        ASTRID_DATA_DIR=str(tmp_path / "data"),
        ASTRID_DATABASE_URL=migrated_url,
        ASTRID_BROKER_URL=redis_broker_url,
        ASTRID_WORKER_HEARTBEAT_S="0.5",
    )
    broker = make_broker(redis_broker_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "astrid", "worker", "--threads", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def run_of(token: str) -> StageRun | None:
        with runtime.db.session() as s:
            return s.scalar(select(StageRun).where(StageRun.inputs["token"].as_string() == token))

    def me() -> Any:
        return next((w for w in list_workers(runtime) if w.row.pid == proc.pid), None)

    try:
        worker = _wait_for(lambda: (w := me()) is not None and w, 60, "the worker's heartbeat")
        assert worker.state == "alive" and worker.row.queues == ["astrid"]
        first = _wait_for(lambda: (w := me()) and w.row.last_seen > worker.row.last_seen and w,
                          10, "a second heartbeat")  # fmt: skip
        assert first.heartbeat_age_s < 5

        set_queue_paused(runtime, "astrid", True, "test")
        _wait_for(lambda: (w := me()) and w.row.paused, 10, "the worker to report paused")
        token = uuid.uuid4().hex
        enqueue(broker, "probe", token=token)
        time.sleep(3.0)  # six heartbeats: a paused worker starts nothing
        assert run_of(token) is None
        stats = queue_stats(broker)
        assert (stats["waiting"] or 0) + (stats["in_flight"] or 0) == 1  # held, not lost

        set_queue_paused(runtime, "astrid", False, "test")
        done = _wait_for(lambda: (r := run_of(token)) and r.status == "succeeded" and r, 30,
                         "the probe to run after resuming")  # fmt: skip
        assert done.result["pid"] == proc.pid
        counted = _wait_for(lambda: (w := me()) and w.row.processed >= 1 and w, 10, "the count")
        assert not counted.row.paused and counted.row.failed == 0
    finally:
        set_queue_paused(runtime, "astrid", False, "test")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        broker.close()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert me().state == "stopped"
