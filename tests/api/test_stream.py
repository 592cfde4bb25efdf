"""The live stream over a real socket: uvicorn on loopback, httpx consuming SSE while
observations are ingested, change status and get detections; resume with Last-Event-ID."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from astrid.domain.events import EventType, record_event
from astrid.domain.observations import ObservationService
from astrid.pipeline.stages.ingest import ingest_bytes
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, DomainEvent
from tests.api.conftest import Api, LiveServer


def _produce(api: Api, shared_data: Path) -> None:
    """What a pipeline run does to the outbox: ingest, status changes, detections, a failure."""
    service = ObservationService(api.runtime.db)
    files = sorted((shared_data / "decam_cutouts").glob("DEC-OBS04*.mini.fits"))[:2]
    ids = [ingest_bytes(api.runtime, p.read_bytes(), filename=p.name)[0] for p in files]
    service.transition(ids[0], "preprocessing")
    with api.runtime.db.session() as s:
        for k in range(3):
            det = Detection(
                observation_id=ids[0],
                ra=318.1 + k * 1e-3,
                dec=-66.0,
                confidence=0.5 + 0.1 * k,
                healpix=int(healpix_index(318.1 + k * 1e-3, -66.0)),
            )
            s.add(det)
            s.flush()
            record_event(
                s, EventType.DETECTION_CREATED, "detection", det.id, {"confidence": det.confidence}
            )
    service.transition(ids[1], "failed", "boom")


def _read_events(
    url: str, headers: dict[str, str], want: int, params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Read SSE frames until ``want`` events arrived; return them and the heartbeats seen."""
    events: list[dict[str, Any]] = []
    beats = 0
    frame: dict[str, str] = {}
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "GET", url + "/api/v1/stream/events", headers=headers, params=params
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(": heartbeat"):
                beats += 1
            elif line == "":
                if "data" in frame:
                    events.append(
                        {
                            "id": int(frame["id"]),
                            "event": frame["event"],
                            "data": json.loads(frame["data"]),
                        }
                    )
                    if len(events) >= want:
                        break
                frame = {}
            elif ":" in line and not line.startswith(":"):
                key, _, value = line.partition(":")
                frame[key] = value.strip()
    return events, beats


def test_sse_follows_a_run_and_resumes(api: Api, shared_data: Path) -> None:
    h = api.as_role("viewer")
    with LiveServer(api.app) as server:
        # Unauthenticated stream is refused like any route.
        r = httpx.get(server.url + "/api/v1/stream/events?duration=0.1", timeout=10)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"

        results: dict[str, Any] = {}
        with api.runtime.db.session() as s:
            start = int(s.scalar(select(func.max(DomainEvent.id))) or 0)
        # Clients resume from the current newest id, so none can miss the run's first events.
        since = {**h, "Last-Event-ID": str(start)}

        def consume(name: str, want: int, params: dict[str, Any] | None = None) -> None:
            results[name] = _read_events(server.url, since, want, params)

        # 2 ingested + (status + started) + 3 detections + (status + failed) = 9 events.
        everything = threading.Thread(target=consume, args=("all", 9))
        detections = threading.Thread(target=consume, args=("det", 3, {"types": "detections"}))
        failures = threading.Thread(target=consume, args=("fail", 1, {"types": "failures"}))
        for t in (everything, detections, failures):
            t.start()
        _produce(api, shared_data)
        for t in (everything, detections, failures):
            t.join(timeout=30)
            assert not t.is_alive()

        events, _ = results["all"]
        types = [e["event"] for e in events]
        assert types == [
            "observation.ingested",
            "observation.ingested",
            "observation.status_changed",
            "observation.processing_started",
            "detection.created",
            "detection.created",
            "detection.created",
            "observation.status_changed",
            "observation.processing_failed",
        ]
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 9
        assert events[4]["data"]["payload"]["confidence"] == 0.5
        assert [e["event"] for e in results["det"][0]] == ["detection.created"] * 3
        assert [e["data"]["payload"]["reason"] for e in results["fail"][0]] == ["boom"]

        # Reconnect after the 4th event: exactly the remaining 5 arrive, in order.
        resumed, _ = _read_events(server.url, {**h, "Last-Event-ID": str(ids[3])}, 5)
        assert [e["id"] for e in resumed] == ids[4:]

        # Without Last-Event-ID a stream starts at the newest event: an idle stream sends only
        # heartbeats, and ends after `duration`.
        with httpx.Client(timeout=10) as client:
            body = client.get(
                server.url + "/api/v1/stream/events", params={"duration": 1.0}, headers=h
            ).text
        assert body.count(": heartbeat") >= 2 and "data:" not in body

        bad = httpx.get(
            server.url + "/api/v1/stream/events", params={"types": "gossip"}, headers=h, timeout=10
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.types"


def test_sse_streams_the_detections_of_a_real_pipeline_run(api: Api, tmp_path: Path) -> None:
    """A real run (simulate → ingest → preprocess → ZOGY → score) feeds the stream."""
    from astrid.pipeline.demo import simulate_demo_survey
    from astrid.pipeline.orchestrate import process_pending
    from astrid.pipeline.stages.ingest import ingest_paths

    h = api.as_role("viewer")
    survey = simulate_demo_survey(
        tmp_path / "raw",
        seed=5,
        n_fields=1,
        n_epochs=2,
        n_transients=4,
        flux_range=(4000.0, 8000.0),
    )
    with LiveServer(api.app) as server:
        with api.runtime.db.session() as s:
            start = int(s.scalar(select(func.max(DomainEvent.id))) or 0)
        results: dict[str, Any] = {}
        reader = threading.Thread(
            target=lambda: results.update(
                det=_read_events(
                    server.url, {**h, "Last-Event-ID": str(start)}, 3, {"types": "detections"}
                )
            )
        )
        reader.start()
        ingest_paths(api.runtime, survey.paths, survey="stream-test")
        process_pending(api.runtime)
        reader.join(timeout=60)
        assert not reader.is_alive()
        with api.runtime.db.session() as s:
            detection_ids = set(s.scalars(select(Detection.id)))
        assert len(detection_ids) >= 3
        events, _ = results["det"]
        assert [e["event"] for e in events] == ["detection.created"] * 3
        assert {e["data"]["aggregate_id"] for e in events} <= detection_ids
