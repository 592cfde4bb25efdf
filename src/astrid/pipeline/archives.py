"""Ingest by sky position from public archives: NASA SkyView and MAST, through astroquery.

``ingest_position(runtime, PositionRequest(...))`` validates the request (archive, survey,
RA/Dec, field of view) **before** anything is queued or fetched, then runs two idempotent
stages (:mod:`astrid.pipeline.runner`):

``archive_fetch``
    asks the archive for images covering the field, downloads them and stores their bytes
    in the blob store (keyed by the request; a repeated request reuses the stored images);
``ingest``
    one run per image (keyed by the image's sha256): an observation, with a JSON manifest
    entry (archive, survey, URL, position, field, blob key) for dataset building, kept in
    the run's result, in ``Observation.extra["archive"]`` and collected by
    :func:`archive_manifest`.

Archives are plugins (:data:`ARCHIVES`): a class with ``name``, ``surveys()`` and
``fetch(request)``. ``base_url`` points a client at a mirror (or a test server): the real
astroquery client code runs against it unchanged.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from sqlalchemy import select

from astrid.domain.observations import validate_coordinates
from astrid.errors import AstridError
from astrid.pipeline.runner import (
    RetryPolicy,
    Stage,
    StageContext,
    StageOutcome,
    TransientError,
    classify_error,
    run_stage,
    stable_hash,
)
from astrid.pipeline.stages.ingest import ingest_file
from astrid.runtime import Runtime
from astrid.store.tables import StageRun, StageRunStatus, utcnow

__all__ = [
    "ARCHIVES",
    "MAX_FOV_DEG",
    "ArchiveError",
    "ArchiveImage",
    "InvalidFieldError",
    "MastArchive",
    "PositionOutcome",
    "PositionRequest",
    "SkyViewArchive",
    "UnknownArchiveError",
    "UnknownSurveyError",
    "archive_manifest",
    "ingest_position",
    "open_archive",
    "validate_request",
]

MAX_FOV_DEG = 2.0
"""Largest field of view accepted, in degrees (bigger requests are refused, not clipped)."""


class ArchiveError(AstridError):
    """An archive answered with an error or something AstrID cannot use."""


class UnknownArchiveError(ArchiveError):
    """The archive name is not one of :data:`ARCHIVES`."""


class UnknownSurveyError(ArchiveError):
    """The archive does not offer that survey (collection)."""


class InvalidFieldError(AstridError):
    """The field of view or image size is out of range."""


@dataclass(frozen=True)
class PositionRequest:
    """Images of one field from one archive survey.

    Attributes
    ----------
    archive : str
        ``"skyview"`` or ``"mast"``.
    survey : str
        SkyView survey name (``"DSS2 Red"``) or MAST collection (``"JWST"``, ``"HST"``).
    ra, dec : float
        Field centre, ICRS degrees.
    fov : float
        Field of view (side of the square for SkyView, diameter of the cone for MAST),
        in degrees.
    pixels : int
        Image side in pixels (SkyView resamples to it; ignored by MAST).
    max_images : int
        At most this many images are fetched (MAST can hold many per field).
    """

    archive: str
    survey: str
    ra: float
    dec: float
    fov: float
    pixels: int = 300
    max_images: int = 5

    def params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchiveImage:
    """One downloaded image: its bytes and where they came from."""

    data: bytes
    url: str
    filename: str
    meta: dict[str, Any] = field(default_factory=dict)


class Archive(Protocol):
    name: ClassVar[str]

    def surveys(self) -> list[str]: ...

    def fetch(self, request: PositionRequest) -> list[ArchiveImage]: ...


def _coord(ra: float, dec: float) -> Any:

    return SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")


def _wrap_http(what: str, exc: Exception) -> Exception:
    """Turn a client failure into a transient or permanent AstrID error."""
    message = f"{what}: {type(exc).__name__}: {exc}"
    if classify_error(exc) == "transient":
        return TransientError(message, hint="the archive may be busy; the run is retried")
    return ArchiveError(message)


class SkyViewArchive:
    """NASA SkyView (``astroquery.skyview``): any of its ~100 surveys, resampled to a field.

    Parameters
    ----------
    base_url : str, optional
        Server root of a SkyView mirror (default: astroquery's configured SkyView URL).
    timeout : float
        Seconds per HTTP request.
    """

    name: ClassVar[str] = "skyview"
    FORM_PATH: ClassVar[str] = "/current/cgi/basicform.pl"

    def __init__(self, base_url: str | None = None, timeout: float = 60.0) -> None:
        from astroquery.skyview import SkyViewClass  # astroquery: slow import, fetches only

        self.client = SkyViewClass()
        if base_url:
            self.client.URL = base_url.rstrip("/") + self.FORM_PATH
        self.client.TIMEOUT = timeout
        self.timeout = timeout

    def surveys(self) -> list[str]:
        """Survey names offered by the server's query form."""
        try:
            return list(self.client._valid_surveys)
        except Exception as exc:  # requests/bs4 errors: report which archive failed
            raise _wrap_http("SkyView survey list", exc) from exc

    def fetch(self, request: PositionRequest) -> list[ArchiveImage]:
        """Query the form for the field and download every FITS image it links to."""

        try:
            urls = self.client.get_image_list(
                _coord(request.ra, request.dec),
                request.survey,
                pixels=str(request.pixels),
                width=request.fov * u.deg,
                height=request.fov * u.deg,
                cache=False,
            )
        except Exception as exc:
            raise _wrap_http("SkyView query", exc) from exc
        images = []
        for url in urls[: request.max_images]:
            try:
                response = self.client._request("GET", url, cache=False, timeout=self.timeout)
                response.raise_for_status()
            except Exception as exc:
                raise _wrap_http(f"SkyView download {url}", exc) from exc
            name = url.rsplit("/", 1)[-1] or "skyview.fits"
            images.append(ArchiveImage(response.content, url, name, {"survey": request.survey}))
        return images


class MastArchive:
    """MAST (``astroquery.mast.Observations``): calibrated science images in a cone.

    The survey is a MAST collection (``obs_collection``: JWST, HST, GALEX, ...). Only
    ``dataproduct_type == "image"`` observations and ``SCIENCE`` FITS products are taken.

    Parameters
    ----------
    base_url : str, optional
        Server root of a MAST mirror (default: astroquery's configured MAST server).
    timeout : float
        Seconds per HTTP request.
    """

    name: ClassVar[str] = "mast"

    def __init__(self, base_url: str | None = None, timeout: float = 120.0) -> None:
        from astroquery.mast import ObservationsClass  # astroquery: slow import, fetches only

        self.client = ObservationsClass()
        if base_url:
            root = base_url.rstrip("/")
            api = self.client._portal_api_connection
            api.MAST_REQUEST_URL = root + "/api/v0/invoke"
            api.COLUMNS_CONFIG_URL = root + "/portal/Mashup/Mashup.asmx/columnsconfig"
            api.MAST_DOWNLOAD_URL = root + "/api/v0.1/Download/file"
            api.MAST_BUNDLE_URL = root + "/api/v0.1/Download/bundle"
            api.TIMEOUT = timeout
        self.download_url = self.client._portal_api_connection.MAST_DOWNLOAD_URL

    def surveys(self) -> list[str]:
        """MAST collections (missions) the server lists."""
        try:
            return list(self.client.list_missions())
        except Exception as exc:
            raise _wrap_http("MAST mission list", exc) from exc

    def fetch(self, request: PositionRequest) -> list[ArchiveImage]:
        """Cone query, product list, science FITS download (at most ``max_images``)."""
        from astroquery.exceptions import NoResultsWarning  # astroquery: slow import

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoResultsWarning)
                obs = self.client.query_region(
                    _coord(request.ra, request.dec), radius=(request.fov / 2.0) * u.deg
                )
                if len(obs) == 0:
                    return []
                keep = (np.asarray(obs["obs_collection"]) == request.survey) & (
                    np.asarray(obs["dataproduct_type"]) == "image"
                )
                obs = obs[keep]
                if len(obs) == 0:
                    return []
                products = self.client.get_product_list(obs[: request.max_images])
                products = self.client.filter_products(
                    products, productType="SCIENCE", extension="fits"
                )
        except Exception as exc:
            raise _wrap_http("MAST query", exc) from exc
        images = []
        with tempfile.TemporaryDirectory(prefix="astrid-mast-") as tmp:
            for row in products[: request.max_images]:
                uri = str(row["dataURI"])
                name = str(row["productFilename"])
                local = Path(tmp) / name
                try:
                    status, msg, _ = self.client.download_file(
                        uri, local_path=str(local), cache=False, verbose=False
                    )
                except Exception as exc:
                    raise _wrap_http(f"MAST download {uri}", exc) from exc
                if status != "COMPLETE" or not local.is_file():
                    text = f"MAST download {uri} failed: {msg}"
                    if msg and any(f" {c}" in msg for c in ("500", "502", "503", "504", "429")):
                        raise TransientError(text)
                    raise ArchiveError(text)
                meta = {
                    "survey": request.survey,
                    "obs_id": str(row["obs_id"]) if "obs_id" in row.colnames else None,
                    "obsid": str(row["obsID"]) if "obsID" in row.colnames else None,
                    "data_uri": uri,
                }
                images.append(
                    ArchiveImage(local.read_bytes(), f"{self.download_url}?uri={uri}", name, meta)
                )
        return images


ARCHIVES: dict[str, type[SkyViewArchive] | type[MastArchive]] = {
    "skyview": SkyViewArchive,
    "mast": MastArchive,
}


def open_archive(name: str, base_url: str | None = None) -> SkyViewArchive | MastArchive:
    """The archive client called ``name`` (case-insensitive)."""
    cls = ARCHIVES.get(name.lower())
    if cls is None:
        raise UnknownArchiveError(
            f"unknown archive {name!r}", hint=f"choose one of: {', '.join(sorted(ARCHIVES))}"
        )
    return cls(base_url)


def validate_request(
    request: PositionRequest, archive: SkyViewArchive | MastArchive | None = None
) -> PositionRequest:
    """Check archive, coordinates, field of view, size and survey; return a normalised copy.

    The survey is checked against the list the archive itself publishes (when ``archive``
    is given), so a misspelt survey is refused before anything is queued.

    Raises
    ------
    UnknownArchiveError, InvalidCoordinatesError, InvalidFieldError, UnknownSurveyError
    """
    name = request.archive.lower()
    if name not in ARCHIVES:
        raise UnknownArchiveError(
            f"unknown archive {request.archive!r}",
            hint=f"choose one of: {', '.join(sorted(ARCHIVES))}",
        )
    ra, dec = validate_coordinates(request.ra, request.dec)
    fov = float(request.fov)
    if not math.isfinite(fov) or not 0.0 < fov <= MAX_FOV_DEG:
        raise InvalidFieldError(
            f"field of view {request.fov!r} deg is not in (0, {MAX_FOV_DEG}] degrees",
            hint="give e.g. --fov 5arcmin or --fov 0.1 (degrees)",
        )
    if not 8 <= int(request.pixels) <= 4096:
        raise InvalidFieldError(f"image size {request.pixels} px is not in [8, 4096] pixels")
    if not 1 <= int(request.max_images) <= 100:
        raise InvalidFieldError(f"max images {request.max_images} is not in [1, 100]")
    if not request.survey.strip():
        raise UnknownSurveyError("no survey given", hint="e.g. --survey 'DSS2 Red' or JWST")
    if archive is not None:
        offered = archive.surveys()
        if request.survey not in offered:
            near = [s for s in offered if request.survey.lower() in s.lower()][:8]
            raise UnknownSurveyError(
                f"{name} does not offer survey {request.survey!r}",
                hint=("did you mean: " + ", ".join(near))
                if near
                else f"{len(offered)} surveys offered, e.g. {', '.join(offered[:8])}",
            )
    return PositionRequest(
        name, request.survey, ra, dec, fov, int(request.pixels), int(request.max_images)
    )


# --------------------------------------------------------------------------- stages


def _fetch_compute(ctx: StageContext) -> list[dict[str, Any]]:
    request = PositionRequest(**ctx.params["request"])
    archive = open_archive(request.archive, ctx.params.get("base_url"))
    stored = []
    for image in archive.fetch(request):
        key = ctx.runtime.blobs.put(image.data)
        stored.append({"key": key, "url": image.url, "filename": image.filename, **image.meta})
    return stored


FETCH_STAGE: Stage[list[dict[str, Any]]] = Stage(
    name="archive_fetch",
    version="1",
    compute=_fetch_compute,
    persist=lambda session, ctx, images: {"images": images, "n_images": len(images)},
)


@dataclass(frozen=True)
class PositionOutcome:
    """What :func:`ingest_position` did: the fetch run and one ingest run per image."""

    request: PositionRequest
    fetch: StageOutcome
    ingests: list[StageOutcome]

    @property
    def manifest(self) -> list[dict[str, Any]]:
        """Manifest entries of the images ingested (new or already present)."""
        return [o.result["manifest"] for o in self.ingests if o.ok and "manifest" in o.result]


def ingest_position(
    runtime: Runtime,
    request: PositionRequest,
    *,
    base_url: str | None = None,
    retry: RetryPolicy | None = None,
    refresh: bool = False,
    check_survey: bool = True,
    on_image: Callable[[StageOutcome], None] | None = None,
) -> PositionOutcome:
    """Fetch the images of a field from an archive and ingest them (idempotent).

    Parameters
    ----------
    runtime : Runtime
        Database and blob store.
    request : PositionRequest
        What to fetch; validated first (:func:`validate_request`).
    base_url : str, optional
        Server root of an archive mirror.
    retry : RetryPolicy, optional
        Backoff for transient archive failures.
    refresh : bool
        Ask the archive again even when this request was fetched before.
    check_survey : bool
        Check the survey against the archive's list (one extra request).
    on_image : callable, optional
        Called with each image's ingest outcome (progress).
    """
    archive = open_archive(request.archive, base_url) if check_survey else None
    request = validate_request(request, archive)
    params = {"request": request.params(), "base_url": base_url}
    key_params = {"request": request.params()}
    fetch = run_stage(
        runtime,
        FETCH_STAGE,
        params=params,
        inputs={"request": request.params(), "base_url": base_url},
        input_hash=stable_hash(key_params)
        if not refresh
        else stable_hash({**key_params, "refresh": _now_token()}),
        retry=retry,
        rerun_failed=True,
    )
    ingests: list[StageOutcome] = []
    if fetch.ok:
        for image in fetch.result.get("images", []):
            data = runtime.blobs.get(image["key"])
            manifest = {
                "archive": request.archive,
                "survey": request.survey,
                "url": image["url"],
                "filename": image["filename"],
                "request_ra": request.ra,
                "request_dec": request.dec,
                "fov_deg": request.fov,
                "meta": {k: v for k, v in image.items() if k not in {"key", "url", "filename"}},
            }
            outcome = ingest_file(
                runtime, image["filename"], data=data, manifest=manifest, retry=retry
            )
            ingests.append(outcome)
            if on_image is not None:
                on_image(outcome)
    return PositionOutcome(request, fetch, ingests)


def _now_token() -> str:
    return utcnow().isoformat()


def archive_manifest(runtime: Runtime, archive: str | None = None) -> list[dict[str, Any]]:
    """Manifest entries of every image ingested from an archive (oldest first).

    Each entry: ``key`` (blob sha256), ``observation_id``, ``archive``, ``survey``, ``url``,
    ``filename``, ``ra``/``dec`` (image centre), ``mjd``, ``filter``, ``width``/``height``,
    ``request_ra``/``request_dec``/``fov_deg`` and archive ``meta``; feed them to
    :meth:`astrid.store.blobs.DatasetManifest.build` as ``(entry["key"], entry)``.
    """
    with runtime.require_migrated().session() as session:
        rows = session.scalars(
            select(StageRun)
            .where(StageRun.stage == "ingest", StageRun.status == StageRunStatus.SUCCEEDED.value)
            .order_by(StageRun.id)
        ).all()
    entries = []
    seen: set[str] = set()
    for row in rows:
        entry = (row.result or {}).get("manifest")
        if not entry or entry["key"] in seen:
            continue
        if archive is not None and entry.get("archive") != archive:
            continue
        seen.add(entry["key"])
        entries.append(dict(entry))
    return entries
