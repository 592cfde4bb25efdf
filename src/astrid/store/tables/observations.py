"""Surveys and the observations (ingested images) that belong to them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime, status_enum, utcnow

__all__ = ["Observation", "ObservationStatus", "Survey"]


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
        status_enum(ObservationStatus, "observation_status"),
        default=ObservationStatus.INGESTED,
        index=True,
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    survey: Mapped[Survey] = relationship(back_populates="observations")
