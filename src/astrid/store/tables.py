"""The database schema: the whole data path from survey images to curated detections.

One typed SQLAlchemy 2 ORM, migrated by Alembic, identical on SQLite and PostgreSQL. Later
stages add behaviour, not tables: every stage of the pipeline already has its row here.

Data path::

    Survey ─< Observation ─< PreprocessResult
                  │  └──────< Difference >── Reference
                  │               └─< Candidate ─── Detection >── ModelRun >── Model
                  └─< DomainEvent (outbox)        TrainingDataset
    CalibrationFrame (bias/dark/flat, per instrument)
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "CalibrationFrame",
    "Candidate",
    "Detection",
    "DetectionStatus",
    "Difference",
    "DomainEvent",
    "Model",
    "ModelRun",
    "Observation",
    "ObservationStatus",
    "PreprocessResult",
    "Reference",
    "Survey",
    "TrainingDataset",
    "utcnow",
]

JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the only clock the store uses)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for Alembic)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class ObservationStatus(enum.StrEnum):
    """Processing status of an observation; transitions live in :mod:`astrid.domain.status`."""

    INGESTED = "ingested"
    PREPROCESSING = "preprocessing"
    PREPROCESSED = "preprocessed"
    DIFFERENCING = "differencing"
    DIFFERENCED = "differenced"
    DETECTING = "detecting"
    COMPLETED = "completed"
    FAILED = "failed"
    ARCHIVED = "archived"


class DetectionStatus(enum.StrEnum):
    """Curation state of a detection."""

    PENDING = "pending"
    VALIDATED = "validated"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    ARCHIVED = "archived"


def _status_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native ENUM) so adding a state needs no type migration.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Survey(TimestampMixin, Base):
    """A survey or instrument stream that observations belong to."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    telescope: Mapped[str | None] = mapped_column(String(128))
    instrument: Mapped[str | None] = mapped_column(String(128))
    site_lon: Mapped[float | None] = mapped_column(Float, doc="Site longitude, degrees east.")
    site_lat: Mapped[float | None] = mapped_column(Float, doc="Site latitude, degrees.")
    site_height: Mapped[float | None] = mapped_column(Float, doc="Site height, metres.")
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)

    observations: Mapped[list[Observation]] = relationship(back_populates="survey")


class Observation(TimestampMixin, Base):
    """One ingested image: its bytes (by content key), where it points and its status."""

    __tablename__ = "observations"
    __table_args__ = (
        Index("ix_observations_survey_status", "survey_id", "status"),
        Index("ix_observations_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 of the file.")
    blob_key: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(Text, doc="Where the bytes came from.")
    filename: Mapped[str | None] = mapped_column(String(512))
    hdu_index: Mapped[int] = mapped_column(default=0)
    ra: Mapped[float] = mapped_column(Float, doc="Image centre RA, degrees [0, 360).")
    dec: Mapped[float] = mapped_column(Float, doc="Image centre Dec, degrees [-90, 90].")
    healpix: Mapped[int] = mapped_column(BigInteger, index=True, doc="Nested order-29 pixel.")
    mjd: Mapped[float | None] = mapped_column(Float, index=True)
    filter: Mapped[str | None] = mapped_column(String(64))
    exposure_time: Mapped[float | None] = mapped_column(Float, doc="Seconds.")
    telescope: Mapped[str | None] = mapped_column(String(128))
    instrument: Mapped[str | None] = mapped_column(String(128))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    pixel_scale: Mapped[float | None] = mapped_column(Float, doc="arcsec/pixel.")
    gain: Mapped[float | None] = mapped_column(Float, doc="e-/ADU.")
    read_noise: Mapped[float | None] = mapped_column(Float, doc="e-.")
    saturation: Mapped[float | None] = mapped_column(Float, doc="ADU.")
    airmass: Mapped[float | None] = mapped_column(Float)
    footprint: Mapped[list[Any]] = mapped_column(default=list, doc="[[ra, dec] x 4] corners.")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ObservationStatus] = mapped_column(
        _status_enum(ObservationStatus, "observation_status"),
        default=ObservationStatus.INGESTED,
        index=True,
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    survey: Mapped[Survey] = relationship(back_populates="observations")


class CalibrationFrame(TimestampMixin, Base):
    """A master bias, dark or flat usable for an instrument (and filter, for flats)."""

    __tablename__ = "calibration_frames"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), doc="bias | dark | flat")
    instrument: Mapped[str | None] = mapped_column(String(128))
    filter: Mapped[str | None] = mapped_column(String(64))
    exposure_time: Mapped[float | None] = mapped_column(Float)
    binning: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mjd: Mapped[float | None] = mapped_column(Float)
    blob_key: Mapped[str] = mapped_column(String(128))
    n_frames: Mapped[int] = mapped_column(default=1)


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


class Model(TimestampMixin, Base):
    """A trained model version (mirrors an MLflow registry entry)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32), doc="Semantic version.")
    alias: Mapped[str | None] = mapped_column(String(32), doc="champion | challenger | None")
    artifact_key: Mapped[str | None] = mapped_column(String(128))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("training_datasets.id"))


class ModelRun(TimestampMixin, Base):
    """One use of a model: training, evaluation or an inference batch."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="train | evaluate | inference")
    status: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Detection(TimestampMixin, Base):
    """A scored candidate (or alert) that humans curate into the catalog."""

    __tablename__ = "detections"
    __table_args__ = (Index("ix_detections_status_confidence", "status", "confidence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), unique=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id"), index=True)
    model_run_id: Mapped[int | None] = mapped_column(ForeignKey("model_runs.id"))
    model_version: Mapped[str | None] = mapped_column(String(64))
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    healpix: Mapped[int] = mapped_column(BigInteger, index=True)
    mjd: Mapped[float | None] = mapped_column(Float, index=True)
    snr: Mapped[float | None] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float, doc="Calibrated P(real).")
    status: Mapped[DetectionStatus] = mapped_column(
        _status_enum(DetectionStatus, "detection_status"), default=DetectionStatus.PENDING
    )
    label: Mapped[str | None] = mapped_column(String(32), doc="Human label: real | bogus | ...")
    validated_by: Mapped[str | None] = mapped_column(String(128))
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cutout_keys: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(32), default="pipeline", doc="pipeline | alert")
    external_id: Mapped[str | None] = mapped_column(String(64), index=True, doc="e.g. candid")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TrainingDataset(TimestampMixin, Base):
    """A versioned set of labelled stamps; ``version`` is the hash of its sorted member keys."""

    __tablename__ = "training_datasets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    manifest_key: Mapped[str] = mapped_column(String(128))
    n_members: Mapped[int] = mapped_column(Integer)
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str | None] = mapped_column(Text)


class DomainEvent(Base):
    """Transactional outbox: events written with the change they describe, dispatched later."""

    __tablename__ = "domain_events"
    __table_args__ = (Index("ix_domain_events_undispatched", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    aggregate_type: Mapped[str] = mapped_column(String(32))
    aggregate_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Tables defined beside their layer register on the same metadata (one schema, one migration
# chain); importing them here makes ``Base.metadata`` complete wherever tables are imported.
from astrid.store import auth_tables as _auth_tables  # noqa: E402,F401
from astrid.store import pipeline_tables as _pipeline_tables  # noqa: E402,F401
from astrid.store.catalog_tables import *  # noqa: E402, F403
from astrid.store.curation_tables import *  # noqa: E402, F403
from astrid.store.notify_tables import *  # noqa: E402, F403
