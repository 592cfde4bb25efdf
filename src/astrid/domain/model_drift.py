"""The drift job: per-night PSI of scores and inputs against the champion's training set.

For each night (``floor(mjd - 0.5)``, as for alerts) with detections, :func:`check_drift`
computes the population stability index (:mod:`astrid.model.drift`) of

* the detections' scores (``confidence``) and
* their input statistics (robust sky and noise of the new, reference and difference
  stamps, NaN fraction; :func:`astrid.model.drift.stamp_statistics` on the raw stamps),

against the reference kept in the champion's package (``drift_reference``: its scores on its
validation set and the statistics of its raw training stamps, written by ``astrid train``
(:func:`astrid.model.training_run.run_training`) and by :func:`astrid.domain.retrain.retrain`).
A champion that also keeps one reference per input source (``drift_reference_by_source``,
e.g. ``pipeline`` for AstrID's own difference stamps and ``alert`` for survey alerts, whose
units and populations differ) is checked per source: a night's detections of each source
with a reference of its own are compared with that reference alone, and their quantities are
named ``<source>.<quantity>`` (``alert.score``); a source without one is not checked.
Each night's result is a ``drift_checks`` row; when any PSI exceeds the threshold
(``ASTRID_MODEL_DRIFT_THRESHOLD``, default 0.25) the event ``model.drift`` is written
to the outbox in the same transaction.

Bins are quantiles of the reference, ``min(10, n // 10)`` of them for a night of ``n``
detections (at least 2), so each holds about ten of the night's: with 10 bins and 40
detections, sampling noise alone (and the floor of empty bins) reads as drift.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import func, select

from astrid.domain.events import EventType, record_event
from astrid.errors import AstridError
from astrid.model.drift import drift_report, stamp_statistics
from astrid.model.examples import DatasetError
from astrid.model.registry import DEFAULT_MODEL_NAME, LoadedModel, load_registered
from astrid.model.validated import detection_raw_triplet
from astrid.runtime import Runtime
from astrid.store.tables import Detection, DriftCheck

__all__ = ["DriftReferenceError", "check_drift", "drift_history"]

#: Fewest detections a night needs for its PSI to mean anything.
MIN_PER_NIGHT = 20


class DriftReferenceError(AstridError):
    """The champion carries no training reference to compare against."""


def _night_bounds(night: str) -> tuple[float, float]:
    start = int(night) + 0.5
    return start, start + 1.0


def _references(model: LoadedModel) -> dict[str | None, dict[str, np.ndarray]]:
    """The champion's references: ``{source: reference}``, or ``{None: reference}`` (one
    for every detection) for a model that keeps no per-source ones."""
    by_source = model.config.get("drift_reference_by_source") or {}
    ref = by_source or {None: model.config.get("drift_reference")}
    out: dict[str | None, dict[str, np.ndarray]] = {}
    for source, sample in ref.items():
        arrays = {k: np.asarray(v, np.float64) for k, v in (sample or {}).items() if len(v)}
        if arrays:
            out[source] = arrays
    if not out:
        raise DriftReferenceError(
            f"champion {model.version} has no drift reference",
            hint="models trained before drift references existed have none: train one with "
            "`astrid train` or retrain it with `astrid model retrain` (both store one)",
        )
    return out


def _night_sample(
    runtime: Runtime, night: str, source: str | None
) -> tuple[int, dict[str, np.ndarray]]:
    """Scores and raw-stamp statistics of a night's detections (of ``source``, or all)."""
    lo, hi = _night_bounds(night)
    query = select(Detection).where(Detection.mjd >= lo, Detection.mjd < hi)
    if source is not None:
        query = query.where(Detection.source == source)
    scores, stats = [], []
    with runtime.db.session() as s:
        for det in s.scalars(query):
            if det.confidence is not None:
                scores.append(float(det.confidence))
            try:
                trip = detection_raw_triplet(det.cutout_keys or {}, runtime.blobs)
            except DatasetError:
                continue
            stats.append(stamp_statistics(np.stack(trip)[None]))
    sample: dict[str, np.ndarray] = {"score": np.asarray(scores)}
    if stats:
        for key in stats[0]:
            sample[key] = np.concatenate([st[key] for st in stats])
    n = max(len(scores), len(stats))
    return n, {k: v for k, v in sample.items() if len(v)}


def _night_psi(
    runtime: Runtime,
    night: str,
    references: dict[str | None, dict[str, np.ndarray]],
    say: Any,
) -> tuple[int, dict[str, float]]:
    """Detections checked and PSI per quantity of one night (prefixed by source when the
    references are per source); sources with too few detections are left out."""
    total, psi = 0, {}
    for source, reference in references.items():
        n, sample = _night_sample(runtime, night, source)
        what = "detections" if source is None else f"{source} detections"
        if n < MIN_PER_NIGHT:
            say(f"night {night}: {n} {what}, fewer than {MIN_PER_NIGHT}: not checked")
            continue
        # about 10 of the night's detections per bin: fewer, and sampling noise alone (and
        # the floor of empty bins) would push the PSI over the threshold
        bins = max(2, min(10, n // 10))
        prefix = "" if source is None else f"{source}."
        report = drift_report(reference, sample, bins=bins)
        psi.update({f"{prefix}{k}": round(v, 6) for k, v in report.psi.items()})
        total += n
    return total, psi


def _recent_nights(runtime: Runtime, nights: int) -> list[str]:
    with runtime.db.session() as s:
        last = s.scalar(select(func.max(Detection.mjd)))
    if last is None:
        return []
    top = int(math.floor(float(last) - 0.5))
    return [str(top - k) for k in range(nights)][::-1]


def check_drift(
    runtime: Runtime,
    *,
    name: str = DEFAULT_MODEL_NAME,
    nights: list[str] | None = None,
    last_nights: int = 1,
    threshold: float | None = None,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Check ``nights`` (default: the ``last_nights`` up to the latest detection); one
    ``drift_checks`` row per night with at least :data:`MIN_PER_NIGHT` detections, and a
    ``model.drift`` event for each that drifted. Returns the rows as dicts."""
    say = log or (lambda line: None)
    limit = runtime.settings.model_drift_threshold if threshold is None else threshold
    champion = load_registered(runtime.settings.resolved_mlflow_uri, "champion", name)
    references = _references(champion)
    version = champion.version.split("@", 1)[-1]
    out = []
    for night in nights or _recent_nights(runtime, last_nights):
        n, psi = _night_psi(runtime, str(night), references, say)
        if not psi:
            continue
        drifted = sorted(k for k, v in psi.items() if v > limit)
        with runtime.db.session() as s:
            row = DriftCheck(
                model_name=name,
                model_version=version,
                night=str(night),
                n=n,
                psi=psi,
                max_psi=max(psi.values()),
                threshold=limit,
                drifted=bool(drifted),
            )
            s.add(row)
            s.flush()
            if drifted:
                record_event(
                    s,
                    EventType.MODEL_DRIFT,
                    "model",
                    row.id,
                    {
                        "model": name,
                        "version": version,
                        "night": str(night),
                        "quantities": drifted,
                        "psi": {k: psi[k] for k in drifted},
                        "threshold": limit,
                    },
                )
            out.append(_as_dict(row))
        say(f"night {night}: n={n} max PSI {row.max_psi:.3f}; drifted: {drifted or 'none'}")
    return out


def _as_dict(row: DriftCheck) -> dict[str, Any]:
    return {
        "id": row.id,
        "model_version": row.model_version,
        "night": row.night,
        "n": row.n,
        "psi": dict(row.psi),
        "max_psi": row.max_psi,
        "threshold": row.threshold,
        "drifted": row.drifted,
        "checked_at": row.created_at.isoformat() if row.created_at else None,
    }


def drift_history(runtime: Runtime, name: str, limit: int = 30) -> list[dict[str, Any]]:
    """The latest drift checks of a model, newest first."""
    with runtime.db.session() as s:
        rows = s.scalars(
            select(DriftCheck)
            .where(DriftCheck.model_name == name)
            .order_by(DriftCheck.id.desc())
            .limit(limit)
        )
        return [_as_dict(r) for r in rows]
