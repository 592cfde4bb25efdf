"""Ingest local FITS files: header metadata → content-addressed blob → observation row.

Order matters so that a failure leaves nothing half-written: the bytes are parsed and
validated first (no blob for a file that is not a usable image), then stored, then the
observation is created in one transaction with its ``observation.ingested`` event; if that
transaction fails, a blob that this call created (and nothing else references) is deleted.
Ingesting the same bytes again returns the existing observation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from astrid.domain.observations import ObservationRecord, ObservationService
from astrid.errors import AstridError
from astrid.runtime import Runtime
from astrid.science.fitsio import FitsLimits, image_metadata, read_image
from astrid.store.blobs import blob_key
from astrid.store.tables import Observation

__all__ = ["FITS_SUFFIXES", "IngestOutcome", "find_fits_files", "ingest_bytes", "ingest_paths"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one file."""

    path: str
    status: str  # "ingested" | "duplicate" | "failed"
    observation_id: int | None = None
    error: str | None = None


def find_fits_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and directories (recursively) into FITS file paths, sorted per folder."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.lower().endswith(FITS_SUFFIXES):
                    yield child
        else:
            yield path


def survey_name_for(instrument: str | None, telescope: str | None) -> str:
    """Default survey name derived from the header (e.g. ``DECam``, ``NIRCAM``) or ``local``."""
    for value in (instrument, telescope):
        if value:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", value.strip()).strip("-")
            if name:
                return name[:64]
    return "local"


def ingest_bytes(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> tuple[int, bool]:
    """Ingest one FITS file's bytes; return (observation id, created now).

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS (nothing is stored).
    InvalidCoordinatesError
        The WCS puts the image centre off the sky.
    """
    image = read_image(data, limits=FitsLimits.of(runtime.settings))
    meta = image_metadata(image.header, image.data.shape)
    key = blob_key(data)
    service = ObservationService(runtime.require_migrated())
    with runtime.db.session() as session:
        existing = session.scalar(select(Observation.id).where(Observation.content_hash == key))
    if existing is not None:
        return int(existing), False
    had_blob = runtime.blobs.exists(key)
    runtime.blobs.put(data)
    record = ObservationRecord(
        content_hash=key,
        blob_key=key,
        source=source,
        filename=filename,
        hdu_index=image.hdu_index,
        ra=meta.ra,
        dec=meta.dec,
        width=meta.width,
        height=meta.height,
        mjd=meta.mjd,
        # The short band name ("i", "F200W") is what references and users match on.
        filter=meta.band or meta.filter,
        exposure_time=meta.exposure_time,
        telescope=meta.telescope,
        instrument=meta.instrument,
        pixel_scale=meta.pixel_scale,
        gain=meta.gain,
        read_noise=meta.read_noise,
        saturation=meta.saturation,
        footprint=tuple(meta.footprint),
        extra={
            "bunit": meta.bunit,
            "hdu_name": image.hdu_name,
            "filter_full": meta.filter,
            "zeropoint": meta.zeropoint,
        },
    )
    try:
        with runtime.db.session() as session:
            obs, created = service.create(
                session,
                record,
                survey or meta.survey or survey_name_for(meta.instrument, meta.telescope),
            )
            obs_id = obs.id
    except BaseException:
        if not had_blob:
            runtime.blobs.delete(key)
        raise
    return obs_id, created


def ingest_paths(
    runtime: Runtime,
    paths: Iterable[str | Path],
    *,
    survey: str | None = None,
    on_progress: Callable[[IngestOutcome], None] | None = None,
) -> list[IngestOutcome]:
    """Ingest files and directories; a bad file is reported and the rest go on."""
    outcomes = []
    for path in find_fits_files(paths):
        try:
            data = path.read_bytes()
            obs_id, created = ingest_bytes(
                runtime, data, source=str(path.resolve()), filename=path.name, survey=survey
            )
            outcome = IngestOutcome(str(path), "ingested" if created else "duplicate", obs_id)
        except (AstridError, OSError) as exc:
            outcome = IngestOutcome(str(path), "failed", error=str(exc))
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(outcome)
    return outcomes
