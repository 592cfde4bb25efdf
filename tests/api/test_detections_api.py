"""Detections over HTTP: filters, keyset paging, cone search, statistics checked against
numpy over the same rows, and cutouts as PNG and FITS."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits

from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import Detection, DetectionStatus
from tests.api.conftest import Api

N = 300


def _seed(api: Api) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    ra = rng.uniform(150.0, 151.0, N)
    dec = rng.uniform(2.0, 3.0, N)
    conf = rng.uniform(0, 1, N)
    snr = rng.uniform(3, 40, N)
    mjd = rng.uniform(60000, 60100, N)
    statuses = rng.choice(["pending", "validated", "rejected"], N)
    with api.runtime.db.session() as s:
        s.add_all(
            Detection(
                ra=float(ra[i]),
                dec=float(dec[i]),
                healpix=int(healpix_index(ra[i], dec[i])),
                confidence=float(conf[i]),
                snr=float(snr[i]),
                mjd=float(mjd[i]),
                status=DetectionStatus(statuses[i]),
                source="pipeline" if i % 3 else "alert",
                label="real" if conf[i] > 0.8 else None,
            )
            for i in range(N)
        )
    return {"ra": ra, "dec": dec, "conf": conf, "snr": snr, "mjd": mjd, "status": statuses}


def _all_ids(api: Api, **params: object) -> list[int]:
    ids, cursor = [], None
    while True:
        query = {**params, "limit": 70, **({"cursor": cursor} if cursor else {})}
        r = api.client.get("/api/v1/detections", params=query, headers=api.as_role("viewer"))
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [d["id"] for d in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            return ids


def test_filters_and_paging_match_the_rows(api: Api) -> None:
    d = _seed(api)
    ids = np.arange(1, N + 1)
    assert _all_ids(api) == list(ids)
    sel = (d["conf"] >= 0.7) & (d["snr"] >= 10) & (d["mjd"] <= 60050)
    got = _all_ids(api, min_confidence=0.7, min_snr=10, mjd_max=60050)
    assert got == list(ids[sel]) and 0 < len(got) < N
    sel = d["status"] == "validated"
    assert _all_ids(api, status="validated") == list(ids[sel])
    desc = _all_ids(api, order="desc", max_confidence=0.2)
    assert desc == list(ids[d["conf"] <= 0.2][::-1])
    # A cursor from one order is refused in the other.
    first = api.client.get("/api/v1/detections?limit=5", headers=api.as_role("viewer")).json()
    r = api.client.get(
        f"/api/v1/detections?order=desc&cursor={first['next_cursor']}",
        headers=api.as_role("viewer"),
    )
    assert r.status_code == 400


def test_cone_search_is_exact_and_pages(api: Api) -> None:
    d = _seed(api)
    ra0, dec0, radius = 150.5, 2.5, 0.2
    sep = angular_separation_deg(d["ra"], d["dec"], ra0, dec0)
    expected = list(np.arange(1, N + 1)[(sep <= radius) & (d["conf"] >= 0.3)])
    got = _all_ids(api, ra=ra0, dec=dec0, radius=radius, min_confidence=0.3)
    assert got == expected and len(expected) > 10
    r = api.client.get("/api/v1/detections?ra=150&dec=2", headers=api.as_role("viewer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.radius"


def test_statistics_are_computed_from_the_database(api: Api) -> None:
    d = _seed(api)
    h = api.as_role("viewer")
    stats = api.client.get("/api/v1/detections/statistics", headers=h).json()
    assert stats["total"] == N
    for s in ("pending", "validated", "rejected"):
        assert stats["by_status"][s] == int((d["status"] == s).sum())
    assert stats["by_status"]["confirmed"] == 0
    counts, _ = np.histogram(d["conf"], bins=np.linspace(0, 1, 11))
    assert stats["confidence_histogram"]["counts"] == counts.tolist()
    assert np.isclose(stats["snr_mean"], d["snr"].mean())
    assert np.isclose(stats["snr_max"], d["snr"].max())
    assert np.isclose(stats["mjd_min"], d["mjd"].min())
    assert stats["by_source"] == {"alert": 100, "pipeline": 200}
    assert stats["by_label"]["real"] == int((d["conf"] > 0.8).sum())
    filtered = api.client.get(
        "/api/v1/detections/statistics", params={"min_snr": 20}, headers=h
    ).json()
    assert filtered["total"] == int((d["snr"] >= 20).sum())


def test_detail_and_cutouts_as_png_and_fits(api: Api) -> None:
    rng = np.random.default_rng(1)
    stamp = rng.normal(0, 1, (63, 63)).astype(np.float32)
    stamp[31, 31] = 50
    buf = io.BytesIO()
    np.save(buf, stamp)
    npy_key = api.runtime.blobs.put(buf.getvalue())
    fbuf = io.BytesIO()
    fits.PrimaryHDU(stamp * 2).writeto(fbuf)
    fits_key = api.runtime.blobs.put(fbuf.getvalue())
    with api.runtime.db.session() as s:
        det = Detection(
            ra=10.0,
            dec=20.0,
            healpix=int(healpix_index(10.0, 20.0)),
            confidence=0.9,
            cutout_keys={"science": npy_key, "difference": fits_key},
        )
        s.add(det)
        s.flush()
        did = det.id
    h = api.as_role("viewer")
    detail = api.client.get(f"/api/v1/detections/{did}", headers=h).json()
    assert detail["cutout_keys"]["science"] == npy_key and detail["status"] == "pending"
    png = api.client.get(f"/api/v1/detections/{did}/cutouts/science", headers=h)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    f = api.client.get(f"/api/v1/detections/{did}/cutouts/science?format=fits", headers=h)
    assert f.headers["content-type"] == "application/fits"
    np.testing.assert_array_equal(fits.getdata(io.BytesIO(f.content)), stamp)
    f2 = api.client.get(f"/api/v1/detections/{did}/cutouts/difference?format=fits", headers=h)
    np.testing.assert_array_equal(fits.getdata(io.BytesIO(f2.content)), stamp * 2)
    missing = api.client.get(f"/api/v1/detections/{did}/cutouts/reference", headers=h)
    assert (
        missing.status_code == 404
        and "difference, science" in missing.json()["errors"][0]["message"]
    )
    assert api.client.get("/api/v1/detections/987654", headers=h).status_code == 404
