"""The scanning queue: detections awaiting review, with what a scanner needs in one answer.

``GET /api/v1/scanning/queue`` reads the narrow, indexed ``curation_states`` table (its
``score`` and ``margin`` copies of P(real)) joined to the detections, then loads objects,
annotations and the caller's votes for the whole page in three more queries. Keyset cursors
(``next_cursor``) make every page cost the same; a client prefetches the next page while
the scanner works on this one. By default the caller's own voted detections are left out.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from datetime import timedelta
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query
from sqlalchemy import and_, exists, false, or_, select
from sqlalchemy.orm import Session

from astrid.api.deps import Rt, Viewer
from astrid.api.problems import Problem
from astrid.domain.observations import ConeQuery, cone_filter
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    CurationState,
    CurationStateName,
    Detection,
    DetectionAnnotation,
    ObjectMember,
    Observation,
    SkyObject,
    Survey,
    Vote,
    VoteState,
    utcnow,
)

__all__ = ["cutout_urls", "router"]

router = APIRouter(prefix="/scanning", tags=["scanning"])

Order = Literal["score", "uncertainty", "age"]
TRIPLET = {
    "science": ("science", "new", "new_png"),
    "reference": ("template", "reference", "ref", "ref_png"),
    "difference": ("difference", "diff", "diff_png"),
}
QUEUE_STATES = (CurationStateName.AWAITING.value, CurationStateName.EXPERT_QUEUE.value)


def cutout_urls(detection_id: int, keys: dict[str, Any]) -> dict[str, str | None]:
    """URLs of the science / reference / difference cutouts of a detection (None if absent)."""
    out: dict[str, str | None] = {}
    for role, names in TRIPLET.items():
        name = next((n for n in names if isinstance(keys.get(n), str)), None)
        out[role] = f"/api/v1/detections/{detection_id}/cutouts/{name}" if name else None
    return out


def _encode(order: str, key: float, last_id: int) -> str:
    raw = json.dumps([order, key, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, order: str) -> tuple[float, int]:
    bad = Problem(
        400,
        "cursor is not a next_cursor of this queue and order",
        kind="validation",
        errors=[{"field": "query.cursor", "message": "invalid cursor"}],
    )
    try:
        got = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        o, key, last = got
        key, last = float(key), int(last)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise bad from exc
    if o != order or not np.isfinite(key) or not 0 <= last <= 2**62:
        raise bad
    return key, last


class QueueFilters:
    """Query parameters of the queue."""

    def __init__(
        self,
        order: Annotated[
            Order,
            Query(
                description="score: P(real) high first; uncertainty: the model's least "
                "confident first (smallest margin |P(real) - 0.5|); age: newest first."
            ),
        ] = "score",
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        min_snr: Annotated[float | None, Query(ge=-1e6, le=1e6)] = None,
        max_snr: Annotated[float | None, Query(ge=-1e6, le=1e6)] = None,
        min_mag: Annotated[float | None, Query(ge=-50, le=50)] = None,
        max_mag: Annotated[float | None, Query(ge=-50, le=50)] = None,
        max_age_days: Annotated[
            float | None, Query(gt=0, le=36500, description="Stored within this many days.")
        ] = None,
        mjd_min: Annotated[float | None, Query(ge=0, le=1e6)] = None,
        mjd_max: Annotated[float | None, Query(ge=0, le=1e6)] = None,
        ra: Annotated[float | None, Query(ge=0, lt=360)] = None,
        dec: Annotated[float | None, Query(ge=-90, le=90)] = None,
        radius: Annotated[float | None, Query(gt=0, le=10, description="Degrees.")] = None,
        survey: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        source: Literal["pipeline", "alert"] | None = None,
        annotation: Annotated[
            str | None, Query(min_length=1, max_length=32, description="Has this kind.")
        ] = None,
        no_annotation: Annotated[
            str | None, Query(min_length=1, max_length=32, description="Lacks this kind.")
        ] = None,
        queue: Annotated[
            Literal["awaiting", "expert_queue"], Query(description="Which queue.")
        ] = "awaiting",
        include_voted: Annotated[
            bool, Query(description="Also detections the caller already voted on.")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> None:
        self.order, self.limit, self.queue = order, limit, queue
        self.include_voted = include_voted
        self.after = _decode(cursor, order) if cursor else None
        d = Detection
        self.conditions: list[Any] = []
        for value, cond in (
            (min_score, lambda v: CurationState.score >= v),
            (max_score, lambda v: and_(CurationState.score <= v, CurationState.score >= 0)),
            (min_snr, lambda v: d.snr >= v),
            (max_snr, lambda v: d.snr <= v),
            (min_mag, lambda v: d.mag >= v),
            (max_mag, lambda v: d.mag <= v),
            (mjd_min, lambda v: d.mjd >= v),
            (mjd_max, lambda v: d.mjd <= v),
            (max_age_days, lambda v: d.created_at >= utcnow() - timedelta(days=v)),
            (source, lambda v: d.source == v),
        ):
            if value is not None:
                self.conditions.append(cond(value))
        if survey is not None:
            self.conditions.append(
                d.observation_id.in_(
                    select(Observation.id).join(Survey).where(Survey.name == survey)
                )
            )
        for kind, present in ((annotation, True), (no_annotation, False)):
            if kind is not None:
                has = exists().where(
                    DetectionAnnotation.detection_id == d.id, DetectionAnnotation.kind == kind
                )
                self.conditions.append(has if present else ~has)
        parts = {"ra": ra, "dec": dec, "radius": radius}
        given = [k for k, v in parts.items() if v is not None]
        self.cone: ConeQuery | None = None
        if given and len(given) < 3:
            raise Problem(
                422,
                "a cone needs ra, dec and radius together",
                kind="validation",
                errors=[
                    {"field": f"query.{m}", "message": "required with a cone"}
                    for m in sorted(set(parts) - set(given))
                ],
            )
        if ra is not None and dec is not None and radius is not None:
            self.cone = ConeQuery.make(ra, dec, radius)
            self.conditions.append(cone_filter(d.healpix, self.cone))


async def queue_filters(**params: Any) -> QueueFilters:
    """The filters as a dependency run inline (a class dependency would use the thread pool)."""
    return QueueFilters(**params)


queue_filters.__signature__ = inspect.signature(QueueFilters)  # type: ignore[attr-defined]


def _keyset(f: QueueFilters) -> tuple[Any, list[Any], Any]:
    """(key column, ORDER BY, keyset condition) for the order."""
    cs = CurationState
    if f.order == "score":
        col, order = cs.score, [cs.score.desc(), cs.detection_id.desc()]
        # The plain bound (col <= key) lets the index range-scan; the OR breaks ties by id.
        cond = (
            and_(
                col <= f.after[0],
                or_(col < f.after[0], and_(col == f.after[0], cs.detection_id < f.after[1])),
            )
            if f.after
            else None
        )
    elif f.order == "uncertainty":
        col, order = cs.margin, [cs.margin.asc(), cs.detection_id.asc()]
        cond = (
            and_(
                col >= f.after[0],
                or_(col > f.after[0], and_(col == f.after[0], cs.detection_id > f.after[1])),
            )
            if f.after
            else None
        )
    else:
        col, order = cs.detection_id, [cs.detection_id.desc()]
        cond = cs.detection_id < f.after[1] if f.after else None
    return col, order, cond


def _page(session: Session, f: QueueFilters, user_id: int | None) -> list[tuple[Any, ...]]:
    _, order, cond = _keyset(f)
    stmt = (
        select(CurationState, Detection)
        .join(Detection, Detection.id == CurationState.detection_id)
        .where(CurationState.state == f.queue, *f.conditions)
    )
    if cond is not None:
        stmt = stmt.where(cond)
    if not f.include_voted and user_id is not None:
        stmt = stmt.where(
            ~exists().where(
                Vote.detection_id == CurationState.detection_id,
                Vote.user_id == user_id,
                Vote.state == VoteState.ACTIVE.value,
            )
        )
    if f.cone is None:
        return list(session.execute(stmt.order_by(*order).limit(f.limit + 1)).all())
    # With a cone: fetch in key order and cut on the exact distance until the page is full.
    out: list[tuple[Any, ...]] = []
    chunk = max(200, 4 * f.limit)
    offset = 0
    while len(out) <= f.limit:
        rows = session.execute(stmt.order_by(*order).offset(offset).limit(chunk)).all()
        if not rows:
            break
        sep = angular_separation_deg(
            np.array([r[1].ra for r in rows]),
            np.array([r[1].dec for r in rows]),
            f.cone.ra,
            f.cone.dec,
        )
        out.extend(r for r, s in zip(rows, sep, strict=True) if s <= f.cone.radius)
        offset += chunk
    return out[: f.limit + 1]


def _object_summary(obj: SkyObject | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    return {
        "id": obj.id,
        "n_detections": obj.n_detections,
        "first_mjd": obj.first_mjd,
        "last_mjd": obj.last_mjd,
        "peak_mag": obj.peak_mag,
        "latest_mag": obj.latest_mag,
        "ztf_object_id": obj.ztf_object_id,
        "label": obj.label,
        "classification": obj.classification,
    }


def _annotation(a: DetectionAnnotation) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "name": a.name,
        "separation_arcsec": a.separation_arcsec,
        "mag": a.mag,
        "source": a.source,
        "data": a.data,
    }


def _nearest_star(det: Detection, annotations: list[DetectionAnnotation]) -> Any:
    stars = [a for a in annotations if a.kind == "star" and a.separation_arcsec is not None]
    if stars:
        best = min(stars, key=lambda a: float(a.separation_arcsec or 0.0))
        return _annotation(best)
    cand = (det.extra or {}).get("candidate") or {}
    dist = cand.get("distpsnr1")
    if isinstance(dist, int | float) and dist >= 0:  # ZTF alerts carry the nearest PS1 source
        return {
            "kind": "star",
            "name": None,
            "separation_arcsec": float(dist),
            "mag": cand.get("srmag1"),
            "source": "ztf_alert_ps1",
            "data": {"sgscore1": cand.get("sgscore1")},
        }
    return None


@router.get("/queue", summary="Detections awaiting review, one page")
def scanning_queue(
    rt: Rt, principal: Viewer, f: Annotated[QueueFilters, Depends(queue_filters)]
) -> dict[str, Any]:
    """Items carry cutout URLs, score, S/N, magnitude, nearest star, object summary,
    annotations, vote counts and the caller's own vote; ``next_cursor`` pages on."""
    with rt.db.read_session() as session:
        rows = _page(session, f, principal.user_id)
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        ids = [det.id for _, det in rows]
        objects: dict[int, SkyObject] = {}
        annotations: dict[int, list[DetectionAnnotation]] = {i: [] for i in ids}
        mine: dict[int, Vote] = {}
        surveys: dict[int, str] = {}  # by detection id
        if ids:
            # Object, the caller's active vote (at most one: a unique index) and survey of
            # every detection of the page in one query; annotations (many each) in another.
            mine_on = and_(
                Vote.detection_id == Detection.id,
                Vote.user_id == principal.user_id,
                Vote.state == VoteState.ACTIVE.value,
            )
            extras = (
                select(Detection.id, SkyObject, Vote, Survey.name)
                .select_from(Detection)
                .outerjoin(ObjectMember, ObjectMember.detection_id == Detection.id)
                .outerjoin(SkyObject, SkyObject.id == ObjectMember.object_id)
                .outerjoin(Vote, mine_on if principal.user_id is not None else false())
                .outerjoin(Observation, Observation.id == Detection.observation_id)
                .outerjoin(Survey, Survey.id == Observation.survey_id)
                .where(Detection.id.in_(ids))
            )
            for det_id, obj, vote, survey_name in session.execute(extras):
                if obj is not None:
                    objects[det_id] = obj
                if vote is not None:
                    mine[det_id] = vote
                if survey_name is not None:
                    surveys[det_id] = str(survey_name)
            for a in session.scalars(
                select(DetectionAnnotation).where(DetectionAnnotation.detection_id.in_(ids))
            ):
                annotations[int(a.detection_id or 0)].append(a)
        items = []
        for state, det in rows:
            my_vote = mine.get(det.id)
            items.append(
                {
                    "detection_id": det.id,
                    "ra": det.ra,
                    "dec": det.dec,
                    "mjd": det.mjd,
                    "score": det.confidence,
                    # |P(real) - 0.5|: small = the model is unsure (order=uncertainty sorts by it).
                    "margin": None if det.confidence is None else state.margin,
                    "snr": det.snr,
                    "mag": det.mag,
                    "source": det.source,
                    "survey": surveys.get(det.id) or ("ZTF" if det.source == "alert" else None),
                    "observation_id": det.observation_id,
                    "created_at": det.created_at,
                    "state": state.state,
                    "votes": {"real": state.n_real, "bogus": state.n_bogus, "skip": state.n_skip},
                    "cutouts": cutout_urls(det.id, dict(det.cutout_keys or {})),
                    "nearest_star": _nearest_star(det, annotations[det.id]),
                    "object": _object_summary(objects.get(det.id)),
                    "annotations": [_annotation(a) for a in annotations[det.id]],
                    "my_vote": None
                    if my_vote is None
                    else {
                        "vote_id": my_vote.id,
                        "label": my_vote.label,
                        "classification": my_vote.classification,
                        "created_at": my_vote.created_at,
                    },
                }
            )
        next_cursor = None
        if more and rows:
            last_state, last = rows[-1]
            key = {"score": last_state.score, "uncertainty": last_state.margin}.get(f.order, 0.0)
            next_cursor = _encode(f.order, float(key), last.id)
        return {"items": items, "limit": f.limit, "order": f.order, "next_cursor": next_cursor}
