"""Ingest by sky position: astroquery's real SkyView and MAST clients against a loopback
server that answers in each archive's own format with real FITS files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from astropy.coordinates import SkyCoord
from sqlalchemy import func, select

from astrid.domain.observations import InvalidCoordinatesError
from astrid.pipeline.archives import (
    InvalidFieldError,
    PositionRequest,
    UnknownArchiveError,
    UnknownSurveyError,
    archive_manifest,
    ingest_position,
)
from astrid.pipeline.runner import RetryPolicy
from astrid.pipeline.stages.ingest import ingest_file
from astrid.runtime import Runtime
from astrid.store.blobs import blob_key
from astrid.store.db import upgrade
from astrid.store.tables import Observation, StageRun
from tests._cli import astrid_in, clean_env
from tests.pipeline.archive_server import ArchiveServer, centre_of
from tests.pipeline.conftest import DECAM, NIRCAM

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01)
ARCSEC = 1.0 / 3600.0


def observations(runtime: Runtime) -> list[Observation]:
    with runtime.db.session() as s:
        return list(s.scalars(select(Observation).order_by(Observation.id)))


def test_skyview_field_is_fetched_ingested_and_listed_in_the_manifest(
    runtime: Runtime, archive_server: ArchiveServer, shared_data: Path
) -> None:
    ra, dec = centre_of(shared_data / DECAM)
    request = PositionRequest("skyview", "DSS2 Red", ra, dec, fov=0.05, pixels=256)
    out = ingest_position(runtime, request, base_url=archive_server.url, retry=FAST)
    assert out.fetch.ok and out.fetch.result["n_images"] == 1
    assert [o.status for o in out.ingests] == ["succeeded"]

    # What the real client asked the server (astroquery's form submission).
    (query,) = archive_server.requests_to("/current/cgi/runquery.pl")
    q = query["query"]
    assert q["Position"] == SkyCoord(ra, dec, unit="deg").fk5.to_string()
    assert (q["survey"], q["pixels"], q["size"]) == ("DSS2 Red", "256", "0.05,0.05")

    served = (shared_data / DECAM).read_bytes()
    (obs,) = observations(runtime)
    assert obs.content_hash == blob_key(served) and runtime.blobs.get(obs.blob_key) == served
    assert abs(obs.ra - ra) * 0.407 < 0.5 * ARCSEC and abs(obs.dec - dec) < 0.5 * ARCSEC
    assert obs.extra["archive"]["survey"] == "DSS2 Red"

    (entry,) = out.manifest
    assert entry["key"] == blob_key(served) and entry["observation_id"] == obs.id
    assert (entry["archive"], entry["survey"], entry["fov_deg"]) == ("skyview", "DSS2 Red", 0.05)
    assert entry["url"] == f"{archive_server.url}/tempspace/fits/DEC-OBS04a.mini.fits"
    assert (entry["width"], entry["height"]) == (256, 256)
    assert archive_manifest(runtime) == out.manifest

    # The same request again does no network work and creates nothing.
    again = ingest_position(runtime, request, base_url=archive_server.url)
    assert again.fetch.reused and [o.reused for o in again.ingests] == [True]
    assert len(archive_server.requests_to("/current/cgi/runquery.pl")) == 1
    refreshed = ingest_position(runtime, request, base_url=archive_server.url, refresh=True)
    assert not refreshed.fetch.reused and refreshed.manifest == out.manifest
    assert len(archive_server.requests_to("/current/cgi/runquery.pl")) == 2
    assert len(observations(runtime)) == 1


def test_an_image_already_ingested_locally_still_gets_its_manifest_entry(
    runtime: Runtime, archive_server: ArchiveServer, shared_data: Path
) -> None:
    local = ingest_file(runtime, shared_data / DECAM)
    assert local.ok and "manifest" not in local.result
    ra, dec = centre_of(shared_data / DECAM)
    out = ingest_position(
        runtime, PositionRequest("skyview", "DSS", ra, dec, 0.05), base_url=archive_server.url
    )
    (entry,) = out.manifest
    assert entry["observation_id"] == local.result["observation_id"]
    assert out.ingests[0].result["created"] is False and len(observations(runtime)) == 1
    assert archive_manifest(runtime) == out.manifest


def test_mast_cone_products_and_download(
    runtime: Runtime, archive_server: ArchiveServer, shared_data: Path
) -> None:
    ra, dec = centre_of(shared_data / NIRCAM)
    out = ingest_position(
        runtime, PositionRequest("mast", "JWST", ra, dec, fov=0.1), base_url=archive_server.url
    )
    assert out.fetch.ok and [o.status for o in out.ingests] == ["succeeded"]
    services = [
        (r["mashup"]["service"], r["mashup"]["params"])
        for r in archive_server.requests_to("/api/v0/invoke")
    ]
    assert services[0] == ("Mast.Caom.All", {})  # the survey check, before anything else
    assert services[1][0] == "Mast.Caom.Cone"
    assert services[1][1]["radius"] == pytest.approx(0.05)
    assert services[1][1]["ra"] == pytest.approx(ra) and services[1][1]["dec"] == pytest.approx(dec)
    assert services[2] == ("Mast.Caom.Products", {"obsid": "2001"})
    downloads = archive_server.requests_to("/api/v0.1/Download/file")
    assert {d["method"] for d in downloads} == {"HEAD", "GET"}
    assert {d["query"]["uri"] for d in downloads} == {f"mast:JWST/product/{Path(NIRCAM).name}"}
    (obs,) = observations(runtime)
    assert runtime.blobs.get(obs.blob_key) == (shared_data / NIRCAM).read_bytes()
    assert obs.instrument is not None and obs.instrument.upper() == "NIRCAM"
    assert out.manifest[0]["meta"]["data_uri"] == f"mast:JWST/product/{Path(NIRCAM).name}"
    # A field with only another collection's data: asked, answered, nothing ingested.
    d_ra, d_dec = centre_of(shared_data / DECAM)
    empty = ingest_position(
        runtime, PositionRequest("mast", "JWST", d_ra, d_dec, fov=0.1), base_url=archive_server.url
    )
    assert empty.fetch.ok and empty.fetch.result["n_images"] == 0 and empty.ingests == []


@pytest.mark.parametrize(
    ("request_", "error", "match", "requests_made"),
    [
        (
            PositionRequest("skyview", "DSS", 400.0, 10.0, 0.1),
            InvalidCoordinatesError,
            "RA 400.0 is outside",
            0,
        ),
        (
            PositionRequest("skyview", "DSS", 10.0, -91.0, 0.1),
            InvalidCoordinatesError,
            "Dec -91.0 is outside",
            0,
        ),
        (
            PositionRequest("skyview", "DSS", 10.0, 10.0, 0.0),
            InvalidFieldError,
            "field of view 0.0 deg",
            0,
        ),
        (
            PositionRequest("skyview", "DSS", 10.0, 10.0, 5.0),
            InvalidFieldError,
            "field of view 5.0 deg",
            0,
        ),
        (
            PositionRequest("hubble", "DSS", 10.0, 10.0, 0.1),
            UnknownArchiveError,
            "unknown archive 'hubble'",
            0,
        ),
        (
            PositionRequest("skyview", "DSS9 Red", 10.0, 10.0, 0.1),
            UnknownSurveyError,
            "skyview does not offer survey 'DSS9 Red'",
            1,
        ),
        (
            PositionRequest("mast", "Hubble", 10.0, 10.0, 0.1),
            UnknownSurveyError,
            "mast does not offer survey 'Hubble'",
            1,
        ),
    ],
)
def test_bad_requests_are_refused_before_anything_is_queued(
    runtime: Runtime,
    archive_server: ArchiveServer,
    request_: PositionRequest,
    error: type[Exception],
    match: str,
    requests_made: int,
) -> None:
    with pytest.raises(error, match=match):
        ingest_position(runtime, request_, base_url=archive_server.url)
    # Only the survey list (form page / mission list) may have been read; nothing queued.
    survey_lists = [
        r
        for r in archive_server.state.requests
        if r["path"] in {"/current/cgi/basicform.pl", "/portal/Mashup/Mashup.asmx/columnsconfig"}
        or r.get("mashup", {}).get("service") == "Mast.Caom.All"
    ]
    assert survey_lists == archive_server.state.requests
    assert bool(survey_lists) == bool(requests_made)
    assert not archive_server.requests_to("/current/cgi/runquery.pl")
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(StageRun)) == 0


def test_transient_archive_failures_are_retried_then_parked(
    runtime: Runtime, archive_server: ArchiveServer, shared_data: Path
) -> None:
    ra, dec = centre_of(shared_data / DECAM)
    archive_server.state.fail_next["/tempspace/fits/"] = 2  # two 503s, then the file
    ok = ingest_position(
        runtime,
        PositionRequest("skyview", "DSS", ra, dec, 0.05),
        base_url=archive_server.url,
        retry=FAST,
    )
    assert ok.fetch.ok and ok.fetch.attempts == 3 and len(ok.ingests) == 1

    archive_server.state.fail_next["/current/cgi/runquery.pl"] = 99  # down for good
    request = PositionRequest("skyview", "SDSSi", ra, dec, 0.05)
    down = ingest_position(runtime, request, base_url=archive_server.url, retry=FAST)
    assert down.fetch.status == "failed" and down.fetch.attempts == 3 and down.ingests == []
    assert down.fetch.error is not None
    assert down.fetch.error.startswith("gave up after 3 attempts") and "503" in down.fetch.error
    archive_server.state.fail_next.clear()  # back up: the parked run is re-run
    back = ingest_position(runtime, request, base_url=archive_server.url, retry=FAST)
    assert back.fetch.ok and back.fetch.attempts == 4 and len(back.ingests) == 1


def test_ingest_position_command(
    tmp_path: Path, archive_server: ArchiveServer, shared_data: Path
) -> None:
    env = clean_env(tmp_path / "data")

    astrid = astrid_in(env)

    ra, dec = centre_of(shared_data / NIRCAM)
    upgrade(f"sqlite:///{tmp_path / 'data' / 'astrid.db'}")  # what `astrid init` does
    base = ["ingest-position", "--archive-url", archive_server.url, "--ra", str(ra)]
    run = astrid(
        *base,
        "--dec",
        str(dec),
        "--archive",
        "mast",
        "--survey",
        "JWST",
        "--fov",
        "3arcmin",
        "--manifest",
        str(tmp_path / "m.json"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["images"] == 1 and report["failed"] == []
    written = json.loads((tmp_path / "m.json").read_text())
    assert written == report["manifest"] and written[0]["fov_deg"] == pytest.approx(0.05)
    bad = astrid(*base, "--dec", str(dec), "--survey", "Nope", "--fov", "3arcmin")
    assert bad.returncode == 2 and "skyview does not offer survey 'Nope'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    off = astrid("ingest-position", "--ra", "10", "--dec", "95", "--survey", "DSS", "--fov", "0.1")
    assert off.returncode == 2 and "Dec 95.0 is outside [-90, 90] degrees" in off.stderr
