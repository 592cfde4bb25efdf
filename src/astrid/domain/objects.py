"""Sky objects: association of detections, and light curves with forced photometry.

A new detection joins the object whose weighted position lies within the association radius
(default 1.5″; the nearest if several), or the object that already carries its ZTF
``objectId``; otherwise it starts a new object. The object's position is the S/N²-weighted
mean of its detections' unit vectors (correct across RA = 0 and at the poles); first/last
seen, peak and latest magnitude and the best model score are kept up to date.

The light curve of an object is its detections plus, for every stored difference image that
covers the position without a detection of the object, forced PSF photometry at the position
(:mod:`astrid.science.forced`): a magnitude when the flux is significant, else a 5-σ limit.
When a new detection lies within the radius of two or more objects they are one source: they
are merged into the oldest (:mod:`astrid.domain.merges`; the other ids stay aliases) and the
detection joins it.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.domain.merges import merge_objects
from astrid.domain.observations import NotFoundError
from astrid.domain.votes import ensure_state
from astrid.science.fitswcs import celestial_wcs
from astrid.science.forced import forced_psf_flux, magnitude_or_limit
from astrid.store.blobs import BlobStore
from astrid.store.sky_index import angular_separation_deg, cone_ranges, healpix_index
from astrid.store.tables import Detection, Difference, ObjectMember, Observation, SkyObject

__all__ = [
    "DEFAULT_RADIUS_ARCSEC",
    "associate",
    "light_curve",
    "register_detection",
]

DEFAULT_RADIUS_ARCSEC = 1.5
FOOTPRINT_SEARCH_DEG = 2.0  # differences whose image centre is this close are examined


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    r, d = math.radians(ra), math.radians(dec)
    return math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)


def _alias(det: Detection) -> str | None:
    value = (det.extra or {}).get("objectId")
    return str(value)[:32] if value else None


def _objects_within(
    session: Session, ra: float, dec: float, radius_arcsec: float
) -> list[tuple[SkyObject, float]]:
    """Objects whose position lies within ``radius_arcsec`` of (ra, dec), nearest first."""
    radius = radius_arcsec / 3600.0
    ranges = cone_ranges(ra, dec, radius)
    rows = list(
        session.scalars(
            select(SkyObject).where(
                or_(*[and_(SkyObject.healpix >= lo, SkyObject.healpix < hi) for lo, hi in ranges])
            )
        )
    )
    if not rows:
        return []
    sep = np.atleast_1d(
        angular_separation_deg(
            np.array([o.ra for o in rows]), np.array([o.dec for o in rows]), ra, dec
        )
    )
    order = np.argsort(sep, kind="stable")
    return [(rows[i], float(sep[i]) * 3600.0) for i in order if sep[i] <= radius]


def associate(
    session: Session, det: Detection, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
) -> SkyObject:
    """Attach ``det`` (flushed, with an id) to its sky object, creating one if needed.

    Objects within the radius of ``det`` are merged into the oldest first (see
    :func:`~astrid.domain.merges.merge_objects`).
    """
    existing = session.scalar(
        select(SkyObject).join(ObjectMember).where(ObjectMember.detection_id == det.id)
    )
    if existing is not None:
        return existing
    alias = _alias(det)
    obj: SkyObject | None = None
    sep_arcsec = 0.0
    if alias:
        obj = session.scalar(select(SkyObject).where(SkyObject.ztf_object_id == alias).limit(1))
        if obj is not None:
            sep_arcsec = float(angular_separation_deg(obj.ra, obj.dec, det.ra, det.dec)) * 3600
    if obj is None:
        near = _objects_within(session, det.ra, det.dec, radius_arcsec)
        if near:
            obj, sep_arcsec = near[0]
        if len(near) > 1:
            keep = min((o for o, _ in near), key=lambda o: o.id)
            merged = False
            for other, _ in near:
                if other is not keep:
                    merged = merge_objects(session, keep, other, detection_id=det.id) or merged
            if merged:
                obj = keep
                sep_arcsec = float(angular_separation_deg(obj.ra, obj.dec, det.ra, det.dec)) * 3600
    created = obj is None
    if obj is None:
        obj = SkyObject(
            ra=det.ra, dec=det.dec, healpix=det.healpix, sx=0.0, sy=0.0, sz=0.0, weight=0.0
        )
        obj.n_detections = 0
        obj.aliases = []
        session.add(obj)
    _update(obj, det, alias)
    session.flush()
    session.add(ObjectMember(detection_id=det.id, object_id=obj.id, separation_arcsec=sep_arcsec))
    if created:
        record_event(
            session,
            EventType.OBJECT_CREATED,
            "object",
            obj.id,
            {"ra": obj.ra, "dec": obj.dec, "detection_id": det.id, "confidence": det.confidence},
        )
    return obj


def _update(obj: SkyObject, det: Detection, alias: str | None) -> None:
    snr = det.snr if det.snr is not None and math.isfinite(det.snr) and det.snr > 0 else 1.0
    w = snr * snr
    x, y, z = _unit(det.ra, det.dec)
    obj.sx, obj.sy, obj.sz = obj.sx + w * x, obj.sy + w * y, obj.sz + w * z
    obj.weight = obj.weight + w
    norm = math.sqrt(obj.sx**2 + obj.sy**2 + obj.sz**2)
    if norm > 0:
        obj.ra = math.degrees(math.atan2(obj.sy, obj.sx)) % 360.0
        obj.dec = math.degrees(math.asin(max(-1.0, min(1.0, obj.sz / norm))))
        obj.healpix = int(healpix_index(obj.ra, obj.dec))
    obj.n_detections = (obj.n_detections or 0) + 1
    if det.mjd is not None:
        if obj.first_mjd is None or det.mjd < obj.first_mjd:
            obj.first_mjd = det.mjd
        if obj.last_mjd is None or det.mjd >= obj.last_mjd:
            obj.last_mjd = det.mjd
            obj.latest_mag = det.mag if det.mag is not None else obj.latest_mag
    elif obj.latest_mag is None:
        obj.latest_mag = det.mag
    if det.mag is not None and (obj.peak_mag is None or det.mag < obj.peak_mag):
        obj.peak_mag = det.mag
    if det.confidence is not None and (
        obj.max_confidence is None or det.confidence > obj.max_confidence
    ):
        obj.max_confidence = det.confidence
    if alias:
        obj.ztf_object_id = obj.ztf_object_id or alias
        if alias not in (obj.aliases or []):
            obj.aliases = [*(obj.aliases or []), alias]


def register_detection(
    session: Session, det: Detection, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
) -> SkyObject:
    """What the pipeline and alert ingest call for each stored detection (idempotent).

    Puts the detection in the scanning queue (its curation state) and associates it with a
    sky object, in the caller's transaction.
    """
    session.flush()
    ensure_state(session, det)
    return associate(session, det, radius_arcsec)


# --------------------------------------------------------------------------- light curves


def _detection_point(det: Detection, obs: Observation | None) -> dict[str, Any]:
    return {
        "kind": "detection",
        "detection_id": det.id,
        "observation_id": det.observation_id,
        "mjd": det.mjd,
        "filter": obs.filter if obs else (det.extra or {}).get("candidate", {}).get("fid"),
        "mag": det.mag,
        "mag_err": (1.0857 / det.snr) if det.snr and det.snr > 0 else None,
        "snr": det.snr,
        "flux": None,
        "flux_err": None,
        "limit": None,
        "label": det.label,
        "confidence": det.confidence,
    }


def _forced_point(
    blobs: BlobStore, diff: Difference, obs: Observation, ra: float, dec: float
) -> dict[str, Any] | None:
    stats = diff.stats or {}
    try:
        with fits.open(io.BytesIO(blobs.get(diff.difference_key))) as hdul:
            image = np.asarray(hdul[0].data, dtype=float)
            wcs = celestial_wcs(hdul[0].header)
    except Exception:  # a missing, unreadable or WCS-less product: no point, never a failed curve
        return None
    if image.ndim != 2:
        return None
    x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    fwhms = [stats.get(k) for k in ("new_fwhm", "ref_fwhm")]
    fwhm = max([float(f) for f in fwhms if isinstance(f, int | float) and f > 0] or [3.0])
    measured = forced_psf_flux(image, x, y, fwhm)
    if measured is None:
        return None
    zp = stats.get("zero_point")
    zp = float(zp) if isinstance(zp, int | float) else None
    mag, mag_err, limit = magnitude_or_limit(measured.flux, measured.flux_err, zp)
    return {
        "kind": "forced" if mag is not None or zp is None else "upper_limit",
        "detection_id": None,
        "observation_id": obs.id,
        "difference_id": diff.id,
        "mjd": obs.mjd,
        "filter": obs.filter,
        "mag": mag,
        "mag_err": mag_err,
        "snr": measured.flux / measured.flux_err,
        "flux": measured.flux,
        "flux_err": measured.flux_err,
        "limit": limit,
        "label": None,
        "confidence": None,
    }


def light_curve(
    session: Session,
    blobs: BlobStore,
    object_id: int,
    *,
    forced: bool = True,
    max_forced: int = 200,
) -> dict[str, Any]:
    """Points of an object sorted by MJD: detections, forced photometry and upper limits."""
    obj = session.get(SkyObject, object_id)
    if obj is None:
        raise NotFoundError(f"no object with id {object_id}")
    rows = session.execute(
        select(Detection, Observation)
        .join(ObjectMember, ObjectMember.detection_id == Detection.id)
        .outerjoin(Observation, Observation.id == Detection.observation_id)
        .where(ObjectMember.object_id == object_id)
    ).all()
    points = [_detection_point(det, obs) for det, obs in rows]
    seen_obs = {det.observation_id for det, _ in rows if det.observation_id is not None}
    n_forced = 0
    if forced:
        ranges = cone_ranges(obj.ra, obj.dec, FOOTPRINT_SEARCH_DEG)
        diffs = session.execute(
            select(Difference, Observation)
            .join(Observation, Observation.id == Difference.observation_id)
            .where(
                or_(
                    *[
                        and_(Observation.healpix >= lo, Observation.healpix < hi)
                        for lo, hi in ranges
                    ]
                )
            )
            .order_by(Observation.mjd, Difference.id)
        ).all()
        for diff, obs in diffs:
            if obs.id in seen_obs or n_forced >= max_forced:
                continue
            point = _forced_point(blobs, diff, obs, obj.ra, obj.dec)
            if point is not None:
                points.append(point)
                seen_obs.add(obs.id)
                n_forced += 1
    points.sort(key=lambda p: (p["mjd"] is None, p["mjd"] or 0.0))
    return {"object_id": object_id, "n_points": len(points), "points": points}
