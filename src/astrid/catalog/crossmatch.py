"""Cross-match annotations of a detection: the nearest catalogue source (local file by
default, Gaia DR3 through astroquery when configured) and known solar-system bodies (IMCCE
SkyBoT through astroquery's ``Skybot`` client). Results are stored as
:class:`~astrid.store.tables.DetectionAnnotation` rows (``kind`` ``star`` or
``solar_system``), which the scanning queue and the catalog entries show.

A failing service is one line in the report, never a failed batch: the other detections and
the other kind of match go on.

:func:`crossmatch_objects` does this for every detection of the given sky objects and stamps
``sky_objects.crossmatched_at`` (``astrid catalog crossmatch``, ``POST
/objects/{id}/crossmatch``). SkyBoT is asked only when configured (``ASTRID_SKYBOT_URL``) or
asked for explicitly, since a deployment without internet has no IMCCE to reach.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sqlalchemy import delete, select

from astrid.errors import AstridError
from astrid.runtime import Runtime
from astrid.science.catalogs import CatalogProvider, GaiaProvider, LocalCatalogProvider
from astrid.settings import Settings
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import Detection, DetectionAnnotation, ObjectMember, SkyObject, utcnow

__all__ = [
    "CrossmatchError",
    "CrossmatchReport",
    "annotate_detections",
    "crossmatch_objects",
    "nearest_source",
    "objects_never_crossmatched",
    "provider_from_settings",
    "solar_system_bodies",
]

log = logging.getLogger(__name__)


class CrossmatchError(AstridError):
    """A cross-match service failed or answered something unreadable."""


def provider_from_settings(settings: Settings) -> CatalogProvider | None:
    """The configured catalogue provider (None: no local file configured)."""
    if settings.crossmatch_provider == "gaia":
        return GaiaProvider()
    if settings.crossmatch_catalog is None:
        return None
    return LocalCatalogProvider(settings.crossmatch_catalog, name="local")


def nearest_source(
    provider: CatalogProvider, ra: float, dec: float, radius_arcsec: float
) -> dict[str, Any] | None:
    """The nearest source of ``provider`` within ``radius_arcsec`` of (ra, dec) in degrees."""
    table = provider.cone(ra, dec, radius_arcsec / 3600.0)
    if len(table) == 0:
        return None
    sep = angular_separation_deg(np.asarray(table["ra"]), np.asarray(table["dec"]), ra, dec) * 3600
    i = int(np.argmin(sep))
    if sep[i] > radius_arcsec:
        return None
    name = str(table["source_id"][i]) if "source_id" in table.colnames else None
    return {
        "name": name or f"{provider.name} {float(table['ra'][i]):.6f}{float(table['dec'][i]):+.6f}",
        "separation_arcsec": float(sep[i]),
        "mag": float(table["mag"][i]),
        "ra": float(table["ra"][i]),
        "dec": float(table["dec"][i]),
        "source": provider.name,
    }


def _num(value: Any) -> float:
    # Quantity columns hold .value; masked or plain columns give numpy scalars.
    return float(getattr(value, "value", value))


def solar_system_bodies(
    ra: float,
    dec: float,
    mjd: float,
    radius_arcsec: float,
    *,
    url: str | None = None,
    location: str = "500",
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Known asteroids, comets and planets within ``radius_arcsec`` at ``mjd`` (SkyBoT).

    Uses ``astroquery.imcce.Skybot`` (the SkyBoT cone search; ``url`` overrides its server,
    ``location`` is the IAU observatory code, ``500`` geocentric). Nearest first.
    """
    from astroquery.exceptions import NoResultsWarning
    from astroquery.imcce import Skybot, conf

    coo = SkyCoord(ra * u.deg, dec * u.deg)
    epoch = Time(mjd, format="mjd")
    try:
        with warnings.catch_warnings(), conf.set_temp("timeout", int(math.ceil(timeout_s))):
            warnings.simplefilter("ignore", NoResultsWarning)
            if url is None:
                table = Skybot.cone_search(
                    coo, radius_arcsec * u.arcsec, epoch, location=location, cache=False
                )
            else:
                # astroquery's server setting only takes its known mirrors: build the query
                # and parse the answer with its client, send it to the configured URL.
                payload = Skybot.cone_search_async(
                    coo, radius_arcsec * u.arcsec, epoch, location=location, get_query_payload=True
                )
                response = Skybot._request(
                    "GET", url, params=payload, timeout=timeout_s, cache=False
                )
                response.raise_for_status()
                Skybot._get_raw_response = False
                table = Skybot._parse_result(response)
    except Exception as exc:  # network, HTTP error or an unreadable answer
        raise CrossmatchError(f"SkyBoT cone search failed: {type(exc).__name__}: {exc}") from exc
    out: list[dict[str, Any]] = []
    for row in table:
        sep = float(
            angular_separation_deg(float(row["RA"].value), float(row["DEC"].value), ra, dec) * 3600
        )
        if sep > radius_arcsec:  # the server's cone may be wider than asked
            continue
        number = row["Number"]
        out.append(
            {
                "name": str(row["Name"]),
                "number": None if np.ma.is_masked(number) else int(number),
                "type": str(row["Type"]),
                "v_mag": _num(row["V"]) if math.isfinite(_num(row["V"])) else None,
                "separation_arcsec": sep,
                "source": "skybot",
            }
        )
    out.sort(key=lambda r: r["separation_arcsec"])
    return out


@dataclass
class CrossmatchReport:
    """What :func:`annotate_detections` did."""

    annotated: int = 0
    objects: int = 0
    stars: int = 0
    solar_system: int = 0
    errors: list[str] = field(default_factory=list)


def annotate_detections(
    runtime: Runtime,
    detection_ids: list[int],
    *,
    provider: CatalogProvider | None = None,
    skybot: bool = True,
) -> CrossmatchReport:
    """Store the nearest catalogue source and solar-system bodies of each detection.

    Earlier ``star``/``solar_system`` annotations of a detection are replaced (re-running is
    safe). One detection's failure is recorded in ``errors`` and the rest go on.
    """
    s = runtime.settings
    provider = provider if provider is not None else provider_from_settings(s)
    radius = s.crossmatch_radius_arcsec
    report = CrossmatchReport()
    for det_id in detection_ids:
        with runtime.db.session() as session:
            det = session.get(Detection, det_id)
            if det is None:
                report.errors.append(f"detection {det_id}: no such detection")
                continue
            ra, dec, mjd = det.ra, det.dec, det.mjd
        rows: list[DetectionAnnotation] = []
        kinds: list[str] = []
        if provider is not None:
            try:
                star = nearest_source(provider, ra, dec, radius)
            except AstridError as exc:
                report.errors.append(f"detection {det_id}: catalogue: {exc}")
            else:
                kinds.append("star")
                if star is not None:
                    report.stars += 1
                    rows.append(_annotation(det_id, "star", star))
        if skybot and mjd is not None:
            try:
                bodies = solar_system_bodies(ra, dec, mjd, max(radius, 30.0), url=s.skybot_url)
            except CrossmatchError as exc:
                report.errors.append(f"detection {det_id}: {exc}")
            else:
                kinds.append("solar_system")
                report.solar_system += len(bodies)
                rows.extend(_annotation(det_id, "solar_system", b) for b in bodies[:3])
        if not kinds:
            continue
        with runtime.db.session() as session:
            session.execute(
                delete(DetectionAnnotation).where(
                    DetectionAnnotation.detection_id == det_id,
                    DetectionAnnotation.kind.in_(kinds),
                )
            )
            session.add_all(rows)
        report.annotated += 1
    return report


def _annotation(det_id: int, kind: str, match: dict[str, Any]) -> DetectionAnnotation:
    return DetectionAnnotation(
        detection_id=det_id,
        kind=kind,
        name=str(match["name"])[:128],
        separation_arcsec=match["separation_arcsec"],
        mag=match.get("mag", match.get("v_mag")),
        source=match.get("source"),
        data={k: v for k, v in match.items() if k not in ("name", "separation_arcsec", "source")},
    )


def objects_never_crossmatched(runtime: Runtime, limit: int | None = None) -> list[int]:
    """Ids of the sky objects never cross-matched (new, or merged since), oldest first."""
    with runtime.db.session() as session:
        stmt = (
            select(SkyObject.id).where(SkyObject.crossmatched_at.is_(None)).order_by(SkyObject.id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(session.scalars(stmt))


def crossmatch_objects(
    runtime: Runtime,
    object_ids: list[int],
    *,
    provider: CatalogProvider | None = None,
    skybot: bool | None = None,
) -> CrossmatchReport:
    """Annotate every detection of each object (:func:`annotate_detections`) and stamp the
    object's ``crossmatched_at``; ``skybot`` None means "when ``ASTRID_SKYBOT_URL`` is set".

    An unknown object id is one line in ``errors``; an object whose matches all failed is not
    stamped, so the next ``--all-new`` run tries it again.
    """
    use_skybot = runtime.settings.skybot_url is not None if skybot is None else skybot
    provider = provider if provider is not None else provider_from_settings(runtime.settings)
    if provider is None and not use_skybot:
        raise CrossmatchError(
            "nothing to match against: set ASTRID_CROSSMATCH_CATALOG (or "
            "ASTRID_CROSSMATCH_PROVIDER=gaia) or ASTRID_SKYBOT_URL"
        )
    total = CrossmatchReport()
    for object_id in object_ids:
        with runtime.db.session() as session:
            if session.get(SkyObject, object_id) is None:
                total.errors.append(f"object {object_id}: no such object")
                continue
            det_ids = list(
                session.scalars(
                    select(ObjectMember.detection_id)
                    .where(ObjectMember.object_id == object_id)
                    .order_by(ObjectMember.detection_id)
                )
            )
        one = annotate_detections(runtime, det_ids, provider=provider, skybot=use_skybot)
        total.annotated += one.annotated
        total.stars += one.stars
        total.solar_system += one.solar_system
        total.errors.extend(f"object {object_id}: {e}" for e in one.errors)
        if one.annotated == 0 and det_ids:
            continue  # every service failed for every detection: try again next time
        with runtime.db.session() as session:
            obj = session.get(SkyObject, object_id)
            if obj is not None:
                obj.crossmatched_at = utcnow()
        total.objects += 1
    return total
