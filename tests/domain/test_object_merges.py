"""Merging objects on SQLite and PostgreSQL: a detection within the association radius of two
objects folds the younger into the older (detections, comments, reviews and the catalog entry
re-pointed, the old id an alias, audit and ``object.merged`` event); two discoveries are not
merged; an expert's merge names what is wrong, and two racing on PostgreSQL serialise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text

from astrid.domain.curation_audit import CurationConflictError, CurationInputError
from astrid.domain.events import EventType
from astrid.domain.merges import merge_chosen, merged_ids, resolve_object_id
from astrid.domain.observations import NotFoundError
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    Comment,
    CurationAudit,
    Discovery,
    DomainEvent,
    ObjectMember,
    ObjectMerge,
    SkyObject,
)
from tests.domain.curation_fixtures import add_detection, make_actors

ARCSEC = 1 / 3600


def _object_of(s: object, det_id: int) -> int:
    return s.scalar(select(ObjectMember.object_id).where(ObjectMember.detection_id == det_id))  # type: ignore[attr-defined]


def test_a_detection_between_two_objects_merges_them(runtime: Runtime) -> None:
    users = make_actors(runtime, ann="curator")
    with runtime.db.session() as s:
        # 2.4" apart: each beyond the 1.5" radius of the other, so two objects.
        a = add_detection(s, 150.0, 2.0, snr=10.0, mjd=60001.0, mag=19.0, confidence=0.6)
        b = add_detection(
            s,
            150.0,
            2.0 + 2.4 * ARCSEC,
            snr=10.0,
            mjd=60005.0,
            mag=18.0,
            confidence=0.9,
            extra={"objectId": "ZTF26aaaaaaa"},
        )
        obj_a, obj_b = _object_of(s, a.id), _object_of(s, b.id)
        assert obj_a < obj_b
        s.add(Comment(object_id=obj_b, user_id=users["ann"].user_id, body="seen twice"))
    with runtime.db.session() as s:
        # Midway: 1.2" from each.
        c = add_detection(s, 150.0, 2.0 + 1.2 * ARCSEC, snr=10.0, mjd=60003.0, mag=18.5)
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(SkyObject)) == 1
        kept = s.get(SkyObject, obj_a)
        assert kept is not None and s.get(SkyObject, obj_b) is None
        assert {_object_of(s, d.id) for d in (a, b, c)} == {obj_a}
        assert kept.n_detections == 3
        assert (kept.first_mjd, kept.last_mjd) == (60001.0, 60005.0)
        assert (kept.peak_mag, kept.latest_mag) == (18.0, 18.0)
        assert abs(kept.max_confidence - 0.9) < 1e-9
        assert kept.ztf_object_id == "ZTF26aaaaaaa" and kept.aliases == ["ZTF26aaaaaaa"]
        # Equal weights: the mean of the three positions, dec + 1.2".
        sep = float(angular_separation_deg(kept.ra, kept.dec, 150.0, 2.0 + 1.2 * ARCSEC))
        assert sep * 3600 < 1e-3
        assert s.scalar(select(Comment.object_id)) == obj_a
        merge = s.get(ObjectMerge, obj_b)
        assert merge is not None and merge.object_id == obj_a
        assert merge.detection_id == c.id and merge.n_detections == 1
        assert resolve_object_id(s, obj_b) == obj_a and resolve_object_id(s, obj_a) == obj_a
        assert resolve_object_id(s, 999_999) is None
        assert merged_ids(s, obj_a) == [obj_b]
        events = s.scalars(
            select(DomainEvent).where(DomainEvent.event_type == EventType.OBJECT_MERGED.value)
        ).all()
        assert len(events) == 1
        assert events[0].aggregate_id == obj_a
        assert events[0].payload["merged_id"] == obj_b
        assert events[0].payload["trigger_detection_id"] == c.id
        trail = s.scalars(select(CurationAudit).where(CurationAudit.action == "merge")).all()
        assert [(t.object_id, t.before["merged"]["object_id"]) for t in trail] == [(obj_a, obj_b)]
    # A later detection at the retired object's place joins the kept one: no new object.
    with runtime.db.session() as s:
        d = add_detection(s, 150.0, 2.0 + 2.0 * ARCSEC, snr=10.0, mjd=60006.0)
        assert _object_of(s, d.id) == obj_a
        assert s.scalar(select(func.count()).select_from(SkyObject)) == 1


def test_two_discoveries_are_not_merged(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        a = add_detection(s, 10.0, -30.0, snr=10.0, mjd=60001.0)
        b = add_detection(s, 10.0, -30.0 + 2.4 * ARCSEC, snr=10.0, mjd=60002.0)
        obj_a, obj_b = _object_of(s, a.id), _object_of(s, b.id)
        s.add_all([Discovery(object_id=obj_a), Discovery(object_id=obj_b)])
    with runtime.db.session() as s:
        c = add_detection(s, 10.0, -30.0 + 1.3 * ARCSEC, snr=10.0, mjd=60003.0)
        assert s.scalar(select(func.count()).select_from(SkyObject)) == 2
        assert _object_of(s, c.id) == obj_b  # the nearer one (1.1" against 1.3")
        assert s.scalar(select(func.count()).select_from(ObjectMerge)) == 0


def _three_objects(runtime: Runtime, dec0: float) -> tuple[int, int, int]:
    """Three objects in a line 3" apart (beyond the 1.5" radius: never merged by arrival)."""
    with runtime.db.session() as s:
        dets = [
            add_detection(s, 40.0, dec0 + k * 3.0 * ARCSEC, snr=10.0, mjd=60001.0 + k)
            for k in range(3)
        ]
        ids = tuple(_object_of(s, d.id) for d in dets)
    assert len(set(ids)) == 3
    return ids  # type: ignore[return-value]


def test_an_expert_merges_two_objects_and_bad_requests_are_named(runtime: Runtime) -> None:
    users = make_actors(runtime, eve="expert")
    a, b, c = _three_objects(runtime, 5.0)
    with runtime.db.session() as s:
        s.add_all([Discovery(object_id=a), Discovery(object_id=c)])
    with runtime.db.session() as s:
        # Named by the younger id: the older one is kept all the same.
        kept = merge_chosen(s, b, a, users["eve"], max_separation_arcsec=10.0)
        assert kept.id == a and kept.n_detections == 2
    with runtime.db.session() as s:
        assert s.get(SkyObject, b) is None and resolve_object_id(s, b) == a
        trail = s.scalars(select(CurationAudit).where(CurationAudit.action == "merge")).one()
        assert (trail.username, trail.object_id) == ("eve", a)
        event = s.scalars(
            select(DomainEvent).where(DomainEvent.event_type == EventType.OBJECT_MERGED.value)
        ).one()
        assert event.payload["by"] == "eve" and event.payload["trigger_detection_id"] is None
    bad: list[tuple[int, int, float, type[Exception], str]] = [
        (a, 999_999, 10.0, NotFoundError, "no object with id 999999"),
        (b, a, 10.0, CurationConflictError, "already one object"),  # b is a's alias now
        (a, c, 10.0, CurationConflictError, "both discoveries"),
        (a, c, 4.0, CurationInputError, '4.5" apart'),  # a sits between its two now
    ]
    for one, other, limit, error, words in bad:
        with runtime.db.session() as s, pytest.raises(error, match=words):
            merge_chosen(s, one, other, users["eve"], max_separation_arcsec=limit)
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(SkyObject)) == 2
        assert s.scalar(select(func.count()).select_from(ObjectMerge)) == 1


def test_two_expert_merges_racing_on_postgresql_serialise(
    postgres_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    """Merge (a, b) holds its row locks; merge (b, c) meanwhile waits on b's lock, then finds b
    retired and follows the alias: one object with all three, no deadlock, nothing lost."""
    upgrade(postgres_url)
    runtime = make_runtime(postgres_url)
    users = make_actors(runtime, eve="expert", max="expert")
    a, b, c = _three_objects(runtime, -12.0)
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with runtime.db.session() as s:
                merge_chosen(s, b, c, users["max"], max_separation_arcsec=10.0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with runtime.db.session() as s:
        merge_chosen(s, a, b, users["eve"], max_separation_arcsec=10.0)
        racer = threading.Thread(target=second)
        racer.start()
        # autocommit: PostgreSQL reads pg_stat_activity once per transaction, so a probe
        # inside one transaction would keep seeing the racer as it was at the first poll
        # (CI's slow run: the racer had not reached the lock yet, and never "arrived")
        auto = runtime.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with auto as probe:
            for _ in range(200):  # until the racer waits on our row lock (at most 20 s)
                waiting = probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar()
                if waiting:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the second merge never waited for the first one's row locks")
    racer.join(timeout=60)
    assert not racer.is_alive() and not errors, errors
    with runtime.db.session() as s:
        assert s.scalars(select(SkyObject.id)).all() == [a]
        assert s.get(SkyObject, a).n_detections == 3  # type: ignore[union-attr]
        assert {m.merged_id: m.object_id for m in s.scalars(select(ObjectMerge))} == {b: a, c: a}
        trail = s.scalars(
            select(CurationAudit).where(CurationAudit.action == "merge").order_by(CurationAudit.id)
        ).all()
        assert [t.username for t in trail] == ["eve", "max"]
