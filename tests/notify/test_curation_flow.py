"""The human loop end to end: a detection is stored and associated (curation domain), two
curators agree it is a supernova, the dispatcher tells a webhook and the catalog gains the
object — the catalog and notifications driven by the curation domain's real events."""

from __future__ import annotations

from sqlalchemy import select

from astrid.catalog.entries import sync_catalog
from astrid.domain.curation_audit import Actor
from astrid.domain.objects import register_detection
from astrid.domain.votes import cast_vote
from astrid.notify.dispatcher import dispatch_once
from astrid.runtime import Runtime
from astrid.store.sky_index import healpix_index
from astrid.store.tables import CatalogEntry, Detection, NotificationRule, User
from tests.notify.servers import WebhookReceiver


def test_consensus_notifies_and_enters_the_catalog(runtime: Runtime) -> None:
    with WebhookReceiver() as hook:
        with runtime.db.session() as s:
            ann, bob = User(username="ann", role="curator"), User(username="bob", role="curator")
            s.add_all([ann, bob])
            s.add(
                NotificationRule(
                    channel="webhook",
                    target=hook.url,
                    events=["classification"],
                    classification="transient",
                )
            )
            s.add(
                NotificationRule(
                    channel="webhook", target=hook.url, events=["new_object"], min_score=0.99
                )
            )
            det = Detection(
                ra=33.0,
                dec=-5.0,
                healpix=int(healpix_index(33.0, -5.0)),
                mjd=60300.2,
                snr=25.0,
                mag=18.1,
                confidence=0.97,
            )
            s.add(det)
            s.flush()
            obj = register_detection(s, det)
            ids = (det.id, obj.id, ann.id, bob.id)
        det_id, obj_id, ann_id, bob_id = ids
        assert dispatch_once(runtime).sent == 0  # object.created: below the 0.99 threshold
        for uid, name in ((ann_id, "ann"), (bob_id, "bob")):
            with runtime.db.session() as s:
                cast_vote(
                    s,
                    det_id,
                    Actor(uid, name, "curator"),
                    "real",
                    classification="transient/supernova",
                )
        report = dispatch_once(runtime)
        assert report.sent == 1 and report.failed == 0
        body = hook.bodies[-1]["astrid"]
        assert body["kind"] == "classification" and body["detection_id"] == det_id
        assert body["classification"] == "transient/supernova"
    with runtime.db.session() as s:
        assert sync_catalog(s).added == 1
        entry = s.scalars(select(CatalogEntry)).one()
        assert (entry.object_id, entry.classification) == (obj_id, "transient/supernova")
