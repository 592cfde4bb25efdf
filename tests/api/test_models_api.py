"""The model registry over HTTP (SQLite and PostgreSQL app databases; MLflow in the runtime's
data dir): tiny real U-Net packages logged as MLflow runs with metrics, registered, listed with
their metrics, promoted and rolled back, with the expert role enforced."""

from __future__ import annotations

from pathlib import Path

from astrid.model.calibration import TemperatureCalibrator
from astrid.model.registry import register_run, save_package
from astrid.model.unet import UNet, UNetConfig
from tests.api.conftest import Api
from tests.model.conftest import log_package_run

CFG = UNetConfig(base_channels=4, depth=2, stamp_size=32)
NAME = "astrid-realbogus"


def _log_run(uri: str, tmp_path: Path, seed: int) -> str:
    import torch

    torch.manual_seed(seed)
    folder = save_package(UNet(CFG).eval(), TemperatureCalibrator(), tmp_path / f"pkg{seed}")
    return log_package_run(uri, folder, "api-test", tmp_path / "mlruns", auc=0.9 + seed / 100)


def test_list_metrics_promote_rollback(api: Api, tmp_path: Path) -> None:
    viewer, expert = api.as_role("viewer"), api.as_role("expert")
    assert api.client.get("/api/v1/models", headers=viewer).json() == []
    uri = api.runtime.settings.resolved_mlflow_uri
    for seed in (1, 2):
        register_run(uri, _log_run(uri, tmp_path, seed), NAME)

    models = api.client.get("/api/v1/models", headers=viewer).json()
    assert [m["name"] for m in models] == [NAME]
    assert models[0]["aliases"] == {"champion": 1, "challenger": 2}
    versions = models[0]["versions"]
    assert [v["semver"] for v in versions] == ["1.0.0", "1.1.0"]
    assert [v["metrics"]["auc"] for v in versions] == [0.91, 0.92]

    by_semver = api.client.get(f"/api/v1/models/{NAME}/1.1.0", headers=viewer).json()
    by_alias = api.client.get(f"/api/v1/models/{NAME}/champion", headers=viewer).json()
    assert by_semver["version"] == 2 and by_alias["version"] == 1
    assert by_semver["metrics"] == {"auc": 0.92}
    assert api.client.get(f"/api/v1/models/{NAME}/7", headers=viewer).status_code == 404
    assert api.client.get("/api/v1/models/nope/1", headers=viewer).status_code == 404

    url = f"/api/v1/models/{NAME}/promote"
    curator = api.client.post(url, json={"version": "2"}, headers=api.as_role("curator"))
    assert curator.status_code == 403
    promoted = api.client.post(url, json={"version": "1.1.0"}, headers=expert)
    assert promoted.status_code == 200, promoted.text
    assert "champion" in promoted.json()["aliases"] and promoted.json()["version"] == 2
    unknown = api.client.post(url, json={"version": "9.9.9"}, headers=api.as_role("admin"))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    back = api.client.post(f"/api/v1/models/{NAME}/rollback", headers=expert)
    assert back.status_code == 200 and back.json()["version"] == 1
    assert "champion" in back.json()["aliases"]
    none_left = api.client.post(f"/api/v1/models/{NAME}/rollback", headers=expert)
    assert none_left.status_code == 409 and "no earlier champion" in none_left.json()["detail"]
    missing = api.client.post("/api/v1/models/nope/rollback", headers=expert)
    assert missing.status_code == 404
