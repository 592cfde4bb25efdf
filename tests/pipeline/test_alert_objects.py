"""Alert ingest associates each stored alert with a sky object (ZTF objectId as alias) and
queues it for scanning, in the same transaction (real ZTF alert packets)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from astrid.pipeline.alerts import ingest_alerts
from astrid.runtime import Runtime
from astrid.store.tables import CurationState, Detection, ObjectMember, SkyObject


def test_alerts_become_objects_with_their_ztf_names(runtime: Runtime, shared_data: Path) -> None:
    files = sorted((shared_data / "ztf_alerts").glob("*.avro"))[:10]
    outcomes = ingest_alerts(runtime, files)
    assert {o.status for o in outcomes} == {"stored"}
    with runtime.db.session() as s:
        dets = s.scalars(select(Detection)).all()
        names = {str(d.extra["objectId"]) for d in dets}
        objects = s.scalars(select(SkyObject)).all()
        # One object per ZTF object (alerts of one ZTF object share it).
        assert {o.ztf_object_id for o in objects} == names
        assert len(objects) == len(names)
        members = dict(s.execute(select(ObjectMember.detection_id, ObjectMember.object_id)).all())
        by_id = {o.id: o for o in objects}
        for d in dets:
            assert by_id[members[d.id]].ztf_object_id == d.extra["objectId"]
        assert sum(o.n_detections for o in objects) == len(dets)
        states = s.scalars(select(CurationState.state)).all()
        assert len(states) == len(dets) and set(states) == {"awaiting"}
    ingest_alerts(runtime, files)  # again: nothing new, nothing associated twice
    with runtime.db.session() as s:
        assert sum(o.n_detections for o in s.scalars(select(SkyObject))) == len(dets)
