"""``astrid catalog crossmatch`` and ``astrid catalog tns-report`` as a user runs them (real
processes) against a local catalogue file, the loopback SkyBoT server of tests/catalog and a
loopback TNS receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from astropy import units as u
from astropy.table import Table
from sqlalchemy import select

from astrid.store.db import Database
from astrid.store.tables import DetectionAnnotation, Discovery, SkyObject, User
from tests._cli import astrid
from tests.catalog.factory import make_object
from tests.catalog.test_crossmatch import ASTEROID, EPOCH_MJD, Loopback, _skybot


@pytest.fixture
def skybot() -> Iterator[Loopback]:
    server = Loopback(_skybot)
    yield server
    server.close()


def test_crossmatch_all_new_then_one_object(
    cli_env: dict[str, str], database_url: str, skybot: Loopback, tmp_path: Path
) -> None:
    assert astrid(cli_env, "init").returncode == 0
    nothing = astrid(cli_env, "catalog", "crossmatch", "--all-new")
    assert nothing.returncode == 2 and "ASTRID_CROSSMATCH_CATALOG" in nothing.stderr
    both = astrid(cli_env, "catalog", "crossmatch", "--all-new", "--object", "1")
    assert both.returncode == 2 and "--object ID or --all-new" in both.stderr
    star = ASTEROID.spherical_offsets_by(0 * u.arcsec, 3.0 * u.arcsec)
    catalog = tmp_path / "stars.csv"
    Table({"ra": [star.ra.deg], "dec": [star.dec.deg], "mag": [14.0]}).write(
        catalog, format="ascii.csv"
    )
    db = Database(database_url)
    with db.session() as s:
        near = make_object(s, ASTEROID.ra.deg, ASTEROID.dec.deg, mjds=(EPOCH_MJD,), mags=(19.0,))
        far = make_object(s, 20.0, -40.0, mjds=(EPOCH_MJD,), mags=(19.0,))
        ids = (near.id, far.id)
    cli_env.update(ASTRID_CROSSMATCH_CATALOG=str(catalog), ASTRID_SKYBOT_URL=skybot.url)
    done = astrid(cli_env, "catalog", "crossmatch", "--all-new")
    assert done.returncode == 0, done.stderr
    assert "cross-matched 2 of 2 objects: 2 detections, 1 catalogue matches, 1 solar-system" in (
        done.stdout.replace("\n", " ")
    )
    with db.session() as s:
        rows = s.scalars(select(DetectionAnnotation).order_by(DetectionAnnotation.id)).all()
        assert sorted(r.kind for r in rows) == ["solar_system", "star"]
        assert all(s.get(SkyObject, i).crossmatched_at is not None for i in ids)  # type: ignore[union-attr]
    again = astrid(cli_env, "catalog", "crossmatch", "--all-new")
    assert again.returncode == 0 and "cross-matched 0 of 0 objects" in again.stdout
    # SkyBoT down: the object is still cross-matched against the catalogue; one yellow line.
    cli_env["ASTRID_SKYBOT_URL"] = skybot.url + "/down"
    one = astrid(cli_env, "catalog", "crossmatch", "--object", str(ids[0]))
    assert one.returncode == 0, one.stderr
    assert "SkyBoT cone search failed" in one.stdout and "1 errors" in one.stdout
    missing = astrid(cli_env, "catalog", "crossmatch", "--object", "999999", "--no-skybot")
    assert missing.returncode == 1 and "object 999999: no such object" in missing.stdout
    db.dispose()


def test_tns_report_written_and_sent(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert astrid(cli_env, "init").returncode == 0
    db = Database(database_url)
    with db.session() as s:
        obj = make_object(s, 150.0, 2.0, mjds=(60000.25, 60001.5), mags=(19.2, 18.7))
        d = Discovery(object_id=obj.id, status="confirmed")
        s.add_all([d, User(username="eva", role="expert"), User(username="cur", role="curator")])
        s.flush()
        disc = d.id
    out = tmp_path / "at.json"
    wrote = astrid(cli_env, "catalog", "tns-report", str(disc), "-o", str(out))
    assert wrote.returncode == 0, wrote.stderr
    report = json.loads(out.read_text())
    assert report["at_report"]["0"]["internal_name"] == "AstrIDJ100000.00+020000.0"
    shown = astrid(cli_env, "catalog", "tns-report", str(disc))
    assert json.loads(shown.stdout) == report
    unknown = astrid(cli_env, "catalog", "tns-report", "999999")
    assert unknown.returncode == 2 and "no such discovery" in unknown.stderr
    unset = astrid(cli_env, "catalog", "tns-report", str(disc), "--send", "--user", "eva")
    assert unset.returncode == 2 and "ASTRID_TNS_URL" in unset.stderr
    received: list[dict[str, str]] = []

    def tns(path: str, q: dict[str, str], body: bytes, headers: Any) -> tuple[int, str, str]:
        received.append({k: v[0] for k, v in parse_qs(body.decode()).items()})
        answer = {"id_code": 200, "id_message": "OK", "data": {"report_id": 9}}
        return 200, "application/json", json.dumps(answer)

    server = Loopback(tns)
    try:
        cli_env.update(ASTRID_TNS_URL=server.url, ASTRID_TNS_API_KEY="k", ASTRID_TNS_BOT_ID="3")
        curator = astrid(cli_env, "catalog", "tns-report", str(disc), "--send", "--user", "cur")
        assert curator.returncode == 2 and "--user 'cur'" in curator.stderr and not received
        sent = astrid(cli_env, "catalog", "tns-report", str(disc), "--send", "--user", "eva")
        assert sent.returncode == 0, sent.stderr
        assert "report id 9" in sent.stdout
        assert json.loads(received[0]["data"]) == report and received[0]["api_key"] == "k"
    finally:
        server.close()
    with db.session() as s:
        assert s.scalar(select(Discovery.status).where(Discovery.id == disc)) == "reported"
    db.dispose()


def test_catalog_merge_as_an_expert(cli_env: dict[str, str], database_url: str) -> None:
    assert astrid(cli_env, "init").returncode == 0
    db = Database(database_url)
    with db.session() as s:
        one = make_object(s, 75.0, -5.0, mjds=(60000.25,), mags=(19.0,)).id
        two = make_object(s, 75.0, -5.0 + 3.0 / 3600, mjds=(60001.25,), mags=(18.0,)).id
        s.add_all([User(username="eva", role="expert"), User(username="cur", role="curator")])
    curator = astrid(cli_env, "catalog", "merge", str(two), str(one), "--user", "cur")
    assert curator.returncode == 2 and "--user 'cur'" in curator.stderr
    done = astrid(cli_env, "catalog", "merge", str(two), str(one), "--user", "eva")
    assert done.returncode == 0, done.stderr
    assert f"objects {two} and {one} are now object {one} (2 detections)" in done.stdout
    again = astrid(cli_env, "catalog", "merge", str(two), str(one), "--user", "eva")
    assert again.returncode == 2 and "already one object" in again.stderr
    missing = astrid(cli_env, "catalog", "merge", str(one), "999999", "--user", "eva")
    assert missing.returncode == 2 and "no object with id 999999" in missing.stderr
    with db.session() as s:
        assert s.scalars(select(SkyObject.id)).all() == [one]
    db.dispose()
