"""Stage 0, ingest: a FITS file → content-addressed blob → observation row.

The one ingest path: the CLI (``astrid ingest``, :func:`ingest_paths`), the API upload
(:func:`ingest_bytes`), the demo, the archive fetcher and the workers (:func:`ingest_file`)
all run the ``ingest`` stage on the stage runner, keyed by the file's sha256: a bad file
is parked with its reason and the rest of a batch goes on; the same bytes again return the
existing observation.

Order matters so that a failure leaves nothing half-written: the bytes are parsed and
validated first (:func:`read_fits`, the one place ingest reads FITS; no blob for a file
that is not a usable image), then stored, then the observation is created in one
transaction with its ``observation.ingested`` event; if that transaction fails, a blob
that this call created (and nothing else references) is deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.observations import ObservationRecord, ObservationService
from astrid.errors import AstridError
from astrid.pipeline.runner import (
    RetryPolicy,
    Stage,
    StageContext,
    StageOutcome,
    run_stage,
    stable_hash,
)
from astrid.runtime import Runtime
from astrid.science.fitsio import FitsImage, FitsLimits, read_image
from astrid.science.fitsmeta import ImageMetadata, image_metadata
from astrid.store.blobs import blob_key
from astrid.store.tables import Observation

__all__ = [
    "FITS_SUFFIXES",
    "INGEST_STAGE",
    "IngestOutcome",
    "find_fits_files",
    "ingest_bytes",
    "ingest_data",
    "ingest_file",
    "ingest_files",
    "ingest_paths",
    "read_fits",
    "store_observation",
]

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


def read_fits(data: bytes, limits: FitsLimits | None = None) -> tuple[FitsImage, ImageMetadata]:
    """Parse and validate one file's bytes: the image and its metadata.

    The one place ingest reads FITS (every entry point comes here).

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS.
    """
    image = read_image(data, limits=limits)
    return image, image_metadata(image.header, image.data.shape)


def store_observation(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> tuple[int, bool]:
    """Validate, store the blob and create the observation; (id, created now).

    The ingest stage's work (call :func:`ingest_data` rather than this: it records the
    run). Raises :class:`~astrid.science.fitsio.FitsError` or
    ``InvalidCoordinatesError`` for bad input, with nothing stored.
    """
    image, meta = read_fits(data, FitsLimits.of(runtime.settings))
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


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class IngestPayload:
    """The bytes of one image and where they came from."""

    data: bytes
    source: str | None
    filename: str | None
    manifest: dict[str, Any] | None = None


def _compute(ctx: StageContext) -> tuple[int, bool, str]:
    payload: IngestPayload = ctx.payload
    obs_id, created = store_observation(
        ctx.runtime,
        payload.data,
        source=payload.source,
        filename=payload.filename,
        survey=ctx.params.get("survey"),
    )
    ctx.observation_id = obs_id
    return obs_id, created, blob_key(payload.data)


def _persist(session: Session, ctx: StageContext, value: tuple[int, bool, str]) -> dict[str, Any]:
    obs_id, created, key = value
    payload: IngestPayload = ctx.payload
    result: dict[str, Any] = {"observation_id": obs_id, "created": created, "blob_key": key}
    if payload.manifest is not None:
        obs = session.get(Observation, obs_id)
        entry = {"key": key, "observation_id": obs_id, **payload.manifest}
        if obs is not None:
            entry.update(
                ra=obs.ra,
                dec=obs.dec,
                mjd=obs.mjd,
                filter=obs.filter,
                width=obs.width,
                height=obs.height,
            )
            obs.extra = {**dict(obs.extra or {}), "archive": dict(payload.manifest)}
        result["manifest"] = entry
    return result


INGEST_STAGE: Stage[tuple[int, bool, str]] = Stage(
    name="ingest", version="1", compute=_compute, persist=_persist
)


def _params(survey: str | None, manifest: dict[str, Any] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"survey": survey}
    if manifest is not None:  # the same bytes from an archive get their own manifest entry
        params.update(
            archive=manifest.get("archive"),
            archive_survey=manifest.get("survey"),
            url=manifest.get("url"),
        )
    return params


def ingest_data(
    runtime: Runtime,
    data: bytes,
    *,
    filename: str | None = None,
    source: str | None = None,
    path: str | None = None,
    survey: str | None = None,
    manifest: dict[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    rerun_failed: bool = False,
) -> StageOutcome:
    """Ingest one file's bytes through the stage runner (idempotent by their sha256).

    ``result``: ``observation_id``, ``created``, ``blob_key`` (and ``manifest`` for an
    archive image). Bad input is parked (``status == "failed"``, ``error`` says why; the
    exception itself is ``outcome.exception`` when this call ran it).
    """
    return run_stage(
        runtime,
        INGEST_STAGE,
        params=_params(survey, manifest),
        inputs={"path": path if path is not None else filename, "size": len(data)},
        input_hash=blob_key(data),
        payload=IngestPayload(data=data, source=source, filename=filename, manifest=manifest),
        retry=retry,
        rerun_failed=rerun_failed,
    )


def ingest_file(
    runtime: Runtime,
    path: str | Path,
    *,
    survey: str | None = None,
    data: bytes | None = None,
    manifest: dict[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    rerun_failed: bool = False,
) -> StageOutcome:
    """Ingest one FITS file through the stage runner (idempotent by its content hash).

    A file that cannot be read is parked as a failed run (keyed by its path) and reported;
    a file that is not a usable image is parked keyed by its content.
    """
    p = Path(path)
    if data is None:
        try:
            data = p.read_bytes()
        except OSError as exc:
            error = AstridError(f"cannot read {p}: {exc.strerror or exc}")

            def fail(ctx: StageContext) -> None:
                raise error

            unreadable: Stage[None] = Stage(
                name="ingest", version="1", compute=fail, persist=lambda s, c, v: {}
            )
            return run_stage(
                runtime,
                unreadable,
                params=_params(survey, manifest),
                inputs={"path": str(p)},
                input_hash=stable_hash({"unreadable": str(p.resolve())}),
                retry=retry,
                rerun_failed=True,
            )
    source = str(manifest.get("url")) if manifest and manifest.get("url") else str(p.resolve())
    return ingest_data(
        runtime,
        data,
        filename=p.name,
        source=source,
        path=str(p),
        survey=survey,
        manifest=manifest,
        retry=retry,
        rerun_failed=rerun_failed,
    )


def ingest_files(
    runtime: Runtime,
    paths: Iterable[str | Path],
    *,
    survey: str | None = None,
    on_progress: Callable[[str, StageOutcome], None] | None = None,
) -> list[StageOutcome]:
    """Ingest many files; a bad one is parked with its reason and the rest go on."""
    outcomes = []
    for path in paths:
        outcome = ingest_file(runtime, path, survey=survey)
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(str(path), outcome)
    return outcomes


def _reason(outcome: StageOutcome) -> str:
    """The failure's own message (as the exception says it), else the stored reason."""
    return str(outcome.exception) if outcome.exception is not None else str(outcome.error)


def ingest_paths(
    runtime: Runtime,
    paths: Iterable[str | Path],
    *,
    survey: str | None = None,
    on_progress: Callable[[IngestOutcome], None] | None = None,
) -> list[IngestOutcome]:
    """Ingest files and directories (``astrid ingest``, the demo); a bad file is reported
    and the rest go on. A file parked earlier is tried again (the user asked for it)."""
    outcomes = []
    for path in find_fits_files(paths):
        out = ingest_file(runtime, path, survey=survey, rerun_failed=True)
        obs_id = out.result.get("observation_id")
        if not out.ok:
            outcome = IngestOutcome(str(path), "failed", error=_reason(out))
        elif out.reused or not out.result.get("created"):
            outcome = IngestOutcome(str(path), "duplicate", obs_id)
        else:
            outcome = IngestOutcome(str(path), "ingested", obs_id)
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(outcome)
    return outcomes


def ingest_bytes(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> tuple[int, bool]:
    """Ingest one file's bytes now (the API upload); return (observation id, created now).

    Runs :func:`ingest_data` (a parked earlier attempt is tried again) and raises what
    refused the file.

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS (nothing is stored).
    InvalidCoordinatesError
        The WCS puts the image centre off the sky.
    """
    out = ingest_data(
        runtime, data, filename=filename, source=source, survey=survey, rerun_failed=True
    )
    if not out.ok:
        if out.exception is not None:
            raise out.exception
        raise AstridError(str(out.error))
    return int(out.result["observation_id"]), bool(out.result["created"]) and not out.reused
