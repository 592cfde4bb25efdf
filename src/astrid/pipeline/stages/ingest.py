"""Stage 0, ingest: a FITS file → content-addressed blob → observation row.

The one ingest path: the CLI (``astrid ingest``, :func:`ingest_paths`), the API upload
(:func:`ingest_upload`), the demo, the archive fetcher and the workers (:func:`ingest_file`)
all run the ``ingest`` stage on the stage runner, keyed by the file's sha256: a bad file
is parked with its reason and the rest of a batch goes on; the same bytes again return the
existing observation. A mosaic file (several CCD images, none named SCI, or several SCI
chips told apart by EXTVER, HST's ``SCI,1``/``SCI,2``:
:func:`~astrid.science.fitsio.science_hdus`) is one run that makes one observation per CCD,
all sharing the file's blob (:func:`store_observations`); a refused CCD is listed with its
reason while the others are stored.

Order matters so that a failure leaves nothing half-written: the bytes are parsed and
validated first (:func:`read_fits`, the one place ingest reads FITS; no blob for a file
that is not a usable image), then stored, then the observation is created in one
transaction with its ``observation.ingested`` event; if that transaction fails, a blob
that this call created (and nothing else references) is deleted. That storing step is
:mod:`astrid.pipeline.stages.ingest_store`; this module runs it as a stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from astrid.errors import AstridError
from astrid.pipeline.runner import (
    RetryPolicy,
    Stage,
    StageContext,
    StageOutcome,
    run_stage,
    stable_hash,
)
from astrid.pipeline.stages.ingest_store import (
    StoredImage,
    ccd_content_hash,
    read_fits,
    store_observations,
)
from astrid.runtime import Runtime
from astrid.store.blobs import blob_key
from astrid.store.tables import Observation

__all__ = [
    "FITS_SUFFIXES",
    "INGEST_STAGE",
    "IngestOutcome",
    "StoredImage",
    "ccd_content_hash",
    "find_fits_files",
    "ingest_bytes",
    "ingest_data",
    "ingest_file",
    "ingest_files",
    "ingest_paths",
    "ingest_upload",
    "read_fits",
    "store_observations",
    "stored_images",
]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one file, or to one CCD of a mosaic file (``hdu`` its EXTNAME)."""

    path: str
    status: str  # "ingested" | "duplicate" | "failed"
    observation_id: int | None = None
    error: str | None = None
    hdu: str | None = None

    @property
    def label(self) -> str:
        """The file, with the CCD in brackets for a mosaic's (``mosaic.fits[N4]``)."""
        return f"{self.path}[{self.hdu}]" if self.hdu is not None else self.path


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


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class IngestPayload:
    """The bytes of one image and where they came from."""

    data: bytes
    source: str | None
    filename: str | None
    manifest: dict[str, Any] | None = None


def _compute(ctx: StageContext) -> tuple[list[StoredImage], str]:
    payload: IngestPayload = ctx.payload
    stored = store_observations(
        ctx.runtime,
        payload.data,
        source=payload.source,
        filename=payload.filename,
        survey=ctx.params.get("survey"),
    )
    ctx.observation_id = next(s.observation_id for s in stored if s.observation_id is not None)
    return stored, blob_key(payload.data)


def _persist(
    session: Session, ctx: StageContext, value: tuple[list[StoredImage], str]
) -> dict[str, Any]:
    stored, key = value
    payload: IngestPayload = ctx.payload
    first = next(s for s in stored if s.observation_id is not None)
    obs_id = first.observation_id
    result: dict[str, Any] = {"observation_id": obs_id, "created": first.created, "blob_key": key}
    if len(stored) > 1:  # a mosaic: every CCD, stored or refused (with its reason)
        result["images"] = [s.as_dict() for s in stored]
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
        for s in stored:
            row = session.get(Observation, s.observation_id) if s.observation_id else None
            if row is not None:
                row.extra = {**dict(row.extra or {}), "archive": dict(payload.manifest)}
        result["manifest"] = entry
    return result


INGEST_STAGE: Stage[tuple[list[StoredImage], str]] = Stage(
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


def stored_images(out: StageOutcome) -> list[StoredImage] | None:
    """The CCDs of a mosaic's ingest run (``created`` False when the run was reused), or
    None for a single-image file or a failed run."""
    images = out.result.get("images") if out.ok else None
    if not images:
        return None
    return [
        StoredImage(
            int(i["hdu_index"]),
            str(i["hdu_name"]),
            i.get("observation_id"),
            bool(i.get("created")) and not out.reused,
            i.get("error"),
        )
        for i in images
    ]


def _outcomes(path: str, out: StageOutcome) -> list[IngestOutcome]:
    images = stored_images(out)
    if images is not None:
        return [
            IngestOutcome(path, "failed", error=i.error, hdu=i.hdu_name)
            if i.observation_id is None
            else IngestOutcome(
                path, "ingested" if i.created else "duplicate", i.observation_id, hdu=i.hdu_name
            )
            for i in images
        ]
    obs_id = out.result.get("observation_id")
    if not out.ok:
        return [IngestOutcome(path, "failed", error=_reason(out))]
    if out.reused or not out.result.get("created"):
        return [IngestOutcome(path, "duplicate", obs_id)]
    return [IngestOutcome(path, "ingested", obs_id)]


def ingest_paths(
    runtime: Runtime,
    paths: Iterable[str | Path],
    *,
    survey: str | None = None,
    on_progress: Callable[[IngestOutcome], None] | None = None,
) -> list[IngestOutcome]:
    """Ingest files and directories (``astrid ingest``, the demo); a bad file is reported
    and the rest go on. A file parked earlier is tried again (the user asked for it).

    One outcome per file; a mosaic gives one per CCD (``hdu`` set), a refused CCD among
    them ``failed`` with its reason."""
    outcomes = []
    for path in find_fits_files(paths):
        out = ingest_file(runtime, path, survey=survey, rerun_failed=True)
        for outcome in _outcomes(str(path), out):
            outcomes.append(outcome)
            if on_progress is not None:
                on_progress(outcome)
    return outcomes


def ingest_upload(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> tuple[list[int], bool, list[StoredImage] | None]:
    """Ingest one file's bytes now (the API upload): (the observation ids, whether the
    first was created now, a mosaic's CCDs or None).

    Runs :func:`ingest_data` (a parked earlier attempt is tried again) and raises what
    refused the file.

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS (for a mosaic: no CCD is);
        nothing is stored.
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
    images = stored_images(out)
    first = int(out.result["observation_id"])
    ids = [int(i.observation_id) for i in images if i.observation_id] if images else [first]
    return ids, bool(out.result["created"]) and not out.reused, images


def ingest_bytes(
    runtime: Runtime,
    data: bytes,
    *,
    source: str | None = None,
    filename: str | None = None,
    survey: str | None = None,
) -> tuple[int, bool]:
    """Ingest one file's bytes now; return (observation id, created now): for a mosaic,
    its first stored CCD's (:func:`ingest_upload` gives them all).

    Raises
    ------
    astrid.science.fitsio.FitsError
        The bytes are not a FITS image with a celestial WCS (nothing is stored).
    InvalidCoordinatesError
        The WCS puts the image centre off the sky.
    """
    ids, created, _ = ingest_upload(runtime, data, source=source, filename=filename, survey=survey)
    return ids[0], created
