"""Candidates over HTTP: filters on score and S/N, per difference, cone search, detail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrid.pipeline.stages.ingest import ingest_bytes
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import Candidate, Difference, Reference
from tests.api.conftest import Api

N = 120


def _seed(api: Api, shared_data: Path) -> dict[str, np.ndarray]:
    path = shared_data / "decam_cutouts" / "DEC-OBS04a.mini.fits"
    obs_id, _ = ingest_bytes(api.runtime, path.read_bytes(), filename=path.name)
    rng = np.random.default_rng(7)
    ra = rng.uniform(318.0, 318.2, N)
    dec = rng.uniform(-66.1, -65.9, N)
    score = rng.uniform(0, 1, N)
    snr = rng.uniform(5, 50, N)
    with api.runtime.db.session() as s:
        ref = Reference(ra=318.1, dec=-66.0, healpix=int(healpix_index(318.1, -66.0)), blob_key="r")
        s.add(ref)
        s.flush()
        diffs = []
        for k in range(2):
            d = Difference(
                observation_id=obs_id,
                reference_id=ref.id,
                method="zogy",
                stage_version="1",
                params_hash=f"p{k}",
                difference_key=f"d{k}",
            )
            s.add(d)
            s.flush()
            diffs.append(d.id)
        s.add_all(
            Candidate(
                difference_id=diffs[i % 2],
                observation_id=obs_id,
                ra=float(ra[i]),
                dec=float(dec[i]),
                healpix=int(healpix_index(ra[i], dec[i])),
                x=float(i),
                y=float(i),
                snr=float(snr[i]),
                score=float(score[i]),
                features={"sharpness": float(i) / N},
            )
            for i in range(N)
        )
    return {"ra": ra, "dec": dec, "score": score, "snr": snr, "diff": np.array(diffs)}


def _ids(api: Api, **params: object) -> list[int]:
    out, cursor = [], None
    while True:
        q = {**params, "limit": 25, **({"cursor": cursor} if cursor else {})}
        body = api.client.get("/api/v1/candidates", params=q, headers=api.as_role("viewer"))
        assert body.status_code == 200, body.text
        out += [c["id"] for c in body.json()["items"]]
        cursor = body.json()["next_cursor"]
        if not cursor:
            return out


def test_candidate_filters_cone_and_detail(api: Api, shared_data: Path) -> None:
    d = _seed(api, shared_data)
    ids = np.arange(1, N + 1)
    assert _ids(api) == list(ids)
    sel = (d["score"] >= 0.5) & (d["snr"] >= 20)
    assert _ids(api, min_score=0.5, min_snr=20) == list(ids[sel])
    assert _ids(api, difference_id=int(d["diff"][1])) == list(ids[1::2])
    sep = angular_separation_deg(d["ra"], d["dec"], 318.1, -66.0)
    assert _ids(api, ra=318.1, dec=-66.0, radius=0.05) == list(ids[sep <= 0.05])
    detail = api.client.get("/api/v1/candidates/3", headers=api.as_role("viewer")).json()
    assert detail["features"] == {"sharpness": 2 / N} and detail["x"] == 2.0
    missing = api.client.get("/api/v1/candidates/99999", headers=api.as_role("viewer"))
    assert missing.status_code == 404
    half = api.client.get(
        "/api/v1/candidates", params={"dec": 1, "radius": 1}, headers=api.as_role("viewer")
    )
    assert half.status_code == 422 and half.json()["errors"][0]["field"] == "query.ra"
