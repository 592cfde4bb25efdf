"""Observation service on SQLite and PostgreSQL: creation, events, status, queries."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from sqlalchemy import select

from astrid.domain.events import EventDispatcher, EventType, record_event
from astrid.domain.observations import (
    InvalidCoordinatesError,
    NotFoundError,
    ObservationRecord,
    ObservationService,
    airmass,
    validate_coordinates,
)
from astrid.domain.status import IllegalTransitionError
from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import DomainEvent, Observation, ObservationStatus, Survey


def _record(i: int, ra: float, dec: float, **kw: object) -> ObservationRecord:
    key = f"{i:064x}"
    return ObservationRecord(
        content_hash=key,
        blob_key=key,
        ra=ra,
        dec=dec,
        width=100,
        height=100,
        **kw,  # type: ignore[arg-type]
    )


def _events(runtime: Runtime) -> list[DomainEvent]:
    with runtime.db.session() as s:
        return list(s.scalars(select(DomainEvent).order_by(DomainEvent.id)))


def test_create_is_idempotent_and_writes_its_event(runtime: Runtime) -> None:
    service = ObservationService(runtime.db)
    with runtime.db.session() as s:
        obs, created = service.create(s, _record(1, 10.0, 20.0, mjd=60000.0), "survey-a")
        first_id = obs.id
    assert created
    with runtime.db.session() as s:
        obs, created = service.create(s, _record(1, 10.0, 20.0), "survey-a")
    assert not created and obs.id == first_id
    events = _events(runtime)
    assert [e.event_type for e in events] == [EventType.OBSERVATION_INGESTED]
    assert events[0].aggregate_id == first_id and events[0].payload["survey"] == "survey-a"


def test_rolled_back_change_leaves_no_event(runtime: Runtime) -> None:
    service = ObservationService(runtime.db)
    with pytest.raises(RuntimeError), runtime.db.session() as s:
        service.create(s, _record(2, 10.0, 20.0), "survey-a")
        raise RuntimeError("crash after the insert, before commit")
    assert _events(runtime) == []
    assert service.count() == 0


def test_transitions_write_events_and_illegal_ones_change_nothing(runtime: Runtime) -> None:
    service = ObservationService(runtime.db)
    with runtime.db.session() as s:
        obs_id = service.create(s, _record(3, 1.0, 2.0), "s")[0].id
    service.transition(obs_id, "preprocessing")
    service.transition(obs_id, ObservationStatus.FAILED, reason="disk full")
    with pytest.raises(IllegalTransitionError, match="from 'failed' to 'completed'"):
        service.transition(obs_id, ObservationStatus.COMPLETED)
    obs = service.get(obs_id)
    assert obs.status is ObservationStatus.FAILED and obs.status_reason == "disk full"
    types = [e.event_type for e in _events(runtime)]
    assert types == [
        EventType.OBSERVATION_INGESTED,
        EventType.STATUS_CHANGED,
        EventType.PROCESSING_STARTED,
        EventType.STATUS_CHANGED,
        EventType.PROCESSING_FAILED,
    ]
    service.transition(obs_id, "ingested")
    assert [o.id for o in service.ready_for_processing()] == [obs_id]
    with pytest.raises(NotFoundError):
        service.transition(999_999, "preprocessing")


def test_queries_counts_and_statistics(runtime: Runtime) -> None:
    service = ObservationService(runtime.db)
    with runtime.db.session() as s:
        for i in range(6):
            service.create(
                s,
                _record(10 + i, 30.0 + i, -5.0, mjd=60000.0 + i, filter="r" if i % 2 else "g"),
                "alpha" if i < 4 else "beta",
            )
    assert service.count() == 6
    assert service.count(survey="alpha") == 4
    assert service.count(filter_name="r") == 3
    assert [o.mjd for o in service.list(survey="beta")] == [60004.0, 60005.0]
    ids = [o.id for o in service.list(limit=2, offset=2)]
    assert len(ids) == 2
    service.transition(ids[0], "preprocessing")
    counts = service.counts_by_status()
    assert counts["ingested"] == 5 and counts["preprocessing"] == 1 and counts["archived"] == 0
    stats = {row["survey"]: row for row in service.survey_statistics()}
    assert stats["alpha"]["observations"] == 4
    assert stats["alpha"]["filters"] == ["g", "r"]
    assert stats["beta"]["mjd_min"] == 60004.0 and stats["beta"]["mjd_max"] == 60005.0


@pytest.mark.parametrize(
    ("ra0", "dec0"), [(0.0, 0.0), (359.99, 10.0), (45.0, 89.9), (200.0, -89.95)]
)
def test_cone_search_matches_brute_force(runtime: Runtime, ra0: float, dec0: float) -> None:
    rng = np.random.default_rng(7)
    service = ObservationService(runtime.db)
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(ra0, dec0, unit="deg")
    offsets = centre.directional_offset_by(
        rng.uniform(0, 360, 150) * u.deg, rng.uniform(0, 0.6, 150) * u.deg
    )
    ras, decs = offsets.ra.deg % 360.0, offsets.dec.deg
    with runtime.db.session() as s:
        for i, (ra, dec) in enumerate(zip(ras, decs, strict=True)):
            service.create(s, _record(1000 + i, float(ra), float(dec)), "cone")
    for radius in (0.05, 0.3):
        expected = int((angular_separation_deg(ras, decs, ra0, dec0) <= radius).sum())
        found = service.cone_search(ra0, dec0, radius)
        assert len(found) == expected
        seps = angular_separation_deg(
            np.array([o.ra for o in found]), np.array([o.dec for o in found]), ra0, dec0
        )
        assert np.all(np.diff(seps) >= 0)


def test_dispatcher_delivers_in_order_once(runtime: Runtime) -> None:
    seen: list[tuple[int, str]] = []
    dispatcher = EventDispatcher(runtime.db)
    dispatcher.subscribe("*", lambda e: seen.append((e.id, e.type)))
    failing: list[int] = []

    def broken(e: object) -> None:
        failing.append(1)
        raise ValueError("subscriber bug")

    dispatcher.subscribe(EventType.ARCHIVED, broken)
    with runtime.db.session() as s:
        for i in range(3):
            record_event(s, EventType.ARCHIVED, "observation", i, {"i": i})
    assert dispatcher.dispatch_pending() == 3
    assert [t for _, t in seen] == [EventType.ARCHIVED] * 3
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)
    assert len(failing) == 3
    assert dispatcher.dispatch_pending() == 0


@pytest.mark.parametrize(
    ("ra", "dec", "message"),
    [
        (360.0, 0.0, "RA 360.0"),
        (-1.0, 0.0, "RA -1.0"),
        (10.0, 90.5, "Dec 90.5"),
        (float("nan"), 0.0, "RA nan"),
        ("abc", 0.0, "must be numbers"),
    ],
)
def test_bad_coordinates_are_named(ra: object, dec: object, message: str) -> None:
    with pytest.raises(InvalidCoordinatesError, match=message):
        validate_coordinates(ra, dec)  # type: ignore[arg-type]


def test_bad_coordinates_create_nothing(runtime: Runtime) -> None:
    service = ObservationService(runtime.db)
    with pytest.raises(InvalidCoordinatesError), runtime.db.session() as s:
        service.create(s, _record(5, 400.0, 0.0), "s")
    with runtime.db.session() as s:
        assert s.scalar(select(Observation)) is None
        assert s.scalar(select(Survey)) is None


def test_airmass_from_site_and_time() -> None:
    # Zenith at Cerro Tololo: an object at Dec = site latitude transiting has airmass ~1.
    from astropy.coordinates import EarthLocation
    from astropy.time import Time

    site = EarthLocation.from_geodetic(-70.815 * u.deg, -30.169 * u.deg, 2200 * u.m)
    t = Time(60000.2, format="mjd")
    lst = t.sidereal_time("apparent", longitude=site.lon).deg
    am = airmass(lst, -30.169, 60000.2, -70.815, -30.169, 2200.0)
    assert am is not None and 1.0 <= am < 1.001
    # 60 degrees from zenith along the meridian: sec(60) = 2 (plane-parallel, within 1%).
    am60 = airmass(lst, 29.831, 60000.2, -70.815, -30.169, 2200.0)
    assert am60 is not None and abs(am60 - 2.0) < 0.02
    assert airmass(lst, 70.0, 60000.2, -70.815, -30.169) is None  # below the horizon
