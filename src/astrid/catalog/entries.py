"""Catalog entries: confirmed sky objects with their designation, photometry summary,
classification, expert importance, discovery status and cross-match annotations; and the
catalog search (cone, class, time range, magnitude, importance).

An object is *confirmed* when curation decided it real (``SkyObject.label == "real"``, by
consensus or an expert) or its discovery reached ``confirmed``/``reported``; a retracted
discovery or a later ``bogus`` decision takes it out again. :func:`sync_catalog` brings the
``catalog_entries`` table in line with that rule in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from astrid.domain.observations import ConeQuery, cone_filter
from astrid.errors import AstridError
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import (
    CatalogEntry,
    DetectionAnnotation,
    Discovery,
    ExpertReview,
    ObjectMember,
    SkyObject,
)

__all__ = [
    "CatalogQuery",
    "CatalogSearchError",
    "SyncReport",
    "designation",
    "entry_dict",
    "iter_entry_dicts",
    "search_entries",
    "sync_catalog",
]

CONFIRMED_DISCOVERY = ("confirmed", "reported")


class CatalogSearchError(AstridError):
    """A catalog search parameter is out of range (names the parameter)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def designation(ra: float, dec: float) -> str:
    """IAU-style name ``AstrID Jhhmmss.ss+ddmmss.s`` of a position in degrees (truncated)."""
    c = SkyCoord(ra * u.deg, dec * u.deg)
    h, m, s = c.ra.hms
    sign = "-" if dec < 0 else "+"
    d, dm, ds = (abs(v) for v in c.dec.dms)
    s_t = math.floor(s * 100) / 100
    ds_t = math.floor(ds * 10) / 10
    return f"AstrID J{int(h):02d}{int(m):02d}{s_t:05.2f}{sign}{int(d):02d}{int(dm):02d}{ds_t:04.1f}"


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_catalog` changed."""

    added: int
    updated: int
    removed: int
    total: int


def _annotations(session: Session, object_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Nearest annotation of each kind per object (object-level or via its detections)."""
    out: dict[int, dict[str, Any]] = {}
    if not object_ids:
        return out
    via_member = (
        select(ObjectMember.object_id, DetectionAnnotation)
        .join(DetectionAnnotation, DetectionAnnotation.detection_id == ObjectMember.detection_id)
        .where(ObjectMember.object_id.in_(object_ids))
    )
    direct = select(DetectionAnnotation.object_id, DetectionAnnotation).where(
        DetectionAnnotation.object_id.in_(object_ids)
    )
    for query in (direct, via_member):
        for oid, ann in session.execute(query):
            if oid is None:
                continue
            kinds = out.setdefault(int(oid), {})
            old = kinds.get(ann.kind)
            sep = ann.separation_arcsec
            if old is None or (sep is not None and sep < (old.get("separation_arcsec") or 1e9)):
                kinds[ann.kind] = {
                    k: v
                    for k, v in {
                        "name": ann.name,
                        "separation_arcsec": sep,
                        "mag": ann.mag,
                        "source": ann.source,
                    }.items()
                    if v is not None
                }
    return out


def sync_catalog(session: Session, batch: int = 2000) -> SyncReport:
    """Add, refresh and remove entries so the table holds exactly the confirmed objects."""
    confirmed_ids = set(
        session.scalars(
            select(SkyObject.id)
            .outerjoin(Discovery, Discovery.object_id == SkyObject.id)
            .where(
                or_(
                    and_(
                        SkyObject.label == "real",
                        or_(Discovery.id.is_(None), Discovery.status != "retracted"),
                    ),
                    Discovery.status.in_(CONFIRMED_DISCOVERY),
                )
            )
        )
    )
    existing = {
        int(oid): int(eid)
        for oid, eid in session.execute(select(CatalogEntry.object_id, CatalogEntry.id))
    }
    gone = [eid for oid, eid in existing.items() if oid not in confirmed_ids]
    if gone:
        session.query(CatalogEntry).filter(CatalogEntry.id.in_(gone)).delete(
            synchronize_session=False
        )
    names = set(session.scalars(select(CatalogEntry.name)))
    added = updated = 0
    ids = sorted(confirmed_ids)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        objects = session.scalars(select(SkyObject).where(SkyObject.id.in_(chunk))).all()
        discoveries = {
            d.object_id: d
            for d in session.scalars(select(Discovery).where(Discovery.object_id.in_(chunk)))
        }
        importance = {
            oid: imp
            for oid, imp in session.execute(
                select(ExpertReview.object_id, func.max(ExpertReview.importance))
                .where(ExpertReview.object_id.in_(chunk))
                .group_by(ExpertReview.object_id)
            )
        }
        annotations = _annotations(session, chunk)
        entries = {
            e.object_id: e
            for e in session.scalars(select(CatalogEntry).where(CatalogEntry.object_id.in_(chunk)))
        }
        for obj in objects:
            disc = discoveries.get(obj.id)
            values = {
                "ra": obj.ra,
                "dec": obj.dec,
                "healpix": int(healpix_index(obj.ra, obj.dec)),
                "classification": (disc.classification if disc and disc.classification else None)
                or obj.classification,
                "n_detections": obj.n_detections,
                "first_mjd": obj.first_mjd,
                "last_mjd": obj.last_mjd,
                "peak_mag": obj.peak_mag,
                "latest_mag": obj.latest_mag,
                "max_score": obj.max_confidence,
                "importance": (disc.importance if disc and disc.importance else None)
                or importance.get(obj.id),
                "discovery_status": disc.status if disc else None,
                "annotations": annotations.get(obj.id, {}),
            }
            entry = entries.get(obj.id)
            if entry is None:
                name = designation(obj.ra, obj.dec)
                base, n = name, 1
                while name in names:  # two objects within the name's precision
                    n += 1
                    name = f"{base}-{n}"
                names.add(name)
                session.add(CatalogEntry(object_id=obj.id, name=name, **values))
                added += 1
            else:
                changed = False
                for key, value in values.items():
                    if getattr(entry, key) != value:
                        setattr(entry, key, value)
                        changed = True
                updated += changed
    session.flush()
    total = int(session.scalar(select(func.count(CatalogEntry.id))) or 0)
    return SyncReport(added, updated, len(gone), total)


@dataclass(frozen=True)
class CatalogQuery:
    """Catalog search filters; every one optional. Angles and radius in degrees."""

    ra: float | None = None
    dec: float | None = None
    radius: float | None = None
    classification: str | None = None
    mjd_min: float | None = None
    mjd_max: float | None = None
    mag_min: float | None = None
    mag_max: float | None = None
    min_importance: int | None = None

    def cone(self) -> ConeQuery | None:
        """The validated cone, or None; raises :class:`CatalogSearchError` naming the field."""
        given = {
            k: getattr(self, k) for k in ("ra", "dec", "radius") if getattr(self, k) is not None
        }
        if not given:
            return None
        if len(given) < 3:
            missing = sorted({"ra", "dec", "radius"} - set(given))
            raise CatalogSearchError(missing[0], "a cone needs ra, dec and radius together")
        assert self.ra is not None and self.dec is not None and self.radius is not None
        if not (math.isfinite(self.radius) and 0 < self.radius <= 90):
            raise CatalogSearchError("radius", f"{self.radius} deg is not in (0, 90]")
        if not (math.isfinite(self.ra) and 0 <= self.ra < 360):
            raise CatalogSearchError("ra", f"{self.ra} deg is not in [0, 360)")
        if not (math.isfinite(self.dec) and -90 <= self.dec <= 90):
            raise CatalogSearchError("dec", f"{self.dec} deg is not in [-90, 90]")
        return ConeQuery(self.ra, self.dec, self.radius)

    def statement(self) -> Select[Any]:
        """The SELECT of matching entries (cone pre-filter only; see :func:`search_entries`)."""
        stmt = select(CatalogEntry)
        cone = self.cone()
        if cone is not None:
            stmt = stmt.where(cone_filter(CatalogEntry.healpix, cone))
        if self.classification:
            path = self.classification.strip("/")
            stmt = stmt.where(
                or_(
                    CatalogEntry.classification == path,
                    CatalogEntry.classification.like(path + "/%"),
                )
            )
        for value, cond in (
            (self.mjd_min, lambda v: CatalogEntry.last_mjd >= v),
            (self.mjd_max, lambda v: CatalogEntry.first_mjd <= v),
            (self.mag_min, lambda v: CatalogEntry.peak_mag >= v),
            (self.mag_max, lambda v: CatalogEntry.peak_mag <= v),
            (self.min_importance, lambda v: CatalogEntry.importance >= v),
        ):
            if value is not None:
                stmt = stmt.where(cond(value))
        return stmt


def search_entries(
    session: Session, query: CatalogQuery, *, limit: int = 100, after_id: int | None = None
) -> list[CatalogEntry]:
    """Entries matching ``query``: by id (keyset after ``after_id``), or nearest first in a cone."""
    stmt = query.statement()
    cone = query.cone()
    if cone is None:
        if after_id is not None:
            stmt = stmt.where(CatalogEntry.id > after_id)
        return list(session.scalars(stmt.order_by(CatalogEntry.id).limit(limit)))
    rows = list(session.scalars(stmt))
    if not rows:
        return []
    sep = angular_separation_deg(
        np.array([r.ra for r in rows]), np.array([r.dec for r in rows]), cone.ra, cone.dec
    )
    keep = [(float(s), r.id, r) for s, r in zip(sep, rows, strict=True) if s <= cone.radius]
    keep.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in keep[:limit]]


ENTRY_FIELDS = (
    "name",
    "object_id",
    "ra",
    "dec",
    "classification",
    "n_detections",
    "first_mjd",
    "last_mjd",
    "peak_mag",
    "latest_mag",
    "max_score",
    "importance",
    "discovery_status",
    "annotations",
)


def entry_dict(entry: CatalogEntry) -> dict[str, Any]:
    """An entry as the plain dict exports and releases use."""
    out = {k: getattr(entry, k) for k in ENTRY_FIELDS}
    out["annotations"] = dict(entry.annotations or {})
    return out


def iter_entry_dicts(
    session: Session, query: CatalogQuery | None = None, chunk: int = 10_000
) -> Iterator[dict[str, Any]]:
    """Every matching entry as a dict, by name, read in keyset pages of plain rows (no ORM
    objects: an export of a million entries costs one page of memory at a time)."""
    cols = [getattr(CatalogEntry, k) for k in ENTRY_FIELDS]
    base = (query or CatalogQuery()).statement().with_only_columns(*cols)
    last: str | None = None
    while True:
        stmt = base.order_by(CatalogEntry.name).limit(chunk)
        if last is not None:
            stmt = stmt.where(CatalogEntry.name > last)
        rows = session.execute(stmt).all()
        if not rows:
            return
        for row in rows:
            item = dict(zip(ENTRY_FIELDS, row, strict=True))
            item["annotations"] = dict(item["annotations"] or {})
            yield item
        last = rows[-1][0]
