"""Damaged FITS uploads: each answered 422 problem+json naming the file and the problem,
nothing stored; a file claiming a huge image is refused from its header."""

from __future__ import annotations

import gzip
from typing import Any

from sqlalchemy import func, select

from astrid.store.tables import Observation
from tests.api.conftest import Api
from tests.damaged_fits import damaged_files
from tests.science.test_hostile_fits import header_block, image_header


def _upload(api: Api, name: str, data: bytes) -> Any:
    return api.client.post(
        "/api/v1/observations/ingest/upload",
        files={"file": (name, data, "application/fits")},
        headers=api.as_role("curator"),
    )


def test_each_damaged_upload_is_a_422_naming_it(api: Api) -> None:
    for name, (data, words) in damaged_files().items():
        r = _upload(api, name, data)
        assert r.status_code == 422, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert name in body["detail"] and words in body["detail"], body
        assert body["errors"][0]["field"] == "file"
    huge = gzip.compress(header_block(image_header(22000, 22000)) + bytes(1 << 20))
    r = _upload(api, "huge.fits.gz", huge)
    assert r.status_code == 422 and "484,000,000 pixels" in r.json()["detail"]
    with api.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 0
    assert list(api.runtime.blobs.keys()) == []
