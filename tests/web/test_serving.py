"""``astrid serve`` serves the exported dashboard at ``/`` next to ``/api/v1`` (both backends),
and the API hands out the pipeline's PNG stamps that the scanning page draws."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from astrid.api import ApiConfig, create_app
from astrid.api.security import TokenService, create_user
from astrid.runtime import Runtime
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection

SECRET = "serving-test-secret-0123456789abcdef0123"


def _site(folder: Path) -> Path:
    (folder / "_next" / "static").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>overview</h1>")
    (folder / "scan.html").write_text("<h1>scan</h1>")
    (folder / "404.html").write_text("<h1>not here</h1>")
    (folder / "_next" / "static" / "app.js").write_text("console.log(1)")
    return folder


def test_dashboard_at_root_api_untouched(runtime: Runtime, tmp_path: Path) -> None:
    runtime.settings.dashboard_dir = _site(tmp_path / "out")
    app = create_app(runtime, ApiConfig(secret_key=SECRET, rate_limit=0))
    assert app.state.dashboard is True
    with TestClient(app) as client:
        assert client.get("/").text == "<h1>overview</h1>"
        scan = client.get("/scan")
        assert scan.status_code == 200 and scan.text == "<h1>scan</h1>"
        assert scan.headers["content-type"].startswith("text/html")
        assert client.get("/_next/static/app.js").text == "console.log(1)"
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and "not here" in missing.text
        api = client.get("/api/v1/no-such-route")
        assert api.status_code == 404
        assert api.headers["content-type"].startswith("application/problem+json")
        assert client.get("/health/live").status_code == 200
        assert client.get("/api/v1/detections").status_code == 401  # API routes still first


def test_without_a_build_the_api_runs_alone(runtime: Runtime, tmp_path: Path) -> None:
    runtime.settings.dashboard_dir = tmp_path / "empty"
    app = create_app(runtime, ApiConfig(secret_key=SECRET, rate_limit=0))
    assert app.state.dashboard is False
    with TestClient(app) as client:
        assert client.get("/").status_code == 404
        assert client.get("/health/live").status_code == 200


def test_pipeline_png_stamps_are_served(runtime: Runtime) -> None:
    stamp = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(stamp, mode="L").save(buf, format="PNG")
    key = runtime.blobs.put(buf.getvalue())
    config = ApiConfig(secret_key=SECRET, rate_limit=0)
    with runtime.db.session() as session:
        det = Detection(
            ra=1.0, dec=2.0, healpix=int(healpix_index(1.0, 2.0)), cutout_keys={"new_png": key}
        )
        session.add(det)
        user = create_user(session, "png-viewer", None, "viewer")
        session.flush()
        det_id, token = det.id, TokenService(config).issue(user).access_token
    with TestClient(create_app(runtime, config)) as client:
        h = {"Authorization": f"Bearer {token}"}
        png = client.get(f"/api/v1/detections/{det_id}/cutouts/new_png", headers=h)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        back = np.asarray(Image.open(io.BytesIO(png.content)))
        np.testing.assert_array_equal(back, stamp)
        fits = client.get(f"/api/v1/detections/{det_id}/cutouts/new_png?format=fits", headers=h)
        assert fits.status_code == 404 and fits.json()["errors"][0]["field"] == "query.format"
