"""Every alert scored or flagged: CCD-edge clipped and heavily masked stamps, from real packets.

The damaged packets are real shared ZTF alerts whose stamps the test rewrites (clipped,
NaN-filled) in a copy, with the packet's own Avro schema.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from astrid.cli import app
from astrid.model.score import load_scorer, score_alerts
from astrid.model.stamps import InvalidStampError
from astrid.model.ztf import (
    ZTF_QUADRANT_SHAPE,
    alert_triplet,
    prepare_alert,
    read_ztf_alert_file,
    unclip_stamp,
)

pytestmark = pytest.mark.realdata


def _stamp_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(image.astype(np.float32)).writeto(buf)
    return gzip.compress(buf.getvalue())


def _read(rec: dict, key: str) -> np.ndarray:
    with fits.open(io.BytesIO(gzip.decompress(rec[key]["stampData"]))) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float64)


def rewrite_alert(src: Path, dst: Path, edit) -> None:
    """Copy one real alert, applying ``edit(record)`` to its decoded record."""
    import fastavro

    with src.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema = reader.writer_schema
        records = list(reader)
    edit(records[0])
    with dst.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records)


def _alerts(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "ztf_alerts").glob("*.avro"))


def test_unclip_puts_the_candidate_back_at_the_centre() -> None:
    full = np.arange(63 * 63, dtype=float).reshape(63, 63)
    # clipped on the far x side (candidate near the quadrant's last column): 63x42
    out = unclip_stamp(full[:, :42], xpos=ZTF_QUADRANT_SHAPE[1] - 10.0, ypos=1500.0)
    assert out.shape == (63, 63) and out[31, 31] == full[31, 31]
    assert np.isnan(out[:, 42:]).all() and not np.isnan(out[:, :42]).any()
    # clipped on the near y side (candidate at ypos 26): 57x63, padding at the start
    out = unclip_stamp(full[6:, :], xpos=1500.0, ypos=26.0)
    assert out[31, 31] == full[31, 31] and np.isnan(out[:6]).all()


def test_real_edge_clipped_alert_is_scored_with_a_note(shared_data: Path) -> None:
    """A packet ZTF really sent clipped (63x42 near the quadrant's x edge)."""
    path = shared_data / "ztf_alerts_train" / "2481343020115015020.avro"
    (alert,) = read_ztf_alert_file(path)
    assert alert.science is not None and alert.science.shape == (63, 42)
    triplet, problems = prepare_alert(alert)
    assert triplet is not None and triplet.shape == (3, 64, 64)
    assert any("clipped to 63x42" in p for p in problems)
    # the candidate (positive in the difference) is where the model looks: near (32, 32)
    peak = np.unravel_index(np.argmax(triplet[2, 26:39, 26:39]), (13, 13))
    assert abs(peak[0] - 6) <= 2 and abs(peak[1] - 6) <= 2
    # the padding is the fill convention: normalised sky (0), on the clipped side only
    assert np.all(triplet[:, :, 1 + 42 :] == 0)


def test_clipping_a_real_alert_keeps_its_score(shared_data: Path, tmp_path: Path) -> None:
    """Clip a real 63x63 packet as a CCD edge would; its score barely moves."""
    scorer = load_scorer("default")
    src = _alerts(shared_data)[0]
    dst = tmp_path / "clipped.avro"

    def clip(rec: dict) -> None:
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            rec[key]["stampData"] = _stamp_bytes(_read(rec, key)[:, :44])
        rec["candidate"]["xpos"] = ZTF_QUADRANT_SHAPE[1] - 12.0

    rewrite_alert(src, dst, clip)
    (full,) = score_alerts(scorer, read_ztf_alert_file(src))
    (cut,) = score_alerts(scorer, read_ztf_alert_file(dst))
    assert cut["score"] is not None and any("clipped" in p for p in cut["problems"])
    assert full["problems"] == []
    assert abs(cut["score"] - full["score"]) < 0.25


def test_mostly_nan_and_all_nan_stamps(shared_data: Path, tmp_path: Path) -> None:
    src = _alerts(shared_data)[1]

    def mask(fraction_rows: int, key: str):
        def edit(rec: dict) -> None:
            img = _read(rec, key)
            img[:fraction_rows] = np.nan
            rec[key]["stampData"] = _stamp_bytes(img)

        return edit

    rewrite_alert(src, tmp_path / "heavy.avro", mask(45, "cutoutScience"))  # 71% NaN
    rewrite_alert(src, tmp_path / "empty.avro", mask(63, "cutoutDifference"))  # all NaN
    (heavy,) = read_ztf_alert_file(tmp_path / "heavy.avro")
    (empty,) = read_ztf_alert_file(tmp_path / "empty.avro")
    triplet, problems = prepare_alert(heavy)
    assert triplet is not None and np.isfinite(triplet).all()
    assert problems == ["science stamp is 71% NaN: NaN pixels scored as sky"]
    triplet, problems = prepare_alert(empty)
    assert triplet is None and problems == ["difference stamp is 100% NaN: not scored"]
    with pytest.raises(InvalidStampError, match="100% NaN"):
        alert_triplet(empty)


def test_score_alerts_never_aborts_the_batch(shared_data: Path, tmp_path: Path) -> None:
    """The CLI on a folder with good, clipped, mostly-NaN, all-NaN, cutout-less and
    non-Avro files: one row per alert, the contract columns first, reasons given."""
    batch = tmp_path / "batch"
    batch.mkdir()
    good = _alerts(shared_data)[:3]
    for f in good:
        (batch / f.name).write_bytes(f.read_bytes())
    (batch / "clipped.avro").write_bytes(
        (shared_data / "ztf_alerts_train" / "2481343020115015020.avro").read_bytes()
    )

    def all_nan(rec: dict) -> None:
        rec["cutoutTemplate"]["stampData"] = _stamp_bytes(np.full((63, 63), np.nan))

    def garbage(rec: dict) -> None:
        rec["cutoutScience"]["stampData"] = b"not a fits file"

    rewrite_alert(good[0], batch / "nan.avro", all_nan)
    rewrite_alert(good[1], batch / "garbage.avro", garbage)
    (batch / "zz_not_avro.avro").write_bytes(b"\x00" * 64)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score-alerts", str(batch), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "zz_not_avro.avro" in result.output and "not scorable" in result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["objectId", "candid", "ra", "dec", "score", "model_version"]
    assert list(rows[0])[6:] == [
        "drb",
        "rb",
        "uncertainty",
        "problems",
        "shadow_score",
        "shadow_version",
        "model_score",
        "streak",
    ]
    by_file = {r["candid"]: r for r in rows}
    assert len(rows) == 6
    scored = [r for r in rows if r["score"]]
    assert len(scored) == 4 and all(0 <= float(r["score"]) <= 1 for r in scored)
    assert all(0 <= float(r["uncertainty"]) <= 0.5 for r in scored)
    unscored = [r for r in rows if not r["score"]]
    reasons = sorted(r["problems"] for r in unscored)
    assert reasons == [
        "science cutout is not a readable FITS image (OSError)",
        "template stamp is 100% NaN: not scored",
    ]
    assert "clipped to 63x42" in by_file["2481343020115015020"]["problems"]


def test_a_tar_archive_of_alerts_is_read_member_by_member(
    shared_data: Path, tmp_path: Path
) -> None:
    """ZTF's nightly public archives are tar.gz files of .avro packets: read as a stream,
    non-alert members ignored, a broken member named and skipped, a truncated archive keeps
    what came before the break."""
    import tarfile

    from astrid.model.ztf import AlertReadError, iter_ztf_alerts

    good = _alerts(shared_data)[:4]
    archive = tmp_path / "ztf_public_20191220.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in good[:2]:
            tar.add(f, arcname=f"night/{f.name}")
        readme = tmp_path / "README.txt"
        readme.write_text("not an alert")
        tar.add(readme, arcname="night/README.txt")
        broken = tmp_path / "broken.avro"
        broken.write_bytes(b"\x00" * 64)
        tar.add(broken, arcname="night/broken.avro")
        for f in good[2:]:
            tar.add(f, arcname=f"night/{f.name}")
    errors: list[AlertReadError] = []
    alerts = list(iter_ztf_alerts([archive], errors))
    expected = [read_ztf_alert_file(f)[0].candid for f in good]
    assert [a.candid for a in alerts] == expected
    assert alerts[0].source == f"{archive}:night/{good[0].name}"
    assert len(errors) == 1
    assert errors[0].message.startswith(f"{archive}:night/broken.avro: not a readable Avro")

    # cut the download in the middle of the third packet: two alerts, then the break
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        for f in good:
            tar.add(f, arcname=f.name)
    with tarfile.open(plain) as tar:
        third = tar.getmembers()[2].offset_data
    cut = tmp_path / "cut.tar"
    cut.write_bytes(plain.read_bytes()[: third + 100])
    errors = []
    alerts = list(iter_ztf_alerts([cut], errors))
    assert [a.candid for a in alerts] == expected[:2]
    assert any("truncated or corrupt after 3 members" in e.message for e in errors)

    # the CLI scores an archive like a folder
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score-alerts", str(archive), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        assert [int(r["candid"]) for r in csv.DictReader(handle)] == expected
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        tar.add(readme, arcname="README.txt")
    with pytest.raises(AlertReadError, match=r"holds no \.avro files"):
        list(iter_ztf_alerts([empty]))
