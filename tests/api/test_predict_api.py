"""POST /api/v1/models/{name}/predict: JSON, .npy and FITS triplets; every bad input a 4xx."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrid.model.calibration import TemperatureCalibrator
from astrid.model.registry import register_run, save_package
from astrid.model.score import load_scorer
from astrid.model.unet import UNet, UNetConfig
from astrid.model.ztf import alert_triplet, iter_ztf_alerts
from tests.api.conftest import Api

URL = "/api/v1/models/default/predict"


def _raw(shared_data: Path, n: int = 3) -> np.ndarray:
    alerts = list(iter_ztf_alerts([shared_data / "ztf_alerts"]))[:n]
    return np.stack([np.stack([a.science, a.template, a.difference]) for a in alerts]), alerts


@pytest.mark.realdata
def test_predict_json_npy_fits_agree_with_the_scorer(api: Api, shared_data: Path) -> None:
    viewer = api.as_role("viewer")
    raw, alerts = _raw(shared_data)
    expected = load_scorer("default").score(np.stack([alert_triplet(a) for a in alerts]))
    raw = np.nan_to_num(raw)  # JSON has no NaN
    r = api.client.post(URL, json={"triplets": raw.tolist()}, headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"].startswith("astrid-realbogus@")
    np.testing.assert_allclose(body["scores"], expected, atol=2e-3)
    buf = io.BytesIO()
    np.save(buf, raw.astype(np.float32))
    npy = api.client.post(
        URL + "?uncertainty=true",
        content=buf.getvalue(),
        headers={**viewer, "Content-Type": "application/octet-stream"},
    ).json()
    np.testing.assert_allclose(npy["scores"], body["scores"], atol=1e-5)
    assert len(npy["uncertainty"]) == 3 and all(0 <= u <= 0.5 for u in npy["uncertainty"])
    fbuf = io.BytesIO()
    fits.PrimaryHDU(raw[0].astype(np.float32)).writeto(fbuf)
    one = api.client.post(
        URL, content=fbuf.getvalue(), headers={**viewer, "Content-Type": "application/fits"}
    ).json()
    assert one["scores"] == pytest.approx(body["scores"][:1], abs=1e-5)


def test_bad_input_is_a_named_4xx(api: Api, tmp_path: Path) -> None:
    viewer = api.as_role("viewer")
    ok = np.random.default_rng(0).normal(size=(3, 32, 32))

    def post(**kw):
        return api.client.post(URL, headers={**viewer, **kw.pop("headers", {})}, **kw)

    r = post(json={"triplets": np.zeros((2, 2, 32, 32)).tolist()})
    assert r.status_code == 422 and "shape" in r.json()["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert post(json={"stamps": []}).status_code == 422
    assert post(content=b"garbage", headers={"Content-Type": "text/plain"}).status_code == 422
    nan = ok.copy()
    nan[2] = np.nan
    buf = io.BytesIO()
    np.save(buf, nan)
    r = post(content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"})
    assert (
        r.status_code == 422 and "triplet 0" in r.json()["detail"] and "NaN" in r.json()["detail"]
    )
    big = np.zeros((1025, 3, 8, 8), np.float32)
    buf = io.BytesIO()
    np.save(buf, big)
    r = post(content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and "1025" in r.json()["detail"]
    # a batch over the 1 MiB body limit of other routes, under the predict limit: scored
    many = np.repeat(np.asarray(ok, np.float64)[None], 200, axis=0)
    buf = io.BytesIO()
    np.save(buf, many)
    assert len(buf.getvalue()) > 1024 * 1024
    r = post(content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and len(r.json()["scores"]) == 200, r.text[:300]
    huge = b"\x93NUMPY" + b"\x00" * (17 * 1024 * 1024)
    assert (
        post(content=huge, headers={"Content-Type": "application/octet-stream"}).status_code == 413
    )
    # unknown model / alias
    r = api.client.post(
        "/api/v1/models/no-such-model/predict", json={"triplets": [ok.tolist()]}, headers=viewer
    )
    assert r.status_code == 404
    assert api.client.post(URL, json={"triplets": [ok.tolist()]}).status_code == 401


def test_registered_alias_and_corrupt_model(api: Api, tmp_path: Path) -> None:
    import mlflow
    import torch

    viewer = api.as_role("viewer")
    uri = api.runtime.settings.resolved_mlflow_uri
    torch.manual_seed(0)
    folder = save_package(
        UNet(UNetConfig(base_channels=4, stamp_size=32)).eval(),
        TemperatureCalibrator(),
        tmp_path / "p",
    )
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("predict-test", (tmp_path / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(folder), "model")
    register_run(uri, run.info.run_id, "tiny")
    trip = np.random.default_rng(1).normal(size=(1, 3, 40, 40)).tolist()
    url = "/api/v1/models/tiny/predict"
    r = api.client.post(url, json={"triplets": trip}, headers=viewer)
    assert r.status_code == 200, r.text and r.json()["model_version"].startswith("tiny")
    assert len(r.json()["scores"]) == 1
    assert (
        api.client.post(url + "?alias=nope", json={"triplets": trip}, headers=viewer).status_code
        == 404
    )
    # damage the registered weights: a 409 problem naming the model, not a 500
    for pt in (tmp_path / "mlruns").rglob("model.pt"):
        pt.write_bytes(b"not a torch file")
    r = api.client.post(url, json={"triplets": trip}, headers=viewer)
    assert r.status_code == 409 and "tiny" in r.json()["detail"]
