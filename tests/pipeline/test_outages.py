"""Outages and dead workers: a real cut of the database link, real SIGKILL, real Redis.

* the database behind a loopback TCP proxy (:mod:`tests.pipeline.tcp_proxy`) that the test
  cuts mid-stage: the run waits for it and finishes without spending an attempt; a cut
  that outlasts the patience is one clear line;
* a process SIGKILLed mid-stage stops heart-beating: its run is reclaimed after the lease
  and a queued batch member's message is sent again;
* with the default broker settings, a SIGKILLed worker's message is redelivered within
  a couple of minutes, while a live task longer than the heartbeat timeout is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from astrid.pipeline.orchestrate import process_observations
from astrid.pipeline.queue.batch import PROCESS_STAGE, batch_params, resend_reclaimed
from astrid.pipeline.queue.broker import make_broker, queue_stats, send
from astrid.pipeline.resilience import OutageError, is_outage, reclaim_stale_runs
from astrid.pipeline.runner import RetryPolicy, Stage, StageContext, run_stage, stable_hash
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.tables import StageRun
from tests._workers import start_worker, stop, wait_for, worker_env
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def proxied_pg(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A migrated PostgreSQL schema reached through a TCP proxy the test can cut."""
    upgrade(postgres_url)
    proxy, url = TcpProxy.for_url(postgres_url)
    yield url, proxy
    proxy.close()


def _run_row(runtime: Runtime, stage: str) -> StageRun | None:
    with runtime.db.session() as s:
        return s.scalar(select(StageRun).where(StageRun.stage == stage))


def test_a_database_cut_mid_stage_is_waited_out_and_not_counted(
    proxied_pg: tuple[str, TcpProxy], make_runtime: Callable[..., Runtime]
) -> None:
    url, proxy = proxied_pg
    runtime = make_runtime(url, outage_patience_s=60.0)
    outage_s = 6.0
    cut_at: list[float] = []

    def compute(ctx: StageContext) -> int:
        proxy.cut()  # the database goes away while the stage computes ...
        cut_at.append(time.monotonic())
        threading.Timer(outage_s, proxy.restore).start()  # ... and comes back 6 s later
        return 42

    stage: Stage[int] = Stage(
        name="outage", version="1", compute=compute, persist=lambda s, c, v: {"value": v}
    )
    out = run_stage(runtime, stage, params={}, input_hash="k", retry=RetryPolicy(max_attempts=2))
    waited = time.monotonic() - cut_at[0]
    assert out.ok and out.result == {"value": 42} and not out.reused
    assert out.attempts == 1  # the outage was not the task's failure: no attempt spent
    assert waited >= outage_s - 0.5  # it really waited for the database
    assert proxy.connections >= 2  # and reconnected through the restored link
    row = _run_row(runtime, "outage")
    assert row is not None and row.status == "succeeded" and row.error is None


def test_an_outage_longer_than_the_patience_is_one_clear_line(
    proxied_pg: tuple[str, TcpProxy], make_runtime: Callable[..., Runtime]
) -> None:
    url, proxy = proxied_pg
    runtime = make_runtime(url, outage_patience_s=3.0)
    runtime.require_migrated()  # connected once, then the link is cut for good
    proxy.cut()
    stage: Stage[int] = Stage(
        name="never", version="1", compute=lambda ctx: 1, persist=lambda s, c, v: {}
    )
    started = time.monotonic()
    with pytest.raises(OutageError) as info:
        run_stage(runtime, stage, params={}, input_hash="k")
    assert 3.0 <= time.monotonic() - started < 30.0
    message = str(info.value)
    assert "\n" not in message and message.startswith("the database stayed unreachable for")
    assert "Connection refused" in message  # the driver's reason, in the one line
    assert is_outage(info.value.__cause__)  # type: ignore[arg-type]


_VICTIM = """
import sys, time
from astrid.pipeline.queue.batch import PROCESS_STAGE, batch_params
from astrid.pipeline.runner import run_stage, stable_hash
from astrid.runtime import Runtime
from astrid.settings import Settings
rt = Runtime(Settings(database_url=sys.argv[1], data_dir=sys.argv[2], stage_heartbeat_s=0.3,
                      _env_file=None))
message = {"observation_id": 7, "params": {}, "batch": "b1", "after": [], "retry_failed": False}
run_stage(rt, PROCESS_STAGE, params=batch_params("b1"),
          inputs={"observation_id": 7, "after": [], "message": message},
          input_hash=stable_hash({"observation": 7}), payload=lambda: time.sleep(600))
"""


def test_a_killed_runs_lease_expires_and_its_message_is_sent_again(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    runtime = make_runtime(migrated_url, stage_lease_s=2.0)
    victim = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, migrated_url, str(tmp_path / "victim")],
        stderr=subprocess.PIPE,
    )
    try:
        row = wait_for(
            lambda: (r := _run_row(runtime, "process")) is not None and r.status == "running" and r,
            120,
            "the victim to start its run",
        )
        first = row.updated_at
        # alive: the heartbeat renews the lease, nothing is reclaimed
        wait_for(lambda: _run_row(runtime, "process").updated_at != first, 10, "a heartbeat")  # type: ignore[union-attr]
        assert reclaim_stale_runs(runtime, lease_s=2.0) == []
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    time.sleep(2.5)  # the lease runs out
    broker = make_broker(redis_broker_url)
    try:
        assert resend_reclaimed(runtime, broker) == [7]
        assert resend_reclaimed(runtime, broker) == []  # reclaimed once, lease renewed
        reclaimed = _run_row(runtime, "process")
        assert reclaimed is not None and reclaimed.status == "retrying"
        assert "lease expired" in (reclaimed.error or "") and reclaimed.attempts == 1
        assert queue_stats(broker)["waiting"] == 1
        config = broker.astrid_config  # type: ignore[attr-defined]
        stored = broker.client.hvals(f"{config.namespace}:{config.queue}.msgs")  # type: ignore[attr-defined]
        sent = json.loads(stored[0])
        assert sent["actor_name"] == "process_observation"
        assert sent["kwargs"] == {
            "observation_id": 7,
            "params": {},
            "batch": "b1",
            "after": [],
            "retry_failed": False,
        }
    finally:
        broker.close()
    with runtime.db.session() as s:
        assert s.scalar(
            select(StageRun.params_hash).where(StageRun.stage == PROCESS_STAGE.name)
        ) == stable_hash(batch_params("b1"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_default_broker_timeouts_redeliver_a_killed_worker_and_spare_a_live_one(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_server: str,
    tmp_path: Path,
) -> None:
    """The measurement quoted in docs/pipeline.md: default ``heartbeat_timeout`` and
    ``maintenance_chance``. A worker SIGKILLed during a task: its message is redelivered to
    a live worker within two minutes; a live task longer than the heartbeat timeout (90 s)
    on a busy worker is not redelivered."""
    runtime = make_runtime(migrated_url)
    namespace = f"astrid-test-{uuid.uuid4().hex[:12]}"
    url = f"{redis_server}{'&' if '?' in redis_server else '?'}namespace={namespace}"
    env = worker_env(tmp_path / "data", url, migrated_url)
    broker = make_broker(url)
    workers = [start_worker(env, "--threads", "1") for _ in range(2)]

    def probe(token: str) -> StageRun | None:
        with runtime.db.session() as s:
            runs = s.scalars(select(StageRun).where(StageRun.stage == "probe")).all()
            return next((r for r in runs if r.inputs.get("token") == token), None)

    try:
        send(broker, "probe", token="live", seconds=90.0)
        send(broker, "probe", token="victim", seconds=8.0)
        live = wait_for(lambda: (r := probe("live")) and r.status == "running" and r, 120, "live")
        victim = wait_for(
            lambda: (r := probe("victim")) and r.status == "running" and r, 120, "victim"
        )
        pid = int(victim.worker.rsplit(":", 1)[1])
        assert pid != int(live.worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        workers.append(
            start_worker(env, "--threads", "1")
        )  # an idle live worker: its queue maintenance requeues
        redelivered = wait_for(
            lambda: (r := probe("victim")) and r.attempts == 2 and r, 240, "the redelivery"
        )
        delay = time.monotonic() - killed_at
        print(f"\nredelivered {delay:.1f} s after SIGKILL (heartbeat timeout 60 s)")
        assert delay < 120.0
        assert not redelivered.worker.endswith(f":{pid}")
        done = wait_for(
            lambda: (r := probe("live")) and r.status == "succeeded" and r, 200, "the live task"
        )
        assert done.attempts == 1  # never redelivered although it ran 90 s > 60 s
        wait_for(
            lambda: (r := probe("victim")) and r.status == "succeeded", 60, "the victim to finish"
        )
    finally:
        stop(*workers)
        keys = list(broker.client.scan_iter(match=f"{namespace}*"))  # type: ignore[attr-defined]
        if keys:
            broker.client.delete(*keys)  # type: ignore[attr-defined]
        broker.close()


def test_astrid_process_reports_an_outage_in_one_line(
    proxied_pg: tuple[str, TcpProxy], make_runtime: Callable[..., Runtime]
) -> None:
    """What ``astrid process`` prints (the CLI shows an AstridError as one line)."""
    url, proxy = proxied_pg
    runtime = make_runtime(url, outage_patience_s=2.0)
    runtime.require_migrated()
    proxy.cut()
    with pytest.raises(OutageError) as info:
        process_observations(runtime, [1, 2])
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("the database or broker is unreachable: ")
    # The driver's own reason is named: a new connection is refused, or a pooled one (used
    # without a ping when it was idle under ASTRID_DB_POOL_PING_IDLE_S) finds the server gone.
    reasons = ("Connection refused", "server closed the connection unexpectedly")
    assert any(reason in str(info.value) for reason in reasons), str(info.value)
