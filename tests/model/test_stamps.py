"""Stamp normalisation, pad/crop and ZTF alert reading."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.model.stamps import InvalidStampError, fit_stamp, make_triplet, normalise_stamp
from astrid.model.ztf import AlertReadError, alert_triplet, iter_ztf_alerts, read_ztf_alert_file


def test_normalisation_removes_units_and_sky() -> None:
    rng = np.random.default_rng(1)
    stamp = rng.normal(0.0, 1.0, (63, 63))
    stamp[31, 31] += 50.0
    a = normalise_stamp(stamp)
    b = normalise_stamp(37.5 * stamp + 1234.0)  # other gain / zero point / sky
    np.testing.assert_allclose(a, b, atol=1e-4)
    # noise is unit-scaled: robust sigma of the normalised stamp ~ 1 (asinh is ~linear there)
    mad_sigma = 1.4826 * np.median(np.abs(a - np.median(a)))
    assert mad_sigma == pytest.approx(1.0, abs=0.05)
    # a ~50-sigma peak is compressed: 3*asinh(50/3) = 10.5
    assert 9.5 < a[31, 31] < 11.5


def test_nan_pixels_and_nan_filled_stamps() -> None:
    stamp = np.random.default_rng(2).normal(size=(63, 63))
    stamp[:10] = np.nan
    out = normalise_stamp(stamp)
    assert np.all(np.isfinite(out)) and np.all(out[:10] == 0)
    with pytest.raises(InvalidStampError, match="NaN"):
        normalise_stamp(np.full((63, 63), np.nan))


def test_wrong_shapes_are_named_errors() -> None:
    with pytest.raises(InvalidStampError, match="2-D"):
        normalise_stamp(np.zeros((3, 4, 5)))
    with pytest.raises(InvalidStampError, match="square"):
        fit_stamp(np.zeros((63, 60)))
    with pytest.raises(InvalidStampError, match="differ in shape"):
        make_triplet(np.zeros((63, 63)), np.zeros((63, 63)), np.zeros((64, 64)))


def test_fit_stamp_keeps_the_candidate_at_the_centre() -> None:
    small = np.zeros((63, 63))
    small[31, 31] = 1.0
    padded = fit_stamp(small, 64)
    assert padded.shape == (64, 64)
    assert np.unravel_index(np.argmax(padded), padded.shape) == (32, 32)
    assert padded[0].sum() == 0 and padded[:, 0].sum() == 0  # padding goes at the start
    big = np.zeros((71, 71))
    big[35, 35] = 1.0
    cropped = fit_stamp(big, 64)
    assert np.unravel_index(np.argmax(cropped), cropped.shape) == (32, 32)


def test_negative_candidates_are_flipped_positive() -> None:
    rng = np.random.default_rng(3)
    new, ref = rng.normal(size=(2, 64, 64))
    diff = rng.normal(size=(64, 64))
    diff[32, 32] = -40.0
    trip = make_triplet(new, ref, diff, negative=True)
    assert trip.shape == (3, 64, 64) and trip.dtype == np.float32
    assert trip[2, 32, 32] > 5


@pytest.mark.realdata
def test_reads_the_real_ztf_alerts(shared_data) -> None:
    alerts = list(iter_ztf_alerts([shared_data / "ztf_alerts"]))
    assert len(alerts) == 50
    assert len({a.candid for a in alerts}) == 50
    first = alerts[0]
    assert first.science.shape == first.template.shape == first.difference.shape == (63, 63)
    assert 0.0 <= first.drb <= 1.0 and first.object_id.startswith("ZTF")
    trip = alert_triplet(first)
    assert trip.shape == (3, 64, 64) and np.all(np.isfinite(trip))
    # ZTF's difference cutout shows the candidate positive whatever isdiffpos says:
    centre = np.array([alert_triplet(a)[2, 30:35, 30:35].max() for a in alerts])
    assert np.median(centre) > 3.0


def test_bad_alert_files(tmp_path) -> None:
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"not avro at all")
    with pytest.raises(AlertReadError, match="not a readable Avro"):
        read_ztf_alert_file(bad)
    with pytest.raises(AlertReadError, match="no such"):
        read_ztf_alert_file(tmp_path / "missing.avro")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AlertReadError, match=r"no \.avro"):
        list(iter_ztf_alerts([empty]))
