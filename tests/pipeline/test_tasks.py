"""The stage runner and the task layer: idempotence, retries, parking, workers, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.errors import AstridError
from astrid.pipeline.queue.broker import (
    BrokerConfigError,
    make_broker,
    parse_broker_url,
    queue_stats,
)
from astrid.pipeline.runner import (
    RetryPolicy,
    Stage,
    StageContext,
    TransientError,
    classify_error,
    run_counts,
    run_key,
    run_stage,
    stable_hash,
)
from astrid.pipeline.stages.ingest import ingest_file, ingest_files
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.db import upgrade
from astrid.store.tables import DomainEvent, Observation, ObservationStatus, StageRun
from tests._cli import astrid, astrid_in, clean_env
from tests._workers import start_worker, stop, wait_for, worker_env

DECAM = [f"decam_cutouts/DEC-OBS04{c}.mini.fits" for c in "abc"]


def counting_stage(
    name: str = "toy",
    fail: Callable[[int], BaseException | None] = lambda attempt: None,
    **kwargs: Any,
) -> tuple[Stage[int], list[int]]:
    """A stage whose compute records each attempt and may raise what ``fail`` returns."""
    calls: list[int] = []

    def compute(ctx: StageContext) -> int:
        calls.append(ctx.attempt)
        exc = fail(ctx.attempt)
        if exc is not None:
            raise exc
        return int(ctx.params["x"]) * 2

    stage: Stage[int] = Stage(
        name=name,
        version="1",
        compute=compute,
        persist=lambda session, ctx, value: {"doubled": value},
        **kwargs,
    )
    return stage, calls


def n_runs(runtime: Runtime, stage: str | None = None) -> int:
    with runtime.db.session() as s:
        stmt = select(func.count()).select_from(StageRun)
        if stage:
            stmt = stmt.where(StageRun.stage == stage)
        return int(s.scalar(stmt) or 0)


def test_a_run_is_done_once_per_key_and_timed(runtime: Runtime) -> None:
    stage, calls = counting_stage()
    first = run_stage(runtime, stage, params={"x": 21}, input_hash="h1")
    again = run_stage(runtime, stage, params={"x": 21}, input_hash="h1")
    assert first.ok and not first.reused and first.result == {"doubled": 42}
    assert again.ok and again.reused and again.result == {"doubled": 42}
    assert calls == [1]  # the second call did no work
    assert first.key == run_key("toy", "1", stable_hash({"x": 21}), "h1") == again.key
    assert first.duration_s is not None and first.duration_s >= 0.0
    other = run_stage(runtime, stage, params={"x": 5}, input_hash="h1")
    assert other.result == {"doubled": 10} and other.key != first.key
    bumped: Stage[int] = Stage("toy", "2", stage.compute, stage.persist)
    assert not run_stage(runtime, bumped, params={"x": 21}, input_hash="h1").reused
    assert calls == [1, 1, 1] and n_runs(runtime, "toy") == 3


def test_transient_failures_are_retried_with_exponential_backoff(runtime: Runtime) -> None:
    stage, calls = counting_stage(fail=lambda a: TransientError("archive busy") if a < 3 else None)
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.5, factor=2.0, max_delay_s=30.0)
    out = run_stage(
        runtime, stage, params={"x": 1}, input_hash="t", retry=policy, sleep=waits.append
    )
    assert out.ok and out.attempts == 3 and calls == [1, 2, 3]
    assert waits == [0.5, 1.0]
    assert policy.delay(10) == 30.0  # capped


def test_permanent_and_exhausted_failures_are_parked_and_rerunnable(runtime: Runtime) -> None:
    waits: list[float] = []
    always, calls = counting_stage(fail=lambda a: ConnectionError("connection reset"))
    out = run_stage(
        runtime,
        always,
        params={"x": 1},
        input_hash="e",
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.1),
        sleep=waits.append,
    )
    assert out.status == "failed" and out.attempts == 3 and out.error_kind == "transient"
    assert out.error is not None and out.error.startswith("gave up after 3 attempts")
    assert waits == pytest.approx([0.1, 0.2]) and calls == [1, 2, 3]

    broken = {"on": True}
    bad, bad_calls = counting_stage(
        name="bad", fail=lambda a: AstridError("header has no WCS") if broken["on"] else None
    )
    parked = run_stage(runtime, bad, params={"x": 2}, input_hash="p", sleep=waits.append)
    assert parked.status == "failed" and parked.attempts == 1 and parked.error_kind == "permanent"
    assert parked.error == "AstridError: header has no WCS" and len(waits) == 2  # no backoff
    # Parked stays parked on a plain re-run (no work), and runs again when asked.
    assert run_stage(runtime, bad, params={"x": 2}, input_hash="p").status == "failed"
    assert bad_calls == [1]
    broken["on"] = False
    rerun = run_stage(runtime, bad, params={"x": 2}, input_hash="p", rerun_failed=True)
    assert rerun.ok and rerun.attempts == 2 and rerun.error is None and bad_calls == [1, 2]
    assert n_runs(runtime, "bad") == 1


def test_duplicate_deliveries_store_the_result_exactly_once(runtime: Runtime) -> None:
    """Two deliveries of one key computing at the same moment: one persists, one reuses."""
    import threading

    both_computing = threading.Barrier(2, timeout=30)
    persisted: list[int] = []

    def compute(ctx: StageContext) -> int:
        both_computing.wait()
        return ctx.attempt

    def persist(session: Any, ctx: StageContext, value: int) -> dict[str, Any]:
        persisted.append(value)
        return {"attempt": value}

    stage: Stage[int] = Stage("dup", "1", compute, persist)
    outs: list[Any] = []
    threads = [
        threading.Thread(target=lambda: outs.append(run_stage(runtime, stage, input_hash="k")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outs) == 2 and all(o.ok for o in outs)
    assert len(persisted) == 1
    assert sorted(o.reused for o in outs) == [False, True]
    assert outs[0].result == outs[1].result == {"attempt": persisted[0]}
    with runtime.db.session() as s:
        (row,) = s.scalars(select(StageRun).where(StageRun.stage == "dup")).all()
        assert row.attempts == 2 and row.status == "succeeded"


def test_error_classification() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    class Http(Exception):
        def __init__(self, code: int) -> None:
            self.response = type("R", (), {"status_code": code})()

    assert classify_error(TransientError("x")) == "transient"
    assert classify_error(TimeoutError()) == "transient"
    assert classify_error(OperationalError("s", {}, Exception("database is locked"))) == (
        "transient"
    )
    # a unique-constraint race with a concurrent writer: the retry finds the row and reuses it
    race = IntegrityError("insert", {}, Exception("duplicate key"))
    assert classify_error(race) == "transient"
    assert classify_error(Http(503)) == "transient"
    assert classify_error(Http(404)) == "permanent"
    assert classify_error(AstridError("bad input")) == "permanent"
    assert classify_error(FileNotFoundError("x")) == "permanent"
    assert classify_error(ValueError("bug")) == "permanent"


def test_a_stage_moves_its_observation_through_the_status_machine(
    runtime: Runtime, shared_data: Path
) -> None:
    ok = ingest_file(runtime, shared_data / DECAM[0])
    ko = ingest_file(runtime, shared_data / DECAM[1])
    good, _ = counting_stage(
        name="preprocess-toy",
        running_status=ObservationStatus.PREPROCESSING,
        done_status=ObservationStatus.PREPROCESSED,
    )
    bad, _ = counting_stage(
        name="preprocess-toy",
        fail=lambda a: AstridError("saturated everywhere"),
        running_status=ObservationStatus.PREPROCESSING,
        done_status=ObservationStatus.PREPROCESSED,
    )
    ok_id, ko_id = ok.result["observation_id"], ko.result["observation_id"]
    assert run_stage(runtime, good, params={"x": 1}, input_hash="a", observation_id=ok_id).ok
    out = run_stage(runtime, bad, params={"x": 1}, input_hash="b", observation_id=ko_id)
    assert out.status == "failed"
    with runtime.db.session() as s:
        a, b = s.get(Observation, ok_id), s.get(Observation, ko_id)
        assert a is not None and b is not None
        assert a.status is ObservationStatus.PREPROCESSED
        assert b.status is ObservationStatus.FAILED
        assert b.status_reason == "AstridError: saturated everywhere"
        changes = s.scalars(
            select(DomainEvent.payload)
            .where(DomainEvent.event_type == EventType.STATUS_CHANGED.value)
            .order_by(DomainEvent.id)
        ).all()
    assert [(c["from"], c["to"]) for c in changes] == [
        ("ingested", "preprocessing"),
        ("preprocessing", "preprocessed"),
        ("ingested", "preprocessing"),
        ("preprocessing", "failed"),
    ]


def test_a_corrupt_file_does_not_stop_the_batch_and_a_rerun_resumes(
    runtime: Runtime, shared_data: Path, tmp_path: Path
) -> None:
    files = [shared_data / f for f in DECAM]
    corrupt = tmp_path / "truncated.fits"
    corrupt.write_bytes((shared_data / DECAM[0]).read_bytes()[:5000])
    batch = [files[0], corrupt, files[1], tmp_path / "missing.fits", files[2]]
    first = ingest_files(runtime, batch)
    assert [o.status for o in first] == ["succeeded", "failed", "succeeded", "failed", "succeeded"]
    assert first[1].error_kind == "permanent" and "Error" in (first[1].error or "")
    assert first[3].error is not None and "missing.fits" in first[3].error
    second = ingest_files(runtime, batch)
    assert [o.reused for o in second] == [True, True, True, False, True]
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 3
    assert n_runs(runtime, "ingest") == 5
    ids = {o.result["observation_id"] for o in second if o.ok}
    assert ids == {o.result["observation_id"] for o in first if o.ok} and len(ids) == 3


def test_without_a_broker_tasks_run_in_process(runtime: Runtime) -> None:
    from astrid.pipeline.queue.actors import submit

    token = uuid.uuid4().hex
    sub = submit("probe", token=token, seconds=0.0, runtime=runtime)
    assert not sub.queued and sub.result["status"] == "succeeded"
    assert sub.result["result"]["pid"] == os.getpid()
    assert submit("probe", token=token, runtime=runtime).result["reused"] is True


def test_broker_urls() -> None:
    cfg = parse_broker_url(
        "redis://127.0.0.1:6379/3?namespace=ns1&heartbeat_timeout=1500&queue=q&socket_timeout=5"
    )
    assert (cfg.kind, cfg.namespace, cfg.heartbeat_timeout, cfg.queue) == (
        "redis",
        "ns1",
        1500,
        "q",
    )
    assert cfg.url == "redis://127.0.0.1:6379/3?socket_timeout=5"
    assert parse_broker_url(None).kind == "inprocess"
    assert parse_broker_url("amqp://guest:guest@localhost:5672/").kind == "rabbitmq"
    with pytest.raises(BrokerConfigError, match="unknown broker URL scheme 'kafka'"):
        parse_broker_url("kafka://host")
    with pytest.raises(BrokerConfigError, match="heartbeat_timeout='soon' is not an integer"):
        parse_broker_url("redis://h/0?heartbeat_timeout=soon")


def test_a_worker_killed_mid_task_loses_nothing_and_the_result_is_stored_once(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    """SIGKILL a real ``astrid worker`` during a slow task: the message is redelivered
    (late acknowledgement) to a second worker, and exactly one result row exists."""
    from astrid.pipeline.queue.actors import enqueue

    runtime = make_runtime(migrated_url)
    env = worker_env(tmp_path / "data", redis_broker_url, migrated_url)
    broker = make_broker(redis_broker_url)
    token = uuid.uuid4().hex

    def run_row() -> StageRun | None:
        with runtime.db.session() as s:
            return s.scalar(select(StageRun).where(StageRun.stage == "probe"))

    first = start_worker(env, "--threads", "1")
    second: subprocess.Popen[bytes] | None = None
    try:
        enqueue(broker, "probe", token=token, seconds=4.0)
        row = wait_for(
            lambda: (r := run_row()) is not None and r.status == "running" and r,
            60,
            "the first worker to start the task",
        )
        assert row.attempts == 1 and row.worker.endswith(f":{first.pid}")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        stats = queue_stats(broker)
        assert stats["in_flight"] == 1 and stats["waiting"] == 0  # held, not lost

        second = start_worker(env, "--threads", "1")
        done = wait_for(
            lambda: (r := run_row()) is not None and r.status == "succeeded" and r,
            90,
            "the redelivered task to finish on the second worker",
        )
        assert done.attempts == 2
        assert done.result["pid"] == second.pid and done.result["attempt"] == 2
        assert done.worker.endswith(f":{second.pid}")
        wait_for(
            lambda: queue_stats(broker) == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0},
            30,
            "the message to be acknowledged",
        )
        with runtime.db.session() as s:
            assert s.scalar(select(func.count()).select_from(StageRun)) == 1
    finally:
        stop(first, second, timeout_s=20)
        broker.close()
    assert second is not None and second.returncode == 0, (
        second.stderr.read().decode() if second.stderr else ""
    )


def test_worker_without_broker_is_a_clear_error(tmp_path: Path) -> None:
    out = astrid(clean_env(tmp_path / "data"), "worker", timeout=120)
    assert out.returncode == 2
    assert "no broker configured" in out.stderr and "ASTRID_BROKER_URL" in out.stderr


def test_queued_commands_are_run_by_a_worker(
    redis_broker_url: str, archive_server: Any, shared_data: Path, tmp_path: Path
) -> None:
    """With a broker, the commands only queue; a separate ``astrid worker`` does the work."""
    from tests.pipeline.archive_server import centre_of
    from tests.pipeline.conftest import NIRCAM

    env = worker_env(tmp_path / "data", redis_broker_url)

    astrid = astrid_in(env)

    runtime = Runtime(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    upgrade(runtime.settings.resolved_database_url)
    broker = make_broker(redis_broker_url)
    ra, dec = centre_of(shared_data / NIRCAM)
    pos = astrid(
        "ingest-position",
        "--archive",
        "mast",
        "--survey",
        "JWST",
        "--ra",
        str(ra),
        "--dec",
        str(dec),
        "--fov",
        "0.05",
        "--archive-url",
        archive_server.url,
    )
    assert pos.returncode == 0 and "queued ingest_position as message" in pos.stdout, pos.stderr
    alerts = sorted((shared_data / "ztf_alerts").glob("*.avro"))[:3]
    queued = astrid("ingest-alerts", *map(str, alerts), "--model", "none")
    assert queued.returncode == 0 and "queued 3 alert file(s)" in queued.stdout, queued.stderr
    assert queue_stats(broker) == {"waiting": 4, "delayed": 0, "in_flight": 0, "dead": 0}
    assert run_counts(runtime) == {}  # nothing ran yet

    worker = start_worker(env, "--threads", "2", stderr=subprocess.DEVNULL)
    try:

        def done() -> bool:
            runs = run_counts(runtime)
            return (
                runs.get("alert", {}).get("succeeded") == 3
                and runs.get("ingest", {}).get("succeeded") == 1
            )

        wait_for(done, 120, "the worker to run the queued tasks")
        assert run_counts(runtime)["archive_fetch"] == {"succeeded": 1}
        with runtime.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Observation)) == 1
        wait_for(lambda: queue_stats(broker)["in_flight"] == 0, 30, "acknowledgements")
    finally:
        stop(worker)
        broker.close()
        runtime.close()
    assert worker.returncode == 0


def test_an_unreachable_s3_endpoint_is_transient_a_refused_request_is_not() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    from astrid.store.blobs import BlobNotFoundError, BlobStoreError

    def wrapped(cause: Exception, cls: type[BlobStoreError] = BlobStoreError) -> BlobStoreError:
        exc = cls("S3 bucket 'b' failed")
        exc.__cause__ = cause
        return exc

    def client_error(code: str, status: int) -> ClientError:
        meta = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(meta, "PutObject")  # type: ignore[arg-type]

    down = EndpointConnectionError(endpoint_url="http://10.0.0.1:9000")
    assert classify_error(wrapped(down)) == "transient"
    assert classify_error(wrapped(ReadTimeoutError(endpoint_url="http://h"))) == "transient"
    assert classify_error(wrapped(client_error("SlowDown", 503))) == "transient"
    assert classify_error(wrapped(client_error("AccessDenied", 403))) == "permanent"
    assert classify_error(wrapped(down, BlobNotFoundError)) == "permanent"
    assert classify_error(BlobStoreError("storage URL names no bucket")) == "permanent"


def test_a_superseded_attempt_does_not_park_the_run(runtime: Runtime) -> None:
    """A worker cut off past its heartbeat fails after its message went to another worker
    (which claimed the run: one more attempt): the stale failure leaves the row alone."""
    from sqlalchemy import update

    def fail(attempt: int) -> BaseException:
        with runtime.db.session() as s:  # the newer delivery's claim
            s.execute(update(StageRun).values(attempts=StageRun.attempts + 1))
        return AstridError("lost the storage mid-write")

    stage, calls = counting_stage("stale", fail=fail)
    out = run_stage(runtime, stage, params={"x": 1}, input_hash="h")
    assert not out.ok and calls == [1] and out.exception is not None
    with runtime.db.session() as s:
        (row,) = s.scalars(select(StageRun).where(StageRun.stage == "stale")).all()
        assert row.status == "running" and row.attempts == 2 and row.error is None
