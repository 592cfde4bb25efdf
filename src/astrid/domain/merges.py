"""Merging sky objects that a detection shows to be one source.

Positions drift as detections arrive, so two objects can end up closer than the association
radius, or a new detection can lie within the radius of both. :func:`merge_objects` then
folds the younger object into the older one (the smaller id is kept): its detections,
comments, expert reviews, annotations, discovery and catalog entry are re-pointed, the
weighted position and the summaries (first/last seen, peak and latest magnitude, best score,
aliases) are combined, the retired id is kept in ``object_merges`` as an alias of the kept
object (:func:`resolve_object_id`), and an audit row with an ``object.merged`` outbox event
is written, all in the caller's transaction.

Two objects that are both discoveries are not merged (each has its own status history and
possibly a TNS name); the detection then joins the nearer one and a curator decides.

:func:`merge_chosen` is the same fold asked for by an expert (``POST /objects/{id}/merge``,
``astrid catalog merge``): both rows are locked in id order first, so two merges racing on
PostgreSQL serialise, and an id retired by the other merge meanwhile is followed to the
object it now names.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor, CurationConflictError, CurationInputError, audit
from astrid.domain.events import EventType
from astrid.domain.observations import NotFoundError
from astrid.store.sky_index import angular_separation_deg, healpix_index
from astrid.store.tables import (
    CatalogEntry,
    Comment,
    DetectionAnnotation,
    Discovery,
    ExpertReview,
    ObjectMember,
    ObjectMerge,
    SkyObject,
)

__all__ = ["merge_chosen", "merge_objects", "merged_ids", "resolve_object_id"]

log = logging.getLogger(__name__)


def _summary(obj: SkyObject) -> dict[str, Any]:
    return {
        "object_id": obj.id,
        "ra": obj.ra,
        "dec": obj.dec,
        "n_detections": obj.n_detections,
        "first_mjd": obj.first_mjd,
        "last_mjd": obj.last_mjd,
        "aliases": list(obj.aliases or []),
    }


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _combine(keep: SkyObject, other: SkyObject) -> None:
    keep.sx, keep.sy, keep.sz = keep.sx + other.sx, keep.sy + other.sy, keep.sz + other.sz
    keep.weight = keep.weight + other.weight
    norm = math.sqrt(keep.sx**2 + keep.sy**2 + keep.sz**2)
    if norm > 0:
        keep.ra = math.degrees(math.atan2(keep.sy, keep.sx)) % 360.0
        keep.dec = math.degrees(math.asin(max(-1.0, min(1.0, keep.sz / norm))))
        keep.healpix = int(healpix_index(keep.ra, keep.dec))
    keep.n_detections = (keep.n_detections or 0) + (other.n_detections or 0)
    if other.last_mjd is not None and (keep.last_mjd is None or other.last_mjd > keep.last_mjd):
        keep.latest_mag = other.latest_mag if other.latest_mag is not None else keep.latest_mag
    keep.first_mjd = _min(keep.first_mjd, other.first_mjd)
    keep.last_mjd = _max(keep.last_mjd, other.last_mjd)
    keep.peak_mag = _min(keep.peak_mag, other.peak_mag)
    keep.max_confidence = _max(keep.max_confidence, other.max_confidence)
    keep.ztf_object_id = keep.ztf_object_id or other.ztf_object_id
    keep.aliases = list(dict.fromkeys([*(keep.aliases or []), *(other.aliases or [])]))
    if other.label == "real" or keep.label is None:
        keep.label = other.label or keep.label
    keep.classification = keep.classification or other.classification
    # Annotations of the moved detections are still there; the new members were not
    # cross-matched as part of this object, so --all-new picks it up again.
    if keep.crossmatched_at is None or other.crossmatched_at is None:
        keep.crossmatched_at = None


def merge_objects(
    session: Session,
    keep: SkyObject,
    other: SkyObject,
    *,
    detection_id: int | None = None,
    actor: Actor | None = None,
) -> bool:
    """Fold ``other`` into ``keep`` (see the module docstring); False when refused.

    ``detection_id`` is the detection whose arrival showed the two to be one, ``actor`` the
    expert who asked for the merge (audit only; both None for neither).
    """
    if keep.id == other.id:
        return False
    discoveries = session.scalars(
        select(Discovery).where(Discovery.object_id.in_([keep.id, other.id]))
    ).all()
    if len(discoveries) > 1:
        log.info("objects %s and %s are both discoveries: not merged", keep.id, other.id)
        return False
    before = {"kept": _summary(keep), "merged": _summary(other)}
    entries = {
        e.object_id: e
        for e in session.scalars(
            select(CatalogEntry).where(CatalogEntry.object_id.in_([keep.id, other.id]))
        )
    }
    if other.id in entries and keep.id in entries:
        # Catalog entries are derived from curation; the next sync refreshes the kept one.
        session.delete(entries[other.id])
        session.flush()
    for table in (ObjectMember, Comment, ExpertReview, DetectionAnnotation, Discovery):
        session.execute(
            update(table)
            .where(table.object_id == other.id)
            .values(object_id=keep.id)
            .execution_options(synchronize_session=False)
        )
    if other.id in entries and keep.id not in entries:
        entries[other.id].object_id = keep.id
    session.execute(
        update(ObjectMerge)
        .where(ObjectMerge.object_id == other.id)
        .values(object_id=keep.id)
        .execution_options(synchronize_session=False)
    )
    _combine(keep, other)
    session.add(
        ObjectMerge(
            merged_id=other.id,
            object_id=keep.id,
            detection_id=detection_id,
            n_detections=other.n_detections or 0,
        )
    )
    merged_id = other.id
    session.flush()
    session.execute(delete(SkyObject).where(SkyObject.id == merged_id))
    session.expunge(other)
    audit(
        session,
        "merge",
        actor,
        event=EventType.OBJECT_MERGED,
        object_id=keep.id,
        before=before,
        after=_summary(keep),
        payload={
            "merged_id": merged_id,
            "kept_id": keep.id,
            "trigger_detection_id": detection_id,
            "by": actor.username if actor else None,
        },
    )
    return True


def merge_chosen(
    session: Session,
    object_id: int,
    other_id: int,
    actor: Actor,
    *,
    max_separation_arcsec: float,
) -> SkyObject:
    """Merge two objects an expert names as one source; the kept object (the older id).

    Either id may be an alias of an earlier merge. Refused with a named error when an id names
    no object (:class:`NotFoundError`), when both already name the same object or both are
    discoveries (:class:`CurationConflictError`), and when they lie more than
    ``max_separation_arcsec`` apart (:class:`CurationInputError` on ``other_id``): a merge joins
    one source seen twice, not two neighbours.
    """
    for _ in range(3):  # a concurrent merge may retire an id between resolving and locking
        ids = []
        for given in (object_id, other_id):
            resolved = resolve_object_id(session, given)
            if resolved is None:
                raise NotFoundError(f"no object with id {given}")
            ids.append(resolved)
        if ids[0] == ids[1]:
            raise CurationConflictError(
                f"objects {object_id} and {other_id} are already one object ({ids[0]})"
            )
        # Lock in id order so two merges over the same rows wait for each other, not deadlock.
        rows = session.scalars(
            select(SkyObject)
            .where(SkyObject.id.in_(ids))
            .order_by(SkyObject.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        if len(rows) == 2:
            break
    else:
        raise CurationConflictError(
            f"objects {object_id} and {other_id} kept changing under concurrent merges; try again"
        )
    keep, other = rows
    sep = float(angular_separation_deg(keep.ra, keep.dec, other.ra, other.dec)) * 3600.0
    if sep > max_separation_arcsec:
        raise CurationInputError(
            "other_id",
            f'objects {keep.id} and {other.id} are {sep:.1f}" apart, beyond the '
            f'{max_separation_arcsec:g}" a merge allows (ASTRID_CURATION_MERGE_MAX_ARCSEC)',
        )
    if not merge_objects(session, keep, other, actor=actor):
        raise CurationConflictError(
            f"objects {keep.id} and {other.id} are both discoveries: retract one first"
        )
    return keep


def resolve_object_id(session: Session, object_id: int) -> int | None:
    """The id of the object ``object_id`` names now (itself, or the one it was merged into)."""
    if session.get(SkyObject, object_id) is not None:
        return object_id
    return session.scalar(select(ObjectMerge.object_id).where(ObjectMerge.merged_id == object_id))


def merged_ids(session: Session, object_id: int) -> list[int]:
    """Ids merged into ``object_id`` (its aliases among AstrID ids), oldest merge first."""
    return list(
        session.scalars(
            select(ObjectMerge.merged_id)
            .where(ObjectMerge.object_id == object_id)
            .order_by(ObjectMerge.created_at, ObjectMerge.merged_id)
        )
    )
