"""Stage 3, difference: subtract the reference, extract candidates, measure the limits.

Inputs: the observation's preprocess result (image, mask and variance) and its reference
(image, mask, variance and version). The background noise of each image is taken from its
stored variance (the preprocess stage's, propagated through calibration; a coadd's, propagated
through the coadd) instead of being measured again: for the new image and a single-image
reference, the value the preprocess stage recorded (``quality["noise_from_variance"]``), so
the variance maps are not read back; for a coadd, from its variance blob.
Products: a ``Difference`` row (unique by observation, reference, method and identity
hash; ``reference_version`` says which version of the field's reference it used) with its
``Candidate`` rows, the per-difference detection limits (:mod:`.limits`,
``DetectionLimit``), and the difference, S_corr score map, aligned new image and mask as
FITS blobs. Status: ``preprocessed → differencing → differenced``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.errors import AstridError
from astrid.pipeline.params import DifferenceParams
from astrid.pipeline.runner import Stage, StageContext, stable_hash
from astrid.pipeline.stages.common import (
    STAGE_VERSIONS,
    StageResult,
    begin,
    finish,
    identity_hash,
    json_safe,
)
from astrid.pipeline.stages.limits import measure_limits, store_limits
from astrid.pipeline.stages.preprocess import variance_noise
from astrid.pipeline.stages.products import put_fits, read_array, recent_image
from astrid.pipeline.stages.refcache import CachedReference, cached_reference
from astrid.runtime import Runtime
from astrid.science.difference import prepare_reference, subtract_pair
from astrid.science.extract import extract_candidates, zero_point_from_header
from astrid.store.sky_index import healpix_index
from astrid.store.tables import (
    Candidate,
    Difference,
    ObservationStatus,
    PreprocessResult,
    Reference,
)

__all__ = ["DIFFERENCE_STAGE", "difference_observation"]

S = ObservationStatus

_FLAG_BITS = {"flag_edge": 1, "flag_saturated": 2, "flag_bad": 4, "flag_cr": 8}
#: Candidate columns stored as their own fields; the others go to ``features``.
_COLUMNS = ("ra", "dec", "x", "y", "snr", "flux", "flux_err", "mag", "score")


@dataclass
class _Differenced:
    difference_key: str
    scorr_key: str
    aligned_new_key: str
    mask_key: str
    candidates: list[dict[str, Any]]
    stats: dict[str, Any]
    limits: dict[str, Any] | None = None


def _noise(
    ctx: StageContext, key: str | None, mask: np.ndarray | None, known: float | None
) -> float | None:
    """Background noise (image units) from a stored variance: sqrt of its median over the
    usable pixels (:func:`~astrid.pipeline.stages.preprocess.variance_noise`). ``known``:
    the same value measured by the preprocess stage (then the variance is not read)."""
    if not key:
        return None
    if known is not None:
        return float(known)
    var, _ = read_array(ctx.runtime, key)
    return variance_noise(var, mask)


def _reference(ctx: StageContext) -> tuple[CachedReference, bool]:
    """The reference loaded and prepared (:func:`prepare_reference`), from this process's
    cache when an earlier difference against it left it there (True)."""
    inp = ctx.inputs

    def build() -> CachedReference:
        ref_mask = (
            read_array(ctx.runtime, inp["ref_mask"])[0].astype(bool)
            if inp.get("ref_mask")
            else None
        )
        noise = _noise(ctx, inp.get("ref_variance"), ref_mask, inp.get("ref_variance_noise"))
        ref_bytes = ctx.runtime.blobs.get(inp["ref_image"])
        return CachedReference(
            inp["ref_image"], prepare_reference(ref_bytes, ref_mask, noise=noise), noise
        )

    # every input of build by content; the stage version for the code that prepares
    key = (
        "difference",
        STAGE_VERSIONS["difference"],
        inp["ref_image"],
        inp.get("ref_mask"),
        inp.get("ref_variance"),
        inp.get("ref_variance_noise"),
    )
    return cached_reference(ctx.runtime, key, build)


def _compute(ctx: StageContext) -> _Differenced:
    inp = ctx.inputs
    p = DifferenceParams.from_mapping(ctx.params)
    blobs = ctx.runtime.blobs
    t0 = time.perf_counter()
    # the preprocess stage's image as this process kept it, else its blob
    new_image = recent_image(ctx.runtime, inp["new_image"]) or blobs.get(inp["new_image"])
    new_mask, _ = read_array(ctx.runtime, inp["new_mask"])
    new_noise = _noise(
        ctx, inp.get("new_variance"), new_mask.astype(bool), inp.get("new_variance_noise")
    )
    t_ref = time.perf_counter()
    ref, ref_hit = _reference(ctx)
    t1 = time.perf_counter()
    result, pair = subtract_pair(
        new_image,
        ref.reference,
        p.method,
        new_mask=new_mask.astype(bool),
        new_noise=new_noise,
    )
    t2 = time.perf_counter()
    zp = zero_point_from_header(pair.ref_header)
    if zp is None:
        zp_new = zero_point_from_header(pair.new_header)
        if zp_new is not None and result.flux_ratio > 0:
            zp = zp_new - 2.5 * float(np.log10(result.flux_ratio))
    table = extract_candidates(result, p.threshold, wcs=pair.wcs, zero_point=zp)
    t3 = time.perf_counter()
    n_fakes = ctx.runtime.settings.limits_fakes
    limits = None
    if n_fakes > 0:
        xy = np.column_stack([np.asarray(table["x"], float), np.asarray(table["y"], float)])
        limits = measure_limits(result, xy, zp, p.threshold, n_fakes)
    t_lim = time.perf_counter()
    ref_wcs = pair.wcs.to_header(relax=True) if pair.wcs is not None else fits.Header()
    tag = {"ASTRIDST": ("difference", "AstrID stage"), "METHOD": result.method}
    # the difference and aligned image are kept for the detect stage (it reads them next);
    # float32 maps are written (and kept, read-only) as they are, without a copy: nothing
    # below changes them
    diff_key = put_fits(
        ctx.runtime, result.diff.astype(np.float32, copy=False), ref_wcs, tag, keep=True
    )
    scorr_key = put_fits(ctx.runtime, result.score.astype(np.float32, copy=False), ref_wcs, tag)
    new_key = put_fits(
        ctx.runtime, pair.new.astype(np.float32, copy=False), ref_wcs, tag, keep=True
    )
    mask_key = put_fits(ctx.runtime, result.mask.astype(np.uint8), ref_wcs, tag)
    t4 = time.perf_counter()
    candidates = []
    for r in table:
        row = {c: r[c].item() if hasattr(r[c], "item") else r[c] for c in table.colnames}
        candidates.append(json_safe(row))
    stats = json_safe(
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
            "noise_from_variance": {"new": new_noise, "ref": ref.noise},
            "reference_cache": "hit" if ref_hit else "miss",
            "limits": None if limits is None else limits.get("error", "measured"),
            "notes": list(result.notes),
            "aligned_new_key": new_key,
            "mask_key": mask_key,
            "timings": {
                "read_s": t_ref - t0,
                "reference_s": t1 - t_ref,
                "subtract_s": t2 - t1,
                "extract_s": t3 - t2,
                "limits_s": t_lim - t3,
                "write_s": t4 - t_lim,
            },
        }
    )
    return _Differenced(diff_key, scorr_key, new_key, mask_key, candidates, stats, limits)


def _find(session: Session, inputs: dict[str, Any], method: str) -> Difference | None:
    return session.scalar(
        select(Difference).where(
            Difference.observation_id == int(inputs["observation_id"]),
            Difference.reference_id == int(inputs["reference_id"]),
            Difference.method == method,
            Difference.params_hash == inputs["identity"],
        )
    )


def _persist(session: Session, ctx: StageContext, value: _Differenced) -> dict[str, Any]:
    inp = ctx.inputs
    obs_id = int(inp["observation_id"])
    method = DifferenceParams.from_mapping(ctx.params).method
    existing = _find(session, inp, method)
    if existing is not None:  # stored by an earlier run under another stage-run key
        store_limits(session, existing.id, obs_id, value.limits)
        return {"difference_id": existing.id, "n_candidates": existing.n_candidates}
    diff = Difference(
        observation_id=obs_id,
        reference_id=int(inp["reference_id"]),
        reference_version=inp.get("reference_version"),
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
                flags=sum(bit for name, bit in _FLAG_BITS.items() if c.get(name)),
                features={k: v for k, v in c.items() if k not in _COLUMNS},
            )
        )
    session.flush()
    lim = store_limits(session, diff.id, obs_id, value.limits)
    return {
        "difference_id": diff.id,
        "n_candidates": len(value.candidates),
        "reference_version": diff.reference_version,
        "m50": None if lim is None else lim.m50,
    }


DIFFERENCE_STAGE: Stage[_Differenced] = Stage(
    name="difference",
    version=STAGE_VERSIONS["difference"],
    compute=_compute,
    persist=_persist,
    running_status=S.DIFFERENCING,
    done_status=S.DIFFERENCED,
)


def _mask_key_of(session: Session, image_key: str) -> str | None:
    return session.scalar(
        select(PreprocessResult.mask_key).where(PreprocessResult.image_key == image_key).limit(1)
    )


def _stored_noise(
    row: PreprocessResult, variance_key: str | None, mask_key: str | None
) -> float | None:
    """The preprocess stage's ``noise_from_variance`` of ``row`` when its variance and mask
    are ``variance_key`` and ``mask_key`` (None otherwise, or when it did not record it)."""
    if not variance_key or row.variance_key != variance_key or row.mask_key != mask_key:
        return None
    value = (row.quality or {}).get("noise_from_variance")
    return float(value) if isinstance(value, int | float) else None


def _reference_preprocess(session: Session, ref: Reference) -> PreprocessResult | None:
    """The preprocess product whose variance a single-image reference uses (None for a
    coadd, which has its own)."""
    ids = list(ref.observation_ids or [])
    if len(ids) != 1 or not ref.variance_key:
        return None
    return session.scalar(
        select(PreprocessResult)
        .where(
            PreprocessResult.observation_id == int(ids[0]),
            PreprocessResult.variance_key == ref.variance_key,
        )
        .limit(1)
    )


def difference_observation(
    runtime: Runtime,
    observation_id: int,
    preprocessed: StageResult,
    reference: StageResult,
    params: DifferenceParams | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Subtract the reference and extract candidates → a ``Difference`` and ``Candidate`` s.

    ``preprocessed`` and ``reference`` are the observation's preprocess and reference
    results (``preprocess_id``, ``reference_id``). Aligns the preprocessed image onto the
    reference's grid, subtracts it (:func:`astrid.science.difference.subtract_pair`,
    ``zogy`` or ``classic``), extracts candidates above ``threshold`` sigma with features
    and a rule score (:func:`astrid.science.extract.extract_candidates`), and stores the
    difference, the score map (S_corr), the aligned new image and the mask as FITS blobs.
    The background noise of both images comes from their stored variance maps; the
    per-difference detection limits are measured with ``ASTRID_LIMITS_FAKES`` fakes.
    ``value``: ``difference_id``, ``n_candidates``, ``reference_version``, ``m50``.
    """
    p = params or DifferenceParams()
    started, obs, skip = begin(runtime, observation_id, "difference")
    if skip is not None:
        return skip
    with runtime.db.session() as session:
        pre = session.get(PreprocessResult, preprocessed.value["preprocess_id"])
        refrow = session.get(Reference, reference.value["reference_id"])
        if pre is None or refrow is None:
            raise AstridError(f"observation {obs.id}: preprocess or reference row vanished")
        inputs: dict[str, Any] = {
            "observation_id": obs.id,
            "reference_id": refrow.id,
            "new_image": pre.image_key,
            "new_mask": pre.mask_key,
            "ref_image": refrow.blob_key,
            "ref_mask": refrow.mask_key or _mask_key_of(session, refrow.blob_key),
            "new_variance": pre.variance_key,
            "ref_variance": refrow.variance_key,
            "reference_version": refrow.version,
        }
        # the noise of each variance as the preprocess stage measured it (a function of the
        # variance and mask blobs, so not part of the identity): saves reading them back
        inputs["new_variance_noise"] = _stored_noise(pre, pre.variance_key, pre.mask_key)
        ref_pre = _reference_preprocess(session, refrow)
        inputs["ref_variance_noise"] = (
            None
            if ref_pre is None
            else _stored_noise(ref_pre, refrow.variance_key, inputs["ref_mask"])
        )
    content = {
        k: inputs[k]
        for k in ("new_image", "new_mask", "ref_image", "ref_mask", "new_variance", "ref_variance")
    }
    inputs["identity"] = identity_hash("difference", p, content)
    with runtime.db.session() as session:
        row = _find(session, inputs, p.method)
        stored = (
            None if row is None else {"difference_id": row.id, "n_candidates": row.n_candidates}
        )
    return finish(
        runtime,
        DIFFERENCE_STAGE,
        obs.id,
        stored,
        started,
        resume_from=S.PREPROCESSED,
        params=p,
        inputs=inputs,
        input_hash=stable_hash(content),
        rerun_failed=rerun_failed,
    )
