"""Stage 1, preprocess: quality, masks and variance of one observation.

Input: the observation's raw FITS blob. Product: a ``PreprocessResult`` row (unique by
observation and identity hash) and the image, variance and mask as FITS blobs.
Status: ``ingested → preprocessing → preprocessed`` (``failed`` with the reason).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.errors import AstridError
from astrid.pipeline.params import PreprocessParams
from astrid.pipeline.runner import Stage, StageContext, run_stage
from astrid.pipeline.stages.common import (
    STAGE_VERSIONS,
    ObservationSnapshot,
    StageResult,
    from_outcome,
    identity_hash,
    inactive,
    json_safe,
    ready_for,
    reuse,
    snapshot,
)
from astrid.pipeline.stages.products import extension, fits_bytes, wcs_header
from astrid.runtime import Runtime
from astrid.science.fitsio import read_image
from astrid.science.preprocess import preprocess_image
from astrid.store.tables import ObservationStatus, PreprocessResult

__all__ = ["PREPROCESS_STAGE", "LowQualityError", "preprocess_identity", "preprocess_observation"]

S = ObservationStatus


class LowQualityError(AstridError):
    """The image's quality score is below the preprocess stage's ``min_quality``."""


@dataclass
class _Preprocessed:
    image_key: str
    variance_key: str
    mask_key: str
    quality: dict[str, Any]
    timings: dict[str, float]


def preprocess_identity(content_hash: str, params: PreprocessParams) -> str:
    """Identity hash (``params_hash``) of the preprocess product of a raw file."""
    return identity_hash("preprocess", params, {"observation": content_hash})


def _compute(ctx: StageContext) -> _Preprocessed:
    obs: ObservationSnapshot = ctx.payload
    p = PreprocessParams.from_mapping(ctx.params)
    blobs = ctx.runtime.blobs
    t0 = time.perf_counter()
    raw = blobs.get(obs.blob_key)
    image = read_image(raw)
    with fits.open(io.BytesIO(raw)) as hdul:
        file_mask = extension(hdul, "MASK")
        file_var = extension(hdul, "VARIANCE")
    shape = image.data.shape
    known = file_mask.astype(bool) if file_mask is not None and file_mask.shape == shape else None
    variance = file_var if file_var is not None and file_var.shape == shape else None
    t1 = time.perf_counter()
    # Calibration frames are not applied yet (the demo and survey images come reduced);
    # the image stays on its own grid: the difference stage aligns it onto the reference.
    res = preprocess_image(image, variance=variance, mask=known, detect_cosmics=p.detect_cosmics)
    t2 = time.perf_counter()
    quality = json_safe(res.quality.as_dict())
    if res.quality.score < p.min_quality:
        terms = ", ".join(f"{k}={v:.2f}" for k, v in res.quality.score_terms.items())
        raise LowQualityError(
            f"image quality score {res.quality.score:.3f} is below {p.min_quality} ({terms})",
            hint="inspect the image; lower preprocess.min_quality to process it anyway",
        )
    tag = {"ASTRIDST": ("preprocess", "AstrID stage"), "ASTRIDOB": (obs.id, "observation id")}
    wcs = wcs_header(image.header)
    image_key = blobs.put(fits_bytes(res.image.astype(np.float32), image.header, tag))
    variance_key = blobs.put(fits_bytes(res.variance.astype(np.float32), wcs, tag))
    mask_key = blobs.put(fits_bytes(res.mask.astype(np.uint8), wcs, tag))
    t3 = time.perf_counter()
    timings = {
        "read_s": t1 - t0,
        **{f"{k}_s": v for k, v in res.timings.items()},
        "write_s": t3 - t2,
        "total_s": t3 - t0,
    }
    return _Preprocessed(image_key, variance_key, mask_key, quality, timings)


def _value(row: PreprocessResult) -> dict[str, Any]:
    return {"preprocess_id": row.id, "image_key": row.image_key, "quality_score": row.quality_score}


def _find(session: Session, observation_id: int, ident: str) -> PreprocessResult | None:
    return session.scalar(
        select(PreprocessResult).where(
            PreprocessResult.observation_id == observation_id,
            PreprocessResult.params_hash == ident,
        )
    )


def _persist(session: Session, ctx: StageContext, value: _Preprocessed) -> dict[str, Any]:
    obs: ObservationSnapshot = ctx.payload
    ident = ctx.inputs["identity"]
    row = _find(session, obs.id, ident)
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
            timings=json_safe(value.timings),
        )
        session.add(row)
        session.flush()
    return _value(row)


PREPROCESS_STAGE: Stage[_Preprocessed] = Stage(
    name="preprocess",
    version=STAGE_VERSIONS["preprocess"],
    compute=_compute,
    persist=_persist,
    running_status=S.PREPROCESSING,
    done_status=S.PREPROCESSED,
)


def preprocess_observation(
    runtime: Runtime,
    observation_id: int,
    params: PreprocessParams | None = None,
    *,
    rerun_failed: bool = False,
) -> StageResult:
    """Quality, masks and variance of one observation → a ``PreprocessResult``.

    Reads the observation's FITS blob (with its ``MASK`` and ``VARIANCE`` extensions when
    present) and runs :func:`astrid.science.preprocess.preprocess`: masks saturated pixels
    and cosmic rays, maps background and noise, builds the variance (ADU²) when the file has
    none, and measures PSF FWHM, depth and a quality score. Stores the image, variance and
    mask (1 = excluded) as FITS blobs. ``value``: ``preprocess_id``, ``image_key``,
    ``quality_score``.
    """
    started = time.perf_counter()
    p = params or PreprocessParams()
    obs = snapshot(runtime, observation_id)
    if (skip := inactive(obs, "preprocess", started)) is not None:
        return skip
    ident = preprocess_identity(obs.content_hash, p)
    with runtime.db.session() as session:
        row = _find(session, obs.id, ident)
        stored = None if row is None else _value(row)
    if stored is not None:
        return reuse(runtime, obs.id, S.PREPROCESSED, "preprocess", stored, started)
    ready_for(runtime, obs.id, S.COMPLETED, S.PREPROCESSING)
    outcome = run_stage(
        runtime,
        PREPROCESS_STAGE,
        params=p.as_dict(),
        inputs={"observation": obs.content_hash, "identity": ident},
        input_hash=obs.content_hash,
        payload=obs,
        observation_id=obs.id,
        rerun_failed=rerun_failed,
    )
    return from_outcome("preprocess", obs.id, outcome, started)
