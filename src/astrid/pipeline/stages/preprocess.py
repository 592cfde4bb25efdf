"""Stage 1, preprocess: calibration, quality, masks and variance of one observation.

Input: the observation's raw FITS blob (its own HDU and that image's MASK/DQ and
VARIANCE/ERR planes) and the master bias, dark and flat registered for its
instrument, filter and date, and for its chip when a master was registered for one chip
(:func:`astrid.domain.calibration.calibration_for`; applied
when present, their ids in the product's ``provenance`` and in its identity, so a newly
registered master makes a new product). Product: a ``PreprocessResult`` row (unique by
observation and identity hash) and the image, variance and mask as FITS blobs; its
``quality`` record also holds ``noise_from_variance`` (:func:`variance_noise`), the
background noise the difference stage uses, so that it need not read the variance back.
Status: ``ingested → preprocessing → preprocessed`` (``failed`` with the reason).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.calibration import calibration_for, load_master
from astrid.errors import AstridError
from astrid.pipeline.params import PreprocessParams
from astrid.pipeline.runner import Stage, StageContext
from astrid.pipeline.stages.common import (
    STAGE_VERSIONS,
    ObservationSnapshot,
    StageResult,
    begin,
    finish,
    identity_hash,
    json_safe,
)
from astrid.pipeline.stages.products import put_fits, read_raw, wcs_header
from astrid.runtime import Runtime
from astrid.science.calibrate import CalibrationMismatchError, calibrate_image
from astrid.science.dqmask import dq_mask
from astrid.science.fitsio import FitsImage, FitsLimits, companion_hdus, read_image
from astrid.science.preprocess import preprocess_image
from astrid.science.stats import median_by_selection
from astrid.store.tables import CalibrationFrame, Observation, ObservationStatus, PreprocessResult

__all__ = [
    "PREPROCESS_STAGE",
    "LowQualityError",
    "current_preprocess_identity",
    "preprocess_identity",
    "preprocess_observation",
    "variance_noise",
]

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
    provenance: dict[str, Any]


def preprocess_identity(
    content_hash: str, params: PreprocessParams, calibration: list[Any] | None = None
) -> str:
    """Identity hash (``params_hash``) of the preprocess product of a raw file.

    ``calibration``: the ``[id, blob_key]`` of the masters applied (none: the hash of
    earlier versions, which applied none).
    """
    inputs: dict[str, Any] = {"observation": content_hash}
    if calibration:
        inputs["calibration"] = calibration
    return identity_hash("preprocess", params, inputs)


@dataclass(frozen=True)
class _Calibration:
    """The masters that apply to an observation (or why they cannot)."""

    frames: list[list[Any]]
    error: CalibrationMismatchError | None = None


def _calibration_in(session: Session, obs: Observation | ObservationSnapshot) -> _Calibration:
    instrument, extra = session.execute(
        select(Observation.instrument, Observation.extra).where(Observation.id == obs.id)
    ).one()
    # the chip of an observation of a multi-image file (its masters may be per chip)
    chip = (extra or {}).get("hdu_name") if obs.content_hash != obs.blob_key else None
    try:
        rows = calibration_for(
            session, instrument, obs.filter, obs.mjd, (obs.height, obs.width), chip
        )
    except CalibrationMismatchError as exc:
        return _Calibration([], exc)
    return _Calibration([[r.id, r.blob_key] for r in rows.values()])


def _frames(cal: _Calibration) -> list[Any]:
    return [["mismatch", str(cal.error)]] if cal.error is not None else list(cal.frames)


def current_preprocess_identity(
    session: Session, obs: Observation | ObservationSnapshot, params: PreprocessParams
) -> str:
    """The identity hash the preprocess stage would give ``obs`` now (calibration included)."""
    return preprocess_identity(obs.content_hash, params, _frames(_calibration_in(session, obs)))


def _calibrate(
    ctx: StageContext, cal: _Calibration, data: np.ndarray, header: fits.Header,
    variance: np.ndarray | None, mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, Any]]:  # fmt: skip
    """Apply the masters; the variance is propagated when the raw one is known (a VARIANCE
    extension or GAIN), else left to the preprocess step to measure on the result."""
    with ctx.runtime.db.session() as session:
        rows = [session.get(CalibrationFrame, fid) for fid, _ in cal.frames]
        masters = {r.kind: load_master(ctx.runtime.blobs, r) for r in rows if r is not None}
        info = {
            r.kind: {"id": r.id, "blob_key": r.blob_key, "filename": r.filename}
            for r in rows
            if r is not None
        }
    out = calibrate_image(
        data,
        header,
        bias=masters.get("bias"),
        dark=masters.get("dark"),
        flat=masters.get("flat"),
        variance=variance,
        mask=mask,
    )
    known_noise = variance is not None or bool(header.get("GAIN") or header.get("EGAIN"))
    header["HISTORY"] = f"AstrID calibrate: {', '.join(out.steps)}"
    for kind, frame in info.items():
        header[f"CAL{kind.upper()}"] = (frame["id"], f"AstrID master {kind} id")
    provenance = {
        "calibration": {
            "steps": out.steps,
            "frames": info,
            "variance": "propagated" if known_noise else "measured after calibration (no GAIN)",
        }
    }
    return (
        out.data.astype(np.float64),
        out.variance.astype(np.float64) if known_noise else None,
        out.mask,
        provenance,
    )


#: The planes preprocess reads beside the image (:func:`companion_hdus`): a mask (MASK, else
#: DQ, read by :func:`~astrid.science.dqmask.dq_mask`) and a variance (VARIANCE, else ERR squared).
_PLANES = ("MASK", "VARIANCE", "DQ", "ERR")


def _compute(ctx: StageContext) -> _Preprocessed:
    obs: ObservationSnapshot
    cal: _Calibration
    obs, cal = ctx.payload
    if cal.error is not None:
        raise cal.error
    p = PreprocessParams.from_mapping(ctx.params)
    t0 = time.perf_counter()
    limits = FitsLimits.of(ctx.runtime.settings)

    def read(raw: bytes | Path) -> tuple[FitsImage, np.ndarray | None, np.ndarray | None]:
        # the observation's own image (one CCD of a mosaic) and the planes that belong to it
        image = read_image(raw, obs.hdu_index, limits=limits, validate=True)
        planes = companion_hdus(raw, obs.hdu_index, _PLANES, limits=limits)
        # a MASK plane, else the data-quality plane (JWST: DO_NOT_USE; HST: its serious bits)
        mask_hdu = planes.get("MASK", planes.get("DQ"))
        file_mask = None
        if mask_hdu is not None:
            # as integers: DQ bits above 2**24 do not survive float32
            plane = read_image(raw, mask_hdu, limits=limits, as_float=False).data
            file_mask = dq_mask(plane, image.header)
        # a VARIANCE plane, else the 1-sigma ERR plane squared (HST/JWST, the image's units)
        if "VARIANCE" in planes:
            file_var = read_image(raw, planes["VARIANCE"], limits=limits).data
        elif "ERR" in planes:
            file_var = np.square(read_image(raw, planes["ERR"], limits=limits).data)
        else:
            file_var = None
        return image, file_mask, file_var

    # gzip removed once for the reads; a file of several CCDs is kept for the next CCD's
    # preprocess, in memory or spooled to disk (one decompression per file, not per CCD),
    # decompressed again if its spool file was removed before the reads (products.read_raw)
    image, file_mask, file_var = read_raw(
        ctx.runtime, obs.blob_key, read, shared=obs.content_hash != obs.blob_key
    )
    shape = image.data.shape
    known = file_mask if file_mask is not None and file_mask.shape == shape else None
    variance = file_var if file_var is not None and file_var.shape == shape else None
    provenance: dict[str, Any] = {}
    pixels = image.data
    if cal.frames:
        pixels, variance, known, provenance = _calibrate(
            ctx, cal, image.data, image.header, variance, known
        )
    t1 = time.perf_counter()
    # The image stays on its own grid: the difference stage aligns it onto the reference.
    res = preprocess_image(
        pixels, header=image.header, variance=variance, mask=known, detect_cosmics=p.detect_cosmics
    )
    t2 = time.perf_counter()
    quality = json_safe(res.quality.as_dict())
    # the background noise the difference stage uses (sqrt of the variance's median over
    # the usable pixels), measured here once so that it need not read the variance back
    quality["noise_from_variance"] = variance_noise(res.variance, res.mask)
    if res.quality.score < p.min_quality:
        terms = ", ".join(f"{k}={v:.2f}" for k, v in res.quality.score_terms.items())
        raise LowQualityError(
            f"image quality score {res.quality.score:.3f} is below {p.min_quality} ({terms})",
            hint="inspect the image; lower preprocess.min_quality to process it anyway",
        )
    tag = {"ASTRIDST": ("preprocess", "AstrID stage"), "ASTRIDOB": (obs.id, "observation id")}
    # the WCS preprocess_image parsed from this header (else parsed, or refused, here)
    wcs = res.wcs.to_header(relax=True) if res.wcs is not None else wcs_header(image.header)
    # the image and mask are kept for the difference stage (it reads them back next); the
    # float32 maps are written (and kept, read-only) as they are, without a copy
    image_key = put_fits(
        ctx.runtime, res.image.astype(np.float32, copy=False), image.header, tag, keep=True
    )
    variance_key = put_fits(ctx.runtime, res.variance.astype(np.float32, copy=False), wcs, tag)
    mask_key = put_fits(ctx.runtime, res.mask.astype(np.uint8), wcs, tag, keep=True)
    t3 = time.perf_counter()
    timings = {
        "read_s": t1 - t0,
        **{f"{k}_s": v for k, v in res.timings.items()},
        "write_s": t3 - t2,
        "total_s": t3 - t0,
    }
    return _Preprocessed(image_key, variance_key, mask_key, quality, timings, provenance)


def variance_noise(variance: np.ndarray, mask: np.ndarray | None) -> float | None:
    """Background noise (image units) from a variance map (image units², shape (ny, nx)):
    sqrt of its median over the usable pixels (finite, > 0, not ``mask``; the sky dominates
    the median, stars' shot noise does not move it). None when no pixel is usable."""
    good = np.isfinite(variance) & (variance > 0)
    if mask is not None and mask.shape == variance.shape:
        good &= ~mask
    # np.median's value, from a partition of the values around the middle only
    return float(np.sqrt(median_by_selection(variance[good]))) if good.any() else None


def _value(row: PreprocessResult) -> dict[str, Any]:
    steps = (row.provenance or {}).get("calibration", {}).get("steps", [])
    return {
        "preprocess_id": row.id,
        "image_key": row.image_key,
        "quality_score": row.quality_score,
        "calibration": steps,
    }


def _find(session: Session, observation_id: int, ident: str) -> PreprocessResult | None:
    return session.scalar(
        select(PreprocessResult).where(
            PreprocessResult.observation_id == observation_id,
            PreprocessResult.params_hash == ident,
        )
    )


def _persist(session: Session, ctx: StageContext, value: _Preprocessed) -> dict[str, Any]:
    obs: ObservationSnapshot = ctx.payload[0]
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
            provenance=json_safe(value.provenance),
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

    Reads the observation's own image of its FITS blob (``hdu_index``: one CCD of a mosaic,
    one chip ``SCI,n`` of an HST file) with the planes that belong to it when present
    (:func:`~astrid.science.fitsio.companion_hdus`): a ``MASK`` (else a ``DQ`` plane, read
    by mission: :func:`~astrid.science.dqmask.dq_mask`) and a ``VARIANCE`` (else an ``ERR``
    plane, squared); applies the registered master bias, dark and flat that match its
    instrument, filter, date and chip (variance propagated; a master of the wrong shape
    fails the stage with :class:`~astrid.science.calibrate.CalibrationMismatchError`), and
    runs
    :func:`astrid.science.preprocess.preprocess`: masks saturated pixels and cosmic rays,
    maps background and noise, builds the variance (ADU²) when it is not known, and
    measures PSF FWHM, depth and a quality score. Stores the image, variance and mask
    (1 = excluded) as FITS blobs. ``value``: ``preprocess_id``, ``image_key``,
    ``quality_score``, ``calibration`` (steps applied).
    """
    p = params or PreprocessParams()
    started, obs, skip = begin(runtime, observation_id, "preprocess")
    if skip is not None:
        return skip
    with runtime.db.session() as session:
        cal = _calibration_in(session, obs)
    frames = _frames(cal)
    ident = preprocess_identity(obs.content_hash, p, frames)
    with runtime.db.session() as session:
        row = _find(session, obs.id, ident)
        stored = None if row is None else _value(row)
    return finish(
        runtime,
        PREPROCESS_STAGE,
        obs.id,
        stored,
        started,
        resume_from=S.COMPLETED,
        params=p,
        inputs={"observation": obs.content_hash, "identity": ident, "calibration": frames},
        input_hash=obs.content_hash if not frames else ident,
        payload=(obs, cal),
        rerun_failed=rerun_failed,
    )
