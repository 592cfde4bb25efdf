"""Master calibration frames (bias, dark, flat) per instrument, filter and date range."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin

__all__ = ["CalibrationFrame"]


class CalibrationFrame(TimestampMixin, Base):
    """A master bias, dark or flat usable for an instrument (and filter, for flats).

    Valid for observations of ``instrument`` whose MJD lies in ``[valid_from, valid_to]``
    (an open end when None), and, when ``chip`` is set, of that chip only. Darks are stored
    as a rate (ADU/s, bias removed), flats normalised to median 1; ``variance_key`` and
    ``mask_key`` hold the master's variance (ADU², or (ADU/s)² for a dark) and bad-pixel
    mask (1 = excluded) when known.
    """

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
    valid_from: Mapped[float | None] = mapped_column(Float, doc="First valid MJD.")
    valid_to: Mapped[float | None] = mapped_column(Float, doc="Last valid MJD.")
    variance_key: Mapped[str | None] = mapped_column(String(128))
    mask_key: Mapped[str | None] = mapped_column(String(128))
    filename: Mapped[str | None] = mapped_column(String(512))
    chip: Mapped[str | None] = mapped_column(
        String(64),
        doc="The chip or CCD it calibrates (``SCI,2``, ``N4``: the observations' "
        "``extra['hdu_name']``), or None for every image of the instrument.",
    )
