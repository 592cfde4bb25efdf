"""Observations and surveys: validation, airmass, queries and the service layer.

:class:`ObservationService` is the one place that creates observations and changes their
status; every change writes its domain event in the same transaction.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.domain.status import check_transition
from astrid.errors import AstridError
from astrid.store.db import Database
from astrid.store.sky_index import angular_separation_deg, cone_ranges, healpix_index
from astrid.store.tables import Observation, ObservationStatus, Survey

__all__ = [
    "ConeQuery",
    "InvalidCoordinatesError",
    "NotFoundError",
    "ObservationRecord",
    "ObservationService",
    "airmass",
    "astuple",
    "cone_filter",
    "validate_coordinates",
    "validate_radius",
]


class InvalidCoordinatesError(AstridError):
    """RA, Dec or a search radius is out of range or not a finite number."""


class NotFoundError(AstridError):
    """No row with that id."""


def validate_coordinates(ra: float, dec: float) -> tuple[float, float]:
    """Check RA in [0, 360) and Dec in [-90, 90] degrees; return them as floats."""
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError) as exc:
        raise InvalidCoordinatesError(f"coordinates must be numbers, got {ra!r}, {dec!r}") from exc
    if not math.isfinite(ra_f) or not 0.0 <= ra_f < 360.0:
        raise InvalidCoordinatesError(
            f"RA {ra!r} is outside [0, 360) degrees", hint="give RA in degrees, e.g. 318.108"
        )
    if not math.isfinite(dec_f) or not -90.0 <= dec_f <= 90.0:
        raise InvalidCoordinatesError(
            f"Dec {dec!r} is outside [-90, 90] degrees", hint="give Dec in degrees, e.g. -66.016"
        )
    return ra_f, dec_f


def validate_radius(radius_deg: float) -> float:
    """Check a cone radius in degrees: finite, > 0 and ≤ 180."""
    r = float(radius_deg)
    if not math.isfinite(r) or not 0.0 < r <= 180.0:
        raise InvalidCoordinatesError(f"radius {radius_deg!r} deg is not in (0, 180] degrees")
    return r


def airmass(
    ra: float, dec: float, mjd: float, site_lon: float, site_lat: float, site_height: float = 0.0
) -> float | None:
    """Airmass (sec z, astropy's AltAz) of a position from a site at a time.

    Returns None when the object is below the horizon.
    """
    location = EarthLocation.from_geodetic(site_lon * u.deg, site_lat * u.deg, site_height * u.m)
    frame = AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=location)
    altaz = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame)
    if altaz.alt.deg <= 0:
        return None
    return float(altaz.secz)


@dataclass(frozen=True)
class ConeQuery:
    """A validated cone: centre and radius in degrees."""

    ra: float
    dec: float
    radius: float

    @classmethod
    def make(cls, ra: float, dec: float, radius: float) -> ConeQuery:
        ra_v, dec_v = validate_coordinates(ra, dec)
        return cls(ra_v, dec_v, validate_radius(radius))


def cone_filter(column: Any, cone: ConeQuery) -> Any:
    """SQL pre-filter on a HEALPix index column covering ``cone`` (exact cut comes after)."""
    return or_(*[and_(column >= lo, column < hi) for lo, hi in cone_ranges(*astuple(cone))])


def astuple(cone: ConeQuery) -> tuple[float, float, float]:
    return cone.ra, cone.dec, cone.radius


def exact_cone_cut(rows: Sequence[Any], cone: ConeQuery) -> list[Any]:
    """Keep rows (with ``.ra``/``.dec``) within the cone's great-circle radius, nearest first."""
    if not rows:
        return []
    sep = angular_separation_deg(
        np.array([r.ra for r in rows]), np.array([r.dec for r in rows]), cone.ra, cone.dec
    )
    order = np.argsort(sep, kind="stable")
    return [rows[i] for i in order if sep[i] <= cone.radius]


@dataclass(frozen=True)
class ObservationRecord:
    """What ingestion knows about a new observation (from its header and bytes)."""

    content_hash: str
    blob_key: str
    ra: float
    dec: float
    width: int
    height: int
    source: str | None = None
    filename: str | None = None
    hdu_index: int = 0
    mjd: float | None = None
    filter: str | None = None
    exposure_time: float | None = None
    telescope: str | None = None
    instrument: str | None = None
    pixel_scale: float | None = None
    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None
    footprint: tuple[tuple[float, float], ...] = ()
    extra: dict[str, Any] | None = None


class ObservationService:
    """Creates observations, moves them through their status machine, and queries them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- surveys -------------------------------------------------------------------------

    @staticmethod
    def get_or_create_survey(session: Session, name: str, **fields: Any) -> Survey:
        """The survey called ``name``, created on first use."""
        survey = session.scalar(select(Survey).where(Survey.name == name))
        if survey is None:
            survey = Survey(name=name, **fields)
            session.add(survey)
            session.flush()
        return survey

    def survey_statistics(self, survey_name: str | None = None) -> list[dict[str, Any]]:
        """Per survey: observation count, counts per status, filters, MJD span."""
        with self.db.session() as session:
            stmt = select(Survey).order_by(Survey.name)
            if survey_name:
                stmt = stmt.where(Survey.name == survey_name)
            out = []
            for survey in session.scalars(stmt):
                base = select(Observation).where(Observation.survey_id == survey.id).subquery()
                n, mjd_min, mjd_max = session.execute(
                    select(func.count(), func.min(base.c.mjd), func.max(base.c.mjd))
                ).one()
                by_status: dict[Any, Any] = dict(
                    session.execute(
                        select(base.c.status, func.count()).group_by(base.c.status)
                    ).all()
                )
                filters = sorted(
                    f for f in session.scalars(select(base.c.filter).distinct()) if f is not None
                )
                out.append(
                    {
                        "survey": survey.name,
                        "observations": int(n),
                        "by_status": {str(k): int(v) for k, v in by_status.items()},
                        "filters": filters,
                        "mjd_min": mjd_min,
                        "mjd_max": mjd_max,
                        "capabilities": dict(survey.capabilities),
                    }
                )
            return out

    # -- creation ------------------------------------------------------------------------

    def create(
        self, session: Session, record: ObservationRecord, survey_name: str
    ) -> tuple[Observation, bool]:
        """Create the observation (or return the existing one with the same content).

        Returns
        -------
        (Observation, bool)
            The row and whether it was created now.
        """
        existing = session.scalar(
            select(Observation).where(Observation.content_hash == record.content_hash)
        )
        if existing is not None:
            return existing, False
        ra, dec = validate_coordinates(record.ra, record.dec)
        survey = self.get_or_create_survey(
            session, survey_name, telescope=record.telescope, instrument=record.instrument
        )
        am = None
        if record.mjd is not None and survey.site_lat is not None and survey.site_lon is not None:
            am = airmass(
                ra, dec, record.mjd, survey.site_lon, survey.site_lat, survey.site_height or 0.0
            )
        obs = Observation(
            survey_id=survey.id,
            content_hash=record.content_hash,
            blob_key=record.blob_key,
            source=record.source,
            filename=record.filename,
            hdu_index=record.hdu_index,
            ra=ra,
            dec=dec,
            healpix=int(healpix_index(ra, dec)),
            mjd=record.mjd,
            filter=record.filter,
            exposure_time=record.exposure_time,
            telescope=record.telescope,
            instrument=record.instrument,
            width=record.width,
            height=record.height,
            pixel_scale=record.pixel_scale,
            gain=record.gain,
            read_noise=record.read_noise,
            saturation=record.saturation,
            airmass=am,
            footprint=[list(c) for c in record.footprint],
            extra=dict(record.extra or {}),
            status=ObservationStatus.INGESTED,
        )
        session.add(obs)
        session.flush()
        record_event(
            session,
            EventType.OBSERVATION_INGESTED,
            "observation",
            obs.id,
            {
                "survey": survey_name,
                "ra": ra,
                "dec": dec,
                "mjd": record.mjd,
                "filter": record.filter,
                "content_hash": record.content_hash,
            },
        )
        return obs, True

    # -- status --------------------------------------------------------------------------

    def transition(
        self, observation_id: int, new_status: ObservationStatus | str, reason: str | None = None
    ) -> Observation:
        """Move an observation to ``new_status`` (checked) and record the events."""
        with self.db.session() as session:
            obs = session.get(Observation, observation_id, with_for_update=True)
            if obs is None:
                raise NotFoundError(f"no observation with id {observation_id}")
            self.apply_transition(session, obs, new_status, reason)
            return obs

    @staticmethod
    def apply_transition(
        session: Session,
        obs: Observation,
        new_status: ObservationStatus | str,
        reason: str | None = None,
    ) -> None:
        """Apply a checked status change to ``obs`` inside the caller's transaction."""
        old = ObservationStatus(obs.status)
        new = check_transition(old, new_status)
        obs.status = new
        obs.status_reason = reason
        payload = {"from": old.value, "to": new.value, "reason": reason}
        record_event(session, EventType.STATUS_CHANGED, "observation", obs.id, payload)
        follow_up = {
            ObservationStatus.PREPROCESSING: EventType.PROCESSING_STARTED,
            ObservationStatus.COMPLETED: EventType.PROCESSING_COMPLETED,
            ObservationStatus.FAILED: EventType.PROCESSING_FAILED,
            ObservationStatus.ARCHIVED: EventType.ARCHIVED,
        }.get(new)
        if follow_up is not None and not (
            follow_up is EventType.PROCESSING_STARTED and old is not ObservationStatus.INGESTED
        ):
            record_event(session, follow_up, "observation", obs.id, payload)

    # -- queries -------------------------------------------------------------------------

    def get(self, observation_id: int) -> Observation:
        """The observation with ``observation_id`` (raises :class:`NotFoundError`)."""
        with self.db.session() as session:
            obs = session.get(Observation, observation_id)
            if obs is None:
                raise NotFoundError(f"no observation with id {observation_id}")
            return obs

    @staticmethod
    def _filtered(
        survey: str | None = None,
        status: ObservationStatus | str | None = None,
        filter_name: str | None = None,
    ) -> Select[Any]:
        stmt = select(Observation)
        if survey is not None:
            stmt = stmt.join(Survey).where(Survey.name == survey)
        if status is not None:
            stmt = stmt.where(Observation.status == ObservationStatus(status))
        if filter_name is not None:
            stmt = stmt.where(Observation.filter == filter_name)
        return stmt

    def list(
        self,
        *,
        survey: str | None = None,
        status: ObservationStatus | str | None = None,
        filter_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Observation]:
        """Observations matching the filters, oldest first."""
        stmt = (
            self._filtered(survey, status, filter_name)
            .order_by(Observation.id)
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as session:
            return list(session.scalars(stmt))

    def count(
        self,
        *,
        survey: str | None = None,
        status: ObservationStatus | str | None = None,
        filter_name: str | None = None,
    ) -> int:
        """Number of observations matching the filters."""
        sub = self._filtered(survey, status, filter_name).subquery()
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(sub)) or 0)

    def counts_by_status(self) -> dict[str, int]:
        """Observation count for every status (zeros included)."""
        with self.db.session() as session:
            rows = dict(
                session.execute(
                    select(Observation.status, func.count()).group_by(Observation.status)
                ).all()
            )
        return {s.value: int(rows.get(s, 0)) for s in ObservationStatus}

    def ready_for_processing(self, limit: int = 100) -> builtins.list[Observation]:
        """Ingested observations waiting for the pipeline, oldest first."""
        return self.list(status=ObservationStatus.INGESTED, limit=limit)

    def cone_search(
        self,
        ra: float,
        dec: float,
        radius: float,
        *,
        survey: str | None = None,
        status: ObservationStatus | str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Observation]:
        """Observations whose centre lies within ``radius`` degrees, nearest first."""
        cone = ConeQuery.make(ra, dec, radius)
        stmt = self._filtered(survey, status).where(cone_filter(Observation.healpix, cone))
        with self.db.session() as session:
            rows = exact_cone_cut(list(session.scalars(stmt)), cone)
        return rows[:limit] if limit is not None else rows
