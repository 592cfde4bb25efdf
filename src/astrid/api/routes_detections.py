"""Detections: list with filters (score, significance, time, position), detail, statistics
computed in the database, and cutouts as PNG or FITS."""

from __future__ import annotations

import functools
import gzip
import inspect
import io
from typing import Annotated, Any, Literal

import numpy as np
from astropy.io import fits
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, and_, bindparam, func, or_, select

from astrid.api.auth import Principal, require
from astrid.api.deps import Rt
from astrid.api.fastjson import dumps, json_response_bytes
from astrid.api.fastquery import query_model
from astrid.api.pagination import MAX_LIMIT, Page, PageParams, apply_page, page_of
from astrid.api.problems import Problem
from astrid.api.schemas import DetectionDetail, DetectionOut
from astrid.domain.observations import ConeQuery, astuple
from astrid.science.cutouts import to_png
from astrid.store.db import Database
from astrid.store.sky_index import angular_separation_deg, cone_ranges
from astrid.store.tables import Detection, DetectionStatus

__all__ = [
    "DETAIL_FIELDS",
    "MAX_CONE_ROWS",
    "OUT_FIELDS",
    "DetectionListQuery",
    "cone_page_ids",
    "detail_body",
    "get_detection",
    "list_body",
    "list_detections",
    "router",
]

router = APIRouter(prefix="/detections", tags=["detections"])

Viewer = Annotated[Principal, Depends(require("viewer"))]
DetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Detection id.")]
Unit = Annotated[float | None, Query(ge=0, le=1)]
Snr = Annotated[float | None, Query(ge=-1e6, le=1e6)]
Mjd = Annotated[float | None, Query(ge=0, le=1e6)]
MAX_CONE_ROWS = 200_000

# The hot routes select these columns with Core (no ORM objects) and answer pre-serialised
# JSON (see :func:`json_response`); the names are the response models' fields, in order.
_T = Detection.__table__
OUT_FIELDS = tuple(DetectionOut.model_fields)
DETAIL_FIELDS = tuple(DetectionDetail.model_fields)
_OUT_COLS = [_T.c[name] for name in OUT_FIELDS]
_DETAIL_COLS = [_T.c[name] for name in DETAIL_FIELDS]
# built once: constructing a 20-column select costs more CPU than running it by primary key
_DETAIL_STMT = select(*_DETAIL_COLS).where(_T.c.id == bindparam("detection_id"))


@functools.lru_cache(maxsize=256)
def _cone_template(n: int) -> Any:
    """The HEALPix pre-filter of a cone of ``n`` index ranges, with bound parameters
    ``hp_lo_i`` / ``hp_hi_i`` (:attr:`DetectionFilters.params`): built once per ``n``, as
    building ``n`` range comparisons per request cost more CPU than running the query."""
    hp = _T.c.healpix
    return or_(
        *[
            and_(
                hp >= bindparam(f"hp_lo_{i}", type_=BigInteger),
                hp < bindparam(f"hp_hi_{i}", type_=BigInteger),
            )
            for i in range(n)
        ]
    )


def cone_page_ids(cand: Any, cone: ConeQuery, page: PageParams) -> list[int]:
    """Ids of one page of a cone: ``cand`` rows ``(id, ra, dec)`` of the HEALPix
    pre-filter, kept when within ``cone.radius`` (deg), in the page's order after its
    cursor, ``page.limit + 1`` at most (the extra one says there is a next page)."""
    ids = np.array([c[0] for c in cand], dtype=np.int64)
    if len(ids):
        sep = angular_separation_deg(
            np.array([c[1] for c in cand]),
            np.array([c[2] for c in cand]),
            cone.ra,
            cone.dec,
        )
        ids = np.sort(ids[sep <= cone.radius])
    if page.order == "desc":
        ids = ids[::-1]
    if page.after is not None:
        ids = ids[ids > page.after] if page.order == "asc" else ids[ids < page.after]
    return [int(i) for i in ids[: page.limit + 1]]


def _out(row: Any) -> dict[str, Any]:
    return dict(zip(OUT_FIELDS, row, strict=True))


class DetectionFilters:
    """Filters shared by the list and the statistics (built by :func:`detection_filters`)."""

    def __init__(
        self,
        min_confidence: Annotated[Unit, Query(description="Calibrated P(real) >= this.")] = None,
        max_confidence: Unit = None,
        min_snr: Annotated[Snr, Query(description="Significance (S/N) >= this.")] = None,
        max_snr: Snr = None,
        mjd_min: Mjd = None,
        mjd_max: Mjd = None,
        status: DetectionStatus | None = None,
        label: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
        source: Literal["pipeline", "alert"] | None = None,
        observation_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        ra: Annotated[float | None, Query(ge=0, lt=360, description="Cone centre, deg.")] = None,
        dec: Annotated[float | None, Query(ge=-90, le=90, description="Cone centre, deg.")] = None,
        radius: Annotated[float | None, Query(gt=0, le=10, description="Cone radius, deg.")] = None,
    ) -> None:
        self.conditions: list[Any] = []
        self.params: dict[str, Any] = {}  # values of the cone's bound parameters: pass to execute
        col = _T.c  # table columns: usable in Core selects and ORM ones alike
        for value, cond in (
            (min_confidence, lambda v: col.confidence >= v),
            (max_confidence, lambda v: col.confidence <= v),
            (min_snr, lambda v: col.snr >= v),
            (max_snr, lambda v: col.snr <= v),
            (mjd_min, lambda v: col.mjd >= v),
            (mjd_max, lambda v: col.mjd <= v),
            (status, lambda v: col.status == v),
            (label, lambda v: col.label == v),
            (source, lambda v: col.source == v),
            (observation_id, lambda v: col.observation_id == v),
        ):
            if value is not None:
                self.conditions.append(cond(value))
        cone_parts = {"ra": ra, "dec": dec, "radius": radius}
        given = [k for k, v in cone_parts.items() if v is not None]
        self.cone: ConeQuery | None = None
        if given and len(given) < 3:
            missing = sorted(set(cone_parts) - set(given))
            raise Problem(
                422,
                "a cone needs ra, dec and radius together",
                kind="validation",
                errors=[
                    {"field": f"query.{m}", "message": "required with a cone"} for m in missing
                ],
            )
        if ra is not None and dec is not None and radius is not None:
            self.cone = ConeQuery.make(ra, dec, radius)
            ranges = cone_ranges(*astuple(self.cone))
            self.conditions.append(_cone_template(len(ranges)))
            for i, (lo, hi) in enumerate(ranges):
                self.params[f"hp_lo_{i}"], self.params[f"hp_hi_{i}"] = lo, hi

    def apply(self, stmt: Any) -> Any:
        return stmt.where(*self.conditions) if self.conditions else stmt


class DetectionListQuery(BaseModel):
    """Query parameters of ``GET /detections``: paging (as :func:`page_params`) and the
    filters (as :class:`DetectionFilters`), validated in one call (:mod:`fastquery`)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(50, ge=1, le=MAX_LIMIT, description="Items per page.")
    cursor: str | None = Field(None, max_length=64, description="next_cursor of the previous page.")
    order: Literal["asc", "desc"] = Field("asc", description="By id: oldest or newest first.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Calibrated P(real) >= this."
    )
    max_confidence: float | None = Field(None, ge=0, le=1)
    min_snr: float | None = Field(None, ge=-1e6, le=1e6, description="Significance (S/N) >= this.")
    max_snr: float | None = Field(None, ge=-1e6, le=1e6)
    mjd_min: float | None = Field(None, ge=0, le=1e6)
    mjd_max: float | None = Field(None, ge=0, le=1e6)
    status: DetectionStatus | None = None
    label: str | None = Field(None, min_length=1, max_length=32)
    source: Literal["pipeline", "alert"] | None = None
    observation_id: int | None = Field(None, ge=1, le=2**31 - 1)
    ra: float | None = Field(None, ge=0, lt=360, description="Cone centre, deg.")
    dec: float | None = Field(None, ge=-90, le=90, description="Cone centre, deg.")
    radius: float | None = Field(None, gt=0, le=10, description="Cone radius, deg.")


_list_query, _LIST_OPENAPI = query_model(DetectionListQuery)


async def detection_filters(**params: Any) -> DetectionFilters:
    """The filters as a dependency run inline (a class dependency would use the thread pool)."""
    return DetectionFilters(**params)


detection_filters.__signature__ = inspect.signature(DetectionFilters)  # type: ignore[attr-defined]


@router.get(
    "", response_model=Page[DetectionOut], summary="List detections", openapi_extra=_LIST_OPENAPI
)
def list_detections(
    rt: Rt,
    _: Viewer,
    query: Annotated[DetectionListQuery, Depends(_list_query)],
) -> Response:
    """Filters combine with AND; with a cone (ra, dec, radius) only rows inside it."""
    return json_response_bytes(list_body(rt.db, query))


def list_body(db: Database, query: DetectionListQuery) -> bytes:
    """The JSON page of ``GET /detections`` for ``query`` (raises :class:`Problem`)."""
    params = query.model_dump()
    page = PageParams(params.pop("limit"), params.pop("cursor"), params.pop("order"))
    filters = DetectionFilters(**params)
    with db.read_connection() as conn:
        if filters.cone is None:
            stmt = apply_page(filters.apply(select(*_OUT_COLS)), _T.c.id, page)
            rows: list[Any] = list(conn.execute(stmt, filters.params or None).all())
        else:
            cand = conn.execute(
                filters.apply(select(_T.c.id, _T.c.ra, _T.c.dec)).limit(MAX_CONE_ROWS),
                filters.params,
            ).all()
            chosen = cone_page_ids(cand, filters.cone, page)
            by_id = {}
            if chosen:
                by_id = {
                    r.id: r for r in conn.execute(select(*_OUT_COLS).where(_T.c.id.in_(chosen)))
                }
            rows = [by_id[i] for i in chosen]
    return dumps(page_of(rows, page, _out))


@router.get("/statistics", summary="Statistics computed from the database")
def detection_statistics(
    rt: Rt, _: Viewer, filters: Annotated[DetectionFilters, Depends(detection_filters)]
) -> dict[str, Any]:
    """Counts by status, source and label; confidence histogram (10 bins); S/N and MJD ranges."""
    with rt.db.session() as session:
        base = filters.apply(select(Detection)).subquery()

        def grouped(column: Any) -> dict[str, int]:
            stmt = select(column, func.count()).group_by(column)
            rows = session.execute(stmt, filters.params or None).all()
            return {str(k) if k is not None else "none": int(v) for k, v in rows}

        n, snr_mean, snr_max, mjd_min, mjd_max, conf_mean = session.execute(
            select(
                func.count(),
                func.avg(base.c.snr),
                func.max(base.c.snr),
                func.min(base.c.mjd),
                func.max(base.c.mjd),
                func.avg(base.c.confidence),
            ),
            filters.params or None,
        ).one()
        bin_expr = func.floor(base.c.confidence * 10)
        hist_rows = session.execute(
            select(bin_expr, func.count()).where(base.c.confidence.is_not(None)).group_by(bin_expr),
            filters.params or None,
        ).all()
        hist = [0] * 10
        for b, count in hist_rows:
            hist[min(9, max(0, int(b)))] += int(count)
        by_status = grouped(base.c.status)
        return {
            "total": int(n),
            "by_status": {s.value: by_status.get(s.value, 0) for s in DetectionStatus},
            "by_source": grouped(base.c.source),
            "by_label": grouped(base.c.label),
            "confidence_histogram": {
                "edges": [round(i / 10, 1) for i in range(11)],
                "counts": hist,
            },
            "confidence_mean": float(conf_mean) if conf_mean is not None else None,
            "snr_mean": float(snr_mean) if snr_mean is not None else None,
            "snr_max": float(snr_max) if snr_max is not None else None,
            "mjd_min": mjd_min,
            "mjd_max": mjd_max,
        }


@router.get("/{detection_id}", response_model=DetectionDetail, summary="One detection")
def get_detection(rt: Rt, _: Viewer, detection_id: DetId) -> Response:
    return json_response_bytes(detail_body(rt.db, detection_id))


def detail_body(db: Database, detection_id: int) -> bytes:
    """The JSON of ``GET /detections/{detection_id}`` (raises the 404 :class:`Problem`)."""
    with db.read_connection() as conn:
        row = conn.execute(_DETAIL_STMT, {"detection_id": detection_id}).first()
    if row is None:
        raise Problem(404, f"no detection with id {detection_id}")
    return dumps(dict(zip(DETAIL_FIELDS, row, strict=True)))


def _cutout_array(data: bytes) -> np.ndarray:
    if data[:2] == b"\x1f\x8b":  # alert stamps are stored as the broker sent them (gzip FITS)
        data = gzip.decompress(data)
    if data[:6] == b"\x93NUMPY":
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)
    with fits.open(io.BytesIO(data)) as hdul:
        for hdu in hdul:
            if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                return np.asarray(hdu.data, dtype=np.float32)
    raise Problem(500, "stored cutout has no image")


@router.get(
    "/{detection_id}/cutouts/{kind}",
    summary="A cutout (science, reference, difference) as PNG or FITS",
    responses={200: {"content": {"image/png": {}, "application/fits": {}}}},
)
def get_cutout(
    rt: Rt,
    _: Viewer,
    detection_id: DetId,
    kind: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")],
    format: Literal["png", "fits"] = "png",
) -> Response:
    with rt.db.read_session() as session:
        row = session.get(Detection, detection_id)
        if row is None:
            raise Problem(404, f"no detection with id {detection_id}")
        keys = dict(row.cutout_keys or {})
    key = keys.get(kind)
    if not isinstance(key, str):
        raise Problem(
            404,
            f"detection {detection_id} has no {kind!r} cutout",
            errors=[{"field": "path.kind", "message": f"available: {', '.join(sorted(keys))}"}],
        )
    data = rt.blobs.get(key)
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # the pipeline's stamps are stored as PNG already
        if format == "png":
            return Response(data, media_type="image/png")
        raise Problem(
            404,
            f"detection {detection_id}'s {kind!r} cutout exists only as PNG",
            errors=[{"field": "query.format", "message": "use format=png or the 'fits' cutout"}],
        )
    if format == "fits":
        if data[:6] == b"SIMPLE":
            body = data
        else:
            buf = io.BytesIO()
            fits.PrimaryHDU(_cutout_array(data)).writeto(buf)
            body = buf.getvalue()
        return Response(
            body,
            media_type="application/fits",
            headers={"Content-Disposition": f'attachment; filename="{detection_id}_{kind}.fits"'},
        )
    return Response(to_png(_cutout_array(data)), media_type="image/png")
