"""Stage 2, reference: choose (or build) the reference image of an observation.

Inputs: the observation's preprocess result and the earlier, preprocessed observations of
the same field and filter. Product: a ``Reference`` row shared by every observation that
picks it: the best single earlier image (``observation_ids = [its id]``, ``blob_key`` = its
preprocessed image), or, when at least ``coadd_min`` good earlier images exist, the
inverse-variance coadd of the best ``coadd_max`` of them
(:func:`astrid.science.reference.coadd_reference`; image, variance and mask blobs,
``observation_ids`` = the images used). The coadd is keyed by its content, so it is rebuilt
exactly when a better image enters the chosen set. Each new reference of a field and filter
gets the next ``version`` (1, 2, ...); differences record the version they used. A coadd
whose inputs do not overlap falls back to the best single image, and the result says so
(``coadd_fallback``).
Status: unchanged (``preprocessed``); with no usable earlier image the result is
``skipped`` and the observation stays ``preprocessed`` (it is a reference for later ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.observations import ObservationService
from astrid.pipeline.params import PreprocessParams, ReferenceParams
from astrid.pipeline.runner import Stage, StageContext, run_stage, stable_hash
from astrid.pipeline.stages.common import (
    STAGE_VERSIONS,
    ObservationSnapshot,
    StageResult,
    begin,
    from_outcome,
    json_safe,
    park,
    snapshot,
)
from astrid.pipeline.stages.preprocess import current_preprocess_identity
from astrid.pipeline.stages.products import put_fits, read_array, wcs_header
from astrid.runtime import Runtime
from astrid.science.reference import CoaddOverlapError, coadd_reference, select_reference
from astrid.science.reference import NoReferenceError as SciNoReference
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import Observation, ObservationStatus, PreprocessResult, Reference

__all__ = ["REFERENCE_STAGE", "ReferenceCandidate", "choose_reference", "reference_candidates"]

S = ObservationStatus


@dataclass(frozen=True)
class ReferenceCandidate:
    """An earlier preprocessed observation that could serve as reference."""

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
    mask_key: str | None = None

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


def _radius_deg(obs: ObservationSnapshot) -> float:
    """Centre-to-corner radius of the image, degrees."""
    if obs.footprint:
        corners = np.asarray(obs.footprint, dtype=float)
        sep = angular_separation_deg(corners[:, 0], corners[:, 1], obs.ra, obs.dec)
        return float(np.max(sep))
    scale = (obs.pixel_scale or 1.0) / 3600.0
    return 0.5 * math.hypot(obs.width, obs.height) * scale


def reference_candidates(
    runtime: Runtime,
    observation_id: int,
    params: ReferenceParams | None = None,
    preprocess_params: PreprocessParams | None = None,
) -> list[ReferenceCandidate]:
    """Earlier, preprocessed observations of the same field and filter, nearest first.

    Same filter, centre within ``max_offset`` × the image's centre-to-corner radius,
    strictly earlier MJD, not failed or archived, preprocessed with ``preprocess_params``,
    quality score ≥ ``min_quality``.
    """
    p = params or ReferenceParams()
    pp = preprocess_params or PreprocessParams()
    obs = snapshot(runtime, observation_id)
    if obs.mjd is None:
        return []
    radius = p.max_offset * _radius_deg(obs)
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
            pre = session.scalar(
                select(PreprocessResult).where(
                    PreprocessResult.observation_id == other.id,
                    PreprocessResult.params_hash == current_preprocess_identity(session, other, pp),
                )
            )
            if pre is None or (pre.quality_score or 0.0) < p.min_quality:
                continue
            sep = float(angular_separation_deg(other.ra, other.dec, obs.ra, obs.dec))
            out.append(
                ReferenceCandidate(
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
                    pre.mask_key,
                )
            )
    return out


@dataclass(frozen=True)
class _Coadd:
    image_key: str
    variance_key: str
    mask_key: str
    inputs: tuple[ReferenceCandidate, ...]
    weights: tuple[float, ...]
    depth: float | None
    fwhm: float | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Choice:
    chosen: ReferenceCandidate | None
    reason: str | None = None
    score: float | None = None
    coadd_suggested: bool = False
    coadd: _Coadd | None = None
    fallback: str | None = None


def _build_coadd(ctx: StageContext, chosen: list[ReferenceCandidate], p: ReferenceParams) -> _Coadd:
    """Inverse-variance coadd of ``chosen`` (best first) stored as image/variance/mask blobs."""
    images, headers, variances, masks = [], [], [], []
    for c in chosen:
        data, header = read_array(ctx.runtime, c.image_key)
        images.append(data)
        headers.append(header)
        variances.append(read_array(ctx.runtime, c.variance_key)[0] if c.variance_key else None)
        masks.append(read_array(ctx.runtime, c.mask_key)[0].astype(bool) if c.mask_key else None)
    co = coadd_reference(images, headers, variances, masks, min_overlap=p.min_overlap)
    used = tuple(chosen[i] for i in co.used)
    tag = {"ASTRIDST": ("reference", "AstrID stage")}
    header = co.header.copy()
    header["ASTRIDOB"] = (",".join(str(c.observation_id) for c in used), "observations coadded")
    data = np.where(co.mask, 0.0, co.data).astype(np.float32)
    image_key = put_fits(ctx.runtime, data, header, tag)
    wcs_only = wcs_header(header)
    variance = np.asarray(co.variance, np.float32)
    variance_key = put_fits(ctx.runtime, variance, wcs_only, tag)
    mask_key = put_fits(ctx.runtime, co.mask.astype(np.uint8), wcs_only, tag)
    best = used[0]
    depth = None
    var0 = variances[0]
    if best.limiting_mag is not None and var0 is not None:
        good = ~co.mask & np.isfinite(var0) & (var0 > 0) & np.isfinite(co.variance)
        if good.any():
            gain = float(np.median(var0[good]) / np.median(co.variance[good]))
            depth = best.limiting_mag + 1.25 * float(np.log10(max(gain, 1e-12)))
    fwhms = [c.fwhm for c in used if c.fwhm is not None]
    fwhm = float(np.dot(fwhms, co.weights)) if len(fwhms) == len(used) else (best.fwhm or None)
    return _Coadd(image_key, variance_key, mask_key, used, co.weights, depth, fwhm, tuple(co.notes))


def _compute(ctx: StageContext) -> _Choice:
    """Rank the candidates with :func:`astrid.science.reference.select_reference`; coadd
    the best ones when there are at least ``coadd_min`` good ones."""
    new_meta, cands, pixel_scales = ctx.payload[:3]
    if not cands:
        if new_meta.get("mjd") is None:
            # no time, no "earlier": say what is missing rather than that nothing came before
            return _Choice(
                None,
                "the image has no observation time (no DATE-OBS, MJD-OBS or equivalent in "
                "its header): no earlier image can be its reference",
            )
        return _Choice(None, "no earlier usable image of this field and filter")
    records = [c.metadata(pixel_scales.get(c.observation_id)) for c in cands]
    p = ReferenceParams.from_mapping(ctx.params)
    try:
        choice = select_reference(records, new_meta, min_overlap=p.min_overlap)
    except SciNoReference as exc:
        return _Choice(None, str(exc))
    best = choice.indices[0]
    score = float(choice.table["score"][0])
    # "good": eligible and at least half the best score (select_reference's coadd rule)
    good = [
        int(r["index"]) for r in choice.table if r["eligible"] and float(r["score"]) >= 0.5 * score
    ][: max(p.coadd_max, 1)]
    suggested = choice.action == "coadd"
    if p.coadd_min > 0 and len(good) >= max(2, p.coadd_min):
        try:
            co = _build_coadd(ctx, [cands[i] for i in good], p)
        except CoaddOverlapError as exc:
            return _Choice(cands[best], None, score, suggested, fallback=str(exc))
        return _Choice(cands[best], None, score, suggested, coadd=co)
    return _Choice(cands[best], None, score, suggested)


def _next_version(session: Session, chosen: ReferenceCandidate, radius_deg: float) -> int:
    """1 + the highest version of the references of this field (same filter and survey,
    centre within ``radius_deg``)."""
    rows = session.execute(
        select(Reference.ra, Reference.dec, Reference.version).where(
            Reference.filter == chosen.filter
            if chosen.filter is not None
            else Reference.filter.is_(None),
            Reference.survey_id == chosen.survey_id,
        )
    ).all()
    near = [
        int(v)
        for ra, dec, v in rows
        if float(angular_separation_deg(ra, dec, chosen.ra, chosen.dec)) <= max(radius_deg, 1e-6)
    ]
    return max(near, default=0) + 1


def _persist(session: Session, ctx: StageContext, choice: _Choice) -> dict[str, Any]:
    chosen = choice.chosen
    if chosen is None:
        return {"reference_id": None, "reason": choice.reason}
    radius = float(ctx.payload[3]) if len(ctx.payload) > 3 else 0.0
    co = choice.coadd
    key = co.image_key if co is not None else chosen.image_key
    ref = session.scalar(select(Reference).where(Reference.blob_key == key))
    if ref is None:
        used = co.inputs if co is not None else (chosen,)
        ref = Reference(
            survey_id=chosen.survey_id,
            filter=chosen.filter,
            ra=chosen.ra,
            dec=chosen.dec,
            healpix=int(healpix_index(chosen.ra, chosen.dec)),
            blob_key=key,
            variance_key=co.variance_key if co is not None else chosen.variance_key,
            mask_key=co.mask_key if co is not None else chosen.mask_key,
            observation_ids=[c.observation_id for c in used],
            fwhm=co.fwhm if co is not None else chosen.fwhm,
            depth=co.depth if co is not None else chosen.limiting_mag,
            mjd_start=min(c.mjd for c in used),
            mjd_end=max(c.mjd for c in used),
            version=_next_version(session, chosen, radius),
        )
        session.add(ref)
        session.flush()
    out: dict[str, Any] = {
        "reference_id": ref.id,
        "reference_version": ref.version,
        "reference_observation_id": chosen.observation_id,
        "reference_observation_ids": list(ref.observation_ids),
        "n_candidates": len(ctx.payload[1]),
        "score": choice.score,
        "coadd_suggested": choice.coadd_suggested,
        "coadd": co is not None,
    }
    if co is not None:
        out["coadd_weights"] = list(co.weights)
        out["coadd_notes"] = list(co.notes)
    if choice.fallback:
        out["coadd_fallback"] = f"coadd not built, best single image used: {choice.fallback}"
    return json_safe(out)


REFERENCE_STAGE: Stage[_Choice] = Stage(
    name="reference", version=STAGE_VERSIONS["reference"], compute=_compute, persist=_persist
)


def choose_reference(
    runtime: Runtime,
    observation_id: int,
    preprocessed: StageResult,
    params: ReferenceParams | None = None,
    preprocess_params: PreprocessParams | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Choose the reference image of an observation → a ``Reference`` row.

    ``preprocessed`` is the observation's preprocess result (its ``preprocess_id`` and
    ``image_key``). The best earlier observation of the same field and filter (see
    :func:`reference_candidates`), ranked by
    :func:`astrid.science.reference.select_reference` (depth, seeing, overlap, time
    baseline). The choice is keyed by the set of candidates, so a newly ingested earlier
    image makes the next run choose again. ``value``: ``reference_id``,
    ``reference_observation_id``, ``n_candidates``, ``score``, ``coadd_suggested``.
    """
    p = params or ReferenceParams()
    started, obs, skip = begin(runtime, observation_id, "reference")
    if skip is not None:
        return skip
    cands = reference_candidates(runtime, observation_id, p, preprocess_params)
    with runtime.db.session() as session:
        row = session.get(PreprocessResult, preprocessed.value["preprocess_id"])
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
    input_hash = stable_hash(
        {
            "observation": obs.content_hash,
            "new": preprocessed.value["image_key"],
            "candidates": sorted([c.observation_id, c.image_key] for c in cands),
        }
    )
    outcome = run_stage(
        runtime,
        REFERENCE_STAGE,
        params=p.as_dict(),
        inputs={"observation": obs.content_hash, "candidates": [c.observation_id for c in cands]},
        input_hash=input_hash,
        payload=(new_meta, cands, scales, p.max_offset * _radius_deg(obs)),
        observation_id=obs.id,
        rerun_failed=rerun_failed,
    )
    result = from_outcome("reference", obs.id, outcome, started)
    if not result.ok:
        park(runtime, obs.id, f"reference: {result.error}")
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
