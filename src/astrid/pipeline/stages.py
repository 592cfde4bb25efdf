"""The pipeline's data path in one readable place: one function per stage.

For one observation::

    preprocess ─→ reference ─→ difference (+ extract) ─→ detect (score, cutouts, detections)
    ingested → preprocessing → preprocessed → differencing → differenced → detecting → completed

Every stage is a function ``stage(runtime, observation_id, params=None) -> StageResult`` that

* resolves its inputs by calling the stage before it (which answers at once, ``reused``,
  when its product is already stored), so ``detect(runtime, obs_id)`` alone runs the chain;
* is **idempotent** by ``(input content hashes, stage version, parameters)``: their sha256
  (:func:`identity_hash`) is the ``params_hash`` of the product row, whose unique
  constraint (``PreprocessResult (observation, params_hash)``, ``Difference (observation,
  reference, method, params_hash)``, ``Detection (candidate)``) holds at most one product;
  a stored product is returned without recomputing;
* runs through the stage runner (:func:`astrid.pipeline.runs.run_stage`): the heavy part
  (``compute``: read blobs, science, write content-addressed blobs) runs outside any
  transaction, the rows, the status change and the domain events are written in one
  transaction; transient failures are retried, permanent ones **park** the observation
  as ``failed`` with the reason (``astrid status`` lists parked runs);
* moves the observation through its status machine with
  :meth:`~astrid.domain.observations.ObservationService.apply_transition` and records its
  timings (in the product row and in the stage run).

Stage parameters are one mapping with a section per stage (:data:`DEFAULT_PARAMS`); a
missing section or key takes the default. The science is in :mod:`astrid.science`
(quality, difference, extract) and :mod:`astrid.model.score`; this module only moves data.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.domain.objects import register_detection
from astrid.domain.observations import NotFoundError, ObservationService
from astrid.domain.status import ALLOWED_TRANSITIONS
from astrid.errors import AstridError
from astrid.pipeline.runs import Stage, StageContext, StageOutcome, run_stage, stable_hash
from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import (
    Candidate,
    Detection,
    Difference,
    ModelRun,
    Observation,
    ObservationStatus,
    PreprocessResult,
    Reference,
)

__all__ = [
    "DEFAULT_PARAMS",
    "STAGES",
    "STAGE_VERSIONS",
    "LowQualityError",
    "StageResult",
    "advance_status",
    "detect",
    "difference",
    "identity_hash",
    "merge_params",
    "preprocess",
    "reference",
]

S = ObservationStatus

#: Bump a stage's version when its output changes: stored products of older versions are
#: then not reused.
STAGE_VERSIONS: dict[str, str] = {
    "preprocess": "1",
    "reference": "1",
    "difference": "1",
    "detect": "1",
}

#: Parameters of every stage; ``merge_params`` fills what a caller leaves out.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # detect_cosmics: L.A.Cosmic mask; min_quality: refuse images scoring below it (0-1).
    "preprocess": {"detect_cosmics": True, "min_quality": 0.05},
    # max_offset: largest centre distance to a reference, in units of the image's
    # centre-to-corner radius (a pre-filter); min_overlap: smallest fraction of the new
    # image the reference must cover; min_quality: references must score at least this.
    "reference": {"max_offset": 0.5, "min_overlap": 0.5, "min_quality": 0.2},
    # method: zogy | classic; threshold: detection threshold on the score map, sigma.
    "difference": {"method": "zogy", "threshold": 5.0},
    # model: "default", a model package folder, or "rules" (the extraction's rule score);
    # cutout_size: side of the stored cutouts in pixels (odd).
    "detect": {"model": "default", "cutout_size": 63},
}


class LowQualityError(AstridError):
    """The image's quality score is below the preprocess stage's ``min_quality``."""


@dataclass(frozen=True)
class StageResult:
    """What one stage call did for one observation.

    Attributes
    ----------
    stage : str
        Stage name.
    observation_id : int
        The observation.
    status : str
        ``"done"`` (computed now), ``"reused"`` (already stored), ``"skipped"`` (nothing to
        do, e.g. no earlier image to use as reference, or the observation is failed) or
        ``"failed"`` (parked; ``error`` says why).
    value : dict
        Small JSON result (ids of the products, counts).
    duration_s : float
        Wall time of this call, seconds.
    error : str, optional
        Reason of a failure or of a skip.
    """

    stage: str
    observation_id: int
    status: str
    value: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the stage's product exists (done or reused)."""
        return self.status in ("done", "reused")


# --------------------------------------------------------------------------- helpers


def merge_params(params: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The full parameter set: :data:`DEFAULT_PARAMS` updated section by section."""
    out = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    for section, values in (params or {}).items():
        if section not in out:
            raise AstridError(
                f"unknown pipeline parameter section {section!r}",
                hint=f"sections are: {', '.join(out)}",
            )
        unknown = set(values) - set(out[section])
        if unknown:
            raise AstridError(
                f"unknown {section} parameter(s): {', '.join(sorted(unknown))}",
                hint=f"{section} takes: {', '.join(out[section])}",
            )
        out[section].update(values)
    return out


def identity_hash(stage: str, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """sha256 of (stage, stage version, parameters, input content hashes).

    Stored as the product row's ``params_hash``: the same inputs and parameters under the
    same stage version always map to the same row.
    """
    return stable_hash(
        {
            "stage": stage,
            "version": STAGE_VERSIONS[stage],
            "params": dict(params),
            "inputs": dict(inputs),
        }
    )


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


_CHAIN = (
    S.INGESTED,
    S.PREPROCESSING,
    S.PREPROCESSED,
    S.DIFFERENCING,
    S.DIFFERENCED,
    S.DETECTING,
    S.COMPLETED,
)


def advance_status(session: Session, obs: Observation, target: S, reason: str) -> None:
    """Walk ``obs`` forward along the status chain until it is ``target``.

    Used when a stage's product already exists (a retried or re-run observation): every
    step is a checked transition with its event. ``completed`` continues at
    ``preprocessing`` (a re-run). Failed and archived observations are not moved.
    """
    for _ in range(2 * len(_CHAIN)):
        current = S(obs.status)
        if current == target or current in (S.FAILED, S.ARCHIVED):
            return
        nxt = S.PREPROCESSING if current == S.COMPLETED else _CHAIN[_CHAIN.index(current) + 1]
        ObservationService.apply_transition(session, obs, nxt, reason)


def _behind(status: S, target: S) -> bool:
    return status in _CHAIN and _CHAIN.index(status) < _CHAIN.index(target)


@dataclass(frozen=True)
class _Obs:
    """A detached snapshot of the observation fields the stages use."""

    id: int
    survey_id: int
    content_hash: str
    blob_key: str
    hdu_index: int
    ra: float
    dec: float
    mjd: float | None
    filter: str | None
    width: int
    height: int
    pixel_scale: float | None
    footprint: list[Any]
    status: S
    status_reason: str | None


def _snapshot(runtime: Runtime, observation_id: int) -> _Obs:
    with runtime.require_migrated().session() as session:
        obs = session.get(Observation, observation_id)
        if obs is None:
            raise NotFoundError(f"no observation with id {observation_id}")
        return _Obs(
            obs.id,
            obs.survey_id,
            obs.content_hash,
            obs.blob_key,
            obs.hdu_index,
            obs.ra,
            obs.dec,
            obs.mjd,
            obs.filter,
            obs.width,
            obs.height,
            obs.pixel_scale,
            list(obs.footprint or []),
            S(obs.status),
            obs.status_reason,
        )


def _inactive(obs: _Obs, stage: str, started: float) -> StageResult | None:
    if obs.status in (S.FAILED, S.ARCHIVED):
        why = f"observation is {obs.status.value}" + (
            f": {obs.status_reason}" if obs.status_reason else ""
        )
        return StageResult(stage, obs.id, "skipped", {}, time.perf_counter() - started, why)
    return None


def _reuse(
    runtime: Runtime, obs_id: int, done: S, stage: str, value: dict[str, Any], started: float
) -> StageResult:
    """A stored product: bring the observation's status up to ``done`` if it lags."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is not None and _behind(S(obs.status), done):
            advance_status(session, obs, done, f"{stage}: stored result reused")
    return StageResult(stage, obs_id, "reused", value, time.perf_counter() - started)


def _ready_for(runtime: Runtime, obs_id: int, before: S, running: S) -> None:
    """Make the stage runner's first move (to ``running``) legal, walking to ``before``."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is None:
            return
        current = S(obs.status)
        if current != running and running not in ALLOWED_TRANSITIONS[current]:
            advance_status(session, obs, before, "resumed")


def _from_outcome(stage: str, obs_id: int, outcome: StageOutcome, started: float) -> StageResult:
    status = ("reused" if outcome.reused else "done") if outcome.ok else "failed"
    return StageResult(
        stage, obs_id, status, dict(outcome.result), time.perf_counter() - started, outcome.error
    )


def _park(runtime: Runtime, obs_id: int, reason: str) -> None:
    """Move an observation to ``failed`` with ``reason`` (stages without their own status)."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is not None and S(obs.status) not in (S.FAILED, S.ARCHIVED):
            ObservationService.apply_transition(session, obs, S.FAILED, reason)


# --------------------------------------------------------------------------- FITS blobs


def _fits_bytes(
    data: np.ndarray, header: fits.Header | None = None, extra: Mapping[str, Any] | None = None
) -> bytes:
    hdr = fits.Header() if header is None else header.copy()
    hdr.strip()  # layout keywords (SIMPLE, BITPIX, NAXISn, EXTEND, CHECKSUM...) are rewritten
    for key in ("BZERO", "BSCALE", "EXTNAME"):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    for key, value in (extra or {}).items():
        hdr[key] = value
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
    return buf.getvalue()


def _read_array(runtime: Runtime, key: str) -> tuple[np.ndarray, fits.Header]:
    with fits.open(io.BytesIO(runtime.blobs.get(key))) as hdul:
        return np.array(hdul[0].data), hdul[0].header.copy()


def _extension(hdul: fits.HDUList, name: str) -> np.ndarray | None:
    for hdu in hdul[1:]:
        if hdu.name == name and hdu.data is not None and np.ndim(hdu.data) == 2:
            return np.array(hdu.data)
    return None


def _wcs_header(header: fits.Header) -> fits.Header:
    from astrid.science.fitsio import celestial_wcs

    return celestial_wcs(header).to_header(relax=True)


# --------------------------------------------------------------------------- preprocess


@dataclass
class _Preprocessed:
    image_key: str
    variance_key: str
    mask_key: str
    quality: dict[str, Any]
    timings: dict[str, float]


def _preprocess_compute(ctx: StageContext) -> _Preprocessed:
    from astrid.science.fitsio import read_image
    from astrid.science.preprocess import preprocess as preprocess_image

    obs: _Obs = ctx.payload
    p = ctx.params
    blobs = ctx.runtime.blobs
    t0 = time.perf_counter()
    raw = blobs.get(obs.blob_key)
    image = read_image(raw)
    with fits.open(io.BytesIO(raw)) as hdul:
        file_mask = _extension(hdul, "MASK")
        file_var = _extension(hdul, "VARIANCE")
    shape = image.data.shape
    known = file_mask.astype(bool) if file_mask is not None and file_mask.shape == shape else None
    variance = file_var if file_var is not None and file_var.shape == shape else None
    t1 = time.perf_counter()
    # Calibration frames are not applied yet (the demo and survey images come reduced);
    # the image stays on its own grid: the difference stage aligns it onto the reference.
    res = preprocess_image(
        image, variance=variance, mask=known, detect_cosmics=bool(p["detect_cosmics"])
    )
    t2 = time.perf_counter()
    quality = _clean(res.quality.as_dict())
    if res.quality.score < float(p["min_quality"]):
        terms = ", ".join(f"{k}={v:.2f}" for k, v in res.quality.score_terms.items())
        raise LowQualityError(
            f"image quality score {res.quality.score:.3f} is below {p['min_quality']} ({terms})",
            hint="inspect the image; lower preprocess.min_quality to process it anyway",
        )
    tag = {"ASTRIDST": ("preprocess", "AstrID stage"), "ASTRIDOB": (obs.id, "observation id")}
    wcs_header = _wcs_header(image.header)
    image_key = blobs.put(_fits_bytes(res.image.astype(np.float32), image.header, tag))
    variance_key = blobs.put(_fits_bytes(res.variance.astype(np.float32), wcs_header, tag))
    mask_key = blobs.put(_fits_bytes(res.mask.astype(np.uint8), wcs_header, tag))
    t3 = time.perf_counter()
    timings = {
        "read_s": t1 - t0,
        **{f"{k}_s": v for k, v in res.timings.items()},
        "write_s": t3 - t2,
        "total_s": t3 - t0,
    }
    return _Preprocessed(image_key, variance_key, mask_key, quality, timings)


def _preprocess_persist(
    session: Session, ctx: StageContext, value: _Preprocessed
) -> dict[str, Any]:
    obs: _Obs = ctx.payload
    ident = ctx.inputs["identity"]
    row = session.scalar(
        select(PreprocessResult).where(
            PreprocessResult.observation_id == obs.id, PreprocessResult.params_hash == ident
        )
    )
    if row is None:
        q = value.quality
        row = PreprocessResult(
            observation_id=obs.id,
            stage_version=STAGE_VERSIONS["preprocess"],
            params_hash=ident,
            image_key=value.image_key,
            variance_key=value.variance_key,
            mask_key=value.mask_key,
            background=q.get("background"),
            noise=q.get("background_rms"),
            fwhm=q.get("fwhm"),
            ellipticity=q.get("ellipticity"),
            limiting_mag=q.get("limiting_mag"),
            quality_score=q.get("score"),
            quality=q,
            timings=_clean(value.timings),
        )
        session.add(row)
        session.flush()
    return {"preprocess_id": row.id, "image_key": row.image_key, "quality_score": row.quality_score}


PREPROCESS_STAGE: Stage[_Preprocessed] = Stage(
    name="preprocess",
    version=STAGE_VERSIONS["preprocess"],
    compute=_preprocess_compute,
    persist=_preprocess_persist,
    running_status=S.PREPROCESSING,
    done_status=S.PREPROCESSED,
)


def preprocess(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Quality, masks and variance of one observation → a ``PreprocessResult``.

    Reads the observation's FITS blob (with its ``MASK`` and ``VARIANCE`` extensions when
    present) and runs :func:`astrid.science.preprocess.preprocess`: masks saturated pixels
    and cosmic rays, maps background and noise, builds the variance (ADU²) when the file has
    none, and measures PSF FWHM, depth and a quality score. Stores the image, variance and
    mask (1 = excluded) as FITS blobs.
    Status: ``ingested → preprocessing → preprocessed`` (``failed`` with the reason).
    """
    started = time.perf_counter()
    p = merge_params(params)["preprocess"]
    obs = _snapshot(runtime, observation_id)
    if (skip := _inactive(obs, "preprocess", started)) is not None:
        return skip
    ident = identity_hash("preprocess", p, {"observation": obs.content_hash})
    with runtime.db.session() as session:
        row = session.scalar(
            select(PreprocessResult).where(
                PreprocessResult.observation_id == obs.id, PreprocessResult.params_hash == ident
            )
        )
        stored = (
            None
            if row is None
            else {
                "preprocess_id": row.id,
                "image_key": row.image_key,
                "quality_score": row.quality_score,
            }
        )
    if stored is not None:
        return _reuse(runtime, obs.id, S.PREPROCESSED, "preprocess", stored, started)
    _ready_for(runtime, obs.id, S.COMPLETED, S.PREPROCESSING)
    outcome = run_stage(
        runtime,
        PREPROCESS_STAGE,
        params=p,
        inputs={"observation": obs.content_hash, "identity": ident},
        input_hash=obs.content_hash,
        payload=obs,
        observation_id=obs.id,
        rerun_failed=rerun_failed,
    )
    return _from_outcome("preprocess", obs.id, outcome, started)


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class _RefCandidate:
    observation_id: int
    survey_id: int
    mjd: float
    ra: float
    dec: float
    filter: str | None
    preprocess_id: int
    image_key: str
    variance_key: str | None
    fwhm: float | None
    limiting_mag: float | None
    noise: float | None
    quality_score: float | None
    separation_deg: float
    footprint: tuple[tuple[float, float], ...] = ()

    def metadata(self, pixel_scale: float | None) -> dict[str, Any]:
        """The record :func:`astrid.science.reference.score_reference` reads."""
        return _ref_metadata(
            self.filter, self.fwhm, pixel_scale, self.limiting_mag, self.mjd, self.footprint
        )


def _ref_metadata(
    filter_name: str | None,
    fwhm_px: float | None,
    pixel_scale: float | None,
    depth: float | None,
    mjd: float | None,
    footprint: Any,
) -> dict[str, Any]:
    # FWHM in arcsec when the pixel scale is known, so different instruments compare.
    fwhm = fwhm_px * pixel_scale if fwhm_px is not None and pixel_scale else fwhm_px
    return {
        "filter": filter_name,
        "fwhm": fwhm,
        "depth": depth,
        "mjd": mjd,
        "footprint": [tuple(c) for c in footprint or ()],
    }


def _radius_deg(obs: _Obs) -> float:
    """Centre-to-corner radius of the image, degrees."""
    if obs.footprint:
        corners = np.asarray(obs.footprint, dtype=float)
        sep = angular_separation_deg(corners[:, 0], corners[:, 1], obs.ra, obs.dec)
        return float(np.max(sep))
    scale = (obs.pixel_scale or 1.0) / 3600.0
    return 0.5 * math.hypot(obs.width, obs.height) * scale


def reference_candidates(
    runtime: Runtime, observation_id: int, params: Mapping[str, Any] | None = None
) -> list[_RefCandidate]:
    """Earlier, preprocessed observations of the same field and filter, nearest first.

    Same filter, centre within ``max_offset`` × the image's centre-to-corner radius,
    strictly earlier MJD, not failed or archived, quality score ≥ ``min_quality``.
    """
    allp = merge_params(params)
    p = allp["reference"]
    obs = _snapshot(runtime, observation_id)
    if obs.mjd is None:
        return []
    radius = float(p["max_offset"]) * _radius_deg(obs)
    nearby = ObservationService(runtime.db).cone_search(obs.ra, obs.dec, max(radius, 1e-6))
    out = []
    with runtime.db.session() as session:
        for other in nearby:
            if (
                other.id == obs.id
                or other.mjd is None
                or other.mjd >= obs.mjd
                or other.filter != obs.filter
                or S(other.status) in (S.FAILED, S.ARCHIVED)
            ):
                continue
            ident = identity_hash(
                "preprocess", allp["preprocess"], {"observation": other.content_hash}
            )
            pre = session.scalar(
                select(PreprocessResult).where(
                    PreprocessResult.observation_id == other.id,
                    PreprocessResult.params_hash == ident,
                )
            )
            if pre is None or (pre.quality_score or 0.0) < float(p["min_quality"]):
                continue
            sep = float(angular_separation_deg(other.ra, other.dec, obs.ra, obs.dec))
            out.append(
                _RefCandidate(
                    other.id,
                    other.survey_id,
                    float(other.mjd),
                    other.ra,
                    other.dec,
                    other.filter,
                    pre.id,
                    pre.image_key,
                    pre.variance_key,
                    pre.fwhm,
                    pre.limiting_mag,
                    pre.noise,
                    pre.quality_score,
                    sep,
                    tuple(tuple(c) for c in other.footprint or ()),
                )
            )
    return out


@dataclass(frozen=True)
class _RefChoice:
    chosen: _RefCandidate | None
    reason: str | None = None
    score: float | None = None
    coadd_suggested: bool = False


def _reference_compute(ctx: StageContext) -> _RefChoice:
    """Rank the candidates with :func:`astrid.science.reference.select_reference`."""
    from astrid.science.reference import NoReferenceError as SciNoReference
    from astrid.science.reference import select_reference

    new_meta, cands, pixel_scales = ctx.payload
    if not cands:
        return _RefChoice(None, "no earlier usable image of this field and filter")
    records = [c.metadata(pixel_scales.get(c.observation_id)) for c in cands]
    try:
        choice = select_reference(records, new_meta, min_overlap=float(ctx.params["min_overlap"]))
    except SciNoReference as exc:
        return _RefChoice(None, str(exc))
    best = choice.indices[0]
    score = float(choice.table["score"][0])
    # A coadd of the best few would be deeper; AstrID uses the best single image for now.
    return _RefChoice(cands[best], None, score, choice.action == "coadd")


def _reference_persist(session: Session, ctx: StageContext, choice: _RefChoice) -> dict[str, Any]:
    chosen = choice.chosen
    if chosen is None:
        return {"reference_id": None, "reason": choice.reason}
    ref = session.scalar(
        select(Reference).where(Reference.blob_key == chosen.image_key, Reference.is_active)
    )
    if ref is None:
        ref = Reference(
            survey_id=chosen.survey_id,
            filter=chosen.filter,
            ra=chosen.ra,
            dec=chosen.dec,
            healpix=int(healpix_index(chosen.ra, chosen.dec)),
            blob_key=chosen.image_key,
            variance_key=chosen.variance_key,
            observation_ids=[chosen.observation_id],
            fwhm=chosen.fwhm,
            depth=chosen.limiting_mag,
            mjd_start=chosen.mjd,
            mjd_end=chosen.mjd,
        )
        session.add(ref)
        session.flush()
    return {
        "reference_id": ref.id,
        "reference_observation_id": chosen.observation_id,
        "n_candidates": len(ctx.payload[1]),
        "score": choice.score,
        "coadd_suggested": choice.coadd_suggested,
    }


REFERENCE_STAGE: Stage[_RefChoice] = Stage(
    name="reference",
    version=STAGE_VERSIONS["reference"],
    compute=_reference_compute,
    persist=_reference_persist,
)


def reference(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Choose the reference image of an observation → a ``Reference`` row.

    The best earlier observation of the same field and filter (see
    :func:`reference_candidates`), ranked by
    :func:`astrid.science.reference.select_reference` (depth, seeing, overlap, time
    baseline), stored as a ``Reference`` with ``observation_ids = [its id]`` and shared by
    every observation that picks it. Status is unchanged (``preprocessed``); with no usable
    earlier image the result is ``skipped`` and the observation stays ``preprocessed``
    (it serves as a reference for later ones). The choice is keyed by the set of
    candidates, so a newly ingested earlier image makes the next run choose again.
    """
    started = time.perf_counter()
    pre = preprocess(runtime, observation_id, params, rerun_failed=rerun_failed)
    if not pre.ok:
        return StageResult(
            "reference",
            observation_id,
            "skipped" if pre.status == "skipped" else "failed",
            {},
            time.perf_counter() - started,
            pre.error or "preprocess did not finish",
        )
    obs = _snapshot(runtime, observation_id)
    cands = reference_candidates(runtime, observation_id, params)
    with runtime.db.session() as session:
        row = session.get(PreprocessResult, pre.value["preprocess_id"])
        new_meta = _ref_metadata(
            obs.filter,
            None if row is None else row.fwhm,
            obs.pixel_scale,
            None if row is None else row.limiting_mag,
            obs.mjd,
            obs.footprint,
        )
        scales = dict(
            session.execute(
                select(Observation.id, Observation.pixel_scale).where(
                    Observation.id.in_([c.observation_id for c in cands])
                )
            ).all()
        )
    p = merge_params(params)["reference"]
    input_hash = stable_hash(
        {
            "observation": obs.content_hash,
            "new": pre.value["image_key"],
            "candidates": sorted([c.observation_id, c.image_key] for c in cands),
        }
    )
    outcome = run_stage(
        runtime,
        REFERENCE_STAGE,
        params=p,
        inputs={"observation": obs.content_hash, "candidates": [c.observation_id for c in cands]},
        input_hash=input_hash,
        payload=(new_meta, cands, scales),
        observation_id=obs.id,
        rerun_failed=rerun_failed,
    )
    result = _from_outcome("reference", obs.id, outcome, started)
    if not result.ok:
        _park(runtime, obs.id, f"reference: {result.error}")
        return result
    if result.value.get("reference_id") is None:
        return StageResult(
            "reference",
            obs.id,
            "skipped",
            result.value,
            result.duration_s,
            result.value.get("reason"),
        )
    return result


# --------------------------------------------------------------------------- difference


@dataclass
class _Differenced:
    difference_key: str
    scorr_key: str
    aligned_new_key: str
    mask_key: str
    candidates: list[dict[str, Any]]
    stats: dict[str, Any]


_FLAG_BITS = {"flag_edge": 1, "flag_saturated": 2, "flag_bad": 4, "flag_cr": 8}


def _difference_compute(ctx: StageContext) -> _Differenced:
    from astrid.science.difference import subtract_pair
    from astrid.science.extract import extract_candidates, zero_point_from_header

    inp = ctx.inputs
    p = ctx.params
    blobs = ctx.runtime.blobs
    t0 = time.perf_counter()
    new_bytes = blobs.get(inp["new_image"])
    ref_bytes = blobs.get(inp["ref_image"])
    new_mask, _ = _read_array(ctx.runtime, inp["new_mask"])
    ref_mask = (
        _read_array(ctx.runtime, inp["ref_mask"])[0].astype(bool) if inp.get("ref_mask") else None
    )
    t1 = time.perf_counter()
    result, pair = subtract_pair(
        new_bytes, ref_bytes, str(p["method"]), new_mask=new_mask.astype(bool), ref_mask=ref_mask
    )
    t2 = time.perf_counter()
    zp = zero_point_from_header(pair.ref_header)
    if zp is None:
        zp_new = zero_point_from_header(pair.new_header)
        if zp_new is not None and result.flux_ratio > 0:
            zp = zp_new - 2.5 * float(np.log10(result.flux_ratio))
    table = extract_candidates(result, float(p["threshold"]), wcs=pair.wcs, zero_point=zp)
    t3 = time.perf_counter()
    ref_wcs = pair.wcs.to_header(relax=True) if pair.wcs is not None else fits.Header()
    tag = {"ASTRIDST": ("difference", "AstrID stage"), "METHOD": result.method}
    diff_key = blobs.put(_fits_bytes(result.diff.astype(np.float32), ref_wcs, tag))
    scorr_key = blobs.put(_fits_bytes(result.score.astype(np.float32), ref_wcs, tag))
    new_key = blobs.put(_fits_bytes(pair.new.astype(np.float32), ref_wcs, tag))
    mask_key = blobs.put(_fits_bytes(result.mask.astype(np.uint8), ref_wcs, tag))
    t4 = time.perf_counter()
    candidates = []
    for r in table:
        row = {c: r[c].item() if hasattr(r[c], "item") else r[c] for c in table.colnames}
        candidates.append(_clean(row))
    stats = _clean(
        {
            "flux_ratio": result.flux_ratio,
            "new_noise": result.new_noise,
            "ref_noise": result.ref_noise,
            "score_scale": result.score_scale,
            "overlap": pair.overlap,
            "area_pix": int((~result.mask).sum()),
            "new_fwhm": result.new_psf.fwhm if hasattr(result.new_psf, "fwhm") else None,
            "ref_fwhm": result.ref_psf.fwhm if hasattr(result.ref_psf, "fwhm") else None,
            "zero_point": zp,
            "notes": list(result.notes),
            "aligned_new_key": new_key,
            "mask_key": mask_key,
            "timings": {
                "read_s": t1 - t0,
                "subtract_s": t2 - t1,
                "extract_s": t3 - t2,
                "write_s": t4 - t3,
            },
        }
    )
    return _Differenced(diff_key, scorr_key, new_key, mask_key, candidates, stats)


def _difference_persist(session: Session, ctx: StageContext, value: _Differenced) -> dict[str, Any]:
    inp = ctx.inputs
    obs_id = int(inp["observation_id"])
    ref_id = int(inp["reference_id"])
    method = str(ctx.params["method"])
    existing = session.scalar(
        select(Difference).where(
            Difference.observation_id == obs_id,
            Difference.reference_id == ref_id,
            Difference.method == method,
            Difference.params_hash == inp["identity"],
        )
    )
    if existing is not None:  # stored by an earlier run under another stage-run key
        return {"difference_id": existing.id, "n_candidates": existing.n_candidates}
    diff = Difference(
        observation_id=obs_id,
        reference_id=ref_id,
        method=method,
        stage_version=STAGE_VERSIONS["difference"],
        params_hash=inp["identity"],
        difference_key=value.difference_key,
        scorr_key=value.scorr_key,
        n_candidates=len(value.candidates),
        stats=value.stats,
    )
    session.add(diff)
    session.flush()
    for c in value.candidates:
        ra, dec = c.get("ra"), c.get("dec")
        if ra is None or dec is None:
            continue
        flags = sum(bit for name, bit in _FLAG_BITS.items() if c.get(name))
        features = {
            k: v
            for k, v in c.items()
            if k not in ("ra", "dec", "x", "y", "snr", "flux", "flux_err", "mag", "score")
        }
        session.add(
            Candidate(
                difference_id=diff.id,
                observation_id=obs_id,
                ra=float(ra) % 360.0,
                dec=float(dec),
                healpix=int(healpix_index(float(ra) % 360.0, float(dec))),
                x=float(c["x"]),
                y=float(c["y"]),
                snr=float(c["snr"]),
                flux=c.get("flux"),
                flux_err=c.get("flux_err"),
                mag=c.get("mag"),
                score=c.get("score"),
                flags=flags,
                features=features,
            )
        )
    session.flush()
    return {"difference_id": diff.id, "n_candidates": len(value.candidates)}


DIFFERENCE_STAGE: Stage[_Differenced] = Stage(
    name="difference",
    version=STAGE_VERSIONS["difference"],
    compute=_difference_compute,
    persist=_difference_persist,
    running_status=S.DIFFERENCING,
    done_status=S.DIFFERENCED,
)


def _mask_key_of(session: Session, image_key: str) -> str | None:
    return session.scalar(
        select(PreprocessResult.mask_key).where(PreprocessResult.image_key == image_key).limit(1)
    )


def difference(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Subtract the reference and extract candidates → a ``Difference`` and ``Candidate`` s.

    Aligns the preprocessed image onto the reference's grid, subtracts it
    (:func:`astrid.science.difference.subtract_pair`, ``zogy`` or ``classic``), extracts
    candidates above ``threshold`` sigma with features and a rule score
    (:func:`astrid.science.extract.extract_candidates`), and stores the difference, the
    score map (S_corr), the aligned new image and the mask as FITS blobs.
    Status: ``preprocessed → differencing → differenced``.
    """
    started = time.perf_counter()
    allp = merge_params(params)
    p = allp["difference"]
    ref = reference(runtime, observation_id, params, rerun_failed=rerun_failed)
    if not ref.ok:
        return StageResult(
            "difference", observation_id, ref.status, {}, time.perf_counter() - started, ref.error
        )
    obs = _snapshot(runtime, observation_id)
    with runtime.db.session() as session:
        pre = session.scalar(
            select(PreprocessResult).where(
                PreprocessResult.observation_id == obs.id,
                PreprocessResult.params_hash
                == identity_hash(
                    "preprocess", allp["preprocess"], {"observation": obs.content_hash}
                ),
            )
        )
        refrow = session.get(Reference, ref.value["reference_id"])
        if pre is None or refrow is None:
            raise AstridError(f"observation {obs.id}: preprocess or reference row vanished")
        inputs = {
            "observation_id": obs.id,
            "reference_id": refrow.id,
            "new_image": pre.image_key,
            "new_mask": pre.mask_key,
            "ref_image": refrow.blob_key,
            "ref_mask": _mask_key_of(session, refrow.blob_key),
        }
    content = {k: inputs[k] for k in ("new_image", "new_mask", "ref_image", "ref_mask")}
    ident = identity_hash("difference", p, content)
    inputs["identity"] = ident
    with runtime.db.session() as session:
        row = session.scalar(
            select(Difference).where(
                Difference.observation_id == obs.id,
                Difference.reference_id == inputs["reference_id"],
                Difference.method == str(p["method"]),
                Difference.params_hash == ident,
            )
        )
        stored = (
            None if row is None else {"difference_id": row.id, "n_candidates": row.n_candidates}
        )
    if stored is not None:
        return _reuse(runtime, obs.id, S.DIFFERENCED, "difference", stored, started)
    _ready_for(runtime, obs.id, S.PREPROCESSED, S.DIFFERENCING)
    outcome = run_stage(
        runtime,
        DIFFERENCE_STAGE,
        params=p,
        inputs=inputs,
        input_hash=stable_hash(content),
        observation_id=obs.id,
        rerun_failed=rerun_failed,
    )
    return _from_outcome("difference", obs.id, outcome, started)


# --------------------------------------------------------------------------- detect


@lru_cache(maxsize=4)
def _scorer(model: str) -> Any:
    from astrid.model.score import load_scorer

    return load_scorer(model)


def _cutout(arr: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """A ``size`` × ``size`` stamp centred on pixel (round(x), round(y)); NaN off the image."""
    half = size // 2
    xc, yc = int(round(x)), int(round(y))
    out = np.full((size, size), np.nan, dtype=np.float32)
    ny, nx = arr.shape
    x0, x1 = max(0, xc - half), min(nx, xc + half + 1)
    y0, y1 = max(0, yc - half), min(ny, yc + half + 1)
    if x0 < x1 and y0 < y1:
        out[y0 - (yc - half) : y1 - (yc - half), x0 - (xc - half) : x1 - (xc - half)] = arr[
            y0:y1, x0:x1
        ]
    return out


def _png_panel(stamp: np.ndarray) -> np.ndarray:
    """8-bit grey rendering of a stamp (z-scale limits; NaN black)."""
    from astropy.visualization import ZScaleInterval

    finite = np.isfinite(stamp)
    if not finite.any():
        return np.zeros(stamp.shape, np.uint8)
    try:
        lo, hi = ZScaleInterval().get_limits(stamp[finite])
    except Exception:  # pragma: no cover - degenerate stamps
        lo, hi = float(np.nanmin(stamp)), float(np.nanmax(stamp))
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(stamp, nan=lo) - lo) / (hi - lo), 0, 1)
    return np.flipud((scaled * 255).astype(np.uint8))  # north (row +y) up


def _png(panel: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(panel, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _cutout_blobs(
    runtime: Runtime, stamps: dict[str, np.ndarray], wcs_header: fits.Header
) -> dict[str, str]:
    """Store the stamps as one FITS (NEW, REF, DIFF) and PNGs (each and a triptych)."""
    hdus: list[Any] = [fits.PrimaryHDU()]
    for name, st in stamps.items():
        hdus.append(fits.ImageHDU(st.astype(np.float32), header=wcs_header, name=name.upper()))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    keys = {"fits": runtime.blobs.put(buf.getvalue())}
    panels = {name: _png_panel(st) for name, st in stamps.items()}
    for name, panel in panels.items():
        keys[f"{name}_png"] = runtime.blobs.put(_png(panel))
    gap = np.full((next(iter(panels.values())).shape[0], 3), 255, np.uint8)
    strip = [panels["new"], gap, panels["ref"], gap, panels["diff"]]
    keys["png"] = runtime.blobs.put(_png(np.hstack(strip)))
    return keys


@dataclass
class _Detected:
    rows: list[dict[str, Any]]
    model_version: str
    timings: dict[str, float]


def _detect_compute(ctx: StageContext) -> _Detected:
    from astrid.model.stamps import InvalidStampError, make_triplet

    inp = ctx.inputs
    p = ctx.params
    size = int(p["cutout_size"])
    t0 = time.perf_counter()
    diff, diff_header = _read_array(ctx.runtime, inp["difference_key"])
    new, _ = _read_array(ctx.runtime, inp["aligned_new_key"])
    ref, _ = _read_array(ctx.runtime, inp["ref_image"])
    cands: list[dict[str, Any]] = ctx.payload
    t1 = time.perf_counter()
    use_model = str(p["model"]).lower() != "rules"
    scorer = _scorer(str(p["model"])) if use_model and cands else None
    model_version = (
        scorer.model_version
        if scorer is not None
        else ("rules" if not use_model else str(p["model"]))
    )
    triplets: list[np.ndarray] = []
    rows = []
    for c in cands:
        stamps = {
            name: _cutout(arr, c["x"], c["y"], size)
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
    scores = scorer.score(np.stack(triplets)) if scorer is not None and triplets else []
    for row in rows:
        if scorer is None:
            row["confidence"] = row.get("score")
        elif "triplet" in row:
            row["confidence"] = float(scores[row.pop("triplet")])
        else:
            row["confidence"] = None
    t3 = time.perf_counter()
    # The stamps' WCS: the reference grid's, with the reference pixel moved into the stamp.
    grid_wcs = _wcs_header(diff_header)
    for row in rows:
        h = grid_wcs.copy()
        h["CRPIX1"] = grid_wcs["CRPIX1"] - (int(round(row["x"])) - size // 2)
        h["CRPIX2"] = grid_wcs["CRPIX2"] - (int(round(row["y"])) - size // 2)
        row["cutout_keys"] = _cutout_blobs(ctx.runtime, row.pop("stamps"), h)
    t4 = time.perf_counter()
    timings = {"read_s": t1 - t0, "stamps_s": t2 - t1, "score_s": t3 - t2, "cutouts_s": t4 - t3}
    return _Detected(rows, model_version, timings)


def _detect_persist(session: Session, ctx: StageContext, value: _Detected) -> dict[str, Any]:
    inp = ctx.inputs
    obs_id = int(inp["observation_id"])
    run = ModelRun(
        kind="inference",
        status="succeeded",
        params=_clean(
            {
                "observation_id": obs_id,
                "difference_id": inp["difference_id"],
                "model": ctx.params["model"],
                "model_version": value.model_version,
            }
        ),
        metrics=_clean({"n_candidates": len(value.rows), "timings": value.timings}),
        finished_at=None,
    )
    session.add(run)
    session.flush()
    created = 0
    for row in value.rows:
        exists = session.scalar(select(Detection.id).where(Detection.candidate_id == row["id"]))
        if exists is not None:
            continue
        det = Detection(
            candidate_id=row["id"],
            observation_id=obs_id,
            model_run_id=run.id,
            model_version=value.model_version,
            ra=row["ra"],
            dec=row["dec"],
            healpix=int(healpix_index(row["ra"], row["dec"])),
            mjd=inp.get("mjd"),
            snr=row.get("snr"),
            mag=row.get("mag"),
            confidence=row.get("confidence"),
            cutout_keys=row["cutout_keys"],
            source="pipeline",
            extra=_clean(
                {
                    "rule_score": row.get("score"),
                    "sign": row.get("sign"),
                    "x": row.get("x"),
                    "y": row.get("y"),
                    "flags": row.get("flags"),
                    "difference_id": inp["difference_id"],
                    **({"problem": row["problem"]} if "problem" in row else {}),
                }
            ),
        )
        session.add(det)
        session.flush()
        register_detection(session, det, ctx.runtime.settings.curation_object_radius_arcsec)
        record_event(
            session,
            EventType.DETECTION_CREATED,
            "detection",
            det.id,
            _clean(
                {
                    "observation_id": obs_id,
                    "ra": det.ra,
                    "dec": det.dec,
                    "confidence": det.confidence,
                    "snr": det.snr,
                    "model_version": det.model_version,
                }
            ),
        )
        created += 1
    from astrid.store.tables import utcnow

    run.finished_at = utcnow()
    run.metrics = {**run.metrics, "n_detections": created}
    return {"model_run_id": run.id, "n_detections": created, "model_version": value.model_version}


DETECT_STAGE: Stage[_Detected] = Stage(
    name="detect",
    version=STAGE_VERSIONS["detect"],
    compute=_detect_compute,
    persist=_detect_persist,
    running_status=S.DETECTING,
    done_status=S.COMPLETED,
)


def detect(
    runtime: Runtime,
    observation_id: int,
    params: Mapping[str, Any] | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Score the candidates and store them as detections with cutouts → ``Detection`` s.

    Cuts ``cutout_size`` stamps of the aligned new image, the reference and the difference
    around each candidate, scores them with the real/bogus model (calibrated P(real) as
    ``confidence``; ``model = "rules"`` uses the extraction's rule score instead), stores
    the stamps as one FITS blob (``NEW``, ``REF``, ``DIFF`` with WCS) and PNG blobs
    (``cutout_keys``: ``fits``, ``png`` triptych, ``new_png``, ``ref_png``, ``diff_png``),
    one ``ModelRun`` (inference) and a ``detection.created`` event per detection.
    Status: ``differenced → detecting → completed``.
    """
    started = time.perf_counter()
    p = merge_params(params)["detect"]
    diff = difference(runtime, observation_id, params, rerun_failed=rerun_failed)
    if not diff.ok:
        return StageResult(
            "detect", observation_id, diff.status, {}, time.perf_counter() - started, diff.error
        )
    diff_id = int(diff.value["difference_id"])
    with runtime.db.session() as session:
        drow = session.get(Difference, diff_id)
        obs = session.get(Observation, observation_id)
        ref = session.get(Reference, drow.reference_id) if drow is not None else None
        if drow is None or obs is None or ref is None:
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
        status = S(obs.status)
    stored = {
        "difference_id": diff_id,
        "n_candidates": len(cands),
        "n_detections": len(cands) - len(todo),
    }
    if not todo and (cands or status == S.COMPLETED):
        return _reuse(runtime, observation_id, S.COMPLETED, "detect", stored, started)
    _ready_for(runtime, observation_id, S.DIFFERENCED, S.DETECTING)
    outcome = run_stage(
        runtime,
        DETECT_STAGE,
        params=p,
        inputs=inputs,
        payload=todo,
        input_hash=stable_hash(
            {"difference": drow.difference_key, "todo": [c["id"] for c in todo]}
        ),
        observation_id=observation_id,
        rerun_failed=rerun_failed,
    )
    return _from_outcome("detect", observation_id, outcome, started)


#: The stages in data-flow order, by name.
STAGES: dict[str, Callable[..., StageResult]] = {
    "preprocess": preprocess,
    "reference": reference,
    "difference": difference,
    "detect": detect,
}
