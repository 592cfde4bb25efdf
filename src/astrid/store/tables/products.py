"""Image products of the pipeline: preprocessed images, references, differences, candidates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin

__all__ = ["Candidate", "Difference", "PreprocessResult", "Reference"]


class PreprocessResult(TimestampMixin, Base):
    """Calibrated, masked, aligned image products of one observation and their quality."""

    __tablename__ = "preprocess_results"
    __table_args__ = (UniqueConstraint("observation_id", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id"), index=True)
    stage_version: Mapped[str] = mapped_column(String(32))
    params_hash: Mapped[str] = mapped_column(String(64))
    image_key: Mapped[str] = mapped_column(String(128))
    variance_key: Mapped[str | None] = mapped_column(String(128))
    mask_key: Mapped[str | None] = mapped_column(String(128))
    background: Mapped[float | None] = mapped_column(Float)
    noise: Mapped[float | None] = mapped_column(Float)
    fwhm: Mapped[float | None] = mapped_column(Float, doc="Pixels.")
    ellipticity: Mapped[float | None] = mapped_column(Float)
    limiting_mag: Mapped[float | None] = mapped_column(Float)
    astrometric_rms: Mapped[float | None] = mapped_column(Float, doc="Pixels.")
    quality_score: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="Calibration frames applied (ids, blob keys, steps)."
    )


class Reference(TimestampMixin, Base):
    """A reference image of a field and filter (one observation or a coadd)."""

    __tablename__ = "reference_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id"))
    filter: Mapped[str | None] = mapped_column(String(64))
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    healpix: Mapped[int] = mapped_column(BigInteger, index=True)
    # Unique: two workers selecting the same reference image must share one row.
    blob_key: Mapped[str] = mapped_column(String(128), unique=True)
    variance_key: Mapped[str | None] = mapped_column(String(128))
    observation_ids: Mapped[list[Any]] = mapped_column(default=list)
    fwhm: Mapped[float | None] = mapped_column(Float)
    depth: Mapped[float | None] = mapped_column(Float, doc="5-sigma limiting magnitude.")
    mjd_start: Mapped[float | None] = mapped_column(Float)
    mjd_end: Mapped[float | None] = mapped_column(Float)
    is_active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(
        default=1, doc="1, 2, ... per field and filter, in order of creation."
    )
    mask_key: Mapped[str | None] = mapped_column(String(128))


class Difference(TimestampMixin, Base):
    """A difference of an observation against a reference, by one method and parameters."""

    __tablename__ = "differences"
    __table_args__ = (UniqueConstraint("observation_id", "reference_id", "method", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id"), index=True)
    reference_id: Mapped[int] = mapped_column(ForeignKey("reference_images.id"), index=True)
    method: Mapped[str] = mapped_column(String(16), doc="zogy | classic")
    stage_version: Mapped[str] = mapped_column(String(32))
    params_hash: Mapped[str] = mapped_column(String(64))
    difference_key: Mapped[str] = mapped_column(String(128))
    scorr_key: Mapped[str | None] = mapped_column(String(128))
    reference_version: Mapped[int | None] = mapped_column(
        Integer, doc="Version of the reference used."
    )
    n_candidates: Mapped[int] = mapped_column(default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Candidate(TimestampMixin, Base):
    """A source extracted from a difference image, with its features and rule-based score."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    difference_id: Mapped[int] = mapped_column(ForeignKey("differences.id"), index=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id"), index=True)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    healpix: Mapped[int] = mapped_column(BigInteger, index=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    snr: Mapped[float] = mapped_column(Float, index=True)
    flux: Mapped[float | None] = mapped_column(Float)
    flux_err: Mapped[float | None] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(default=0)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
