"""Merging objects on SQLite and PostgreSQL: a detection within the association radius of two
objects folds the younger into the older (detections, comments, reviews and the catalog entry
re-pointed, the old id an alias, audit and ``object.merged`` event); two discoveries are not
merged."""

from __future__ import annotations

from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.domain.merges import merged_ids, resolve_object_id
from astrid.runtime import Runtime
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
