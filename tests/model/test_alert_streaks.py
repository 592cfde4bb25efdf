"""Satellite streaks among ZTF alerts: `astrid score-alerts` on a folder with a synthetic
streak exposure (real packets moved onto one line), the in-stamp trail, the grouping."""

from __future__ import annotations

import csv
import gzip
import io
import math

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from astrid.cli import app
from astrid.model.alert_streaks import STREAK_PROBLEM, alert_streaks, exposure_key
from astrid.model.ztf import ZtfAlert, prepare_alert, read_ztf_alert_file
from tests.model.test_ztf import rewrite_alert

pytestmark = pytest.mark.realdata

PID = 1095578119999  # a difference image no real packet here comes from


def _stamp_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(image.astype(np.float32)).writeto(buf)
    return gzip.compress(buf.getvalue())


def _difference(rec: dict) -> np.ndarray:
    with fits.open(io.BytesIO(gzip.decompress(rec["cutoutDifference"]["stampData"]))) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float64)


def _on_line(k: int, rec: dict, *, broken: bool = False) -> None:
    """Move a packet to piece ``k`` of a dotted trail of difference image ``PID``."""
    cand = rec["candidate"]
    x, y = 400.0 + 150.0 * k, 900.0 + 0.4 * 150.0 * k
    cand["pid"] = PID
    rec["candid"] = cand["candid"] = PID * 10**6 + 100 + k
    cand["xpos"], cand["ypos"] = x, y
    cand["ra"] = 150.0 + x * 1.012 / 3600.0 / math.cos(math.radians(20.0))
    cand["dec"] = 20.0 + y * 1.012 / 3600.0
    if broken:
        rec["cutoutDifference"]["stampData"] = b"not a FITS file"


def _trail_across(rec: dict) -> None:
    """Add a 10-sigma straight trail through the centre of the difference cutout."""
    diff = _difference(rec)
    sigma = 1.4826 * np.nanmedian(np.abs(diff - np.nanmedian(diff)))
    yy, xx = np.mgrid[0 : diff.shape[0], 0 : diff.shape[1]] - 31.0
    d = np.abs(-xx * math.sin(0.4) + yy * math.cos(0.4))
    diff = diff + 10.0 * sigma * np.exp(-0.5 * (d / 1.0) ** 2)
    rec["cutoutDifference"]["stampData"] = _stamp_bytes(diff)


def test_score_alerts_demotes_a_streak_and_survives_broken_packets(env, shared_data) -> None:
    src = sorted((shared_data / "ztf_alerts").glob("*.avro"))
    folder = env / "alerts"
    folder.mkdir()
    for k, path in enumerate(src[:7]):  # seven pieces, one with a broken cutout
        rewrite_alert(path, folder / f"piece{k}.avro", lambda r, k=k: _on_line(k, r, broken=k == 3))
    rewrite_alert(src[10], folder / "trail.avro", _trail_across)
    for path in src[20:23]:  # untouched alerts of other difference images
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.avro").write_bytes(b"this is not avro")
    out = env / "scores.csv"
    result = CliRunner().invoke(app, ["score-alerts", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "on streaks" in result.output and "broken.avro" in result.output
    with out.open() as handle:
        rows = {int(r["candid"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 11
    header = list(next(iter(rows.values())))
    assert header[:6] == ["objectId", "candid", "ra", "dec", "score", "model_version"]
    assert header[-2:] == ["model_score", "streak"]
    pieces = [rows[PID * 10**6 + 100 + k] for k in range(7)]
    for k, row in enumerate(pieces):
        assert row["streak"] == f"{PID}/0"
        assert STREAK_PROBLEM in row["problems"] and "7 alerts" in row["problems"]
        if k == 3:  # the broken piece: on the streak, not scored, the reason kept
            assert row["score"] == "" and "difference cutout" in row["problems"]
        else:
            assert float(row["score"]) == pytest.approx(0.1 * float(row["model_score"]))
            assert float(row["score"]) <= 0.1
    trail = next(r for r in rows.values() if r["streak"].endswith("/stamp"))
    assert "crosses the difference stamp" in trail["problems"]
    assert float(trail["score"]) == pytest.approx(0.1 * float(trail["model_score"]))
    others = [r for r in rows.values() if not r["streak"]]
    assert len(others) == 3
    assert all(r["score"] == r["model_score"] and not r["problems"] for r in others)


def test_groups_by_difference_image_and_falls_back_to_the_sky(shared_data) -> None:
    base = read_ztf_alert_file(sorted((shared_data / "ztf_alerts").glob("*.avro"))[0])[0]

    def alert(k: int, pid: int | None, *, pixels: bool) -> ZtfAlert:
        x, y = 400.0 + 150.0 * k, 900.0 + 60.0 * k
        cand: dict = {"pid": pid} if pid is not None else {}
        if pixels:
            cand.update(xpos=x, ypos=y)
        return ZtfAlert(
            object_id=f"o{k}",
            candid=(pid or PID) * 10**6 + k,
            ra=150.0 + x * 1.012 / 3600.0 / math.cos(math.radians(20.0)),
            dec=20.0 + y * 1.012 / 3600.0,
            drb=None,
            rb=None,
            isdiffpos=True,
            science=base.science,
            template=base.template,
            difference=base.difference,
            source="memory",
            candidate=cand,
        )

    # pixels, one difference image: one streak of 6
    on = alert_streaks([alert(k, PID, pixels=True) for k in range(6)])
    assert all(s is not None and s.units == "px" and s.n_members == 6 for s in on)
    # no xpos/ypos and no pid: the candid prefix groups them, the tangent plane measures
    sky = alert_streaks([alert(k, None, pixels=False) for k in range(6)])
    assert all(s is not None and s.units == "arcsec" for s in sky)
    assert exposure_key(alert(0, None, pixels=False)) == PID
    # a challenger shadowing the champion sees the same verdict (the same model here, so
    # the same demoted score: without it the shadow score would be 10x larger)
    from astrid.model.score import load_scorer
    from astrid.model.shadow import shadow_score_alerts

    scorer = load_scorer("default")
    rows = shadow_score_alerts(scorer, scorer, [alert(k, PID, pixels=True) for k in range(6)], 1.0)
    for row in rows:
        assert row["streak"] == f"{PID}/0"
        assert row["shadow_score"] == pytest.approx(row["score"], abs=1e-6)
        assert row["score"] == pytest.approx(0.1 * row["model_score"], abs=1e-6)
    # the same positions split over six difference images: no streak
    split = alert_streaks([alert(k, PID + k, pixels=True) for k in range(6)])
    assert split == [None] * 6
    # a real, untouched alert's own stamp: no trail through it
    triplet, _ = prepare_alert(base)
    assert alert_streaks([base], [triplet]) == [None]
