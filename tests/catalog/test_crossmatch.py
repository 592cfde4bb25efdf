"""Cross-match annotations against a local catalogue file and a loopback SkyBoT server that
answers with a recorded SkyBoT cone-search VOTable; TNS AT reports sent to a loopback
receiver speaking TNS's bulk-report protocol."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from pydantic import SecretStr
from sqlalchemy import select

from astrid.catalog.crossmatch import annotate_detections, solar_system_bodies
from astrid.catalog.tns import TnsError, at_report, at_report_for_object, send_at_report
from astrid.runtime import Runtime
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, DetectionAnnotation
from tests.catalog.factory import make_object

DATA = Path(__file__).with_name("data")
# The recorded answer (astroquery's test data): field 81.2833 +4.49278, epoch 2025-01-02 0h.
RECORDED = (DATA / "skybot_cone.vot").read_text()
EMPTY = re.sub(r"<vot:TR>.*?</vot:TR>\s*", "", RECORDED, flags=re.S)
# First body of the recording: "G!kun||'homdima" (229762) at 05 25 12.7657 +04 29 25.081.
ASTEROID = SkyCoord("05h25m12.7657s", "+04d29m25.081s")
EPOCH_MJD = Time("2025-01-02T00:00:00", scale="utc").mjd


class Loopback:
    """HTTP server on 127.0.0.1 answering with ``respond(path, query, body, headers)``."""

    def __init__(self, respond: Callable[..., tuple[int, str, str]]) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bytes) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append(
                    {"path": url.path, "query": query, "body": body, "headers": dict(self.headers)}
                )
                status, ctype, text = respond(url.path, query, body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(text.encode())

            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("content-length", 0))))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _skybot(path: str, q: dict[str, str], body: bytes, headers: Any) -> tuple[int, str, str]:
    if path == "/down":
        return 503, "text/plain", "service unavailable"
    here = SkyCoord(float(q["-ra"]) * u.deg, float(q["-dec"]) * u.deg)
    near = here.separation(SkyCoord(81.2833 * u.deg, 4.49278 * u.deg)) < 0.2 * u.deg
    return 200, "application/x-votable+xml", RECORDED if near else EMPTY


@pytest.fixture
def skybot() -> Iterator[Loopback]:
    server = Loopback(_skybot)
    yield server
    server.close()


def test_skybot_client_against_recorded_answer(skybot: Loopback) -> None:
    bodies = solar_system_bodies(
        ASTEROID.ra.deg, ASTEROID.dec.deg, EPOCH_MJD, 30.0, url=skybot.url + "/conesearch.php"
    )
    assert bodies[0]["name"] == "G!kun||'homdima" and bodies[0]["number"] == 229762
    assert bodies[0]["separation_arcsec"] < 1.0 and bodies[0]["v_mag"] == pytest.approx(19.6)
    assert len(bodies) == 1  # the others are 1-10 arcmin away
    wide = solar_system_bodies(ASTEROID.ra.deg, ASTEROID.dec.deg, EPOCH_MJD, 900.0, url=skybot.url)
    assert [b["number"] for b in wide] == [229762, 523748, None, None]  # unnumbered: None
    assert [b["separation_arcsec"] for b in wide] == sorted(b["separation_arcsec"] for b in wide)
    q = skybot.requests[0]["query"]
    assert float(q["-ep"]) == pytest.approx(2460677.5, abs=1e-6)  # JD of the MJD asked
    assert float(q["-rd"]) == pytest.approx(30 / 3600) and q["-mime"] == "votable"
    assert solar_system_bodies(10.0, 10.0, EPOCH_MJD, 30.0, url=skybot.url) == []


def test_annotations_stored_per_detection_and_failures_isolated(
    migrated_url: str, make_runtime: Callable[..., Runtime], skybot: Loopback, tmp_path: Path
) -> None:
    star = ASTEROID.spherical_offsets_by(2.0 * u.arcsec, 0 * u.arcsec)
    catalog = tmp_path / "stars.ecsv"
    Table(
        {
            "source_id": ["S1", "S2"],
            "ra": [star.ra.deg, 10.1],
            "dec": [star.dec.deg, 10.1],
            "mag": [15.5, 12.0],
        }
    ).write(catalog, format="ascii.ecsv")
    runtime = make_runtime(migrated_url, crossmatch_catalog=catalog, skybot_url=skybot.url)
    ids = []
    with runtime.db.session() as s:
        for ra, dec in ((ASTEROID.ra.deg, ASTEROID.dec.deg), (10.0, 10.0)):
            det = Detection(ra=ra, dec=dec, healpix=int(healpix_index(ra, dec)), mjd=EPOCH_MJD)
            s.add(det)
            s.flush()
            ids.append(det.id)
    report = annotate_detections(runtime, [*ids, 999999])
    assert report.annotated == 2 and report.stars == 1 and report.solar_system == 1
    assert report.errors == ["detection 999999: no such detection"]
    with runtime.db.session() as s:
        rows = s.scalars(select(DetectionAnnotation).order_by(DetectionAnnotation.id)).all()
        got = [(r.detection_id, r.kind, r.name) for r in rows]
        # The science provider keeps ra/dec/mag only: the name is the catalogue + position.
        assert got[0] == (ids[0], "star", f"local {star.ra.deg:.6f}{star.dec.deg:+.6f}")
        assert rows[0].mag == pytest.approx(15.5)
        assert rows[0].separation_arcsec == pytest.approx(2.0, abs=0.01)
        assert got[1:] == [(ids[0], "solar_system", "G!kun||'homdima")]
        assert rows[1].data["number"] == 229762 and rows[1].mag == pytest.approx(19.6)
    # SkyBoT down: recorded, the catalogue match still refreshed, nothing duplicated.
    down = make_runtime(migrated_url, crossmatch_catalog=catalog, skybot_url=skybot.url + "/down")
    report = annotate_detections(down, ids[:1])
    assert report.annotated == 1 and "SkyBoT cone search failed" in report.errors[0]
    with runtime.db.session() as s:
        kinds = sorted(r.kind for r in s.scalars(select(DetectionAnnotation)))
        assert kinds == ["solar_system", "star"]


def test_tns_at_report_format_and_sending(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        obj = make_object(s, 150.0, 2.0, mjds=(60000.25, 60001.5), mags=(19.2, 18.7))
        report = at_report_for_object(s, obj.id, runtime.settings)
    at = report["at_report"]["0"]
    assert at["ra"] == {"value": "150.000000", "error": "0.5", "units": "arcsec"}
    assert at["discovery_datetime"] == "2023-02-25 06:00:00"
    assert at["internal_name"] == "AstrIDJ100000.00+020000.0"
    group = at["photometry"]["photometry_group"]
    assert [group[k]["flux"] for k in ("0", "1")] == ["19.200", "18.700"]
    assert group["0"]["flux_error"] == "0.100" and group["0"]["flux_units"] == "1"
    assert at["non_detection"]["archiveid"] == "0"
    nd = at_report(
        ra=1.0,
        dec=2.0,
        internal_name="x",
        reporter="me",
        photometry=[{"mjd": 60000.0, "mag": 19.0}],
        non_detection={"mjd": 59999.0, "limit": 20.5, "filter": "g"},
    )
    assert nd["at_report"]["0"]["non_detection"]["limiting_flux"] == "20.500"
    assert nd["at_report"]["0"]["non_detection"]["filter_value"] == 110
    with pytest.raises(TnsError, match="no photometry"):
        at_report(ra=1.0, dec=2.0, internal_name="x", reporter="me", photometry=[])

    def tns(path: str, q: dict[str, str], body: bytes, headers: Any) -> tuple[int, str, str]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("api_key") != "secret-key":
            return (
                401,
                "application/json",
                json.dumps({"id_code": 401, "id_message": "Unauthorized"}),
            )
        return (
            200,
            "application/json",
            json.dumps({"id_code": 200, "id_message": "OK", "data": {"report_id": 4242}}),
        )

    server = Loopback(tns)
    try:
        settings = runtime.settings.model_copy(
            update={
                "tns_url": server.url + "/api/bulk-report",
                "tns_api_key": SecretStr("secret-key"),
                "tns_bot_id": 7,
                "tns_bot_name": "astrid_bot",
            }
        )
        answer = send_at_report(settings, report)
        assert answer["data"]["report_id"] == 4242
        sent = server.requests[0]
        assert sent["path"] == "/api/bulk-report"
        assert (
            sent["headers"]["User-Agent"]
            == 'tns_marker{"tns_id":7,"type":"bot","name":"astrid_bot"}'
        )
        form = {k: v[0] for k, v in parse_qs(sent["body"].decode()).items()}
        assert json.loads(form["data"]) == report
        wrong = settings.model_copy(update={"tns_api_key": SecretStr("nope")})
        with pytest.raises(TnsError, match="401 Unauthorized"):
            send_at_report(wrong, report)
    finally:
        server.close()
