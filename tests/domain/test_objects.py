"""Sky objects on SQLite and PostgreSQL: association radius, weighted position across RA = 0,
ZTF aliases, and light curves with forced photometry on stored difference images."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.domain.objects import light_curve
from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import (
    CurationState,
    DomainEvent,
    ObjectMember,
    SkyObject,
)
from tests.domain.curation_fixtures import add_detection, add_differences

ARCSEC = 1 / 3600


def test_detections_within_the_radius_become_one_object(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        # Across RA = 0: 0.3" either side of the meridian, S/N 10 and 20.
        a = add_detection(s, 360.0 - 0.3 * ARCSEC, 10.0, snr=10.0, mjd=60001.0, mag=19.0)
        b = add_detection(s, 0.3 * ARCSEC, 10.0, snr=20.0, mjd=60003.0, mag=18.5)
        c = add_detection(s, 0.0, 10.0 + 1.2 * ARCSEC, snr=10.0, mjd=60002.0, mag=18.0)
        far = add_detection(s, 0.0, 10.0 + 5 * ARCSEC, snr=8.0, mjd=60002.0, mag=20.0)
    with runtime.db.session() as s:
        members = dict(s.execute(select(ObjectMember.detection_id, ObjectMember.object_id)).all())
        assert members[a.id] == members[b.id] == members[c.id] != members[far.id]
        obj = s.get(SkyObject, members[a.id])
        assert obj is not None
        assert obj.n_detections == 3
        assert (obj.first_mjd, obj.last_mjd) == (60001.0, 60003.0)
        assert (obj.peak_mag, obj.latest_mag) == (18.0, 18.5)
        # S/N² weights: (100·a + 400·b + 100·c) / 600 (RA offsets in RA units).
        x = (100 * -0.3 + 400 * 0.3 + 100 * 0.0) / 600 * ARCSEC
        y = (100 * 1.2) / 600 * ARCSEC
        sep = float(angular_separation_deg(obj.ra, obj.dec, x, 10.0 + y))
        assert sep * 3600 < 1e-3
        assert obj.healpix == healpix_index(obj.ra, obj.dec)
        n_created = s.scalar(
            select(func.count()).where(DomainEvent.event_type == EventType.OBJECT_CREATED.value)
        )
        assert n_created == 2
        assert s.scalar(select(func.count()).select_from(CurationState)) == 4


def test_a_ztf_object_id_is_an_alias(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        a = add_detection(s, 150.0, 2.0, extra={"objectId": "ZTF21aaaaaaa"}, source="alert")
        # 3" away (outside the radius) but the same ZTF object.
        b = add_detection(
            s, 150.0 + 3 * ARCSEC, 2.0, extra={"objectId": "ZTF21aaaaaaa"}, source="alert"
        )
    with runtime.db.session() as s:
        objs = s.scalars(select(SkyObject)).all()
        assert len(objs) == 1 and objs[0].ztf_object_id == "ZTF21aaaaaaa"
        assert objs[0].aliases == ["ZTF21aaaaaaa"]
        seps = dict(
            s.execute(select(ObjectMember.detection_id, ObjectMember.separation_arcsec)).all()
        )
        assert seps[a.id] == 0.0 and 1.0 < seps[b.id] < 3.0


def test_light_curve_has_detections_forced_points_and_upper_limits(runtime: Runtime) -> None:
    with runtime.db.session() as s:
        obs_ids = add_differences(s, runtime.blobs)
        det = add_detection(
            s, 150.0, 2.0, observation_id=obs_ids[0], mjd=60000.0, mag=17.6, snr=80.0
        )
        obj_id = s.scalar(select(ObjectMember.object_id).where(ObjectMember.detection_id == det.id))
    with runtime.db.session() as s:
        curve = light_curve(s, runtime.blobs, int(obj_id or 0))
    kinds = [(p["kind"], p["observation_id"]) for p in curve["points"]]
    assert kinds == [("detection", obs_ids[0]), ("forced", obs_ids[1]), ("upper_limit", obs_ids[2])]
    forced, limit = curve["points"][1], curve["points"][2]
    expected = 25.0 - 2.5 * np.log10(800.0)
    assert abs(forced["mag"] - expected) < 3 * forced["mag_err"]
    assert abs(forced["flux"] - 800.0) < 3 * forced["flux_err"]
    # 5-σ limit from the white-noise PSF error of σ = 2 and FWHM 3 px.
    err = 2.0 * np.sqrt(4 * np.pi) * 3.0 / 2.3548
    assert abs(limit["limit"] - (25.0 - 2.5 * np.log10(5 * err))) < 0.1
    with runtime.db.session() as s:
        no_forced = light_curve(s, runtime.blobs, int(obj_id or 0), forced=False)
    assert [p["kind"] for p in no_forced["points"]] == ["detection"]
