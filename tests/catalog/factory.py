"""Sky objects with detections, written straight into the curation tables (the catalog
only reads them; the curation domain that fills them is tested on its own)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, ObjectMember, SkyObject


def make_object(
    session: Session,
    ra: float,
    dec: float,
    *,
    label: str | None = "real",
    classification: str | None = None,
    mjds: tuple[float, ...] = (60000.0, 60001.0),
    mags: tuple[float, ...] = (19.0, 18.5),
    score: float = 0.9,
    **extra: Any,
) -> SkyObject:
    obj = SkyObject(
        ra=ra,
        dec=dec,
        healpix=int(healpix_index(ra, dec)),
        first_mjd=min(mjds),
        last_mjd=max(mjds),
        peak_mag=min(mags),
        latest_mag=mags[-1],
        max_confidence=score,
        n_detections=len(mjds),
        label=label,
        classification=classification,
        **extra,
    )
    session.add(obj)
    session.flush()
    for mjd, mag in zip(mjds, mags, strict=True):
        det = Detection(
            ra=ra,
            dec=dec,
            healpix=int(healpix_index(ra, dec)),
            mjd=mjd,
            mag=mag,
            snr=10.857,
            confidence=score,
        )
        session.add(det)
        session.flush()
        session.add(ObjectMember(detection_id=det.id, object_id=obj.id))
    session.flush()
    return obj
