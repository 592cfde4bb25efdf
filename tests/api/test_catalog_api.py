"""Catalog and notification routes over HTTP (SQLite and PostgreSQL): shapes, bad input as
problems naming the field, nothing stored on refusal, streamed exports read back."""

from __future__ import annotations

import csv
import io
import json

import pytest
from astropy.io import fits, votable
from sqlalchemy import func, select

from astrid.notify.render import sign_unsubscribe
from astrid.store.tables import CatalogRelease, NotificationRule
from tests.api.conftest import Api
from tests.catalog.factory import make_object


def _fields(response: object) -> list[str]:
    body = response.json()  # type: ignore[attr-defined]
    return [e["field"] for e in body.get("errors", [])]


def test_bad_input_and_empty_catalog_are_problems(api: Api) -> None:
    c, viewer, admin = api.client, api.as_role("viewer"), api.as_role("admin")
    assert c.get("/api/v1/catalog", headers=viewer).json()["items"] == []
    for query, field in (
        ("ra=10&dec=10&radius=0", "query.radius"),
        ("ra=10&dec=10&radius=200", "query.radius"),
        ("ra=10&radius=1", "query.dec"),
        ("ra=400&dec=0&radius=1", "query.ra"),
    ):
        r = c.get(f"/api/v1/catalog?{query}", headers=viewer)
        assert r.status_code == 422, query
        assert r.headers["content-type"] == "application/problem+json"
        assert field in _fields(r), (query, r.json())
    r = c.post("/api/v1/catalog/releases", json={}, headers=admin)
    assert r.status_code == 409 and _fields(r) == ["catalog"]
    assert "nothing is confirmed" in r.json()["detail"]
    r = c.get("/api/v1/catalog/export?format=csv", headers=viewer)
    assert r.status_code == 409 and _fields(r) == ["catalog"]
    r = c.get("/api/v1/catalog/export?format=xls", headers=viewer)
    assert r.status_code == 422 and _fields(r) == ["query.format"]
    with api.runtime.db.session() as s:
        assert s.scalar(select(func.count(CatalogRelease.id))) == 0


def test_search_release_and_export(api: Api) -> None:
    c, viewer, admin = api.client, api.as_role("viewer"), api.as_role("admin")
    with api.runtime.db.session() as s:
        make_object(s, 150.0, 2.0, classification="transient/supernova/Ia")
        make_object(s, 150.001, 2.0)
        make_object(s, 200.0, -10.0, mags=(15.0, 15.5))
    made = c.post("/api/v1/catalog/releases", json={"note": "DR1"}, headers=admin)
    assert made.status_code == 201, made.text
    rel = made.json()
    assert rel["n_entries"] == 3 and rel["checksum"].startswith("sha256:")
    again = c.post("/api/v1/catalog/releases", json={"version": rel["version"]}, headers=admin)
    assert again.status_code == 409 and _fields(again) == ["body.version"]
    bad = c.post("/api/v1/catalog/releases", json={"version": "no spaces"}, headers=admin)
    assert bad.status_code == 422 and _fields(bad) == ["body.version"]

    cone = c.get("/api/v1/catalog?ra=150.0&dec=2.0&radius=0.01", headers=viewer).json()
    assert [i["name"] for i in cone["items"]] == [
        "AstrID J100000.00+020000.0",
        "AstrID J100000.24+020000.0",
    ]
    assert cone["items"][1]["separation_arcsec"] == pytest.approx(3.6, rel=1e-3)
    assert [
        i["ra"] for i in c.get("/api/v1/catalog?mag_max=16", headers=viewer).json()["items"]
    ] == [200.0]
    paged = c.get("/api/v1/catalog?limit=2", headers=viewer).json()
    rest = c.get(f"/api/v1/catalog?limit=2&cursor={paged['next_cursor']}", headers=viewer).json()
    assert len(paged["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None

    listed = c.get("/api/v1/catalog/releases", headers=viewer).json()["items"]
    assert [r["version"] for r in listed] == [rel["version"]]
    assert c.get(f"/api/v1/catalog/releases/{rel['version']}", headers=viewer).json() == rel

    r = c.get(f"/api/v1/catalog/export?format=fits&release={rel['version']}", headers=viewer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    assert rel["version"] in r.headers["content-disposition"]
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert len(hdul["CATALOG"].data) == 3 and len(hdul["LIGHT_CURVES"].data) == 6
    r = c.get(f"/api/v1/catalog/export?format=votable&release={rel['version']}", headers=viewer)
    tables = list(votable.parse(io.BytesIO(r.content)).iter_tables())
    assert [len(t.array) for t in tables] == [3, 6]
    rows = list(
        csv.DictReader(
            io.StringIO(
                c.get("/api/v1/catalog/export?classification=transient", headers=viewer).text
            )
        )
    )
    assert [row["classification"] for row in rows] == ["transient/supernova/Ia"]
    data = json.loads(c.get("/api/v1/catalog/export?format=json", headers=viewer).content)
    assert len(data) == 3
    r = c.get("/api/v1/catalog/export?release=nope", headers=viewer)
    assert r.status_code == 404 and _fields(r) == ["query.release"]

    stats = c.get("/api/v1/catalog/analytics", headers=viewer).json()
    assert set(stats) == {
        "discoveries_per_night",
        "scanning_throughput",
        "agreement",
        "model_performance",
    }


def test_notification_rules_and_unsubscribe(api: Api) -> None:
    c, viewer, curator = api.client, api.as_role("viewer"), api.as_role("curator")
    r = c.post("/api/v1/notify/rules", json={"to": "not an address"}, headers=viewer)
    assert r.status_code == 422 and _fields(r) == ["body.to"]
    r = c.post("/api/v1/notify/rules", json={"to": "a@example.org", "min_score": 2}, headers=viewer)
    assert r.status_code == 422 and _fields(r) == ["body.min_score"]
    made = c.post(
        "/api/v1/notify/rules",
        json={"to": "a@example.org", "min_score": 0.9, "quiet_hours": [22, 6], "digest": True},
        headers=viewer,
    )
    assert made.status_code == 201, made.text
    rule = made.json()
    assert rule["channel"] == "email" and rule["events"] == ["detection"] and rule["digest"]
    hook = c.post(
        "/api/v1/notify/rules",
        json={"to": "https://hooks.example.org/x", "events": ["discovery"]},
        headers=curator,
    )
    assert hook.json()["channel"] == "webhook"
    assert [x["id"] for x in c.get("/api/v1/notify/rules", headers=viewer).json()["items"]] == [
        rule["id"]
    ]
    assert len(c.get("/api/v1/notify/rules", headers=api.as_role("admin")).json()["items"]) == 2
    assert c.delete(f"/api/v1/notify/rules/{hook.json()['id']}", headers=viewer).status_code == 404
    r = c.get("/api/v1/notify/unsubscribe?token=1.deadbeef")
    assert r.status_code == 404 and _fields(r) == ["query.token"]
    token = sign_unsubscribe(api.runtime.settings.secret_key.get_secret_value(), rule["id"])
    r = c.get(f"/api/v1/notify/unsubscribe?token={token}")
    assert r.status_code == 200 and r.json()["rule_id"] == rule["id"]
    with api.runtime.db.session() as s:
        assert s.get(NotificationRule, rule["id"]).is_active is False  # type: ignore[union-attr]
    deliveries = c.get("/api/v1/notify/deliveries", headers=api.as_role("admin")).json()
    assert deliveries["items"] == []
