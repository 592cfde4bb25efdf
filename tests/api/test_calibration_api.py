"""Calibration frames and detection limits over HTTP, on SQLite and PostgreSQL.

``POST /api/v1/calibration`` (admin) registers a master frame with the checks of
``astrid calibration add``: a refused frame is a 422 naming the field, and nothing is stored.
``GET /api/v1/observations/{id}/limits`` lists the limits of the observation's differences.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from astrid.pipeline.stages.ingest import ingest_bytes
from astrid.store.sky_index import healpix_index
from astrid.store.tables import DetectionLimit, Difference, Reference
from tests.api.conftest import Api


def _fits(data: np.ndarray, **cards: object) -> bytes:
    hdu = fits.PrimaryHDU(np.asarray(data, np.float32))
    for k, v in cards.items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _post(api: Api, data: bytes, role: str = "admin", **form: str) -> Any:
    return api.client.post(
        "/api/v1/calibration",
        files={"file": ("master.fits", data, "application/fits")},
        data=form,
        headers=api.as_role(role),
    )


def test_register_list_and_refuse_calibration_frames(api: Api) -> None:
    flat = np.full((40, 50), 2000.0)
    ok = _post(
        api,
        _fits(flat, FILTER="r"),
        kind="flat",
        instrument="SIMCAM",
        valid_from="2026-01-01",
        valid_to="61500",
    )
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert (body["kind"], body["filter"], body["width"], body["height"]) == ("flat", "r", 50, 40)
    assert abs(body["valid_from"] - 61041.0) < 1e-6 and body["valid_to"] == 61500.0
    assert any("normalised by its median 2000" in n for n in body["notes"])
    assert _post(api, _fits(flat), role="curator", kind="bias", instrument="X").status_code == 403

    zeros = flat.copy()
    zeros[3, 3] = 0.0
    cases = [
        ("file", _fits(zeros, FILTER="r"), {"kind": "flat", "instrument": "SIMCAM"}),
        ("file", _fits(flat[:20]), {"kind": "bias", "instrument": "SIMCAM"}),  # other shape
        ("instrument", _fits(flat, INSTRUME="OTHER"), {"kind": "bias", "instrument": "SIMCAM"}),
        (
            "filter",
            _fits(flat, FILTER="g"),
            {"kind": "flat", "instrument": "SIMCAM", "filter": "r"},
        ),
        ("filter", _fits(flat), {"kind": "dark", "instrument": "SIMCAM", "filter": "r"}),
        ("kind", _fits(flat), {"kind": "sky", "instrument": "SIMCAM"}),
        (
            "valid_from",
            _fits(flat),
            {"kind": "bias", "instrument": "SIMCAM", "valid_from": "someday"},
        ),
        ("file", b"SIMPLE  = nonsense", {"kind": "bias", "instrument": "SIMCAM"}),
    ]
    for field, data, form in cases:
        r = _post(api, data, **form)
        assert r.status_code == 422, (field, r.text)
        problem = r.json()
        assert problem["errors"][0]["field"] == field, problem
        assert field in problem["detail"]
    listed = api.client.get("/api/v1/calibration", headers=api.as_role("viewer"))
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [body["id"]]  # nothing else was stored
    only = api.client.get(
        "/api/v1/calibration", params={"kind": "bias"}, headers=api.as_role("viewer")
    )
    assert only.json() == []


def test_limits_route(api: Api, shared_data: Path) -> None:
    path = shared_data / "decam_cutouts" / "DEC-OBS04a.mini.fits"
    obs_id, _ = ingest_bytes(api.runtime, path.read_bytes(), filename=path.name)
    curve = [{"mag": 22.0 + 0.25 * k, "completeness": 1.0 - 0.1 * k, "n": 20} for k in range(11)]
    with api.runtime.db.session() as s:
        ref = Reference(
            ra=318.1,
            dec=-66.0,
            healpix=int(healpix_index(318.1, -66.0)),
            blob_key="r",
            version=3,
            observation_ids=[7, 8, 9],
        )
        s.add(ref)
        s.flush()
        d = Difference(
            observation_id=obs_id,
            reference_id=ref.id,
            reference_version=3,
            method="zogy",
            stage_version="2",
            params_hash="p",
            difference_key="d",
        )
        s.add(d)
        s.flush()
        s.add(
            DetectionLimit(
                difference_id=d.id,
                observation_id=obs_id,
                n_injected=220,
                n_recovered=120,
                threshold=5.0,
                zero_point=30.0,
                m50=23.2,
                m90=22.7,
                curve=curve,
            )
        )
    r = api.client.get(f"/api/v1/observations/{obs_id}/limits", headers=api.as_role("viewer"))
    assert r.status_code == 200, r.text
    (row,) = r.json()
    assert (row["m50"], row["m90"], row["reference_version"]) == (23.2, 22.7, 3)
    assert row["reference_observation_ids"] == [7, 8, 9] and row["curve"] == curve
    assert (
        api.client.get(
            "/api/v1/observations/999999/limits", headers=api.as_role("viewer")
        ).status_code
        == 404
    )
    assert api.client.get(f"/api/v1/observations/{obs_id}/limits").status_code == 401


def _two_chips(level: float = 300.0) -> bytes:
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for chip in (1, 2):
        hdus.append(fits.ImageHDU(np.full((40, 50), level * chip, np.float32), name="SCI",
                                  ver=chip))  # fmt: skip
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_a_master_of_one_chip_is_chosen_by_hdu(api: Api) -> None:
    """A two-chip master: 422 naming ``hdu`` without it; ``hdu=SCI,2`` registers that chip
    (``chip`` in the answer and the listing)."""
    refused = _post(api, _two_chips(), kind="bias", instrument="SIMCAM")
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "hdu"
    assert "SCI,2" in refused.json()["detail"]
    ok = _post(api, _two_chips(), kind="bias", instrument="SIMCAM", hdu="SCI,2")
    assert ok.status_code == 201, ok.text
    assert ok.json()["chip"] == "SCI,2" and (ok.json()["height"], ok.json()["width"]) == (40, 50)
    listed = api.client.get("/api/v1/calibration", headers=api.as_role("viewer")).json()
    assert [(c["id"], c["chip"]) for c in listed] == [(ok.json()["id"], "SCI,2")]


def test_every_chip_in_one_request_and_a_single_image_master_keyed_to_a_chip(api: Api) -> None:
    """``hdu=all``: 201 with the list of masters (one per chip, each its ``chip``); a chip
    refused: 422 with one ``errors`` entry per refused chip (its ``chip`` and ``field``) and
    nothing stored. ``chip=N4`` on a single-image master: stored with that chip; a bad
    chip name or ``chip`` on a multi-chip file: 422 naming ``chip``."""
    both = _post(api, _two_chips(), kind="bias", instrument="SIMCAM", hdu="all")
    assert both.status_code == 201, both.text
    assert [(c["chip"], c["height"], c["width"]) for c in both.json()] == [
        ("SCI,1", 40, 50), ("SCI,2", 40, 50),
    ]  # fmt: skip
    with fits.open(io.BytesIO(_two_chips(2000.0))) as hdul:
        hdul["SCI", 2].data[0, 0] = np.nan
        hdul[0].header["FILTER"] = "r"
        buf = io.BytesIO()
        hdul.writeto(buf)
    refused = _post(api, buf.getvalue(), kind="flat", instrument="SIMCAM", hdu="all")
    assert refused.status_code == 422, refused.text
    assert [(e["chip"], e["field"]) for e in refused.json()["errors"]] == [("SCI,2", "file")]
    assert "chip SCI,2" in refused.json()["detail"]
    keyed = _post(api, _fits(np.full((40, 50), 10.0)), kind="bias", instrument="SIMCAM",
                  chip="N4")  # fmt: skip
    assert keyed.status_code == 201, keyed.text
    assert keyed.json()["chip"] == "N4"
    for form in ({"chip": "12"}, {"chip": "x" * 73}, {"chip": "SCI,1", "hdu": "SCI,1"}):
        data = _two_chips() if "hdu" in form else _fits(np.full((40, 50), 10.0))
        r = _post(api, data, kind="bias", instrument="SIMCAM", **form)
        assert r.status_code == 422, (form, r.text)
        # the domain's check names ``chip``; FastAPI's length check ``body.chip``
        assert [e["field"].removeprefix("body.") for e in r.json()["errors"]] == ["chip"]
    listed = api.client.get("/api/v1/calibration", headers=api.as_role("viewer")).json()
    assert sorted(c["chip"] for c in listed) == ["N4", "SCI,1", "SCI,2"]  # no flat stored
