"""Pipeline runs over HTTP on SQLite and PostgreSQL: a batch of simulated epochs processed in
the API's background thread, one corrupt image parked as a failure, listed with its reason,
then retried over HTTP once repaired (the scenario of tests/pipeline/test_process.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import process_observations
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.store.tables import Observation
from tests.api.conftest import Api
from tests.pipeline.conftest import one_field_survey


def _wait(api: Api, batch_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.client.get(f"/api/v1/pipeline/runs/{batch_id}", headers=api.as_role("viewer"))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in ("finished", "failed"):
            return body
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish: {body}"
        time.sleep(0.2)


def test_batch_failure_listing_and_retry(api: Api, tmp_path: Path) -> None:
    (e0, e1, e2), _ = one_field_survey(
        api.runtime, tmp_path / "raw", seed=3, n_epochs=3, n_transients=3,
        flux_range=(3000.0, 6000.0),
    )  # fmt: skip
    with api.runtime.db.session() as s:
        bad_key = s.get(Observation, e2).blob_key
    blob = Path(api.runtime.settings.data_dir) / "blobs" / bad_key[:2] / bad_key[2:4] / bad_key
    original = blob.read_bytes()
    blob.write_bytes(original[:2880] + b"\0" * (len(original) - 2880))

    curator = api.as_role("curator")
    both = api.client.post(
        "/api/v1/pipeline/runs", json={"pending": True, "observation_ids": [e0]}, headers=curator
    )
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "body.observation_ids"
    unknown = api.client.post(
        "/api/v1/pipeline/runs", json={"observation_ids": [e0, 987654]}, headers=curator
    )
    assert unknown.status_code == 404 and "987654" in unknown.json()["detail"]
    viewer = api.client.post(
        "/api/v1/pipeline/runs", json={"pending": True}, headers=api.as_role("viewer")
    )
    assert viewer.status_code == 403

    started = api.client.post("/api/v1/pipeline/runs", json={"pending": True}, headers=curator)
    assert started.status_code == 202, started.text
    assert sorted(started.json()["observation_ids"]) == sorted([e0, e1, e2])
    assert started.json()["requested_by"] == "curator-user"
    done = _wait(api, started.json()["id"])
    assert done["state"] == "finished", done
    status = {o["observation_id"]: o["status"] for o in done["observations"]}
    assert status == {e0: "preprocessed", e1: "completed", e2: "failed"}
    per_obs = {o["observation_id"]: o["stage_runs"] for o in done["observations"]}
    assert per_obs[e2]["preprocess"] == {"failed": 1}
    assert per_obs[e1]["detect"] == {"succeeded": 1}
    assert done["stage_runs"]["failed"] == 1

    listed = api.client.get("/api/v1/pipeline/runs", headers=api.as_role("viewer")).json()
    assert [b["id"] for b in listed] == [started.json()["id"]]

    failures = api.client.get(
        "/api/v1/pipeline/failures", params={"limit": 1}, headers=api.as_role("viewer")
    ).json()
    assert failures["next_cursor"] is None and len(failures["items"]) == 1
    failure = failures["items"][0]
    assert (failure["stage"], failure["observation_id"]) == ("preprocess", e2)
    assert "BlobIntegrityError" in failure["error"] and bad_key in failure["error"]
    none = api.client.get(
        "/api/v1/pipeline/failures", params={"stage": "detect"}, headers=api.as_role("viewer")
    )
    assert none.json()["items"] == []

    blob.write_bytes(original)
    forbidden = api.client.post(
        f"/api/v1/pipeline/failures/{failure['id']}/retry", headers=api.as_role("viewer")
    )
    assert forbidden.status_code == 403
    retried = api.client.post(f"/api/v1/pipeline/failures/{failure['id']}/retry", headers=curator)
    assert retried.status_code == 202, retried.text
    assert retried.json()["observation_ids"] == [e2] and retried.json()["retry_failed"] is True
    after = _wait(api, retried.json()["id"])
    assert after["observations"][0]["status"] == "completed", after
    assert after["observations"][0]["stage_runs"]["preprocess"] == {"succeeded": 1}

    # The failure is no longer parked: listing is empty, retrying again is a conflict.
    empty = api.client.get("/api/v1/pipeline/failures", headers=api.as_role("viewer")).json()
    assert empty["items"] == []
    again = api.client.post(f"/api/v1/pipeline/failures/{failure['id']}/retry", headers=curator)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_empty_batch_and_unknown_ids(api: Api) -> None:
    curator = api.as_role("curator")
    r = api.client.post("/api/v1/pipeline/runs", json={"pending": True}, headers=curator)
    assert r.status_code == 202 and r.json()["state"] == "finished"
    assert r.json()["observation_ids"] == []
    missing = api.client.get(f"/api/v1/pipeline/runs/{'0' * 32}", headers=curator)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    bad = api.client.get("/api/v1/pipeline/runs/not-an-id", headers=curator)
    assert bad.status_code == 422
    neither = api.client.post("/api/v1/pipeline/runs", json={}, headers=curator)
    assert neither.status_code == 422
    nofail = api.client.post("/api/v1/pipeline/failures/424242/retry", headers=curator)
    assert nofail.status_code == 404


def test_two_concurrent_retries_of_one_failure_start_one_batch(api: Api, tmp_path: Path) -> None:
    """Issue 16 item 12: both calls answer 202 with the same batch, which finishes."""
    survey = simulate_demo_survey(
        tmp_path / "raw", seed=4, n_fields=1, n_epochs=2, n_transients=1, flux_range=(3e3, 6e3)
    )
    outcomes = ingest_paths(api.runtime, survey.paths[:1], survey="test")
    obs_id = int(outcomes[0].observation_id or 0)
    with api.runtime.db.session() as s:
        key = s.get(Observation, obs_id).blob_key
    blob = Path(api.runtime.settings.data_dir) / "blobs" / key[:2] / key[2:4] / key
    original = blob.read_bytes()
    blob.write_bytes(original[:2880] + b"\0" * (len(original) - 2880))
    assert process_observations(api.runtime, [obs_id]).reports[0].status == "failed"
    blob.write_bytes(original)
    failure = api.client.get("/api/v1/pipeline/failures", headers=api.as_role("viewer")).json()
    failure_id = failure["items"][0]["id"]

    curator = api.as_role("curator")
    barrier = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def retry(k: int) -> None:
        barrier.wait()
        answers[k] = api.client.post(
            f"/api/v1/pipeline/failures/{failure_id}/retry", headers=curator
        )

    threads = [threading.Thread(target=retry, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]  # one batch, not two
    done = _wait(api, answers[0].json()["id"])
    assert done["state"] == "finished", done
    assert done["observations"][0]["status"] == "preprocessed"  # nothing earlier: a reference
    listed = api.client.get("/api/v1/pipeline/runs", headers=api.as_role("viewer")).json()
    assert len(listed) == 1
