"""Detections: scored candidates and alerts that humans curate into the catalog."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime, status_enum

__all__ = ["Detection", "DetectionStatus"]


class DetectionStatus(enum.StrEnum):
    """Curation state of a detection."""

    PENDING = "pending"
    VALIDATED = "validated"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    ARCHIVED = "archived"


class Detection(TimestampMixin, Base):
    """A scored candidate (or alert) that humans curate into the catalog."""

    __tablename__ = "detections"
    __table_args__ = (
        Index("ix_detections_status_confidence", "status", "confidence"),
        # covering on PostgreSQL: a cone's candidates (id, ra, dec) come from the index
        # alone (index-only scans, no heap page per candidate); migration 0014
        Index("ix_detections_healpix", "healpix", postgresql_include=["id", "ra", "dec"]),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), unique=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id"), index=True)
    model_run_id: Mapped[int | None] = mapped_column(ForeignKey("model_runs.id"))
    model_version: Mapped[str | None] = mapped_column(String(64))
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    healpix: Mapped[int] = mapped_column(BigInteger)
    mjd: Mapped[float | None] = mapped_column(Float, index=True)
    snr: Mapped[float | None] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float, doc="Calibrated P(real).")
    status: Mapped[DetectionStatus] = mapped_column(
        status_enum(DetectionStatus, "detection_status"), default=DetectionStatus.PENDING
    )
    label: Mapped[str | None] = mapped_column(String(32), doc="Human label: real | bogus | ...")
    validated_by: Mapped[str | None] = mapped_column(String(128))
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cutout_keys: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(32), default="pipeline", doc="pipeline | alert")
    external_id: Mapped[str | None] = mapped_column(String(64), index=True, doc="e.g. candid")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
