"""Tables of the curated catalog: entries (one per confirmed object) and releases.

A :class:`CatalogEntry` is the citable face of a confirmed sky object: designation, position,
classification, photometry summary and the cross-match annotations. A
:class:`CatalogRelease` is an immutable, versioned snapshot: the entries (with their light
curves) serialised as JSON lines into the content-addressed blob store, with the SHA-256 of
those bytes as its checksum, so a paper can cite ``version`` + ``checksum`` and anyone can
verify the exact catalog it used. Created by migration ``0007``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables import Base, TimestampMixin, utcnow

__all__ = ["CatalogEntry", "CatalogRelease"]


class CatalogEntry(TimestampMixin, Base):
    """A confirmed object in the live catalog (what the next release will contain)."""

    __tablename__ = "catalog_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[int] = mapped_column(
        ForeignKey("sky_objects.id"), unique=True, doc="The curated sky object."
    )
    name: Mapped[str] = mapped_column(String(64), unique=True, doc="AstrID Jhhmmss.ss+ddmmss.s")
    ra: Mapped[float] = mapped_column(Float, doc="Degrees, ICRS.")
    dec: Mapped[float] = mapped_column(Float, doc="Degrees, ICRS.")
    healpix: Mapped[int] = mapped_column(BigInteger, index=True, doc="Nested order-29 pixel.")
    classification: Mapped[str | None] = mapped_column(String(256), index=True)
    n_detections: Mapped[int] = mapped_column(Integer, default=0)
    first_mjd: Mapped[float | None] = mapped_column(Float, index=True)
    last_mjd: Mapped[float | None] = mapped_column(Float, index=True)
    peak_mag: Mapped[float | None] = mapped_column(Float, index=True)
    latest_mag: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float, doc="Highest calibrated P(real).")
    importance: Mapped[int | None] = mapped_column(Integer, index=True, doc="Expert rating 1-5.")
    discovery_status: Mapped[str | None] = mapped_column(String(32))
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="Cross-matches.")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CatalogRelease(TimestampMixin, Base):
    """An immutable snapshot of the catalog: never updated or deleted once written."""

    __tablename__ = "catalog_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True, doc="e.g. '2026.11.30.1'.")
    checksum: Mapped[str] = mapped_column(String(64), doc="SHA-256 (hex) of the snapshot bytes.")
    blob_key: Mapped[str] = mapped_column(String(128), doc="JSON-lines snapshot in the blobs.")
    n_entries: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
