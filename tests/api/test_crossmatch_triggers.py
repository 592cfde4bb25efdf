"""The cross-match and TNS triggers over HTTP (SQLite and PostgreSQL): ``POST
/objects/{id}/crossmatch`` against a local catalogue file and the loopback SkyBoT server of
tests/catalog, and ``POST /discoveries/{id}/tns-report`` built, then sent to a loopback
receiver speaking TNS's bulk-report protocol (the discovery then reads ``reported``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from astropy import units as u
from astropy.table import Table
from pydantic import SecretStr

from astrid.store.tables import Discovery
from tests.api.conftest import Api
from tests.catalog.factory import make_object
from tests.catalog.test_crossmatch import ASTEROID, EPOCH_MJD, Loopback, _skybot


@pytest.fixture
def skybot() -> Iterator[Loopback]:
    server = Loopback(_skybot)
    yield server
    server.close()


def _tns(path: str, q: dict[str, str], body: bytes, headers: Any) -> tuple[int, str, str]:
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if form.get("api_key") != "k3y":
        return 401, "application/json", json.dumps({"id_code": 401, "id_message": "Unauthorized"})
    answer = {"id_code": 200, "id_message": "OK", "data": {"report_id": 77}}
    return 200, "application/json", json.dumps(answer)


def _configure(api: Api, **update: Any) -> None:
    api.runtime.settings = api.runtime.settings.model_copy(update=update)


def test_crossmatch_route_annotates_every_detection(
    api: Api, skybot: Loopback, tmp_path: Path
) -> None:
    star = ASTEROID.spherical_offsets_by(2.0 * u.arcsec, 0 * u.arcsec)
    catalog = tmp_path / "stars.ecsv"
    Table({"ra": [star.ra.deg], "dec": [star.dec.deg], "mag": [15.5]}).write(
        catalog, format="ascii.ecsv"
    )
    with api.runtime.db.session() as s:
        obj = make_object(s, ASTEROID.ra.deg, ASTEROID.dec.deg, mjds=(EPOCH_MJD, EPOCH_MJD + 1e-4))
        obj_id = obj.id
    url = f"/api/v1/objects/{obj_id}/crossmatch"
    # Nothing configured to match against: a 409 naming the settings.
    r = api.client.post(url, headers=api.as_role("expert"))
    assert r.status_code == 409 and "ASTRID_CROSSMATCH_CATALOG" in r.json()["detail"]
    assert api.client.post(url, headers=api.as_role("curator")).status_code == 403
    _configure(api, crossmatch_catalog=catalog, skybot_url=skybot.url)
    r = api.client.post(url, headers=api.as_role("expert"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["detections_annotated"] == 2 and body["errors"] == []
    assert body["stars"] == 2 and body["solar_system"] == 2
    kinds = sorted((a["kind"], a["name"]) for a in body["annotations"])
    assert kinds.count(("solar_system", "G!kun||'homdima")) == 2
    assert [k for k, _ in kinds].count("star") == 2
    assert all(
        abs(a["separation_arcsec"] - 2.0) < 0.01 for a in body["annotations"] if a["kind"] == "star"
    )
    shown = api.client.get(f"/api/v1/objects/{obj_id}", headers=api.as_role("viewer")).json()
    assert shown["crossmatched_at"] is not None and len(shown["annotations"]) == 4
    # Again: the annotations are replaced, not duplicated.
    again = api.client.post(url, headers=api.as_role("admin")).json()
    assert len(again["annotations"]) == 4
    missing = api.client.post("/api/v1/objects/999999/crossmatch", headers=api.as_role("expert"))
    assert missing.status_code == 404


def test_tns_report_route_builds_and_sends(api: Api) -> None:
    with api.runtime.db.session() as s:
        obj = make_object(s, 150.0, 2.0, mjds=(60000.25, 60001.5), mags=(19.2, 18.7))
        d = Discovery(object_id=obj.id, status="confirmed")
        s.add(d)
        s.flush()
        disc_id = d.id
        bare = make_object(s, 151.0, 2.0, mjds=(60000.0,), mags=(19.0,))
        bare_member = Discovery(object_id=bare.id)
        s.add(bare_member)
        s.flush()
        bare_id = bare_member.id
    url = f"/api/v1/discoveries/{disc_id}/tns-report"
    assert api.client.post(url, headers=api.as_role("curator")).status_code == 403
    r = api.client.post(url, headers=api.as_role("expert"))
    assert r.status_code == 200, r.text
    report = r.json()["report"]["at_report"]["0"]
    assert r.json()["sent"] is False
    assert report["internal_name"] == "AstrIDJ100000.00+020000.0"
    assert report["discovery_datetime"] == "2023-02-25 06:00:00"
    server = Loopback(_tns)
    try:
        _configure(
            api,
            tns_url=server.url + "/api/bulk-report",
            tns_api_key=SecretStr("wrong"),
            tns_bot_id=1,
            tns_bot_name="bot",
        )
        refused = api.client.post(url, headers=api.as_role("expert"))
        assert refused.status_code == 502 and "401 Unauthorized" in refused.json()["detail"]
        preview = api.client.post(url, params={"send": False}, headers=api.as_role("expert"))
        assert preview.status_code == 200 and preview.json()["sent"] is False
        assert len(server.requests) == 1  # the preview sent nothing
        _configure(api, tns_api_key=SecretStr("k3y"))
        sent = api.client.post(url, headers=api.as_role("expert"))
        assert sent.status_code == 200, sent.text
        assert sent.json()["sent"] is True and sent.json()["answer"]["data"]["report_id"] == 77
        assert sent.json()["status"] == "reported"
        form = {k: v[0] for k, v in parse_qs(server.requests[-1]["body"].decode()).items()}
        assert json.loads(form["data"])["at_report"]["0"] == report
        moved = api.client.get(f"/api/v1/discoveries/{disc_id}", headers=api.as_role("viewer"))
        assert moved.json()["status"] == "reported"
        assert moved.json()["history"][-1]["note"] == "TNS report 77"
    finally:
        server.close()
    # One detection with a magnitude is enough; no discovery: 404.
    assert (
        api.client.post(
            f"/api/v1/discoveries/{bare_id}/tns-report",
            params={"send": False},
            headers=api.as_role("expert"),
        ).status_code
        == 200
    )
    assert (
        api.client.post(
            "/api/v1/discoveries/999999/tns-report", headers=api.as_role("expert")
        ).status_code
        == 404
    )


def test_merge_route_folds_one_object_into_the_other(api: Api) -> None:
    with api.runtime.db.session() as s:
        one = make_object(s, 30.0, 10.0, mjds=(EPOCH_MJD,), mags=(19.0,)).id
        two = make_object(s, 30.0, 10.0 + 4.0 / 3600, mjds=(EPOCH_MJD + 1,), mags=(19.0,)).id
        far = make_object(s, 30.0, 10.0 + 60.0 / 3600, mjds=(EPOCH_MJD + 2,), mags=(19.0,)).id
    url = f"/api/v1/objects/{two}/merge"
    assert (
        api.client.post(url, json={"other_id": one}, headers=api.as_role("curator")).status_code
        == 403
    )
    bad = api.client.post(url, json={"other": one}, headers=api.as_role("expert"))
    assert bad.status_code == 422 and "other_id" in bad.text
    r = api.client.post(url, json={"other_id": one}, headers=api.as_role("expert"))
    assert r.status_code == 200, r.text
    assert r.json()["object"]["id"] == one and r.json()["merged_ids"] == [two]
    assert r.json()["object"]["n_detections"] == 2
    # The retired id still answers, as the kept object.
    shown = api.client.get(f"/api/v1/objects/{two}", headers=api.as_role("viewer")).json()
    assert shown["id"] == one
    again = api.client.post(url, json={"other_id": one}, headers=api.as_role("expert"))
    assert again.status_code == 409 and "already one object" in again.json()["detail"]
    too_far = api.client.post(
        f"/api/v1/objects/{one}/merge", json={"other_id": far}, headers=api.as_role("admin")
    )
    assert too_far.status_code == 422
    assert too_far.json()["errors"][0]["field"] == "other_id"
    assert "ASTRID_CURATION_MERGE_MAX_ARCSEC" in too_far.json()["detail"]
    missing = api.client.post(
        f"/api/v1/objects/{one}/merge", json={"other_id": 999_999}, headers=api.as_role("expert")
    )
    assert missing.status_code == 404
