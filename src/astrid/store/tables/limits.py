"""Per-difference detection limits measured by injecting fake point sources."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin

__all__ = ["DetectionLimit"]


class DetectionLimit(TimestampMixin, Base):
    """Completeness curve and 50 % / 90 % limiting magnitudes of one difference.

    ``curve`` is a list of ``{"mag", "completeness", "n"}`` bins, bright to faint; the
    magnitudes are on the difference's zero point (``zero_point``; instrumental, zero point
    0, when the images carry none).
    """

    __tablename__ = "detection_limits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    difference_id: Mapped[int] = mapped_column(ForeignKey("differences.id"), unique=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id"), index=True)
    n_injected: Mapped[int] = mapped_column(Integer)
    n_recovered: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float, doc="Detection threshold, sigma.")
    zero_point: Mapped[float | None] = mapped_column(Float)
    m50: Mapped[float | None] = mapped_column(Float, doc="50 % completeness magnitude.")
    m90: Mapped[float | None] = mapped_column(Float, doc="90 % completeness magnitude.")
    curve: Mapped[list[Any]] = mapped_column(default=list)
