"""Scores per model version: re-scoring with a new champion, shadow A/B, and its summary.

* :func:`score_detections` scores stored detections with one registered version and keeps
  each score in ``shadow_scores`` (one row per detection and version, replaced on re-run);
* :func:`rescore_recent` re-scores the recent detections that the current champion has not
  scored (after a promotion): their ``confidence``/``model_version`` become the champion's,
  and the scanning queue's score follows;
* :func:`shadow_recent` has the challenger score a stable fraction of the recent
  detections (:func:`astrid.model.shadow.in_shadow`, by detection id) beside the champion;
* :func:`shadow_summary` compares two versions on the detections both scored: agreement and
  each one's precision/recall against curated labels
  (:func:`astrid.model.shadow.shadow_agreement`).

Energy per 1,000 scored candidates is measured on every scoring (:mod:`astrid.model.energy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from astrid.model.energy import EnergyMeter, EnergySettings, per_thousand
from astrid.model.examples import DatasetError
from astrid.model.registry import DEFAULT_MODEL_NAME
from astrid.model.score import Scorer, load_scorer
from astrid.model.shadow import in_shadow, shadow_agreement
from astrid.model.stamps import InvalidStampError, make_triplet
from astrid.model.validated import detection_raw_triplet
from astrid.runtime import Runtime
from astrid.store.tables import CurationState, Detection, ShadowScore, utcnow

__all__ = [
    "ScoringReport",
    "energy_settings",
    "rescore_recent",
    "score_detections",
    "shadow_recent",
    "shadow_summary",
]


def energy_settings(runtime: Runtime) -> EnergySettings:
    """The energy measurement configured in settings (``ASTRID_ENERGY_*``)."""
    st = runtime.settings
    return EnergySettings(
        enabled=st.energy_tracking,
        country_iso_code=st.energy_country_iso_code,
        cpu_tdp_w=st.energy_cpu_tdp_w,
        carbon_g_per_kwh=st.energy_carbon_g_per_kwh,
    )


@dataclass
class ScoringReport:
    """What one scoring pass did: ``scored`` ids, ``skipped`` (id → reason), energy."""

    model_version: str
    scored: dict[int, float] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts, not every score)."""
        return {
            "model_version": self.model_version,
            "scored": len(self.scored),
            "skipped": len(self.skipped),
            "skipped_reasons": sorted(set(self.skipped.values()))[:10],
            "energy": self.energy,
        }


def _semver(scorer: Scorer) -> str:
    return scorer.model_version.split("@", 1)[-1]


def score_detections(
    runtime: Runtime,
    scorer: Scorer,
    detection_ids: list[int],
    *,
    model_name: str,
    role: str,
    energy: EnergySettings | None = None,
) -> ScoringReport:
    """Score detections with ``scorer`` and store each score under its version.

    A detection whose stamps are missing or unusable is skipped with the reason; the rest
    go on.
    """
    report = ScoringReport(scorer.model_version)
    ids, stamps = [], []
    with runtime.db.session() as s:
        for det in s.scalars(select(Detection).where(Detection.id.in_(detection_ids))):
            try:
                new, ref, diff = detection_raw_triplet(det.cutout_keys or {}, runtime.blobs)
                negative = bool((det.extra or {}).get("negative", False))
                stamps.append(make_triplet(new, ref, diff, size=scorer.size, negative=negative))
                ids.append(det.id)
            except (DatasetError, InvalidStampError) as exc:
                report.skipped[det.id] = str(exc).split(" (")[0]
    if not ids:
        return report
    with EnergyMeter(energy) as meter:
        scores = scorer.score(np.stack(stamps))
    report.energy = {**meter.result, **per_thousand(meter.result, len(ids))}
    version = _semver(scorer)
    with runtime.db.session() as s:
        s.execute(
            delete(ShadowScore).where(
                ShadowScore.detection_id.in_(ids),
                ShadowScore.model_name == model_name,
                ShadowScore.model_version == version,
            )
        )
        for det_id, score in zip(ids, scores, strict=True):
            s.add(
                ShadowScore(
                    detection_id=det_id,
                    model_name=model_name,
                    model_version=version,
                    role=role,
                    score=float(score),
                )
            )
            report.scored[det_id] = float(score)
    return report


def _recent_ids(runtime: Runtime, days: float, limit: int | None) -> list[int]:
    since = utcnow() - timedelta(days=days)
    with runtime.db.session() as s:
        query = (
            select(Detection.id).where(Detection.created_at >= since).order_by(Detection.id.desc())
        )
        if limit:
            query = query.limit(limit)
        return list(s.scalars(query))


def rescore_recent(
    runtime: Runtime,
    *,
    name: str = DEFAULT_MODEL_NAME,
    days: float = 7.0,
    limit: int | None = None,
    energy: EnergySettings | None = None,
) -> ScoringReport:
    """Re-score the detections of the last ``days`` not yet scored by the champion.

    Their ``confidence`` and ``model_version`` become the champion's (and the scanning
    queue's score, where a curation state exists); the score is also kept per version.
    """
    scorer = load_scorer(
        alias="champion", tracking_uri=runtime.settings.resolved_mlflow_uri, name=name
    )
    with runtime.db.session() as s:
        recent = set(_recent_ids(runtime, days, limit))
        done = set(
            s.scalars(
                select(Detection.id).where(
                    Detection.id.in_(recent), Detection.model_version == scorer.model_version
                )
            )
        )
    todo = sorted(recent - done)
    report = score_detections(
        runtime, scorer, todo, model_name=name, role="champion", energy=energy
    )
    with runtime.db.session() as s:
        for det_id, score in report.scored.items():
            det = s.get_one(Detection, det_id)
            det.confidence, det.model_version = score, scorer.model_version
            state = s.get(CurationState, det_id)
            if state is not None:
                state.score = score
    return report


def shadow_recent(
    runtime: Runtime,
    *,
    name: str = DEFAULT_MODEL_NAME,
    fraction: float | None = None,
    days: float = 7.0,
    limit: int | None = None,
    energy: EnergySettings | None = None,
) -> dict[str, Any]:
    """Champion and challenger score the same ``fraction`` of the recent detections."""
    uri = runtime.settings.resolved_mlflow_uri
    frac = runtime.settings.model_shadow_fraction if fraction is None else fraction
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"shadow fraction {frac} is not between 0 and 1")
    champion = load_scorer(alias="champion", tracking_uri=uri, name=name)
    challenger = load_scorer(alias="challenger", tracking_uri=uri, name=name)
    chosen = [i for i in _recent_ids(runtime, days, limit) if in_shadow(i, frac)]
    a = score_detections(runtime, champion, chosen, model_name=name, role="champion", energy=energy)
    b = score_detections(
        runtime, challenger, chosen, model_name=name, role="challenger", energy=energy
    )
    return {
        "fraction": frac,
        "chosen": len(chosen),
        "champion": a.as_dict(),
        "challenger": b.as_dict(),
    }


def _curated_labels(session: Any, ids: list[int]) -> dict[int, int]:
    labels: dict[int, int] = {}
    for det_id, label in session.execute(
        select(CurationState.detection_id, CurationState.label).where(
            CurationState.detection_id.in_(ids), CurationState.label.in_(["real", "bogus"])
        )
    ):
        labels[int(det_id)] = int(label == "real")
    for det_id, label in session.execute(
        select(Detection.id, Detection.label).where(
            Detection.id.in_(ids), Detection.label.in_(["real", "bogus"])
        )
    ):
        labels.setdefault(int(det_id), int(label == "real"))
    return labels


def shadow_summary(
    runtime: Runtime, name: str, champion: str, challenger: str, threshold: float = 0.5
) -> dict[str, Any]:
    """Agreement of two versions (semantic versions) on the detections both scored, and
    each one's precision/recall against the curated labels of those detections."""
    with runtime.db.session() as s:
        rows: dict[int, dict[str, Any]] = {}
        for version, key in ((champion, "score"), (challenger, "shadow_score")):
            for det_id, score in s.execute(
                select(ShadowScore.detection_id, ShadowScore.score).where(
                    ShadowScore.model_name == name, ShadowScore.model_version == version
                )
            ):
                rows.setdefault(int(det_id), {"candid": int(det_id)})[key] = float(score)
        labels = _curated_labels(s, list(rows))
        counts = {
            "champion_scored": sum("score" in r for r in rows.values()),
            "challenger_scored": sum("shadow_score" in r for r in rows.values()),
        }
    summary = shadow_agreement(list(rows.values()), labels, threshold)
    summary.setdefault("n_labelled", sum(1 for r in rows if r in labels))
    return {
        "champion": champion,
        "challenger": challenger,
        "threshold": threshold,
        **counts,
        **summary,
    }
