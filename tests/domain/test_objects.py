"""Sky objects on SQLite and PostgreSQL: association radius, weighted position across RA = 0,
ZTF aliases, and light curves with forced photometry on stored difference images."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from photutils.psf import CircularGaussianPRF
from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.domain.objects import light_curve
from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import (
    CurationState,
    Difference,
    DomainEvent,
    ObjectMember,
    Observation,
    Reference,
    SkyObject,
    Survey,
)
from tests.domain.curation_fixtures import add_detection

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


def _diff_fits(centre_ra: float, flux: float, rng: np.random.Generator) -> bytes:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [centre_ra, 2.0]
    w.wcs.crpix = [32.5, 32.5]  # FITS 1-based: pixel (31.5, 31.5) 0-based is the centre
    w.wcs.cdelt = [-1 * ARCSEC, ARCSEC]
    x, y = (float(v) for v in w.world_to_pixel_values(150.0, 2.0))
    yy, xx = np.mgrid[0:64, 0:64]
    data = CircularGaussianPRF(flux=flux, x_0=x, y_0=y, fwhm=3.0)(xx, yy)
    data = data + rng.normal(0, 2.0, (64, 64))
    buf = io.BytesIO()
    fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(buf)
    return buf.getvalue()


def test_light_curve_has_detections_forced_points_and_upper_limits(runtime: Runtime) -> None:
    rng = np.random.default_rng(11)
    with runtime.db.session() as s:
        survey = Survey(name="sim")
        s.add(survey)
        s.flush()
        ref = Reference(ra=150.0, dec=2.0, healpix=healpix_index(150.0, 2.0), blob_key="ref")
        s.add(ref)
        s.flush()
        obs_ids = []
        for i, (centre, flux) in enumerate(
            [(150.0, 900.0), (150.0, 800.0), (150.0, 0.0), (150.05, 0.0)]
        ):
            obs = Observation(
                survey_id=survey.id,
                content_hash=f"h{i}",
                blob_key=f"b{i}",
                ra=centre,
                dec=2.0,
                healpix=healpix_index(centre, 2.0),
                width=64,
                height=64,
                mjd=60000.0 + i,
                filter="r",
            )
            s.add(obs)
            s.flush()
            key = runtime.blobs.put(_diff_fits(centre, flux, rng))
            s.add(
                Difference(
                    observation_id=obs.id,
                    reference_id=ref.id,
                    method="zogy",
                    stage_version="1",
                    params_hash=f"p{i}",
                    difference_key=key,
                    stats={"zero_point": 25.0, "new_fwhm": 3.0},
                )
            )
            obs_ids.append(obs.id)
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
