"""Ingest's storing step: a FITS file's bytes → its blob and one observation per image.

:func:`store_observations` is the work of the ``ingest`` stage
(:mod:`astrid.pipeline.stages.ingest` runs it on the stage runner and is what callers use):
parse and validate first (:func:`read_fits`, the one place ingest reads FITS), store the blob,
then create each observation in its own transaction; a mosaic's CCDs share the file's blob
and get :func:`ccd_content_hash` as their content hash.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from astrid.domain.observations import (
    InvalidCoordinatesError,
    ObservationRecord,
    ObservationService,
)
from astrid.pipeline.stages.products import ingest_fits, read_spooled
from astrid.runtime import Runtime
from astrid.science.fitsio import (
    FitsError,
    FitsImage,
    FitsLimits,
    UnusableImageError,
    read_image,
    science_hdus,
)
from astrid.science.fitsmeta import ImageMetadata, image_metadata
from astrid.store.blobs import blob_key
from astrid.store.tables import Observation

__all__ = [
    "StoredImage",
    "ccd_content_hash",
    "read_fits",
    "store_observations",
    "survey_name_for",
]


def survey_name_for(instrument: str | None, telescope: str | None) -> str:
    """Default survey name derived from the header (e.g. ``DECam``, ``NIRCAM``) or ``local``."""
    for value in (instrument, telescope):
        if value:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", value.strip()).strip("-")
            if name:
                return name[:64]
    return "local"


def read_fits(
    data: bytes | Path, limits: FitsLimits | None = None, hdu: int | None = None
) -> tuple[FitsImage, ImageMetadata]:
    """Parse and validate one image of a file's bytes (or of a plain FITS file at a path:
    a large gzipped mosaic's spool file, of which only that image's HDU is read): the
    image and its metadata.

    The one place ingest reads FITS (every entry point comes here); ``hdu`` picks one CCD
    of a mosaic (:func:`~astrid.science.fitsio.science_hdus`), by default the file's one
    science image.

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS.
    """
    image = read_image(data, hdu, limits=limits, validate=True)
    return image, image_metadata(image.header, image.data.shape)


def ccd_content_hash(key: str, hdu_index: int) -> str:
    """The ``content_hash`` of the observation of one CCD of a mosaic: 64 hex digits of
    sha256 over the file's blob key and the HDU index (a single-image file's observation
    keeps the blob key itself)."""
    return hashlib.sha256(f"astrid-ccd:{key}:{hdu_index}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredImage:
    """One science image (CCD) of a stored file: its observation, or why it was refused."""

    hdu_index: int
    hdu_name: str
    observation_id: int | None
    created: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hdu_index": self.hdu_index,
            "hdu_name": self.hdu_name,
            "observation_id": self.observation_id,
            "created": self.created,
            "error": self.error,
        }


def _record(
    image: FitsImage,
    meta: ImageMetadata,
    *,
    content_hash: str,
    key: str,
    source: str | None,
    filename: str | None,
) -> ObservationRecord:
    return ObservationRecord(
        content_hash=content_hash,
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


def _create(
    runtime: Runtime, record: ObservationRecord, survey: str | None, meta: ImageMetadata
) -> tuple[int, bool]:
    service = ObservationService(runtime.db)
    with runtime.db.session() as session:
        obs, created = service.create(
            session,
            record,
            survey or meta.survey or survey_name_for(meta.instrument, meta.telescope),
        )
        return int(obs.id), created


def store_observations(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> list[StoredImage]:
    """Validate, store the blob and create one observation per science image; the ingest
    stage's work (call :func:`ingest_data` rather than this: it records the run).

    A single-image file: one observation whose ``content_hash`` is the blob key; it raises
    :class:`~astrid.science.fitsio.FitsError` or ``InvalidCoordinatesError`` for bad
    input, with nothing stored. A mosaic (:func:`~astrid.science.fitsio.science_hdus`):
    one observation per CCD (``hdu_index``, ``extra["hdu_name"]``, ``content_hash`` =
    :func:`ccd_content_hash`), all sharing the file's one blob; a CCD that is not a usable
    image with a celestial WCS is returned with its ``error`` while the others are stored;
    when none is usable, :class:`~astrid.science.fitsio.FitsError` naming each, nothing
    stored. The same bytes again return the existing observations (``created`` False).

    A gzipped file is decompressed once, not per CCD
    (:func:`~astrid.pipeline.stages.products.ingest_fits`): in memory, or, above
    ``ASTRID_PIPELINE_RAW_CACHE_MB``, as a stream into the raw spool, from which each CCD's
    HDU is read alone and where preprocess finds the file afterwards.
    """
    runtime.require_migrated()
    limits = FitsLimits.of(runtime.settings)
    key = blob_key(data)
    plain = ingest_fits(runtime, data)

    def again() -> bytes | Path:  # the spool file was removed under the reads: once more
        return ingest_fits(runtime, data)

    try:
        hdus = read_spooled(plain, again, lambda src: science_hdus(src, limits=limits))
    except BaseException:
        if isinstance(plain, Path):
            plain.unlink(missing_ok=True)  # not an image file: nothing will read it
        raise
    mosaic = len(hdus) > 1
    hashes = {index: ccd_content_hash(key, index) if mosaic else key for index, _ in hdus}
    with runtime.db.session() as session:
        existing = dict(
            session.execute(
                select(Observation.content_hash, Observation.id).where(
                    Observation.content_hash.in_(list(hashes.values()))
                )
            ).all()
        )
    results: dict[int, StoredImage] = {}
    had_blob: bool | None = None  # asked when the first new image is about to be stored
    made = 0
    try:
        # one CCD at a time (read, stored, dropped): a 60-CCD file is never all in memory
        for index, name in hdus:
            if hashes[index] in existing:
                results[index] = StoredImage(index, name, int(existing[hashes[index]]), False)
                continue
            try:
                image, meta = read_spooled(
                    plain, again, functools.partial(read_fits, limits=limits, hdu=index)
                )
                record = _record(
                    image, meta, content_hash=hashes[index], key=key, source=source,
                    filename=filename,
                )  # fmt: skip
                del image
                if had_blob is None:
                    had_blob = runtime.blobs.exists(key)
                    runtime.blobs.put(data)
                obs_id, created = _create(runtime, record, survey, meta)
            except (FitsError, InvalidCoordinatesError) as exc:
                if not mosaic:
                    raise
                results[index] = StoredImage(
                    index, name, None, False, f"HDU {index} ({name}): {exc}"
                )
                continue
            made += 1
            results[index] = StoredImage(index, name, obs_id, created)
        if mosaic and not made and not existing:
            raise UnusableImageError(
                f"none of the mosaic's {len(hdus)} CCDs is a usable image with a celestial "
                "WCS: " + "; ".join(str(results[index].error) for index, _ in hdus),
                hint="each CCD needs finite pixels and its own celestial WCS",
            )
    except BaseException:
        if had_blob is False and not made and not existing:
            runtime.blobs.delete(key)  # stored by this call and referenced by nothing
        if isinstance(plain, Path) and not made and not existing:
            plain.unlink(missing_ok=True)  # no observation will read the spooled file
        raise
    if isinstance(plain, Path) and not mosaic:
        # one image: preprocess reads it from the blob, not from the spool
        plain.unlink(missing_ok=True)
    return [results[index] for index, _ in hdus]
