"""Master calibration frames (bias, dark, flat) per instrument."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin

__all__ = ["CalibrationFrame"]


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
