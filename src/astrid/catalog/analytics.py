"""Catalog analytics: discoveries per night and class, scanning throughput per curator,
inter-curator agreement (Cohen's and Fleiss' kappa) and the model's precision and recall
against curated labels over time.

Everything is read from the curation tables; the statistics use scikit-learn
(``cohen_kappa_score``, ``precision_score``, ``recall_score``) and, for Fleiss' kappa with a
varying number of raters per detection, the formula of Fleiss (1971) in numpy.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
from astropy.time import Time
from sklearn.metrics import cohen_kappa_score, precision_score, recall_score
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.store.auth_tables import User
from astrid.store.tables import (
    CurationState,
    Detection,
    Discovery,
    SkyObject,
    Vote,
)

__all__ = [
    "agreement",
    "discoveries_per_night",
    "fleiss_kappa",
    "model_performance",
    "night_of",
    "scanning_throughput",
]

DECISIVE = ("real", "bogus")


def night_of(mjd: float | None) -> str | None:
    """The UTC date (``YYYY-MM-DD``) of the night an MJD falls in (noon-to-noon UTC)."""
    if mjd is None or not math.isfinite(mjd):
        return None
    return str(Time(mjd - 0.5, format="mjd").to_datetime(timezone=UTC).date())


def discoveries_per_night(session: Session) -> list[dict[str, Any]]:
    """Discoveries grouped by the night of their object's first detection and by class."""
    counts: Counter[tuple[str | None, str]] = Counter()
    rows = session.execute(
        select(Discovery.classification, SkyObject.classification, SkyObject.first_mjd)
        .join(SkyObject, SkyObject.id == Discovery.object_id)
        .where(Discovery.status != "retracted")
    )
    for disc_cls, obj_cls, mjd in rows:
        counts[(night_of(mjd), disc_cls or obj_cls or "unclassified")] += 1
    return [
        {"night": night, "classification": cls, "count": n}
        for (night, cls), n in sorted(counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    ]


def scanning_throughput(session: Session) -> list[dict[str, Any]]:
    """Votes per curator per UTC day, with the rate over that day's scanning span."""
    by_user_day: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    names: dict[int, str] = dict(session.execute(select(User.id, User.username)).all())
    for user_id, created in session.execute(select(Vote.user_id, Vote.created_at)):
        at = created if created.tzinfo else created.replace(tzinfo=UTC)
        by_user_day[(int(user_id), at.date().isoformat())].append(at)
    out = []
    for (user_id, day), times in sorted(by_user_day.items()):
        times.sort()
        span_h = (times[-1] - times[0]).total_seconds() / 3600
        out.append(
            {
                "user_id": user_id,
                "username": names.get(user_id),
                "day": day,
                "votes": len(times),
                "votes_per_hour": round(len(times) / span_h, 2) if span_h > 0 else None,
            }
        )
    return out


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an (items, categories) matrix of rating counts.

    Items may have different numbers of raters (each at least two); returns None when
    undefined (no items, or every rating in one category).
    """
    counts = np.asarray(counts, dtype=float)
    n_i = counts.sum(axis=1)
    counts = counts[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if counts.size == 0:
        return None
    p_j = counts.sum(axis=0) / n_i.sum()
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar, p_e = float(p_i.mean()), float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1 - p_e)


def _kappa(a: list[str], b: list[str]) -> float | None:
    value = float(cohen_kappa_score(a, b, labels=list(DECISIVE)))
    return value if math.isfinite(value) else None


def agreement(session: Session, min_common: int = 2) -> dict[str, Any]:
    """Inter-curator agreement on real/bogus over the active votes (skips excluded).

    Returns Fleiss' kappa over every detection with two or more votes, and Cohen's kappa for
    each pair of curators with at least ``min_common`` detections in common.
    """
    votes: dict[int, dict[int, str]] = defaultdict(dict)
    for det_id, user_id, label in session.execute(
        select(Vote.detection_id, Vote.user_id, Vote.label).where(
            Vote.state == "active", Vote.label.in_(DECISIVE)
        )
    ):
        votes[int(det_id)][int(user_id)] = label
    multi = {d: v for d, v in votes.items() if len(v) >= 2}
    matrix = np.array(
        [[sum(1 for x in v.values() if x == c) for c in DECISIVE] for v in multi.values()]
    ).reshape(-1, len(DECISIVE))
    names = dict(session.execute(select(User.id, User.username)).all())
    users = sorted({u for v in votes.values() for u in v})
    pairs = []
    for u1, u2 in itertools.combinations(users, 2):
        common = [d for d, v in votes.items() if u1 in v and u2 in v]
        if len(common) < min_common:
            continue
        a = [votes[d][u1] for d in common]
        b = [votes[d][u2] for d in common]
        pairs.append(
            {
                "users": [names.get(u1, str(u1)), names.get(u2, str(u2))],
                "n": len(common),
                "agree": sum(x == y for x, y in zip(a, b, strict=True)),
                "cohen_kappa": _kappa(a, b),
            }
        )
    return {"n_items": len(multi), "fleiss_kappa": fleiss_kappa(matrix), "pairs": pairs}


def model_performance(session: Session, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Precision and recall of ``confidence >= threshold`` against curated labels, per night.

    Curated labels are the decided ``real``/``bogus`` of the curation state (consensus or
    expert); undecided detections and unscored ones are left out.
    """
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    rows = session.execute(
        select(Detection.mjd, Detection.confidence, CurationState.label)
        .join(CurationState, CurationState.detection_id == Detection.id)
        .where(CurationState.label.in_(DECISIVE), Detection.confidence.is_not(None))
    )
    for mjd, confidence, label in rows:
        truth, pred = groups[night_of(mjd) or "unknown"]
        truth.append(int(label == "real"))
        pred.append(int(confidence is not None and confidence >= threshold))
    out = []
    for night, (truth, pred) in sorted(groups.items()):
        y, p = np.array(truth), np.array(pred)
        out.append(
            {
                "night": night,
                "n": len(y),
                "tp": int(((y == 1) & (p == 1)).sum()),
                "fp": int(((y == 0) & (p == 1)).sum()),
                "fn": int(((y == 1) & (p == 0)).sum()),
                "precision": float(precision_score(y, p, zero_division=0)),
                "recall": float(recall_score(y, p, zero_division=0)),
            }
        )
    return out
