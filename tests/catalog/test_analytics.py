"""Analytics against hand-computed and published values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from astrid.catalog.analytics import (
    agreement,
    discoveries_per_night,
    fleiss_kappa,
    model_performance,
    night_of,
    scanning_throughput,
)
from astrid.runtime import Runtime
from astrid.store.auth_tables import User
from astrid.store.tables import CurationState, Detection, Discovery, Vote
from tests.catalog.factory import make_object


def test_fleiss_kappa_matches_fleiss_1971_worked_example() -> None:
    # The 10 subjects x 5 categories, 14 raters example (Wikipedia "Fleiss' kappa"): 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None  # all in one category
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)


def test_night_is_noon_to_noon_utc() -> None:
    assert night_of(60000.0) == "2023-02-24"  # MJD 60000 = 2023-02-25 00:00 UTC
    assert night_of(60000.6) == "2023-02-25"
    assert night_of(None) is None


def _vote(s: Session, det: int, user: int, label: str, at: datetime) -> None:
    s.add(Vote(detection_id=det, user_id=user, role="curator", label=label, created_at=at))


def test_agreement_throughput_performance_and_discoveries(runtime: Runtime) -> None:
    t0 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    with runtime.db.session() as s:
        a, b, c = (User(username=n, role="curator") for n in ("ann", "bob", "cy"))
        s.add_all([a, b, c])
        obj = make_object(
            s, 10.0, 10.0, mjds=(60000.7, 60000.8, 60000.9, 60001.7), mags=(19.0,) * 4
        )
        s.add(Discovery(object_id=obj.id, classification="transient/supernova"))
        s.flush()
        dets = [d.id for d in s.query(Detection).order_by(Detection.id)]
        for i, (la, lb) in enumerate(
            [("real", "real"), ("real", "bogus"), ("bogus", "bogus"), ("bogus", "bogus")]
        ):
            _vote(s, dets[i], a.id, la, t0 + timedelta(minutes=2 * i))
            _vote(s, dets[i], b.id, lb, t0 + timedelta(minutes=3 * i))
        _vote(s, dets[0], c.id, "skip", t0)
        confidences = [0.9, 0.3, 0.8, 0.1]
        labels = ["real", "real", "bogus", "bogus"]
        for det_id, conf, label in zip(dets, confidences, labels, strict=True):
            s.get(Detection, det_id).confidence = conf  # type: ignore[union-attr]
            s.add(CurationState(detection_id=det_id, state="consensus", label=label, score=conf))
    with runtime.db.session() as s:
        agree = agreement(s)
        perf = model_performance(s)
        through = scanning_throughput(s)
        nights = discoveries_per_night(s)
    # ann: r r b b, bob: r b b b -> po = 3/4, pe = 1/2 -> Cohen's kappa = 1/2.
    assert agree["pairs"] == [
        {"users": ["ann", "bob"], "n": 4, "agree": 3, "cohen_kappa": pytest.approx(0.5)}
    ]
    # Fleiss over the same 4 items: P = 3/4, p_real = 3/8 -> Pe = 34/64 -> (0.75-0.53125)/0.46875
    assert agree["n_items"] == 4
    assert agree["fleiss_kappa"] == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    # confidence >= 0.5 vs labels: night 1 (3 detections): tp=1, fp=1, fn=1; night 2: tn only.
    assert [(p["night"], p["tp"], p["fp"], p["fn"]) for p in perf] == [
        ("2023-02-25", 1, 1, 1),
        ("2023-02-26", 0, 0, 0),
    ]
    assert perf[0]["precision"] == pytest.approx(0.5) and perf[0]["recall"] == pytest.approx(0.5)
    ann = next(t for t in through if t["username"] == "ann")
    assert ann["votes"] == 4 and ann["votes_per_hour"] == pytest.approx(4 / 0.1)  # 6 minutes
    assert next(t for t in through if t["username"] == "cy")["votes_per_hour"] is None
    assert nights == [{"night": "2023-02-25", "classification": "transient/supernova", "count": 1}]
