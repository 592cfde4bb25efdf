"""Real alerts as training examples (label sources, weights, nights), the transfer recipe's
splits and a tiny transfer training, and the score's uncertainty."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from astrid.model.alert_streaks import AlertStreak
from astrid.model.drift import stamp_statistics
from astrid.model.examples import DatasetError
from astrid.model.real_alerts import alert_label, build_alert_dataset
from astrid.model.score import load_scorer
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.train import TrainConfig, network_logits
from astrid.model.transfer import (
    balance_real,
    parse_kind_weights,
    split_for_transfer,
    train_transfer,
    weight_kinds,
)
from astrid.model.ztf import ZtfAlert, read_ztf_alert_file

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def alert_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 50 alerts of one night (2458849) plus 6 known-asteroid alerts of other nights."""
    out = tmp_path_factory.mktemp("alerts")
    for f in sorted((shared_data / "ztf_alerts").glob("*.avro")):
        (out / f.name).write_bytes(f.read_bytes())
    train = shared_data / "ztf_alerts_train"
    with (train / "labels.csv").open() as handle:
        rows = [
            r for r in csv.DictReader(handle) if r["ssdistnr"] and 0 <= float(r["ssdistnr"]) <= 5
        ]
    for r in rows[:3] + rows[-3:]:
        (out / f"{r['candid']}.avro").write_bytes((train / f"{r['candid']}.avro").read_bytes())
    return out


@pytest.fixture(scope="module")
def real(alert_dir: Path):
    return build_alert_dataset([alert_dir])


def test_label_sources_and_weights(real, alert_dir: Path) -> None:
    assert len(real) == 56 and real.stamps.shape[1:] == (3, 64, 64)
    assert real.source_counts() == {"drb": 50, "known_asteroid": 6}
    # the builder reads files in sorted path order
    alerts = [a for f in sorted(alert_dir.rglob("*.avro")) for a in read_ztf_alert_file(f)]
    for i, a in enumerate(alerts):
        if real.label_sources[i] == "drb":
            assert real.labels[i] == int(a.drb >= 0.5)
            assert real.weights[i] == pytest.approx(abs(2 * a.drb - 1), abs=1e-6)
        else:
            assert real.labels[i] == 1 and real.weights[i] == 1.0
        assert real.nights[i] == str(math.floor(a.candidate["jd"] - 0.5))
        assert real.groups[i] == f"ztf-{a.object_id}"
    assert set(real.nights) >= {"2458849"} and len(set(real.nights)) >= 2
    # weak labels of either class; reals' masks sit at the centre, bogus masks are empty
    assert set(real.labels[np.array(real.label_sources) == "drb"]) == {0, 1}
    assert real.masks[real.labels == 0].sum() == 0
    assert np.all(real.masks[real.labels == 1][:, 32, 32] == 1)
    # raw-stamp statistics, in ZTF's units, for the model's drift reference
    assert set(real.input_stats) >= {"new_median", "diff_sigma", "nan_fraction"}
    first = alerts[0]
    expect = stamp_statistics(np.stack([first.science, first.template, first.difference])[None])
    for key in ("new_median", "ref_sigma", "diff_sigma"):
        assert len(real.input_stats[key]) == len(real)
        assert real.input_stats[key][0] == pytest.approx(expect[key][0], rel=1e-6)


def test_curated_votes_override_and_filters(alert_dir: Path, real) -> None:
    real_by_drb = [
        a.candid
        for f in sorted(alert_dir.glob("*.avro"))
        for a in read_ztf_alert_file(f)
        if a.drb is not None and a.drb > 0.9
    ]
    ds = build_alert_dataset([alert_dir], curated={real_by_drb[0]: 0}, nights=["2458849"])
    assert len(ds) == 50 and set(ds.nights) == {"2458849"}
    (i,) = np.flatnonzero(np.array(ds.label_sources) == "curated")
    assert ds.labels[i] == 0 and ds.weights[i] == 1.0  # the vote wins over drb > 0.9
    fewer = build_alert_dataset([alert_dir], exclude_objects={f"{real.groups[0][4:]}"})
    assert len(fewer) == 55


def test_nothing_usable_is_a_named_error(alert_dir: Path, real) -> None:
    with pytest.raises(DatasetError, match="no usable alert"):
        build_alert_dataset([alert_dir], exclude_nights=sorted(set(real.nights)))


def test_transfer_split_holds_out_whole_nights(real) -> None:
    sim = build_simulated_dataset(SimulationSpec(n_pairs=5, shape=(160, 160)), seed=5)
    splits = split_for_transfer(sim, real, holdout_nights=["2458849"], val_fraction=0.4)
    assert splits.test_real is not None and set(splits.test_real.nights) == {"2458849"}
    fitting = set(splits.train.nights) | set(splits.val.nights)
    assert "2458849" not in fitting
    assert not (set(splits.train.groups) & set(splits.val.groups))
    assert not (set(splits.test_real.groups) & (set(splits.train.groups) | set(splits.val.groups)))
    assert {"truth", "known_asteroid"} <= set(splits.train.label_sources) | set(
        splits.val.label_sources
    )
    # a tiny warm-startable training on the union; the held-out part is left alone
    cfg = TrainConfig(base_channels=4, epochs=1, max_steps=3, batch_size=16, num_threads=1)
    fitted, calibrator = train_transfer(splits, cfg)
    z = network_logits(fitted.net, splits.test_real.stamps)
    p = calibrator(z)
    assert z.shape == (50,) and np.all((p >= 0) & (p <= 1))
    again, _ = train_transfer(splits, cfg, init_state=fitted.net.state_dict())
    assert again.history and np.isfinite(again.history[0]["train_loss"])
    with pytest.raises(DatasetError, match="no real alert left"):
        split_for_transfer(sim, real, holdout_nights=sorted(set(real.nights)))


def test_balance_real_caps_big_nights_and_lifts_weak_bogus(real) -> None:
    nights = np.asarray(real.nights)
    big = nights == "2458849"  # 50 of the 56 alerts
    out = balance_real(real, night_cap=10, bogus_factor=3.0)
    weak_bogus = np.isin(real.label_sources, ["drb", "rb"]) & (real.labels == 0)
    expected = real.weights * np.where(big, 10 / big.sum(), 1.0) * np.where(weak_bogus, 3.0, 1.0)
    np.testing.assert_allclose(out.weights, expected, rtol=1e-6)
    assert weak_bogus.any() and not np.array_equal(out.weights, real.weights)
    # a night below the cap and exact labels keep their weights; the input is not changed
    small = ~big & ~weak_bogus
    np.testing.assert_allclose(out.weights[small], real.weights[small], rtol=1e-6)
    assert out.meta["balance"] == {"night_cap": 10, "bogus_factor": 3.0}
    assert "balance" not in real.meta and len(out) == len(real)


def test_kind_weights_scale_only_the_named_kinds(real) -> None:
    kinds = np.asarray(real.kinds)
    named = str(kinds[0])
    out = weight_kinds(real, parse_kind_weights([f"{named}=2.5"]))
    expected = real.weights * np.where(kinds == named, 2.5, 1.0)
    np.testing.assert_allclose(out.weights, expected, rtol=1e-6)
    assert out.meta["kind_weights"] == {named: 2.5} and "kind_weights" not in real.meta
    assert parse_kind_weights(["variable=2", " moving = 0.5"]) == {"variable": 2.0, "moving": 0.5}
    for bad in (["variable"], ["=2"], ["variable=two"]):
        with pytest.raises(DatasetError, match="KIND=NUMBER"):
            parse_kind_weights(bad)
    with pytest.raises(DatasetError, match="not in the data"):
        weight_kinds(real, {"no_such_kind": 2.0})
    with pytest.raises(DatasetError, match="positive"):
        weight_kinds(real, {named: 0.0})


def test_uncertainty_from_rotations(real) -> None:
    scorer = load_scorer("default")
    score, spread = scorer.score_with_uncertainty(real.stamps[:16])
    np.testing.assert_allclose(score, scorer.score(real.stamps[:16]), rtol=1e-5, atol=1e-6)
    assert spread.shape == (16,) and np.all((spread >= 0) & (spread <= 0.5))
    assert spread.max() > 0  # the network is not exactly rotation invariant


#: The two satellite trails of training night JD 2460235 (difference images), whose 11
#: pieces ZTF's drb calls real (drb >= 0.9996): docs/model.md "Satellite streaks".
TRAIL_IMAGES = ("2481307462715", "2481324713415")


@pytest.fixture(scope="module")
def trail_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every alert of the two trails' difference images plus the 50 alerts of 2458849."""
    out = tmp_path_factory.mktemp("trails")
    for f in sorted((shared_data / "ztf_alerts").glob("*.avro")):
        (out / f.name).write_bytes(f.read_bytes())
    for f in sorted((shared_data / "ztf_alerts_train").glob("*.avro")):
        if f.stem[:13] in TRAIL_IMAGES:
            (out / f.name).write_bytes(f.read_bytes())
    return out


def test_streak_pieces_are_dropped_with_the_reason(trail_dir: Path) -> None:
    kept = build_alert_dataset([trail_dir], streaks=False)
    pieces = [
        a
        for f in sorted(trail_dir.glob("*.avro"))
        for a in read_ztf_alert_file(f)
        if str(a.candid)[:13] in TRAIL_IMAGES
    ]
    assert len(pieces) == 11 and all(a.drb is not None and a.drb > 0.99 for a in pieces)
    # without the streak test (1.2.0's set) every piece is a drb "real"
    assert kept.meta["skipped"]["on_streak"] == 0 and kept.meta["streak_dropped"] == {}
    clean = build_alert_dataset([trail_dir])
    assert len(clean) == len(kept) - 11
    assert clean.meta["skipped"]["on_streak"] == 11
    dropped = clean.meta["streak_dropped"]
    assert set(dropped) == {str(a.candid) for a in pieces}
    assert {k.split("/")[0] for k in dropped.values()} == set(TRAIL_IMAGES)
    assert not {f"ztf-{a.object_id}" for a in pieces} & set(clean.groups)
    assert clean.version != kept.version
    # the test runs before the filters: dropping one piece's object keeps the rest a trail
    fewer = build_alert_dataset([trail_dir], exclude_objects={pieces[0].object_id})
    assert fewer.meta["skipped"]["on_streak"] == 10 and len(fewer) == len(clean)


def test_streak_verdict_in_the_label() -> None:
    alert = ZtfAlert(
        "ZTF23x", 1, 10.0, 20.0, 0.99, 0.9, True, None, None, None, "x.avro", {"ssdistnr": -999.0}
    )
    group = AlertStreak("1/0", 5, 1e-9, "px")
    trail = AlertStreak("1/stamp", 1, float("nan"), "stamp", 60.0)
    assert alert_label(alert)[:2] == (1, "drb")
    assert alert_label(alert, streak=group) is None  # a dotted trail's piece: no label
    assert alert_label(alert, streak=trail) == (0, "streak", 1.0)  # visible in the stamp
    assert alert_label(alert, {1: 1}, streak=trail) == (1, "curated", 1.0)  # a vote wins
