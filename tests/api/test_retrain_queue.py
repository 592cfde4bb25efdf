"""``POST /models/{name}/retrain`` queues the closed loop as a ``run_flow`` task.

With the real Redis broker the run waits ``queued`` until a real ``astrid worker`` process
takes it, then the poll route follows it to ``succeeded`` (or ``failed`` with the reason);
in process (no broker) the API process runs it after answering. PostgreSQL is shared by the
test and the worker subprocess; MLflow is the SQLite store of the shared data folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from astrid.api import create_app
from astrid.flows.schedules import run_queued_flow, start_flow_run
from astrid.pipeline.queue.broker import make_broker, queue_stats
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.tables import FlowRun
from tests.api.conftest import CLOSED_ARCHIVE, SECRET, Api, make_users
from tests.domain.loop_fixtures import NAME, add_stamped_detections, curate, register_champion
from tests.pipeline.conftest import redis_broker_url  # noqa: F401  (fixture)

BODY = {"epochs": 2, "lr": 0.01, "sim_pairs": 0, "promote_if_better": True}
URL = f"/api/v1/models/{NAME}/retrain"


@pytest.fixture
def queued_api(
    postgres_url: str,
    redis_broker_url: str,  # noqa: F811  (the fixture imported above)
    make_runtime: Callable[..., Runtime],
) -> Iterator[Api]:
    """An app whose runtime sends tasks to a namespace of the real Redis (PostgreSQL)."""
    from astrid.api import ApiConfig

    upgrade(postgres_url)
    runtime = make_runtime(postgres_url, broker_url=redis_broker_url)
    config = ApiConfig(secret_key=SECRET, rate_limit=0, archive_base_url=CLOSED_ARCHIVE)
    app = create_app(runtime, config)
    client = TestClient(app, raise_server_exceptions=False)
    headers, ids = make_users(runtime, config)
    yield Api(app, client, runtime, config, headers, ids)
    client.close()


def _worker(runtime: Runtime) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env.update(
        ASTRID_DATA_DIR=str(runtime.settings.data_dir),
        ASTRID_DATABASE_URL=runtime.settings.resolved_database_url,
        ASTRID_BROKER_URL=str(runtime.settings.broker_url),
        ASTRID_ENERGY_TRACKING="false",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "astrid", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return err.decode(errors="replace")[-3000:]


def _poll(api: Api, run_id: int, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.client.get(f"{URL}/{run_id}", headers=api.as_role("viewer")).json()
        if done(status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s; last status {status}")


def _finished(status: dict[str, Any]) -> bool:
    return status.get("status") in ("succeeded", "failed")


def test_a_redis_worker_runs_the_queued_retraining(queued_api: Api, tmp_path: Path) -> None:
    api = queued_api
    register_champion(api.runtime.settings.resolved_mlflow_uri, tmp_path, trained=False)
    curate(api.runtime, add_stamped_detections(api.runtime, 36, seed=4))
    broker = make_broker(api.runtime.settings.broker_url)

    started = api.client.post(URL, json=BODY, headers=api.as_role("admin"))
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    run_id = started.json()["run_id"]
    # no worker yet: the message waits in Redis and the run stays queued
    assert queue_stats(broker)["waiting"] == 1
    first = api.client.get(f"{URL}/{run_id}", headers=api.as_role("viewer")).json()
    assert first["status"] == "queued" and first["started_at"] is None

    worker = _worker(api.runtime)
    try:
        status = _poll(api, run_id, _finished, 300)
    finally:
        stderr = _stop(worker)
    assert status["status"] == "succeeded", (status, stderr)
    assert status["started_at"] is not None and status["finished_at"] is not None
    result = status["result"]
    assert len(result["dataset_version"]) == 64
    assert result["challenger"]["semver"] == "1.1.0"
    assert "epoch 1" in status["log"] and "ROC-AUC" in result["criterion"]
    assert queue_stats(broker) == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0}

    # a retraining that cannot run fails on the worker with the reason, never silently
    bad = api.client.post("/api/v1/models/other/retrain", json=BODY, headers=api.as_role("admin"))
    assert bad.status_code == 404  # unknown model: refused before anything is queued
    no_alerts = api.client.post(
        URL, json={**BODY, "alerts": ["/nonexistent/alerts"]}, headers=api.as_role("admin")
    )
    assert no_alerts.status_code == 202
    worker = _worker(api.runtime)
    try:
        failed = _poll(api, no_alerts.json()["run_id"], _finished, 300)
    finally:
        _stop(worker)
    assert failed["status"] == "failed" and failed["error"], failed
    assert "no usable alert" in failed["error"]


def test_the_broker_down_refuses_the_retraining_with_the_reason(
    postgres_url: str, make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    from astrid.api import ApiConfig

    upgrade(postgres_url)
    # nothing listens on port 9: every connection is refused at once
    runtime = make_runtime(postgres_url, broker_url="redis://127.0.0.1:9/0?namespace=down")
    config = ApiConfig(secret_key=SECRET, rate_limit=0, archive_base_url=CLOSED_ARCHIVE)
    client = TestClient(create_app(runtime, config), raise_server_exceptions=False)
    headers, _ = make_users(runtime, config)
    register_champion(runtime.settings.resolved_mlflow_uri, tmp_path, trained=False)
    got = client.post(URL, json=BODY, headers=headers["admin"])
    assert got.status_code == 503, got.text
    assert got.json()["type"].endswith("broker-unavailable")
    assert got.headers["Retry-After"] == "30"
    with runtime.db.session() as s:
        (row,) = s.scalars(select(FlowRun)).all()
        assert row.status == "failed" and "broker is unreachable" in (row.error or "")
    client.close()


def test_in_process_the_api_runs_it_after_answering(api: Api, tmp_path: Path) -> None:
    """No broker: the 202 says ``queued``; the API process runs it (the test client runs
    background tasks before it returns, a server answers first)."""
    register_champion(api.runtime.settings.resolved_mlflow_uri, tmp_path, trained=False)
    curate(api.runtime, add_stamped_detections(api.runtime, 2, seed=4))  # too few
    started = api.client.post(URL, json=BODY, headers=api.as_role("admin"))
    assert started.status_code == 202 and started.json()["status"] == "queued"
    status = api.client.get(f"{URL}/{started.json()['run_id']}", headers=api.as_role("viewer"))
    body = status.json()
    assert body["status"] == "failed", body
    assert "at least 3 observations" in body["error"]


def test_a_redelivered_message_runs_a_finished_run_once(runtime: Runtime) -> None:
    """A message delivered again after its run finished leaves the run as it is; one found
    ``running`` (its worker died) is started again and says so."""
    run_id = start_flow_run(runtime, "drift", {"model_name": "nope"}, queued=True)
    first = run_queued_flow(runtime, run_id)
    assert first.status == "failed" and first.attempts == 1
    again = run_queued_flow(runtime, run_id)
    assert (again.status, again.attempts, again.finished_at) == (
        "failed",
        1,
        first.finished_at,
    )
    with runtime.db.session() as s:
        s.get_one(FlowRun, run_id).status = "running"  # as a worker killed mid-run leaves it
    rerun = run_queued_flow(runtime, run_id)
    assert rerun.status == "failed"
    assert "started again" in rerun.log.splitlines()[0]
