"""Helpers of the curation tests: detections and users written straight to the store."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor
from astrid.domain.objects import register_detection
from astrid.runtime import Runtime
from astrid.store.auth_tables import User
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection


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
