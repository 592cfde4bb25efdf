"""Helpers of the curation tests: detections and users written straight to the store."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from photutils.psf import CircularGaussianPRF
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor
from astrid.domain.objects import register_detection
from astrid.runtime import Runtime
from astrid.store.blobs import BlobStore
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, Difference, Observation, Reference, Survey, User


def add_detection(
    session: Session,
    ra: float = 150.0,
    dec: float = 2.0,
    *,
    register: bool = True,
    **fields: Any,
) -> Detection:
    """A detection at (ra, dec), queued and associated as the pipeline does."""
    det = Detection(ra=ra, dec=dec, healpix=int(healpix_index(ra, dec)), **fields)
    session.add(det)
    session.flush()
    if register:
        register_detection(session, det)
    return det


def make_actors(runtime: Runtime, **roles: str) -> dict[str, Actor]:
    """Users ``name=role`` in the database, as :class:`Actor`s."""
    out = {}
    with runtime.db.session() as session:
        for name, role in roles.items():
            user = User(username=name, role=role, email=f"{name}@example.org")
            session.add(user)
            session.flush()
            out[name] = Actor(user.id, name, role)
    return out


ARCSEC = 1 / 3600
#: (image centre RA, PSF flux at (150, 2)) of each epoch made by :func:`add_differences`: a
#: bright point, a fainter one, nothing (an upper limit) and a field off the position.
EPOCHS = ((150.0, 900.0), (150.0, 800.0), (150.0, 0.0), (150.05, 0.0))


def diff_fits(centre_ra: float, flux: float, rng: np.random.Generator) -> bytes:
    """A 64x64 difference image (1"/px, white noise sigma 2) with a Gaussian PSF (FWHM 3 px)
    of ``flux`` at (150, 2)."""
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


def add_differences(session: Session, blobs: BlobStore, seed: int = 11) -> list[int]:
    """One observation with a stored ZOGY difference per :data:`EPOCHS` entry (MJD 60000 +
    i, filter r, zero point 25); returns the observation ids."""
    rng = np.random.default_rng(seed)
    survey = Survey(name="sim")
    session.add(survey)
    session.flush()
    ref = Reference(ra=150.0, dec=2.0, healpix=healpix_index(150.0, 2.0), blob_key="ref")
    session.add(ref)
    session.flush()
    obs_ids = []
    for i, (centre, flux) in enumerate(EPOCHS):
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
        session.add(obs)
        session.flush()
        session.add(
            Difference(
                observation_id=obs.id,
                reference_id=ref.id,
                method="zogy",
                stage_version="1",
                params_hash=f"p{i}",
                difference_key=blobs.put(diff_fits(centre, flux, rng)),
                stats={"zero_point": 25.0, "new_fwhm": 3.0},
            )
        )
        obs_ids.append(obs.id)
    session.flush()
    return obs_ids
