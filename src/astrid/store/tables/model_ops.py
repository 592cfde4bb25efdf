"""Model operations: per-version shadow scores and per-night drift checks.

``ShadowScore`` keeps every score a registered model version gave a detection (the champion's
and a challenger's side by side), so agreement and precision/recall against curated labels
can be computed per version. ``DriftCheck`` is one night's population stability index of
the scores and input statistics against the champion's training reference.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin

__all__ = ["DriftCheck", "ShadowScore"]


class ShadowScore(TimestampMixin, Base):
    """The score one model version gave one detection."""

    __tablename__ = "shadow_scores"
    __table_args__ = (
        UniqueConstraint("detection_id", "model_name", "model_version"),
        Index("ix_shadow_scores_model", "model_name", "model_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int] = mapped_column(
        ForeignKey("detections.id", ondelete="CASCADE"), index=True
    )
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64), doc="Semantic version.")
    role: Mapped[str] = mapped_column(String(16), doc="champion | challenger when scored.")
    score: Mapped[float] = mapped_column(Float, doc="Calibrated P(real).")


class DriftCheck(TimestampMixin, Base):
    """One night's drift of scores and inputs against the champion's training reference."""

    __tablename__ = "drift_checks"
    __table_args__ = (Index("ix_drift_checks_model_night", "model_name", "night"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    night: Mapped[str] = mapped_column(String(16), doc="Night: integer MJD of (mjd - 0.5).")
    n: Mapped[int] = mapped_column(Integer, doc="Detections of the night checked.")
    psi: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="PSI per quantity.")
    max_psi: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)
