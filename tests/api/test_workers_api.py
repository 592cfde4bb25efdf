"""Workers, queues and diagnostics routes (in process; the Redis worker is in
tests/pipeline/test_worker_presence.py and the browser test): heartbeats and lost workers,
throughput windows and buckets, parked runs, refused actions, retry, diagnostics."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import process_observations
from astrid.pipeline.queue.presence import WorkerPresence
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.store.tables import Observation, StageRun, WorkerProcess, utcnow
from tests.api.conftest import Api


def test_a_worker_heartbeat_is_listed_and_a_silent_worker_is_lost(api: Api) -> None:
    presence = WorkerPresence(api.runtime, {"astrid"}, threads=2)
    presence.beat()
    got = api.client.get("/api/v1/workers", headers=api.as_role("viewer"))
    assert got.status_code == 200, got.text
    [row] = got.json()
    assert row["id"] == presence.id and row["pid"] == presence.pid
    assert row["state"] == "alive" and row["queues"] == ["astrid"] and row["threads"] == 2
    assert row["heartbeat_age_s"] < 5
    # Silent longer than ASTRID_WORKER_LOST_AFTER_S (30 s by default): lost.
    with api.runtime.db.session() as s:
        s.execute(update(WorkerProcess).values(last_seen=utcnow() - timedelta(seconds=45)))
    [row] = api.client.get("/api/v1/workers", headers=api.as_role("viewer")).json()
    assert row["state"] == "lost" and row["heartbeat_age_s"] >= 45
    presence.beat(stopped=True)
    [row] = api.client.get("/api/v1/workers", headers=api.as_role("viewer")).json()
    assert row["state"] == "stopped" and row["stopped_at"] is not None


def _run(i: int, status: str, age_s: float, **extra: object) -> StageRun:
    return StageRun(
        key=f"{i:064d}",
        stage="probe",
        stage_version="1",
        params_hash="p",
        input_hash=f"i{i}",
        status=status,
        finished_at=utcnow() - timedelta(seconds=age_s),
        **extra,
    )


def test_queues_count_stage_runs_per_window_and_list_parked_runs(api: Api) -> None:
    ages = {"succeeded": [60, 1800, 4000, 20000, 80000, 90000], "failed": [120, 30000]}
    with api.runtime.db.session() as s:
        i = 0
        for status, list_ in ages.items():
            for age in list_:
                i += 1
                s.add(_run(i, status, age, error="boom" if status == "failed" else None))
    got = api.client.get("/api/v1/queues", headers=api.as_role("viewer"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["broker"] == "inprocess"
    [queue] = body["queues"]
    assert queue["name"] == "astrid" and queue["paused"] is False
    assert queue["waiting"] == 0 and queue["workers"] == 0
    assert body["windows"] == {
        "1h": {"processed": 2, "failed": 1},
        "6h": {"processed": 4, "failed": 1},
        "24h": {"processed": 5, "failed": 2},
    }
    assert sum(b["processed"] for b in body["buckets"]) == 5  # the 25 h old run is out
    assert sum(b["failed"] for b in body["buckets"]) == 2
    starts = [b["start"] for b in body["buckets"]]
    assert starts == sorted(starts) and body["bucket_s"] == 300
    assert body["parked_total"] == 2
    assert [p["error"] for p in body["parked"]] == ["boom", "boom"]


def test_queue_actions_are_refused_in_process_and_purge_needs_the_name(api: Api) -> None:
    admin = api.as_role("admin")
    paused = api.client.post("/api/v1/queues/astrid/pause", headers=admin)
    assert paused.status_code == 409 and "in process" in paused.json()["detail"]
    assert api.client.post("/api/v1/queues/nope/pause", headers=admin).status_code == 404
    wrong = api.client.post("/api/v1/queues/astrid/purge", headers=admin, json={"confirm": "x"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "body.confirm"
    right = api.client.post(
        "/api/v1/queues/astrid/purge", headers=admin, json={"confirm": "astrid"}
    )
    assert right.status_code == 409
    for role in ("viewer", "curator", "expert"):
        r = api.client.post("/api/v1/queues/astrid/pause", headers=api.as_role(role))
        assert r.status_code == 403


def test_retry_parked_runs_skips_what_cannot_be_retried(api: Api) -> None:
    admin = api.as_role("admin")
    with api.runtime.db.session() as s:
        s.add(_run(1, "failed", 10, error="bad file"))
        s.add(_run(2, "succeeded", 10))
    neither = api.client.post("/api/v1/failures/retry", headers=admin, json={})
    assert neither.status_code == 422 and neither.json()["errors"][0]["field"] == "body.ids"
    r = api.client.post("/api/v1/failures/retry", headers=admin, json={"ids": [1, 2, 999]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["retried"] == [] and body["observation_ids"] == []
    assert {s["id"]: s["reason"] for s in body["skipped"]} == {
        1: "probe concerns no observation",
        2: "succeeded, not parked",
        999: "no such stage run",
    }
    every = api.client.post("/api/v1/failures/retry", headers=admin, json={"all": True})
    assert every.status_code == 202 and [s["id"] for s in every.json()["skipped"]] == [1]


def test_diagnostics_list_run_one_and_the_smoke_test(api: Api) -> None:
    names = [c["name"] for c in api.client.get(
        "/api/v1/diagnostics/checks", headers=api.as_role("viewer")).json()]  # fmt: skip
    assert names == ["database", "storage", "broker", "mlflow", "model", "smoke"]
    assert api.client.post(
        "/api/v1/diagnostics/run", headers=api.as_role("curator"), json={"check": "smoke"}
    ).status_code == 403  # fmt: skip
    bad = api.client.post(
        "/api/v1/diagnostics/run", headers=api.as_role("admin"), json={"check": "nope"}
    )
    assert bad.status_code == 422
    db = api.client.post(
        "/api/v1/diagnostics/run", headers=api.as_role("admin"), json={"check": "database"}
    ).json()
    assert db["ok"] and db["results"][0]["status"] == "ok"
    assert db["log"][-1]["message"].startswith("database: ok")
    smoke = api.client.post(
        "/api/v1/diagnostics/run", headers=api.as_role("admin"), json={"check": "smoke"}
    ).json()
    assert smoke["ok"], smoke
    d = smoke["results"][0]["details"]
    assert d["injected"] == 12 and d["bright"] >= 8
    assert d["bright_detected"] >= 0.8 * d["bright"] and d["detected"] <= d["injected"]
    times = [line["time"] for line in smoke["log"]]
    assert len(times) >= 4 and times == sorted(times)


def parked_observation(runtime: Runtime, tmp_path: Path) -> tuple[int, Path, bytes]:
    """One simulated epoch ingested with a corrupted blob and processed: its preprocess
    stage run is parked. Returns the observation id, the blob path and its good bytes."""
    survey = simulate_demo_survey(tmp_path / "raw", seed=5, n_fields=1, n_epochs=2)
    [outcome] = ingest_paths(runtime, sorted(survey.paths)[:1], survey="test")
    obs_id = int(outcome.observation_id)
    with runtime.db.session() as s:
        key = s.get(Observation, obs_id).blob_key
    blob = Path(runtime.settings.data_dir) / "blobs" / key[:2] / key[2:4] / key
    good = blob.read_bytes()
    blob.write_bytes(good[:2880] + b"\0" * (len(good) - 2880))
    process_observations(runtime, [obs_id])
    return obs_id, blob, good


def test_retry_all_reruns_a_parked_observation_in_process(api: Api, tmp_path: Path) -> None:
    obs_id, blob, good = parked_observation(api.runtime, tmp_path)
    queues = api.client.get("/api/v1/queues", headers=api.as_role("viewer")).json()
    [parked] = queues["parked"]
    assert parked["observation_id"] == obs_id and "BlobIntegrityError" in parked["error"]
    assert queues["windows"]["1h"]["failed"] == 1
    blob.write_bytes(good)  # repaired
    r = api.client.post("/api/v1/failures/retry", headers=api.as_role("admin"), json={"all": True})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["queued"] is False and body["observation_ids"] == [obs_id]
    assert body["retried"] == [parked["id"]] and body["skipped"] == []
    deadline = time.monotonic() + 120
    while True:
        batch = api.client.get(
            f"/api/v1/pipeline/runs/{body['batch']}", headers=api.as_role("viewer")
        ).json()
        if batch["state"] in ("finished", "failed"):
            break
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    assert batch["observations"][0]["stage_runs"]["preprocess"] == {"succeeded": 1}, batch
    after = api.client.get("/api/v1/queues", headers=api.as_role("viewer")).json()
    assert after["parked_total"] == 0
