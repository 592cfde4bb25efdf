"""Cutouts of alert detections: the stamps are stored as the broker sent them (gzip FITS),
and the cutout route serves them as PNG and as plain FITS, as it does pipeline stamps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrid.pipeline.alerts import ingest_alerts
from tests.api.conftest import Api


def test_alert_stamps_are_served_as_png_and_fits(api: Api, shared_data: Path) -> None:
    files = sorted((shared_data / "ztf_alerts").glob("*.avro"))[:2]
    assert {o.status for o in ingest_alerts(api.runtime, files)} == {"stored"}
    headers = api.as_role("viewer")
    for kind in ("science", "template", "difference"):
        png = api.client.get(f"/api/v1/detections/1/cutouts/{kind}", headers=headers)
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        raw = api.client.get(
            f"/api/v1/detections/1/cutouts/{kind}", params={"format": "fits"}, headers=headers
        )
        assert raw.status_code == 200, raw.text
        with fits.open(io.BytesIO(raw.content)) as hdul:
            data = next(h.data for h in hdul if h.data is not None)
        assert data.ndim == 2 and np.isfinite(data).mean() > 0.5
