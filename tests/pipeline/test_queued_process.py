"""The pipeline on real Redis workers gives the in-process results, and survives SIGKILL.

Each test runs on SQLite (one file shared by the test and the worker subprocesses) and on
PostgreSQL, with real ``astrid worker`` processes consuming a namespace of the real Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import process_pending
from astrid.pipeline.queue.batch import batch_dependencies, enqueue_observations, wait_for_batch
from astrid.pipeline.queue.broker import make_broker, parse_broker_url, queue_stats
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.db import upgrade
from astrid.store.tables import Candidate, Detection, Difference, Observation, Reference, StageRun
from tests._workers import start_worker, stop, wait_for, worker_env

Results = dict[str, dict[str, Any]]


def _survey(folder: Path, shape: tuple[int, int], n_fields: int, n_epochs: int) -> list[Path]:
    return simulate_demo_survey(
        folder,
        seed=11,
        shape=shape,
        n_fields=n_fields,
        n_epochs=n_epochs,
        n_transients=4,
        flux_range=(2000.0, 6000.0),
    ).paths


def _ingest(runtime: Runtime, paths: list[Path]) -> dict[int, str]:
    outcomes = ingest_paths(runtime, paths, survey="sim")
    assert all(o.observation_id for o in outcomes)
    return {int(o.observation_id): Path(o.path).name for o in outcomes if o.observation_id}


def _results(runtime: Runtime, names: dict[int, str]) -> Results:
    """Per file: status, reference file, candidates and detections (sorted by position)."""
    out: Results = {}
    with runtime.db.session() as s:
        for obs_id, name in names.items():
            obs = s.get(Observation, obs_id)
            assert obs is not None
            diffs = s.scalars(select(Difference).where(Difference.observation_id == obs_id)).all()
            ref = s.get(Reference, diffs[0].reference_id) if diffs else None
            cands = s.scalars(select(Candidate).where(Candidate.observation_id == obs_id)).all()
            dets = s.scalars(select(Detection).where(Detection.observation_id == obs_id)).all()
            out[name] = {
                "status": obs.status.value,
                "n_differences": len(diffs),
                "reference": names[ref.observation_ids[0]] if ref is not None else None,
                "candidates": sorted((c.ra, c.dec, c.x, c.y, c.snr, c.score) for c in cands),
                "detections": sorted((d.ra, d.dec, d.snr, d.mag, d.confidence) for d in dets),
                "model_versions": sorted({d.model_version for d in dets}),
            }
    return out


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """2 fields × 3 epochs of 256² images (epoch 0 is the deep reference)."""
    return _survey(tmp_path_factory.mktemp("survey"), (256, 256), n_fields=2, n_epochs=3)


@pytest.fixture(scope="module")
def in_process(survey: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    """The survey processed in process (no broker) on a SQLite database of its own."""
    data = tmp_path_factory.mktemp("inprocess")
    runtime = Runtime(Settings(data_dir=data, _env_file=None))  # type: ignore[call-arg]
    upgrade(runtime.settings.resolved_database_url)
    names = _ingest(runtime, survey)
    summary = process_pending(runtime)
    assert summary.by_status() == {"preprocessed": 2, "completed": 4}
    yield _results(runtime, names)
    runtime.close()


def test_redis_workers_give_the_in_process_results(
    survey: list[Path],
    in_process: Results,
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    """``astrid process --pending`` with a broker queues one message per observation; two
    worker processes run them; every product equals the in-process one."""
    runtime = make_runtime(migrated_url)
    names = _ingest(runtime, survey)
    ids = {name: i for i, name in names.items()}
    deps = batch_dependencies(runtime, names)
    # Later epochs wait for the earlier epochs of their own field only.
    assert deps[ids["field-a-e2.fits"]] == [ids["field-a-e0.fits"], ids["field-a-e1.fits"]]
    assert (
        deps[ids["field-b-e1.fits"]] == [ids["field-b-e0.fits"]]
        and deps[ids["field-a-e0.fits"]] == []
    )

    env = worker_env(runtime.settings.data_dir, redis_broker_url, migrated_url)
    workers = start_worker(env, "--processes", "2")
    try:
        # Both processes consume (each has polled Redis) before anything is queued.
        import redis

        client = redis.Redis.from_url(redis_broker_url.split("?")[0])
        heartbeats = f"{parse_broker_url(redis_broker_url).namespace}:__heartbeats__"
        wait_for(
            lambda: client.zcard(heartbeats) >= 2, 120, "both worker processes", interval_s=0.05
        )
        client.close()
        run = subprocess.run(
            [sys.executable, "-m", "astrid", "process", "--pending", "--timeout", "240"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "queued 6 observation(s) as batch" in run.stdout
        assert run.stdout.count("completed") == 4 and "time per stage: preprocess" in run.stdout
    finally:
        stop(workers)
    assert workers.returncode == 0, workers.stderr.read().decode() if workers.stderr else ""

    queued = _results(runtime, names)
    assert set(queued) == set(in_process)
    for name, expected in in_process.items():
        got = queued[name]
        assert got["status"] == expected["status"], name
        assert got["reference"] == expected["reference"], name
        assert got["n_differences"] == expected["n_differences"] <= 1, name
        assert got["model_versions"] == expected["model_versions"], name
        for what in ("candidates", "detections"):
            assert len(got[what]) == len(expected[what]), (name, what)
            for a, b in zip(got[what], expected[what], strict=True):
                assert a == pytest.approx(b, rel=1e-6, abs=1e-9), (name, what)
    # not an empty comparison: each later epoch found most of its 4 bright transients
    later = [r for r in queued.values() if r["status"] == "completed"]
    assert len(later) == 4 and all(len(r["detections"]) >= 2 for r in later)
    assert sum(len(r["detections"]) for r in later) >= 3 * 4
    with runtime.db.session() as s:
        runs = s.scalars(select(StageRun).where(StageRun.stage == "process")).all()
        assert len(runs) == 6 and {r.status for r in runs} == {"succeeded"}
        # two processes shared the work
        assert len({r.worker for r in runs}) == 2


def test_a_worker_killed_mid_difference_is_redelivered_and_stores_one_result(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    redis_broker_url: str,
    tmp_path: Path,
) -> None:
    """SIGKILL the worker while it computes a difference (a 768² image: seconds of work);
    a second worker gets the message again and exactly one difference, one set of
    candidates and one detection per candidate exist afterwards."""
    runtime = make_runtime(migrated_url)
    names = _ingest(runtime, _survey(tmp_path / "raw", (768, 768), n_fields=1, n_epochs=2))
    new_id = next(i for i, n in names.items() if n == "field-a-e1.fits")
    env = worker_env(runtime.settings.data_dir, redis_broker_url, migrated_url)
    broker = make_broker(redis_broker_url)

    def difference_run() -> StageRun | None:
        with runtime.db.session() as s:
            return s.scalar(select(StageRun).where(StageRun.stage == "difference"))

    first = start_worker(env)
    second: subprocess.Popen[bytes] | None = None
    try:
        batch = enqueue_observations(runtime, names, {"detect": {"model": "rules"}}, broker=broker)
        row = wait_for(
            lambda: (r := difference_run()) is not None and r.status == "running" and r,
            120,
            "the first worker to start the difference",
            interval_s=0.05,
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert row.attempts == 1 and row.worker.endswith(f":{first.pid}")
        with runtime.db.session() as s:
            obs = s.get(Observation, new_id)
            assert obs is not None and obs.status.value == "differencing"
            assert s.scalar(select(func.count()).select_from(Difference)) == 0
        assert queue_stats(broker)["in_flight"] == 1  # held by the dead worker, not lost

        second = start_worker(env)
        summary = wait_for_batch(runtime, batch, broker=broker, timeout_s=150, poll_s=0.2)
        assert {r.observation_id: r.status for r in summary.reports} == {
            i: ("completed" if i == new_id else "preprocessed") for i in names
        }
        wait_for(
            lambda: queue_stats(broker) == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0},
            30,
            "the redelivered message to be acknowledged",
            interval_s=0.05,
        )
    finally:
        stop(first, second)
        broker.close()
    assert second is not None and second.returncode == 0

    with runtime.db.session() as s:
        diff_run = s.scalar(select(StageRun).where(StageRun.stage == "difference"))
        proc_run = s.scalar(
            select(StageRun).where(StageRun.stage == "process", StageRun.observation_id == new_id)
        )
        assert diff_run is not None and proc_run is not None
        # redelivered: a second attempt, by the second worker
        assert diff_run.status == "succeeded" and diff_run.attempts == 2
        assert diff_run.worker.endswith(f":{second.pid}")
        assert proc_run.attempts == 2 and proc_run.worker.endswith(f":{second.pid}")
        (diff,) = s.scalars(select(Difference)).all()
        cands = s.scalars(select(Candidate)).all()
        dets = s.scalars(select(Detection)).all()
        assert diff.observation_id == new_id and diff.n_candidates == len(cands) >= 4
        assert {c.difference_id for c in cands} == {diff.id}
        assert sorted(d.candidate_id for d in dets) == sorted(c.id for c in cands)
        assert s.scalar(select(func.count()).select_from(Reference)) == 1
