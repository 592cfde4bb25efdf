"""Candidates: sources extracted from difference images, before scoring into detections.

List with filters on rule-based score, significance (S/N), observation, difference and
position (cone), and detail with the feature vector.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import select

from astrid.api.deps import Rt, Viewer
from astrid.api.pagination import Page, PageParams, apply_page, page_of, page_params
from astrid.api.problems import Problem
from astrid.api.schemas import CandidateDetail, CandidateOut
from astrid.domain.observations import ConeQuery, cone_filter
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import Candidate

__all__ = ["router"]

router = APIRouter(prefix="/candidates", tags=["candidates"])

Id = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Num = Annotated[float | None, Query(ge=-1e9, le=1e9)]
MAX_CONE_ROWS = 200_000


@router.get("", response_model=Page[CandidateOut], summary="List candidates")
def list_candidates(
    rt: Rt,
    _: Viewer,
    page: Annotated[PageParams, Depends(page_params)],
    min_score: Num = None,
    max_score: Num = None,
    min_snr: Num = None,
    observation_id: Id = None,
    difference_id: Id = None,
    ra: Annotated[float | None, Query(ge=0, lt=360, description="Cone centre, deg.")] = None,
    dec: Annotated[float | None, Query(ge=-90, le=90, description="Cone centre, deg.")] = None,
    radius: Annotated[float | None, Query(gt=0, le=10, description="Cone radius, deg.")] = None,
) -> Any:
    """Filters combine with AND; with a cone (ra, dec, radius) only rows inside it."""
    conditions: list[Any] = []
    for value, make in (
        (min_score, lambda v: Candidate.score >= v),
        (max_score, lambda v: Candidate.score <= v),
        (min_snr, lambda v: Candidate.snr >= v),
        (observation_id, lambda v: Candidate.observation_id == v),
        (difference_id, lambda v: Candidate.difference_id == v),
    ):
        if value is not None:
            conditions.append(make(value))
    cone_given = [n for n, v in (("ra", ra), ("dec", dec), ("radius", radius)) if v is not None]
    if cone_given and len(cone_given) < 3:
        missing = sorted({"ra", "dec", "radius"} - set(cone_given))
        raise Problem(
            422,
            "a cone needs ra, dec and radius together",
            kind="validation",
            errors=[{"field": f"query.{m}", "message": "required with a cone"} for m in missing],
        )
    with rt.db.session() as session:
        if ra is None or dec is None or radius is None:
            stmt = apply_page(select(Candidate).where(*conditions), Candidate.id, page)
            return page_of(list(session.scalars(stmt)), page, CandidateOut.model_validate)
        cone = ConeQuery.make(ra, dec, radius)
        conditions.append(cone_filter(Candidate.healpix, cone))
        rows = session.execute(
            select(Candidate.id, Candidate.ra, Candidate.dec)
            .where(*conditions)
            .limit(MAX_CONE_ROWS)
        ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if len(ids):
            sep = angular_separation_deg(
                np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), ra, dec
            )
            ids = np.sort(ids[sep <= cone.radius])
        if page.order == "desc":
            ids = ids[::-1]
        if page.after is not None:
            ids = ids[ids > page.after] if page.order == "asc" else ids[ids < page.after]
        chosen = [int(i) for i in ids[: page.limit + 1]]
        by_id = {
            c.id: c for c in session.scalars(select(Candidate).where(Candidate.id.in_(chosen)))
        }
        return page_of([by_id[i] for i in chosen], page, CandidateOut.model_validate)


@router.get("/{candidate_id}", response_model=CandidateDetail, summary="One candidate")
def get_candidate(rt: Rt, _: Viewer, candidate_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Any:
    with rt.db.session() as session:
        row = session.get(Candidate, candidate_id)
        if row is None:
            raise Problem(404, f"no candidate with id {candidate_id}")
        return CandidateDetail.model_validate(row)
