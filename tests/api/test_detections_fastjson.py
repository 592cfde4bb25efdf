"""The hot detection routes answer pre-serialised JSON and parse their query in one model:
the bytes must equal what the response models gave (FastAPI's own serialisation), and bad
query parameters must still be 422 problems naming the field."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from astrid.api.schemas import DetectionDetail, DetectionOut
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, DetectionStatus
from tests.api.conftest import Api


def _seed(api: Api) -> list[int]:
    rows = [
        Detection(
            ra=150.0 + i * 1e-3,
            dec=2.0 - i * 1e-3,
            healpix=int(healpix_index(150.0 + i * 1e-3, 2.0 - i * 1e-3)),
            confidence=[0.1, 0.333333333333, None, 1.0][i % 4],
            snr=[5.5, math.nan, 1e-7, 12.0][i % 4],
            mjd=60000.123456789 + i,
            mag=None if i % 2 else 19.25,
            status=list(DetectionStatus)[i % len(DetectionStatus)],
            source="alert" if i % 3 == 0 else "pipeline",
            label="réal ✓" if i == 1 else None,
            external_id=f"c{i}" if i % 2 else None,
            validated_by="expert" if i == 2 else None,
            validated_at=datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC) if i == 2 else None,
            cutout_keys={"science": f"k/{i}.png"} if i % 2 else {},
            extra={"nested": {"a": [1, 2.5, None]}, "s": "x"} if i == 3 else {},
        )
        for i in range(8)
    ]
    with api.runtime.db.session() as s:
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def _expected(api: Api, ids: list[int], model: type[DetectionOut]) -> list[bytes]:
    with api.runtime.db.session() as s:
        return [model.model_validate(s.get(Detection, i)).model_dump_json().encode() for i in ids]


def test_detail_bytes_equal_the_response_model(api: Api) -> None:
    ids = _seed(api)
    want = _expected(api, ids, DetectionDetail)
    for i, body in zip(ids, want, strict=True):
        r = api.client.get(f"/api/v1/detections/{i}", headers=api.as_role("viewer"))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.content == body


def test_list_and_cone_bytes_equal_the_response_model(api: Api) -> None:
    ids = _seed(api)
    items = _expected(api, ids, DetectionOut)
    r = api.client.get("/api/v1/detections?limit=3", headers=api.as_role("viewer"))
    assert r.status_code == 200
    cursor = r.json()["next_cursor"]
    assert r.content == b'{"items":[%s],"limit":3,"next_cursor":"%s"}' % (
        b",".join(items[:3]),
        cursor.encode(),
    )
    r = api.client.get(
        "/api/v1/detections?ra=150.0&dec=2.0&radius=0.1&order=desc&limit=100",
        headers=api.as_role("viewer"),
    )
    assert r.content == b'{"items":[%s],"limit":100,"next_cursor":null}' % b",".join(items[::-1])


def test_list_query_errors_name_the_field(api: Api) -> None:
    h = api.as_role("viewer")
    for query, field in (
        ("limit=0", "query.limit"),
        ("limit=abc", "query.limit"),
        ("min_confidence=2", "query.min_confidence"),
        ("status=nope", "query.status"),
        ("order=up", "query.order"),
        ("radius=11&ra=1&dec=1", "query.radius"),
        ("label=", "query.label"),
    ):
        r = api.client.get(f"/api/v1/detections?{query}", headers=h)
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (query, r.text)
    # unknown parameters are ignored and the last of a repeated one counts, as FastAPI does
    _seed(api)
    r = api.client.get("/api/v1/detections?bogus=1&limit=9&limit=2", headers=h)
    assert r.status_code == 200 and r.json()["limit"] == 2
    assert api.client.get("/api/v1/detections?ra=1&dec=1", headers=h).status_code == 422
