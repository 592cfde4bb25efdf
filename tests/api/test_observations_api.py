"""Observations over HTTP on SQLite and PostgreSQL: upload of real DECam FITS, lists, filters,
cone search, detail, status changes, metrics, survey summary, validation, bad uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import DomainEvent, Observation
from tests.api.conftest import Api

DECAM = "decam_cutouts"


def _upload(api: Api, path: Path, role: str = "curator", **form: str) -> Any:
    with path.open("rb") as fh:
        return api.client.post(
            "/api/v1/observations/ingest/upload",
            files={"file": (path.name, fh, "application/fits")},
            data=form,
            headers=api.as_role(role),
        )


def _ingest_decam(api: Api, shared_data: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((shared_data / DECAM).glob("DEC-OBS*.mini.fits")):
        r = _upload(api, path, survey="DECam-test")
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


def test_upload_list_filter_detail_and_cone(api: Api, shared_data: Path) -> None:
    results = _ingest_decam(api, shared_data)
    assert len(results) == 10 and all(r["created"] for r in results)
    assert all(r["observation_ids"] == [r["observation_id"]] for r in results)
    assert all(r["images"] is None for r in results)  # a single image, not a mosaic
    again = _upload(api, shared_data / DECAM / "DEC-OBS04a.mini.fits")
    assert again.json()["created"] is False
    assert again.json()["observation_id"] == results[0]["observation_id"]

    h = api.as_role("viewer")
    first = api.client.get("/api/v1/observations", params={"limit": 4}, headers=h).json()
    assert len(first["items"]) == 4 and first["next_cursor"]
    seen = [o["id"] for o in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.client.get(
            "/api/v1/observations", params={"limit": 4, "cursor": cursor}, headers=h
        ).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
    assert seen == sorted(r["observation_id"] for r in results)
    newest = api.client.get("/api/v1/observations", params={"order": "desc", "limit": 1}, headers=h)
    assert newest.json()["items"][0]["id"] == max(seen)

    by_survey = api.client.get("/api/v1/observations", params={"survey": "DECam-test"}, headers=h)
    assert len(by_survey.json()["items"]) == 10
    with api.runtime.db.session() as s:
        mjds = sorted(m for m in s.scalars(select(Observation.mjd)) if m is not None)
    cut = mjds[len(mjds) // 2]
    late = api.client.get("/api/v1/observations", params={"mjd_min": cut}, headers=h).json()
    assert len(late["items"]) == sum(m >= cut for m in mjds)

    oid = results[0]["observation_id"]
    detail = api.client.get(f"/api/v1/observations/{oid}", headers=h).json()
    assert detail["filename"] == "DEC-OBS04a.mini.fits" and detail["width"] == 256
    assert len(detail["footprint"]) == 4

    # Cone around the known source: all DECam cutouts cover it; a tiny cone picks the nearest.
    ra, dec = 318.1082, -66.0157
    cone = api.client.get(
        "/api/v1/observations/cone", params={"ra": ra, "dec": dec, "radius": 0.1}, headers=h
    ).json()
    with api.runtime.db.session() as s:
        rows = s.execute(select(Observation.id, Observation.ra, Observation.dec)).all()
    sep = angular_separation_deg(
        np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), ra, dec
    )
    expected = [rows[i][0] for i in np.argsort(sep, kind="stable") if sep[i] <= 0.1]
    assert [c["id"] for c in cone] == expected and expected
    assert cone[0]["separation_deg"] == min(sep)
    far = api.client.get(
        "/api/v1/observations/cone", params={"ra": 10, "dec": 10, "radius": 1}, headers=h
    )
    assert far.json() == []


def test_status_change_metrics_and_surveys(api: Api, shared_data: Path) -> None:
    _upload(api, shared_data / DECAM / "DEC-OBS04a.mini.fits")
    oid = _upload(api, shared_data / DECAM / "DEC-OBS18a.mini.fits").json()["observation_id"]
    cur = api.as_role("curator")
    ok = api.client.put(
        f"/api/v1/observations/{oid}/status",
        json={"status": "preprocessing", "reason": "manual"},
        headers=cur,
    )
    assert ok.status_code == 200 and ok.json()["status"] == "preprocessing"
    illegal = api.client.put(
        f"/api/v1/observations/{oid}/status", json={"status": "completed"}, headers=cur
    )
    assert illegal.status_code == 409
    assert "cannot change status" in illegal.json()["detail"]
    unknown = api.client.put(
        f"/api/v1/observations/{oid}/status", json={"status": "exploded"}, headers=cur
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.status"
    missing = api.client.put(
        "/api/v1/observations/99999/status", json={"status": "failed"}, headers=cur
    )
    assert missing.status_code == 404

    h = api.as_role("viewer")
    metrics = api.client.get("/api/v1/observations/metrics", headers=h).json()
    assert metrics["total"] == 2
    assert metrics["by_status"]["ingested"] == 1 and metrics["by_status"]["preprocessing"] == 1
    assert metrics["by_status"]["failed"] == 0
    surveys = api.client.get("/api/v1/observations/surveys", headers=h).json()
    assert [s["survey"] for s in surveys] == ["decam"]
    assert surveys[0]["observations"] == 2 and surveys[0]["by_status"]["preprocessing"] == 1
    with api.runtime.db.session() as s:
        types = list(s.scalars(select(DomainEvent.event_type).order_by(DomainEvent.id)))
    assert types.count("observation.status_changed") == 1  # the refused changes wrote nothing


def test_validate_reports_each_bad_field(api: Api) -> None:
    h = api.as_role("viewer")
    good = api.client.post(
        "/api/v1/observations/validate", json={"ra": 318.1, "dec": -66.0, "mjd": 57000}, headers=h
    )
    assert good.json() == {"valid": True, "errors": []}
    bad = api.client.post(
        "/api/v1/observations/validate",
        json={"ra": 360.0, "dec": -91, "exposure_time": 0, "width": 0},
        headers=h,
    ).json()
    assert not bad["valid"]
    assert [e["field"] for e in bad["errors"]] == ["body.ra", "body.exposure_time", "body.width"]
    extra = api.client.post(
        "/api/v1/observations/validate", json={"ra": 1, "dec": 1, "color": "red"}, headers=h
    )
    assert extra.status_code == 422 and extra.json()["errors"][0]["field"] == "body.color"


def _counts(api: Api) -> tuple[int, int]:
    with api.runtime.db.session() as s:
        n_obs = int(s.scalar(select(func.count()).select_from(Observation)) or 0)
    return n_obs, len(list(api.runtime.blobs.keys()))


def test_bad_uploads_store_nothing(make_api, shared_data: Path, tmp_path: Path) -> None:
    api = make_api(max_upload_bytes=600_000)
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n" * 100)
    r = _upload(api, text)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["errors"][0]["field"] == "file" and "notes.fits" in body["detail"]
    nowcs = _upload(api, shared_data / DECAM / "FinalMatchKernel.fits")
    assert nowcs.status_code == 422 and "FinalMatchKernel.fits" in nowcs.json()["detail"]
    big = shared_data / "nircam_pair"
    largest = max(big.glob("*.fits"), key=lambda p: p.stat().st_size)
    assert largest.stat().st_size > 600_000
    too_big = _upload(api, largest)
    assert too_big.status_code == 413 and too_big.json()["status"] == 413
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    assert _upload(api, empty).status_code == 422
    assert _counts(api) == (0, 0)
    # Viewers cannot upload at all.
    assert (
        _upload(api, shared_data / DECAM / "DEC-OBS04a.mini.fits", role="viewer").status_code == 403
    )
    assert _counts(api) == (0, 0)


def test_footprints_are_the_stored_corners(api: Api, shared_data: Path) -> None:
    results = _ingest_decam(api, shared_data)
    h = api.as_role("viewer")
    r = api.client.get("/api/v1/observations/footprints", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] is False
    assert sorted(i["id"] for i in body["items"]) == sorted(x["observation_id"] for x in results)
    with api.runtime.db.session() as session:
        for item in body["items"]:
            obs = session.get(Observation, item["id"])
            assert len(item["corners"]) == 4
            assert np.allclose(item["corners"], obs.footprint, atol=1e-9)
            # The centre lies within the corners' span (a polygon around the image).
            ras = [c[0] for c in item["corners"]]
            decs = [c[1] for c in item["corners"]]
            assert min(decs) < item["dec"] < max(decs)
            assert (
                angular_separation_deg(np.array(ras), np.array(decs), item["ra"], item["dec"]).max()
                < 1
            )
    two = api.client.get("/api/v1/observations/footprints", params={"limit": 2}, headers=h).json()
    assert len(two["items"]) == 2 and two["truncated"] is True
    assert [i["id"] for i in two["items"]] == sorted(
        (x["observation_id"] for x in results), reverse=True
    )[:2]
    bad = api.client.get("/api/v1/observations/footprints", params={"limit": 0}, headers=h)
    assert bad.status_code == 422 and "limit" in bad.text
    assert api.client.get("/api/v1/observations/footprints").status_code == 401


def test_a_mosaic_upload_makes_one_observation_per_ccd(
    api: Api, shared_data: Path, tmp_path: Path
) -> None:
    """Three real DECam cutouts as the CCDs of one file and a fourth CCD without a WCS: three
    observations sharing one blob, the fourth named with its reason; again: the same ids."""
    import io

    from astropy.io import fits

    paths = sorted((shared_data / DECAM).glob("DEC-OBS*.mini.fits"))[:3]
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for name, path in zip(("N4", "N5", "S1"), paths, strict=True):
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            header.remove("SIMPLE", ignore_missing=True)
            header.remove("EXTEND", ignore_missing=True)
            hdus.append(fits.ImageHDU(np.asarray(hdul[0].data, np.float32), header, name=name))
    hdus.append(fits.ImageHDU(np.asarray(hdus[1].data), name="S2"))  # no WCS
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    mosaic = tmp_path / "mosaic.fits"
    mosaic.write_bytes(buf.getvalue())

    r = _upload(api, mosaic)
    assert r.status_code == 201, r.text
    body = r.json()
    ids = body["observation_ids"]
    assert len(ids) == 3 and body["observation_id"] == ids[0] and body["created"] is True
    images = body["images"]
    assert [(i["hdu_index"], i["hdu_name"]) for i in images] == [
        (1, "N4"), (2, "N5"), (3, "S1"), (4, "S2"),
    ]  # fmt: skip
    assert [i["observation_id"] for i in images[:3]] == ids and images[3]["observation_id"] is None
    assert "HDU 4 (S2)" in images[3]["error"] and "no celestial WCS" in images[3]["error"]
    with api.runtime.db.session() as s:
        rows = s.scalars(select(Observation).where(Observation.id.in_(ids))).all()
        assert len({o.blob_key for o in rows}) == 1 and len({o.content_hash for o in rows}) == 3
        assert sorted(o.extra["hdu_name"] for o in rows) == ["N4", "N5", "S1"]
    again = _upload(api, mosaic).json()
    assert again["observation_ids"] == ids and again["created"] is False
    assert not any(i["created"] for i in again["images"])
    with api.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 3
