"""A real ``astrid worker`` on Redis reports itself and honours a paused queue."""

from __future__ import annotations

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
from tests._workers import start_worker, stop, wait_for, worker_env


def test_a_worker_heartbeats_and_a_paused_queue_is_not_started(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    runtime = make_runtime(migrated_url)
    env = worker_env(
        tmp_path / "data", redis_broker_url, migrated_url, ASTRID_WORKER_HEARTBEAT_S="0.5"
    )
    broker = make_broker(redis_broker_url)
    proc = start_worker(env, "--threads", "1")

    def run_of(token: str) -> StageRun | None:
        with runtime.db.session() as s:
            return s.scalar(select(StageRun).where(StageRun.inputs["token"].as_string() == token))

    def me() -> Any:
        return next((w for w in list_workers(runtime) if w.row.pid == proc.pid), None)

    try:
        worker = wait_for(lambda: (w := me()) is not None and w, 60, "the worker's heartbeat")
        assert worker.state == "alive" and worker.row.queues == ["astrid"]
        first = wait_for(lambda: (w := me()) and w.row.last_seen > worker.row.last_seen and w,
                         10, "a second heartbeat")  # fmt: skip
        assert first.heartbeat_age_s < 5

        set_queue_paused(runtime, "astrid", True, "test")
        wait_for(lambda: (w := me()) and w.row.paused, 10, "the worker to report paused")
        token = uuid.uuid4().hex
        enqueue(broker, "probe", token=token)
        time.sleep(3.0)  # six heartbeats: a paused worker starts nothing
        assert run_of(token) is None
        stats = queue_stats(broker)
        assert (stats["waiting"] or 0) + (stats["in_flight"] or 0) == 1  # held, not lost

        set_queue_paused(runtime, "astrid", False, "test")
        done = wait_for(lambda: (r := run_of(token)) and r.status == "succeeded" and r, 30,
                        "the probe to run after resuming")  # fmt: skip
        assert done.result["pid"] == proc.pid
        counted = wait_for(lambda: (w := me()) and w.row.processed >= 1 and w, 10, "the count")
        assert not counted.row.paused and counted.row.failed == 0
    finally:
        set_queue_paused(runtime, "astrid", False, "test")
        stop(proc)
        broker.close()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert me().state == "stopped"


def test_queue_depth_purge_and_queued_retry_over_the_api_on_redis(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    """No worker runs: messages wait on Redis, the API counts them, purges them after the
    confirmation, and a retry of a parked observation is queued as a message."""
    from fastapi.testclient import TestClient

    from astrid.api import ApiConfig, create_app
    from tests.api.conftest import SECRET, make_users
    from tests.api.test_workers_api import parked_observation

    runtime = make_runtime(migrated_url, broker_url=redis_broker_url)
    config = ApiConfig(secret_key=SECRET, rate_limit=0)
    headers, _ = make_users(runtime, config)
    broker = make_broker(redis_broker_url)
    with TestClient(create_app(runtime, config)) as client:
        for _ in range(3):
            enqueue(broker, "probe", token=uuid.uuid4().hex)
        body = client.get("/api/v1/queues", headers=headers["viewer"]).json()
        assert body["broker"] == "redis"
        [queue] = body["queues"]
        assert (queue["name"], queue["waiting"], queue["workers"]) == ("astrid", 3, 0)

        paused = client.post("/api/v1/queues/astrid/pause", headers=headers["admin"])
        assert paused.status_code == 200 and paused.json()["paused"] is True
        assert paused.json()["changed_by"] == "admin-user"
        resumed = client.post("/api/v1/queues/astrid/resume", headers=headers["admin"])
        assert resumed.json()["paused"] is False

        wrong = client.post(
            "/api/v1/queues/astrid/purge", headers=headers["admin"], json={"confirm": "astri"}
        )
        assert wrong.status_code == 422 and queue_stats(broker)["waiting"] == 3
        purged = client.post(
            "/api/v1/queues/astrid/purge", headers=headers["admin"], json={"confirm": "astrid"}
        )
        assert purged.status_code == 200 and purged.json() == {"name": "astrid", "purged": 3}
        assert queue_stats(broker)["waiting"] == 0

        obs_id, blob, good = parked_observation(runtime, tmp_path)
        blob.write_bytes(good)
        retry = client.post("/api/v1/failures/retry", headers=headers["admin"], json={"all": True})
        assert retry.status_code == 202, retry.text
        assert retry.json()["queued"] is True and retry.json()["observation_ids"] == [obs_id]
        assert queue_stats(broker)["waiting"] == 1  # one process_observation message
    broker.close()
