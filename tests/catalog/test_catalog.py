"""Catalog entries, search and releases on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import func, select

from astrid.catalog.entries import (
    CatalogQuery,
    CatalogSearchError,
    designation,
    search_entries,
    sync_catalog,
)
from astrid.catalog.export import iter_export
from astrid.catalog.releases import (
    EmptyCatalogError,
    LiveSource,
    ReleaseError,
    ReleaseSource,
    create_release,
    get_release,
    verify_release,
)
from astrid.runtime import Runtime
from astrid.store.tables import CatalogEntry, CatalogRelease, Discovery, ExpertReview, User
from tests.catalog.factory import make_object
from tests.domain.curation_fixtures import add_differences


def test_designation_is_iau_style_and_truncated() -> None:
    assert designation(150.0, 2.0) == "AstrID J100000.00+020000.0"
    assert designation(0.0, -0.5) == "AstrID J000000.00-003000.0"
    assert designation(359.99999, -89.99999) == "AstrID J235959.99-895959.9"


def _populate(runtime: Runtime) -> dict[str, int]:
    with runtime.db.session() as s:
        expert = User(username="expert", role="expert")
        s.add(expert)
        s.flush()
        ids = {
            "sn": make_object(s, 150.0, 2.0, classification="transient/supernova/Ia").id,
            "near": make_object(s, 150.001, 2.0, classification="variable_star").id,
            "wrap": make_object(s, 359.9995, 0.0, mags=(17.0, 17.2)).id,
            "bogus": make_object(s, 10.0, 10.0, label="bogus").id,
            "pending": make_object(s, 20.0, 20.0, label=None).id,
            "disc": make_object(s, 30.0, -30.0, label=None, mjds=(60100.0,), mags=(16.0,)).id,
            "retracted": make_object(s, 40.0, 40.0).id,
        }
        s.add(Discovery(object_id=ids["disc"], status="confirmed", importance=5))
        s.add(Discovery(object_id=ids["retracted"], status="retracted"))
        s.add(ExpertReview(object_id=ids["sn"], user_id=expert.id, verdict="confirm", importance=3))
    return ids


def test_sync_keeps_exactly_the_confirmed_objects(runtime: Runtime) -> None:
    ids = _populate(runtime)
    with runtime.db.session() as s:
        report = sync_catalog(s)
        assert (report.added, report.removed, report.total) == (4, 0, 4)
        got = {e.object_id: e for e in s.scalars(select(CatalogEntry))}
    assert set(got) == {ids["sn"], ids["near"], ids["wrap"], ids["disc"]}
    assert got[ids["disc"]].importance == 5 and got[ids["disc"]].discovery_status == "confirmed"
    assert got[ids["sn"]].importance == 3 and got[ids["sn"]].peak_mag == pytest.approx(18.5)
    with runtime.db.session() as s:
        assert sync_catalog(s).added == 0  # idempotent
        s.scalars(
            select(Discovery).where(Discovery.object_id == ids["disc"])
        ).one().status = "retracted"
    with runtime.db.session() as s:
        report = sync_catalog(s)
        assert (report.removed, report.total) == (1, 3)


@pytest.fixture
def synced(runtime: Runtime) -> dict[str, int]:
    ids = _populate(runtime)
    with runtime.db.session() as s:
        sync_catalog(s)
    return ids


def test_search_by_cone_class_time_magnitude_importance(
    runtime: Runtime, synced: dict[str, int]
) -> None:
    def ids(q: CatalogQuery) -> list[int]:
        with runtime.db.session() as s:
            return [e.object_id for e in search_entries(s, q)]

    # 0.001 deg = 3.6 arcsec apart: a 2" cone holds one, a 5" cone both, nearest first.
    assert ids(CatalogQuery(ra=150.0, dec=2.0, radius=2 / 3600)) == [synced["sn"]]
    assert ids(CatalogQuery(ra=150.0009, dec=2.0, radius=5 / 3600)) == [
        synced["near"],
        synced["sn"],
    ]
    assert ids(CatalogQuery(ra=0.0005, dec=0.0, radius=4 / 3600)) == [synced["wrap"]]  # RA = 0
    assert ids(CatalogQuery(classification="transient/supernova")) == [synced["sn"]]
    assert ids(CatalogQuery(classification="transient/super")) == []
    assert ids(CatalogQuery(mjd_min=60050)) == [synced["disc"]]
    assert ids(CatalogQuery(mag_max=17.0)) == sorted([synced["wrap"], synced["disc"]])
    assert ids(CatalogQuery(min_importance=4)) == [synced["disc"]]
    for bad, field in (
        (CatalogQuery(ra=1.0, dec=1.0, radius=0.0), "radius"),
        (CatalogQuery(ra=1.0, dec=1.0, radius=200.0), "radius"),
        (CatalogQuery(ra=1.0, radius=1.0), "dec"),
        (CatalogQuery(ra=400.0, dec=1.0, radius=1.0), "ra"),
    ):
        with pytest.raises(CatalogSearchError) as info:
            bad.cone()
        assert info.value.field == field


def test_release_is_an_immutable_checksummed_snapshot(
    runtime: Runtime, synced: dict[str, int]
) -> None:
    first = create_release(runtime, note="paper I")
    assert first.n_entries == 4 and len(first.checksum) == 64
    raw = gzip.decompress(runtime.blobs.get(first.blob_key))
    assert hashlib.sha256(raw).hexdigest() == first.checksum
    lines = raw.decode().splitlines()
    # By designation: J0200 (the discovery, one point), J1000 x2, J2359 (across RA = 0).
    assert [len(json.loads(x)["light_curve"]) for x in lines] == [1, 2, 2, 2]
    assert verify_release(runtime.blobs, first)
    same = create_release(runtime)  # same contents, new version, same checksum
    assert same.version != first.version and same.checksum == first.checksum
    with pytest.raises(ReleaseError, match="exists"):
        create_release(runtime, version=first.version)
    with pytest.raises(ReleaseError, match="version 'bad version'"):
        create_release(runtime, version="bad version")
    # The live catalog moves on; the release does not.
    with runtime.db.session() as s:
        make_object(s, 160.0, 5.0)
    create_release(runtime, version="v3")
    with runtime.db.session() as s:
        old = get_release(s, first.version)
    source = ReleaseSource(runtime.blobs, old)
    assert source.n_entries() == 4 and source.n_points() == 7
    with fits.open(io.BytesIO(b"".join(iter_export(source, "fits")))) as hdul:
        assert len(hdul["CATALOG"].data) == 4 and len(hdul["LIGHT_CURVES"].data) == 7
        np.testing.assert_allclose(sorted(hdul["LIGHT_CURVES"].data["mag_err"]), 0.1, rtol=1e-6)
    live = LiveSource(runtime.db)
    assert live.n_entries() == 5 and live.n_points() == 9
    assert sum(1 for _ in live.points()) == 9


def test_release_of_an_empty_catalog_stores_nothing(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        make_object(s, 1.0, 1.0, label="bogus")
    with pytest.raises(EmptyCatalogError, match="nothing is confirmed"):
        create_release(runtime)
    with runtime.db.session() as s:
        assert s.scalar(select(func.count(CatalogRelease.id))) == 0
        assert s.scalar(select(func.count(CatalogEntry.id))) == 0


def test_demo_makes_a_first_release_and_says_how_to_export_it(runtime: Runtime) -> None:
    from rich.console import Console

    from astrid.pipeline.demo import _demo_release

    console = Console(record=True, width=300)
    _demo_release(runtime, console)
    assert "nothing confirmed by the demo votes" in console.export_text()
    with runtime.db.session() as s:
        make_object(s, 12.0, 34.0)
    _demo_release(runtime, console)
    text = console.export_text()
    assert "(1 entries, sha256:" in text and "astrid catalog export --format votable" in text


def test_live_csv_is_the_same_table_whichever_writer(
    runtime: Runtime, synced: dict[str, int]
) -> None:
    """PostgreSQL writes live CSV itself (COPY); it must read back as the Python writer's."""
    import csv

    from astrid.catalog.export import ListSource

    live = LiveSource(runtime.db, CatalogQuery(mag_max=18.6))
    fast = list(csv.DictReader(io.StringIO(b"".join(iter_export(live, "csv")).decode())))
    slow_src = ListSource(list(live.entries()))
    slow = list(csv.DictReader(io.StringIO(b"".join(iter_export(slow_src, "csv")).decode())))
    assert len(fast) == len(slow) == 4 and list(fast[0]) == list(slow[0])
    for a, b in zip(fast, slow, strict=True):
        assert a["name"] == b["name"] and a["classification"] == b["classification"]
        assert float(a["ra"]) == pytest.approx(float(b["ra"]), rel=1e-15)
        assert (a["latest_mag"] == "") == (b["latest_mag"] == "")
        assert json.loads(a["annotations"]) == json.loads(b["annotations"])


def test_a_release_freezes_forced_photometry_and_upper_limits(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        obs_ids = add_differences(s, runtime.blobs)
        make_object(s, 150.0, 2.0, mjds=(59990.0,), mags=(17.5,))
    release = create_release(runtime)
    (line,) = gzip.decompress(runtime.blobs.get(release.blob_key)).decode().splitlines()
    points = json.loads(line)["light_curve"]
    assert [p["kind"] for p in points] == ["detection", "forced", "forced", "upper_limit"]
    assert [p["mjd"] for p in points] == [59990.0, 60000.0, 60001.0, 60002.0]
    assert len(obs_ids) == 4  # the fourth field does not cover the object: no point
    bright, faint, limit = points[1:]
    for point, flux in ((bright, 900.0), (faint, 800.0)):
        assert abs(point["flux"] - flux) < 3 * point["flux_err"]
        assert abs(point["mag"] - (25.0 - 2.5 * np.log10(flux))) < 3 * point["mag_err"]
    # The upper limit's mag is the 5-sigma limit of a PSF flux on sigma = 2 white noise.
    err = 2.0 * np.sqrt(4 * np.pi) * 3.0 / 2.3548
    assert abs(limit["mag"] - (25.0 - 2.5 * np.log10(5 * err))) < 0.1
    assert limit["detection_id"] is None and limit["mag_err"] is None
    # The same points in the FITS export of the release.
    with runtime.db.session() as s:
        source = ReleaseSource(runtime.blobs, get_release(s, release.version))
    with fits.open(io.BytesIO(b"".join(iter_export(source, "fits")))) as hdul:
        kinds = [str(k) for k in hdul["LIGHT_CURVES"].data["kind"]]
    assert kinds == ["detection", "forced", "forced", "upper_limit"]
