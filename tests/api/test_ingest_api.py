"""Ingestion over HTTP on SQLite and PostgreSQL: by sky position (validation refused before
anything is fetched; success against the loopback SkyView look-alike of the pipeline tests,
serving a real DECam image) and ZTF alert upload (real packets from ../shared/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from astrid.store.tables import Detection, Observation, StageRun
from tests.api.conftest import Api
from tests.pipeline.archive_server import ArchiveServer, centre_of
from tests.pipeline.conftest import DECAM

URL = "/api/v1/observations/ingest/position"


def _count(api: Api, table: Any) -> int:
    with api.runtime.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ra": 10.0, "dec": 95.0}, "body.dec"),
        ({"ra": 400.0, "dec": 0.0}, "body.ra"),
        ({"fov": 0.0}, "body.fov"),
        ({"pixels": 2}, "body.pixels"),
        ({"archive": "hubble"}, "body.archive"),
        ({"survey": "No Such Survey"}, "body.survey"),
    ],
)
def test_bad_position_requests_are_refused_naming_the_field(
    make_api: Any, archive_server: ArchiveServer, body: dict[str, Any], field: str
) -> None:
    api = make_api(archive_base_url=archive_server.url)
    request = {"archive": "skyview", "survey": "DSS2 Red", "ra": 10.0, "dec": 0.0, "fov": 0.05}
    r = api.client.post(URL, json={**request, **body}, headers=api.as_role("curator"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]
    # Nothing queued, nothing fetched: at most the survey list was read.
    assert _count(api, StageRun) == 0
    assert not archive_server.requests_to("/current/cgi/runquery.pl")


def test_position_ingest_fetches_and_is_idempotent(
    make_api: Any, archive_server: ArchiveServer, shared_data: Path
) -> None:
    api = make_api(archive_base_url=archive_server.url)
    ra, dec = centre_of(shared_data / DECAM)
    body = {"archive": "skyview", "survey": "DSS2 Red", "ra": ra, "dec": dec, "fov": 0.05}
    viewer = api.client.post(URL, json=body, headers=api.as_role("viewer"))
    assert viewer.status_code == 403
    r = api.client.post(URL, json=body, headers=api.as_role("curator"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["fetch_status"] == "succeeded" and len(out["images"]) == 1
    obs_id = out["images"][0]["observation_id"]
    with api.runtime.db.session() as s:
        obs = s.get(Observation, obs_id)
        assert obs is not None
        assert obs.content_hash and obs.width > 0
    again = api.client.post(URL, json=body, headers=api.as_role("curator")).json()
    assert again["images"][0]["observation_id"] == obs_id
    assert _count(api, Observation) == 1
    assert len(archive_server.requests_to("/current/cgi/runquery.pl")) == 1


def test_unreachable_archive_is_a_503(api: Api) -> None:
    body = {"archive": "skyview", "survey": "DSS2 Red", "ra": 10.0, "dec": 0.0, "fov": 0.05}
    r = api.client.post(URL, json=body, headers=api.as_role("curator"))
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert _count(api, StageRun) == 0


def _upload(api: Api, name: str, data: bytes, role: str = "curator") -> Any:
    return api.client.post(
        "/api/v1/alerts",
        files={"file": (name, data, "application/avro")},
        headers=api.as_role(role),
    )


def test_alert_upload_stores_a_detection_and_refuses_non_avro(
    make_api: Any, shared_data: Path
) -> None:
    path = sorted((shared_data / "ztf_alerts").glob("*.avro"))[0]
    data = path.read_bytes()
    api = make_api()
    assert _upload(api, path.name, data, role="viewer").status_code == 403
    r = _upload(api, path.name, data)
    assert r.status_code == 201, r.text
    (packet,) = r.json()["packets"]
    assert packet["status"] == "stored" and packet["candid"] == int(path.stem)
    with api.runtime.db.session() as s:
        det = s.get(Detection, packet["detection_id"])
        assert det is not None and det.source == "alert" and det.external_id == path.stem
    again = _upload(api, path.name, data).json()["packets"][0]
    assert again["detection_id"] == packet["detection_id"]
    assert _count(api, Detection) == 1

    bad = _upload(api, "notes.avro", b"this is not an avro file at all" * 10)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "notes.avro" in bad.json()["detail"] and bad.json()["errors"][0]["field"] == "file"

    small = make_api(max_upload_bytes=len(data) - 1)
    too_big = _upload(small, path.name, data)
    assert too_big.status_code == 413 and path.name in too_big.json()["detail"]
    assert _count(api, Detection) == 1
