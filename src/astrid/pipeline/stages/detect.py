"""Stage 4, detect: score the candidates and store them as detections with cutouts.

Input: the observation's difference (its candidates, difference image, aligned new image
and reference). Products: a ``Detection`` per candidate (unique by candidate) with its
cutouts, one ``ModelRun`` (inference) and a ``detection.created`` event per detection.
Status: ``differenced → detecting → completed``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.domain.objects import register_detection
from astrid.errors import AstridError
from astrid.model.stamps import InvalidStampError, make_triplet
from astrid.pipeline.params import DetectParams
from astrid.pipeline.runner import Stage, StageContext, stable_hash
from astrid.pipeline.stages.common import (
    STAGE_VERSIONS,
    StageResult,
    begin,
    finish,
    json_safe,
)
from astrid.pipeline.stages.products import read_array, wcs_header
from astrid.pipeline.stages.refcache import reference_pixels
from astrid.pipeline.stages.stamps import store_cutouts
from astrid.runtime import Runtime
from astrid.science.cutouts import stamp, stamp_origin
from astrid.science.streaks import STREAK_DEMOTION, image_streaks
from astrid.store.sky_index import healpix_index
from astrid.store.tables import (
    Candidate,
    Detection,
    Difference,
    ModelRun,
    ObservationStatus,
    Reference,
    utcnow,
)

__all__ = ["DETECT_STAGE", "detect_observation"]

S = ObservationStatus


@lru_cache(maxsize=4)
def _scorer(model: str) -> Any:
    # Imported here: astrid.model.score loads torch (seconds), which only detect needs.
    from astrid.model.score import load_scorer

    return load_scorer(model)


@dataclass
class _Detected:
    rows: list[dict[str, Any]]
    model_version: str
    timings: dict[str, float]


def _compute(ctx: StageContext) -> _Detected:
    inp = ctx.inputs
    p = DetectParams.from_mapping(ctx.params)
    size = p.cutout_size
    t0 = time.perf_counter()
    diff, diff_header = read_array(ctx.runtime, inp["difference_key"])
    new, _ = read_array(ctx.runtime, inp["aligned_new_key"])
    # the difference stage's cached reference when this process holds it (same pixels)
    ref = reference_pixels(ctx.runtime, inp["ref_image"])
    if ref is None:
        ref, _ = read_array(ctx.runtime, inp["ref_image"])
    cands: list[dict[str, Any]] = ctx.payload
    t1 = time.perf_counter()
    use_model = p.model.lower() != "rules"
    scorer = _scorer(p.model) if use_model and cands else None
    model_version = (
        scorer.model_version if scorer is not None else ("rules" if not use_model else p.model)
    )
    triplets: list[np.ndarray] = []
    rows = []
    for c in cands:
        stamps = {
            name: stamp(arr, c["x"], c["y"], size)
            for name, arr in (("new", new), ("ref", ref), ("diff", diff))
        }
        row = dict(c)
        row["stamps"] = stamps
        if scorer is not None:
            try:
                triplets.append(
                    make_triplet(
                        stamps["new"],
                        stamps["ref"],
                        stamps["diff"],
                        size=scorer.size,
                        negative=c["sign"] < 0,
                    )
                )
                row["triplet"] = len(triplets) - 1
            except InvalidStampError as exc:
                row["problem"] = str(exc)
        rows.append(row)
    t2 = time.perf_counter()
    scores: Any = []
    if scorer is not None and triplets:
        from astrid.model.score import intra_op_threads

        with intra_op_threads(1):  # one observation per core: no thread per core in torch
            scores = scorer.score(np.stack(triplets))
    for row in rows:
        if scorer is None:
            row["confidence"] = row.get("score")
        elif "triplet" in row:
            row["confidence"] = float(scores[row.pop("triplet")])
        else:
            row["confidence"] = None
    _demote_streaks(rows, diff.shape)
    t3 = time.perf_counter()
    # The stamps' WCS: the reference grid's, with the reference pixel moved into the stamp.
    grid_wcs = wcs_header(diff_header)
    for row in rows:
        x0, y0 = stamp_origin(row["x"], row["y"], size)
        h = grid_wcs.copy()
        h["CRPIX1"] = grid_wcs["CRPIX1"] - x0
        h["CRPIX2"] = grid_wcs["CRPIX2"] - y0
        row["cutout_keys"] = store_cutouts(ctx.runtime, row.pop("stamps"), h)
    t4 = time.perf_counter()
    timings = {"read_s": t1 - t0, "stamps_s": t2 - t1, "score_s": t3 - t2, "cutouts_s": t4 - t3}
    return _Detected(rows, model_version, timings)


def _demote_streaks(rows: list[dict[str, Any]], shape: tuple[int, ...]) -> None:
    """Candidates on a satellite streak (:func:`astrid.science.streaks.image_streaks`):
    confidence x0.1, the reason in ``problem``, the score before in ``model_score``."""
    if not rows:
        return
    verdicts = image_streaks(
        np.array([r["x"] for r in rows], float),
        np.array([r["y"] for r in rows], float),
        (int(shape[0]), int(shape[1])),
        [(-1.0 if r.get("sign", 1) < 0 else 1.0) * r["stamps"]["diff"] for r in rows],
    )
    for row, why in zip(rows, verdicts, strict=True):
        if why is None:
            continue
        row["model_score"] = row.get("confidence")
        if row.get("confidence") is not None:
            row["confidence"] = float(row["confidence"]) * STREAK_DEMOTION
        row["problem"] = f"{row['problem']}; {why}" if row.get("problem") else why


def _detection(
    row: dict[str, Any], obs_id: int, run_id: int, model_version: str, inp: dict[str, Any]
) -> Detection:
    return Detection(
        candidate_id=row["id"],
        observation_id=obs_id,
        model_run_id=run_id,
        model_version=model_version,
        ra=row["ra"],
        dec=row["dec"],
        healpix=int(healpix_index(row["ra"], row["dec"])),
        mjd=inp.get("mjd"),
        snr=row.get("snr"),
        mag=row.get("mag"),
        confidence=row.get("confidence"),
        cutout_keys=row["cutout_keys"],
        source="pipeline",
        extra=json_safe(
            {
                "rule_score": row.get("score"),
                "sign": row.get("sign"),
                "x": row.get("x"),
                "y": row.get("y"),
                "flags": row.get("flags"),
                "difference_id": inp["difference_id"],
                **({"problem": row["problem"]} if "problem" in row else {}),
                **({"model_score": row["model_score"]} if "model_score" in row else {}),
            }
        ),
    )


def _persist(session: Session, ctx: StageContext, value: _Detected) -> dict[str, Any]:
    inp = ctx.inputs
    obs_id = int(inp["observation_id"])
    run = ModelRun(
        kind="inference",
        status="succeeded",
        params=json_safe(
            {
                "observation_id": obs_id,
                "difference_id": inp["difference_id"],
                "model": ctx.params["model"],
                "model_version": value.model_version,
            }
        ),
        metrics=json_safe({"n_candidates": len(value.rows), "timings": value.timings}),
        finished_at=None,
    )
    session.add(run)
    session.flush()
    created = 0
    for row in value.rows:
        exists = session.scalar(select(Detection.id).where(Detection.candidate_id == row["id"]))
        if exists is not None:
            continue
        det = _detection(row, obs_id, run.id, value.model_version, inp)
        session.add(det)
        session.flush()
        register_detection(session, det, ctx.runtime.settings.curation_object_radius_arcsec)
        event = {
            "observation_id": obs_id,
            "ra": det.ra,
            "dec": det.dec,
            "confidence": det.confidence,
            "snr": det.snr,
            "model_version": det.model_version,
        }
        record_event(session, EventType.DETECTION_CREATED, "detection", det.id, json_safe(event))
        created += 1
    run.finished_at = utcnow()
    run.metrics = {**run.metrics, "n_detections": created}
    return {"model_run_id": run.id, "n_detections": created, "model_version": value.model_version}


DETECT_STAGE: Stage[_Detected] = Stage(
    name="detect",
    version=STAGE_VERSIONS["detect"],
    compute=_compute,
    persist=_persist,
    running_status=S.DETECTING,
    done_status=S.COMPLETED,
)


def detect_observation(
    runtime: Runtime,
    observation_id: int,
    differenced: StageResult,
    params: DetectParams | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Score the candidates and store them as detections with cutouts → ``Detection`` s.

    ``differenced`` is the observation's difference result (``difference_id``). Cuts
    ``cutout_size`` stamps of the aligned new image, the reference and the difference
    around each candidate, scores them with the real/bogus model (calibrated P(real) as
    ``confidence``; ``model = "rules"`` uses the extraction's rule score instead), stores
    the stamps as one FITS blob (``NEW``, ``REF``, ``DIFF`` with WCS) and PNG blobs
    (``cutout_keys``: ``fits``, ``png`` triptych, ``new_png``, ``ref_png``, ``diff_png``).
    ``value``: ``model_run_id``, ``n_detections``, ``model_version`` (or, reused,
    ``difference_id``, ``n_candidates``, ``n_detections``).
    """
    p = params or DetectParams()
    started, obs, skip = begin(runtime, observation_id, "detect")
    if skip is not None:
        return skip
    diff_id = int(differenced.value["difference_id"])
    with runtime.db.session() as session:
        drow = session.get(Difference, diff_id)
        ref = session.get(Reference, drow.reference_id) if drow is not None else None
        if drow is None or ref is None:
            raise AstridError(f"observation {observation_id}: difference {diff_id} vanished")
        cands = [
            {
                "id": c.id,
                "ra": c.ra,
                "dec": c.dec,
                "x": c.x,
                "y": c.y,
                "snr": c.snr,
                "mag": c.mag,
                "score": c.score,
                "flags": c.flags,
                "sign": int((c.features or {}).get("sign") or 1),
            }
            for c in session.scalars(
                select(Candidate).where(Candidate.difference_id == diff_id).order_by(Candidate.id)
            )
        ]
        todo = [
            c
            for c in cands
            if session.scalar(select(Detection.id).where(Detection.candidate_id == c["id"])) is None
        ]
        inputs = {
            "observation_id": observation_id,
            "difference_id": diff_id,
            "difference_key": drow.difference_key,
            "aligned_new_key": (drow.stats or {}).get("aligned_new_key"),
            "ref_image": ref.blob_key,
            "mjd": obs.mjd,
        }
        difference_key = drow.difference_key
    stored = {
        "difference_id": diff_id,
        "n_candidates": len(cands),
        "n_detections": len(cands) - len(todo),
    }
    reused = not todo and (cands or obs.status == S.COMPLETED)
    return finish(
        runtime,
        DETECT_STAGE,
        observation_id,
        stored if reused else None,
        started,
        resume_from=S.DIFFERENCED,
        params=p,
        inputs=inputs,
        input_hash=stable_hash({"difference": difference_key, "todo": [c["id"] for c in todo]}),
        payload=todo,
        rerun_failed=rerun_failed,
    )
