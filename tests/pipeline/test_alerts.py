"""ZTF alert ingestion on the 50 real packets in ../shared/data/ztf_alerts."""

from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.pipeline.alerts import ingest_alerts, load_alert_scorer
from astrid.runtime import Runtime
from astrid.store.blobs import blob_key
from astrid.store.db import upgrade
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, DomainEvent, StageRun
from tests._cli import astrid_in, clean_env

FIELDS = ("magpsf", "sigmapsf", "isdiffpos", "fwhm", "rb", "drb", "ssdistnr", "jd", "fid")


def alert_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "ztf_alerts").glob("*.avro"))


def read_record(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, writer schema) of a one-packet Avro file, read with fastavro directly."""
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        records = list(reader)
        schema = reader.writer_schema
    assert len(records) == 1
    assert isinstance(records[0], dict) and isinstance(schema, dict)
    return records[0], schema


def write_record(path: Path, record: dict[str, Any], schema: dict[str, Any]) -> None:
    with path.open("wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), [record])


def detections(runtime: Runtime) -> dict[str, Detection]:
    with runtime.db.session() as s:
        return {d.external_id or "": d for d in s.scalars(select(Detection))}


def test_alerts_keep_packet_cutouts_fields_and_history(runtime: Runtime, shared_data: Path) -> None:
    files = alert_files(shared_data)
    assert len(files) == 50
    outcomes = ingest_alerts(runtime, [shared_data / "ztf_alerts"])
    assert [o.status for o in outcomes] == ["stored"] * 50
    dets = detections(runtime)
    assert len(dets) == 50
    for path in files:
        rec, _ = read_record(path)
        cand = rec["candidate"]
        det = dets[str(rec["candid"])]
        assert det.source == "alert" and det.confidence is None
        assert (det.ra, det.dec) == (cand["ra"], cand["dec"])
        assert det.healpix == healpix_index(cand["ra"], cand["dec"])
        assert det.mjd == pytest.approx(cand["jd"] - 2400000.5, abs=1e-9)
        assert det.mag == cand["magpsf"]
        assert det.snr == pytest.approx(cand["scorr"])
        assert {k: det.extra["candidate"][k] for k in FIELDS} == {k: cand[k] for k in FIELDS}
        assert det.extra["objectId"] == rec["objectId"] and det.extra["schemavsn"] == "3.3"
        assert det.extra["problems"] == []
        # The packet and the three cutouts, byte for byte, content-addressed.
        assert runtime.blobs.get(det.cutout_keys["packet"]) == path.read_bytes()
        for name, field in (
            ("science", "cutoutScience"),
            ("template", "cutoutTemplate"),
            ("difference", "cutoutDifference"),
        ):
            stored = runtime.blobs.get(det.cutout_keys[name])
            assert stored == rec[field]["stampData"]
            with warnings.catch_warnings():  # ZTF stamps' SIMPLE card is non-standard
                warnings.simplefilter("ignore", VerifyWarning)
                with fits.open(io.BytesIO(gzip.decompress(stored))) as hdul:
                    assert hdul[0].data.shape == (63, 63)
        prv = rec["prv_candidates"] or []
        hist = det.extra["prv_candidates"]
        n_det = sum(1 for p in prv if p["candid"] is not None)
        assert (hist["n_previous"], hist["n_detections"], hist["n_upper_limits"]) == (
            len(prv),
            n_det,
            len(prv) - n_det,
        )
        assert [d["jd"] for d in hist["detections"]] == [
            p["jd"] for p in prv if p["candid"] is not None
        ]
    with runtime.db.session() as s:
        created = s.scalar(
            select(func.count())
            .select_from(DomainEvent)
            .where(DomainEvent.event_type == EventType.DETECTION_CREATED.value)
        )
    assert created == 50
    # Re-running resumes: nothing is redone or duplicated.
    again = ingest_alerts(runtime, files)
    assert {o.status for o in again} == {"duplicate"}
    assert len(detections(runtime)) == 50


def test_bad_alerts_are_reported_and_kept_and_the_batch_goes_on(
    runtime: Runtime, shared_data: Path, tmp_path: Path
) -> None:
    files = alert_files(shared_data)
    batch = tmp_path / "batch"
    batch.mkdir()
    for f in files[:2]:
        (batch / f"a_{f.name}").write_bytes(f.read_bytes())
    (batch / "b_corrupt.avro").write_bytes(b"this is not an avro file at all" * 10)
    rec, schema = read_record(files[2])
    write_record(batch / "c_future.avro", {**rec, "schemavsn": "9.9"}, schema)
    rec, schema = read_record(files[3])
    broken = {**rec, "cutoutDifference": {**rec["cutoutDifference"], "stampData": b"garbage"}}
    write_record(batch / "d_broken.avro", broken, schema)

    scorer = load_alert_scorer("default")
    out = ingest_alerts(runtime, [batch], scorer=scorer)
    assert [o.status for o in out] == ["stored", "stored", "failed", "kept", "stored"]
    assert out[2].error is not None and "not a readable Avro alert file" in out[2].error
    assert out[3].error is not None and "unknown schema version '9.9'" in out[3].error
    assert out[4].candid == broken["candid"] and out[4].confidence is None
    assert out[4].problems and out[4].problems[0].startswith(
        "difference cutout is not a readable FITS image"
    )
    assert all(o.confidence is not None for o in out[:2])
    # Kept, not dropped: the bytes of the unreadable and the unknown-schema packets are stored,
    # and their runs are parked with the reason.
    for name in ("b_corrupt.avro", "c_future.avro"):
        assert runtime.blobs.exists(blob_key((batch / name).read_bytes()))
    with runtime.db.session() as s:
        parked = s.scalars(select(StageRun).where(StageRun.status == "failed")).all()
        assert sorted(r.inputs["path"].rsplit("/", 1)[-1] for r in parked) == [
            "b_corrupt.avro",
            "c_future.avro",
        ]
    det = detections(runtime)[str(broken["candid"])]
    assert runtime.blobs.get(det.cutout_keys["difference"]) == b"garbage"
    assert det.confidence is None and det.extra["problems"] == list(out[4].problems)
    # Re-run: same report, no duplicates.
    again = ingest_alerts(runtime, [batch], scorer=scorer)
    assert [o.status for o in again] == ["duplicate", "duplicate", "failed", "kept", "duplicate"]
    assert len(detections(runtime)) == 3


def test_alerts_are_scored_with_astrids_model(runtime: Runtime, shared_data: Path) -> None:
    """Scores equal the model's own alert path (its reader and ``score_alerts``); alerts first
    recorded without a model are rescored in place, not duplicated."""
    from astrid.model.score import score_alerts
    from astrid.model.ztf import read_ztf_alert_file

    files = alert_files(shared_data)[:12]
    assert {o.status for o in ingest_alerts(runtime, files)} == {"stored"}
    scorer = load_alert_scorer("default")
    out = ingest_alerts(runtime, files, scorer=scorer)
    assert {o.status for o in out} == {"updated"}
    expected = {
        str(r["candid"]): r["score"]
        for r in score_alerts(scorer, [a for f in files for a in read_ztf_alert_file(f)])
    }
    dets = detections(runtime)
    assert len(dets) == 12
    got = {k: d.confidence for k, d in dets.items()}
    # float32 scores depend on the batch composition and the CPU's kernels (~1e-7 apart):
    # compare with what float32 arithmetic can promise, not bit for bit.
    assert got == pytest.approx(expected, abs=1e-5)
    assert all(0.0 <= v <= 1.0 for v in expected.values())
    assert {d.model_version for d in dets.values()} == {scorer.model_version}
    assert np.std(list(expected.values())) > 0  # not a constant
    assert load_alert_scorer("none") is None


def test_ingest_alerts_command(tmp_path: Path, shared_data: Path) -> None:
    batch = tmp_path / "alerts"
    batch.mkdir()
    for f in alert_files(shared_data)[:3]:
        (batch / f.name).write_bytes(f.read_bytes())
    (batch / "zz_corrupt.avro").write_bytes(b"\x00" * 100)
    env = clean_env(tmp_path / "data")

    astrid = astrid_in(env)

    upgrade(f"sqlite:///{tmp_path / 'data' / 'astrid.db'}")  # what `astrid init` does
    run = astrid("ingest-alerts", str(batch), "--model", "none")
    assert run.returncode == 0, run.stderr
    assert "3 stored, 0 updated, 0 already present, 0 kept (unknown schema), 1 failed" in (
        run.stdout
    )
    assert "zz_corrupt.avro" in run.stdout
    status = json.loads(astrid("status", "--json").stdout)
    assert status["broker"] == "inprocess"
    assert status["stage_runs"] == {"alert": {"succeeded": 3, "failed": 1}}
    assert len(status["failures"]) == 1
    assert "not a readable Avro alert file" in status["failures"][0]["error"]
    missing = astrid("ingest-alerts", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
