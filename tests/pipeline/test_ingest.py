"""Ingesting real DECam FITS on SQLite/PostgreSQL with local and S3 storage; bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from astrid.domain.observations import ObservationService
from astrid.pipeline.stages.ingest import ingest_bytes, ingest_paths
from astrid.runtime import Runtime
from astrid.science.fitsio import InvalidFitsError, NoCelestialWCSError
from astrid.store.tables import DomainEvent, Observation
from tests._s3 import s3_settings


def _blob_count(runtime: Runtime) -> int:
    return len(list(runtime.blobs.keys()))


def _obs_count(runtime: Runtime) -> int:
    with runtime.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Observation)) or 0)


def test_ingest_decam_folder_and_cone_search(runtime: Runtime, shared_data: Path) -> None:
    folder = shared_data / "decam_cutouts"
    outcomes = ingest_paths(runtime, [folder])
    ingested = [o for o in outcomes if o.status == "ingested"]
    failed = [o for o in outcomes if o.status == "failed"]
    # 10 science/reference cutouts + 2 stacks + 2 SFFT differences have a WCS; kernels do not.
    assert len(ingested) == 14
    assert all("no celestial WCS" in (o.error or "") for o in failed)
    assert all("MatchKernel" in o.path or "Kernel" in o.path for o in failed)
    service = ObservationService(runtime.db)
    found = service.cone_search(318.108, -66.016, 2 / 60)
    assert len(found) == 14
    for obs in found:
        assert abs(obs.ra - 318.1082) < 0.01 and abs(obs.dec + 66.0156) < 0.01
        assert obs.exposure_time == 330.0 and obs.width == 256
        assert obs.mjd == pytest.approx(58334.39133794)
    # Nothing 1 degree away.
    assert service.cone_search(318.108, -65.0, 0.5) == []
    # Idempotent: the same files again create nothing new.
    again = ingest_paths(runtime, [folder])
    assert sum(o.status == "duplicate" for o in again) == 14
    assert _obs_count(runtime) == 14 and _blob_count(runtime) == 14
    with runtime.db.session() as s:
        n_events = s.scalar(select(func.count()).select_from(DomainEvent))
    assert n_events == 14


def test_ingest_to_s3_storage(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    s3_server: str,
    s3_bucket: str,
    shared_data: Path,
) -> None:
    runtime = make_runtime(migrated_url, **s3_settings(s3_server, s3_bucket, "raw"))
    files = sorted((shared_data / "decam_cutouts").glob("DEC-OBS04*.mini.fits"))
    outcomes = ingest_paths(runtime, files)
    assert [o.status for o in outcomes] == ["ingested"] * 5
    obs = ObservationService(runtime.db).get(outcomes[0].observation_id or 0)
    assert runtime.blobs.get(obs.blob_key) == files[0].read_bytes()


def test_corrupt_and_truncated_fits_store_nothing(
    runtime: Runtime, tmp_path: Path, shared_data: Path
) -> None:
    good = (shared_data / "decam_cutouts" / "DEC-OBS04a.mini.fits").read_bytes()
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good[: len(good) // 3])
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"this is not FITS at all" * 200)
    nowcs = shared_data / "decam_cutouts" / "FinalMatchKernel.fits"
    outcomes = ingest_paths(runtime, [truncated, garbage, nowcs])
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert "not a readable FITS file" in (outcomes[0].error or "")
    assert "not a readable FITS file" in (outcomes[1].error or "")
    assert "no celestial WCS" in (outcomes[2].error or "")
    assert _obs_count(runtime) == 0 and _blob_count(runtime) == 0
    with pytest.raises(InvalidFitsError):
        ingest_bytes(runtime, b"")
    with pytest.raises(NoCelestialWCSError):
        ingest_bytes(runtime, nowcs.read_bytes())


def test_database_failure_leaves_no_orphan_blob(runtime: Runtime, shared_data: Path) -> None:
    """A real database error (a trigger refusing the insert) removes the new blob."""
    data = (shared_data / "decam_cutouts" / "DEC-OBS18a.mini.fits").read_bytes()
    with runtime.db.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON observations "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by test trigger'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON observations "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    with pytest.raises(Exception, match="refused by test trigger"):
        ingest_bytes(runtime, data)
    assert _obs_count(runtime) == 0
    assert _blob_count(runtime) == 0
