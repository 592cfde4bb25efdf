"""AstrID on three hosts over a real network: Linux network namespaces joined by a bridge.

The API runs on host ``api``, ``astrid worker`` on ``w1`` and ``w2``; PostgreSQL, Redis and
an S3 server (moto) are reached over the veth links, at the bridge address of the root
namespace (TCP relays in front of the loopback-only PostgreSQL and Redis). A batch is
queued from the API host; mid-task ``w1``'s link is cut (its worker lives on, unreachable)
and ``w2``'s worker is killed with SIGKILL; a fresh worker on ``w2`` takes over the
redelivered messages; ``w1``'s link comes back later, its stale work finds its keys done.
Every observation must end processed exactly once and nothing may be left ``running``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from sqlalchemy import func, select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.tables import (
    Candidate,
    Detection,
    Difference,
    Observation,
    StageRun,
)
from tests.ops.netns import NetLab, NetLabError
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

#: ms without a heartbeat before a worker's unacknowledged messages are requeued.
HEARTBEAT_MS = 3000
API_PORT = 8000
SECRET = "multihost-test-secret-key-0123456789abcdef"


@dataclass
class Services:
    """What the hosts reach at the bridge address, and the environment that names it."""

    env: dict[str, str]
    redis_url: str
    namespace: str
    database_url: str


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Hosts ``api``, ``w1``, ``w2`` on a bridge; removed afterwards, even on failure."""
    try:
        net = NetLab(["api", "w1", "w2"])
    except NetLabError as exc:
        message = f"cannot create network namespaces here ({exc}); needs root and iproute2"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def services(
    lab: NetLab, postgres_url: str, redis_server: str, tmp_path: Path
) -> Iterator[Services]:
    """PostgreSQL, Redis and S3 on the bridge address; the ``ASTRID_*`` settings naming them."""
    import boto3
    import redis
    from moto.server import ThreadedMotoServer

    pg, database_url = TcpProxy.for_url(postgres_url, host=lab.gateway)
    rd, redis_url = TcpProxy.for_url(redis_server, host=lab.gateway, default_port=6379)
    with socket.socket() as probe:
        probe.bind((lab.gateway, 0))
        s3_port = int(probe.getsockname()[1])
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
    s3 = ThreadedMotoServer(ip_address=lab.gateway, port=s3_port, verbose=False)
    s3.start()
    endpoint = f"http://{lab.gateway}:{s3_port}"
    bucket = f"astrid-{lab.id}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    namespace = f"astrid-mh-{uuid.uuid4().hex[:10]}"
    broker_url = (
        f"{redis_url}?namespace={namespace}&heartbeat_timeout={HEARTBEAT_MS}"
        "&maintenance_chance=1000000"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env.update(
        ASTRID_DATA_DIR=str(tmp_path / "data"),
        ASTRID_DATABASE_URL=database_url,
        ASTRID_STORAGE_URL=f"s3://{bucket}/astrid",
        ASTRID_S3_ENDPOINT_URL=endpoint,
        ASTRID_S3_REGION="us-east-1",
        ASTRID_S3_ACCESS_KEY_ID="test",
        ASTRID_S3_SECRET_ACCESS_KEY="test",
        ASTRID_BROKER_URL=broker_url,
        ASTRID_SECRET_KEY=SECRET,
    )
    try:
        yield Services(env, redis_server, namespace, database_url)
    finally:
        s3.stop()
        pg.cut()
        rd.cut()
        client = redis.Redis.from_url(redis_server)
        keys = list(client.scan_iter(match=f"{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


class Hosts:
    """Processes started on the lab's hosts; every one is stopped at the end."""

    def __init__(self, lab: NetLab, env: dict[str, str], logs: Path) -> None:
        self.lab, self.env, self.logs = lab, env, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[TextIO] = []

    def start(self, host: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``python -m astrid ARGS`` on ``host`` in a process group of its own."""
        log = (self.logs / f"{name}.log").open("w")
        self._files.append(log)
        proc = subprocess.Popen(
            [*self.lab.exec_prefix(host), sys.executable, "-m", "astrid", *args],
            env={**self.env, "ASTRID_DATA_DIR": str(self.logs / f"data-{name}")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for f in self._files:
            f.close()


def _astrid(env: dict[str, str], *args: str, prefix: list[str] | None = None) -> str:
    run = subprocess.run(
        [*(prefix or []), sys.executable, "-m", "astrid", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"astrid {' '.join(args)}: {run.stdout}{run.stderr}"
    return run.stdout


def test_batch_survives_a_cut_link_and_a_killed_worker_over_a_real_network(
    lab: NetLab, services: Services, tmp_path: Path
) -> None:
    import redis

    t0 = time.monotonic()
    env = {**services.env, "ASTRID_DATA_DIR": str(tmp_path / "data-root")}
    _astrid(env, "db", "upgrade")
    raw = simulate_demo_survey(
        tmp_path / "raw",
        seed=23,
        shape=(448, 448),
        n_fields=3,
        n_epochs=2,
        n_transients=4,
        flux_range=(2000.0, 6000.0),
    ).paths
    assert "6 ingested" in _astrid(env, "ingest", str(tmp_path / "raw"), "--survey", "sim")
    runtime = Runtime(Settings(**_settings(env)))  # the root namespace, over the bridge too
    with runtime.db.session() as s:
        names = {o.id: o for o in s.scalars(select(Observation)).all()}
        reference_ids = {i for i, o in names.items() if "-e0" in (o.filename or "")}
    assert len(names) == len(raw) == 6 and len(reference_ids) == 3, names
    api_key = _api_key(runtime)

    hosts = Hosts(lab, services.env, tmp_path)
    client = redis.Redis.from_url(services.redis_url)
    heartbeats = f"{services.namespace}:__heartbeats__"
    try:
        api = hosts.start("api", "api", "serve", "--host", lab.addresses["api"],
                          "--port", str(API_PORT), "--log-level", "warning")  # fmt: skip
        w1 = hosts.start("w1", "w1", "worker")
        w2 = hosts.start("w2", "w2", "worker")
        _wait_for(lambda: client.zcard(heartbeats) >= 2, 120, "both workers to poll Redis")
        t_queue = time.monotonic()
        submit = hosts.start("api", "process", "process", "--pending", "--model", "rules",
                             "--timeout", "200")  # fmt: skip

        def running_on(proc: subprocess.Popen[bytes]) -> StageRun | None:
            with runtime.db.session() as s:
                return s.scalar(
                    select(StageRun).where(
                        StageRun.status == "running",
                        StageRun.stage != "process",
                        StageRun.worker.endswith(f":{proc.pid}"),
                    )
                )

        held1 = _wait_for(lambda: running_on(w1), 120, "w1 to run a stage")
        lab.cut("w1")
        t_cut = time.monotonic()
        held2 = _wait_for(lambda: running_on(w2), 120, "w2 to run a stage")
        os.killpg(w2.pid, signal.SIGKILL)
        w2.wait(10)
        print(
            f"\ncut w1 during {held1.stage} of observation {held1.observation_id}; "
            f"killed w2 during {held2.stage} of observation {held2.observation_id}"
        )
        w3 = hosts.start("w2", "w3", "worker")  # a fresh worker on the killed one's host

        def process_run(obs_id: int | None) -> StageRun | None:
            with runtime.db.session() as s:
                return s.scalar(
                    select(StageRun).where(
                        StageRun.stage == "process", StageRun.observation_id == obs_id
                    )
                )

        # w1's observation is redelivered to w3 while w1 is unreachable; then w1 comes back.
        _wait_for(
            lambda: (
                (r := process_run(held1.observation_id)) is not None and r.status == "succeeded"
            ),
            150,
            "w1's observation to be finished elsewhere",
        )
        cut_s = time.monotonic() - t_cut
        lab.restore("w1")
        submit.wait(210)
        wall_s = time.monotonic() - t_queue
        out = hosts.log("process")
        assert submit.returncode == 0, out
        assert "queued 6 observation(s) as batch" in out and out.count("completed") >= 3, out

        # The API on its own host answers over the veth network.
        root = f"http://{lab.addresses['api']}:{API_PORT}"
        base = f"{root}/api/v1"
        assert api.poll() is None, hosts.log("api")
        _wait_for(lambda: _get(f"{root}/health/live") == 200, 60, "the API")
        ready = httpx.get(f"{root}/health/ready", headers={"X-API-Key": api_key}, timeout=10)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]  # admins see each dependency, reached over the veths
        assert {k: v["status"] for k, v in checks.items()} == {
            "database": "ok", "storage": "ok", "broker": "ok", "mlflow": "not configured"
        }, checks  # fmt: skip
        listed = httpx.get(
            f"{base}/observations", params={"limit": 50}, headers={"X-API-Key": api_key},
            timeout=10,
        )  # fmt: skip
        assert listed.status_code == 200, listed.text
        listed_status = {o["id"]: o["status"] for o in listed.json()["items"]}

        # Settled: nothing waits, nothing is held by a live worker.
        _wait_for(
            lambda: (
                _status(hosts, services.env, lab)["queue_stats"]
                == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0}
            ),
            60,
            "the queue to drain",
        )
        status = _status(hosts, services.env, lab)
    except BaseException:
        for name in ("api", "w1", "w2", "w3", "process"):
            if (tmp_path / f"{name}.log").exists():
                print(f"--- {name} log (tail) ---\n{hosts.log(name)[-3000:]}")
        raise
    finally:
        hosts.stop_all()
        client.close()

    expected = {i: "preprocessed" if i in reference_ids else "completed" for i in names}
    assert listed_status == expected
    with runtime.db.session() as s:
        got = {o.id: o.status.value for o in s.scalars(select(Observation)).all()}
        assert got == expected
        runs = s.scalars(select(StageRun)).all()
        assert [r for r in runs if r.status != "succeeded"] == []  # none running or failed
        # exactly one run per (stage, observation): a redelivery reused the key's row
        per_key = [(r.stage, r.observation_id) for r in runs]
        assert len(per_key) == len(set(per_key)) == len({r.key for r in runs})
        assert sorted(per_key).count(("process", held1.observation_id)) == 1
        assert {o for st, o in per_key if st == "preprocess"} == set(names)
        by_id = {r.id: r for r in runs}
        # both interrupted runs ran again on another worker and succeeded
        for held, gone in ((held1, w1), (held2, w2)):
            again = by_id[held.id]
            assert again.attempts >= 2 and not again.worker.endswith(f":{gone.pid}"), again
        assert any(r.worker.endswith(f":{w3.pid}") for r in runs)  # the fresh worker worked
        redelivered = {f"{r.stage}#{r.observation_id}": r.attempts for r in runs if r.attempts > 1}
        # one result per observation: one difference and one detection per candidate
        for obs_id in set(names) - reference_ids:
            (diff,) = s.scalars(select(Difference).where(Difference.observation_id == obs_id))
            cands = s.scalars(select(Candidate).where(Candidate.observation_id == obs_id)).all()
            dets = s.scalars(select(Detection).where(Detection.observation_id == obs_id)).all()
            assert diff.n_candidates == len(cands) >= 2, obs_id
            assert sorted(d.candidate_id for d in dets) == sorted(c.id for c in cands), obs_id
        for obs_id in reference_ids:
            assert (
                s.scalar(
                    select(func.count())
                    .select_from(Detection)
                    .where(Detection.observation_id == obs_id)
                )
                == 0
            )
    runtime.close()

    assert {k: n for k, n in status["observations"].items() if n} == {
        "completed": 3,
        "preprocessed": 3,
    }
    assert status["failures"] == [] and all(
        set(by) == {"succeeded"} for by in status["stage_runs"].values()
    ), status
    # the status command shows the interrupted runs and how often they ran
    shown = {r["id"]: r["attempts"] for r in status["retried"]}
    assert shown == {r.id: r.attempts for r in runs if r.attempts > 1}
    assert held1.id in shown and held2.id in shown
    print(
        f"multi-host: {len(names)} observations (3 references, 3 differenced) on 3 hosts; "
        f"batch wall time {wall_s:.1f} s (total test {time.monotonic() - t0:.1f} s); "
        f"w1 cut for {cut_s:.1f} s; runs with more than one attempt (stage#observation: "
        f"attempts) {redelivered}; "
        f"status stage_runs {json.dumps(status['stage_runs'])}"
    )


def _settings(env: dict[str, str]) -> dict[str, Any]:
    return {
        "data_dir": Path(env["ASTRID_DATA_DIR"]),
        "database_url": env["ASTRID_DATABASE_URL"],
        "storage_url": env["ASTRID_STORAGE_URL"],
        "s3_endpoint_url": env["ASTRID_S3_ENDPOINT_URL"],
        "s3_region": "us-east-1",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "secret_key": SECRET,
        "_env_file": None,
    }


def _api_key(runtime: Runtime) -> str:
    from astrid.api.config import ApiConfig
    from astrid.api.security import create_api_key, create_user

    config = ApiConfig.from_settings(runtime.settings)
    with runtime.db.session() as session:
        user = create_user(session, "operator", "a-long-test-password-1", "admin", None)
        _, key = create_api_key(session, config, user, "multihost", ["read"], None)
    return str(key)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _status(hosts: Hosts, env: dict[str, str], lab: NetLab) -> dict[str, Any]:
    """``astrid status --json`` run on the API host."""
    return dict(json.loads(_astrid(env, "status", "--json", prefix=lab.exec_prefix("api"))))
