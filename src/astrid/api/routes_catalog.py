"""The curated catalog: search (cone, class, time, magnitude, importance), releases
(immutable, versioned, checksummed; created by admins), streamed exports and analytics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from astrid.api.deps import AdminWrite, Rt, Viewer
from astrid.api.pagination import PageParams, page_of, page_params
from astrid.api.problems import Problem
from astrid.catalog import analytics
from astrid.catalog.entries import (
    CatalogQuery,
    CatalogSearchError,
    entry_dict,
    search_entries,
    sync_catalog,
)
from astrid.catalog.export import ExportSource, iter_export, media_type
from astrid.catalog.releases import (
    EmptyCatalogError,
    LiveSource,
    ReleaseError,
    ReleaseSource,
    create_release,
    get_release,
    release_dict,
)
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import CatalogRelease

__all__ = ["router"]

router = APIRouter(prefix="/catalog", tags=["catalog"])

Version = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")]
Mag = Annotated[float | None, Query(ge=-30, le=40, description="Peak magnitude bound.")]
Mjd = Annotated[float | None, Query(ge=0, le=1e6)]


class CatalogFilters:
    """Query parameters of a catalog search (and of a live export)."""

    def __init__(
        self,
        ra: Annotated[float | None, Query(ge=0, lt=360, description="Cone centre, deg.")] = None,
        dec: Annotated[float | None, Query(ge=-90, le=90, description="Cone centre, deg.")] = None,
        radius: Annotated[
            float | None, Query(gt=0, le=90, description="Cone radius, deg (0, 90].")
        ] = None,
        classification: Annotated[
            str | None, Query(min_length=1, max_length=256, description="Taxonomy path prefix.")
        ] = None,
        mjd_min: Annotated[Mjd, Query(description="Seen on or after (last_mjd >=).")] = None,
        mjd_max: Annotated[Mjd, Query(description="Seen on or before (first_mjd <=).")] = None,
        mag_min: Mag = None,
        mag_max: Mag = None,
        min_importance: Annotated[int | None, Query(ge=1, le=5)] = None,
    ) -> None:
        self.query = CatalogQuery(
            ra, dec, radius, classification, mjd_min, mjd_max, mag_min, mag_max, min_importance
        )
        try:
            self.query.cone()
        except CatalogSearchError as exc:
            raise Problem(
                422,
                str(exc),
                kind="validation",
                errors=[{"field": f"query.{exc.field}", "message": str(exc)}],
            ) from exc


Filters = Annotated[CatalogFilters, Depends()]


def _entry_out(entry: Any) -> dict[str, Any]:
    return {"id": entry.id, **entry_dict(entry)}


@router.get("", summary="Search the catalog (cone, class, time range, magnitude, importance)")
def search_catalog(
    rt: Rt, _: Viewer, filters: Filters, page: Annotated[PageParams, Depends(page_params)]
) -> dict[str, Any]:
    """Without a cone: by id, paged with ``cursor``. With a cone: nearest first, one page
    of at most ``limit`` entries, each with ``separation_arcsec``."""
    with rt.db.read_session() as session:
        cone = filters.query.cone()
        if cone is None:
            rows = search_entries(session, filters.query, limit=page.limit + 1, after_id=page.after)
            return page_of(rows, page, _entry_out)
        rows = search_entries(session, filters.query, limit=page.limit)
        items = []
        for row in rows:
            item = _entry_out(row)
            sep = float(angular_separation_deg(row.ra, row.dec, cone.ra, cone.dec))
            item["separation_arcsec"] = round(sep * 3600, 4)
            items.append(item)
        return {"items": items, "limit": page.limit, "next_cursor": None}


@router.get("/releases", summary="Catalog releases, newest first")
def list_releases(rt: Rt, _: Viewer) -> dict[str, Any]:
    with rt.db.session() as session:
        rows = session.scalars(select(CatalogRelease).order_by(CatalogRelease.id.desc()))
        return {"items": [release_dict(r) for r in rows]}


class ReleaseIn(BaseModel):
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Default: YYYY.MM.DD.N",
    )
    note: str | None = Field(default=None, max_length=4000)


@router.post("/releases", status_code=201, summary="Make a release: snapshot the catalog (admin)")
def make_release(rt: Rt, who: AdminWrite, body: ReleaseIn | None = None) -> dict[str, Any]:
    body = body or ReleaseIn()
    try:
        release = create_release(rt, version=body.version, note=body.note, user_id=who.user_id)
    except EmptyCatalogError as exc:
        raise Problem(
            409,
            str(exc),
            kind="empty-catalog",
            errors=[{"field": "catalog", "message": "no confirmed objects"}],
        ) from exc
    except ReleaseError as exc:
        raise Problem(
            409, str(exc), kind="conflict", errors=[{"field": "body.version", "message": str(exc)}]
        ) from exc
    return release_dict(release)


@router.get("/releases/{version}", summary="One release (version, checksum, size)")
def show_release(rt: Rt, _: Viewer, version: Version) -> dict[str, Any]:
    with rt.db.session() as session:
        try:
            return release_dict(get_release(session, version))
        except ReleaseError as exc:
            raise Problem(404, str(exc)) from exc


@router.post("/sync", summary="Bring the catalog in line with curation now (admin)")
def sync_catalog_entries(rt: Rt, _: AdminWrite) -> dict[str, Any]:
    with rt.db.session() as session:
        report = sync_catalog(session)
    return {
        "added": report.added,
        "updated": report.updated,
        "removed": report.removed,
        "total": report.total,
    }


@router.get(
    "/export",
    summary="Export the catalog or a release (streamed)",
    responses={409: {"description": "Nothing to export: no confirmed entry matches"}},
)
def export_catalog(
    rt: Rt,
    _: Viewer,
    filters: Filters,
    format: Annotated[Literal["csv", "votable", "fits", "json"], Query()] = "csv",
    release: Annotated[
        str | None, Query(min_length=1, max_length=32, description="Release version.")
    ] = None,
) -> StreamingResponse:
    """CSV and JSON carry the entries; VOTable and FITS also a ``light_curves`` table."""
    source: ExportSource
    if release is not None:
        with rt.db.session() as session:
            try:
                rel = get_release(session, release)
            except ReleaseError as exc:
                raise Problem(
                    404, str(exc), errors=[{"field": "query.release", "message": "unknown"}]
                ) from exc
        source = ReleaseSource(rt.blobs, rel)
        name = f"astrid-catalog-{rel.version}"
    else:
        if filters.query.cone() is not None:
            raise Problem(
                422,
                "exports take class, time, magnitude and importance filters, not a cone",
                kind="validation",
                errors=[{"field": "query.radius", "message": "not supported by export"}],
            )
        source = LiveSource(rt.db, filters.query)
        name = "astrid-catalog-live"
        if source.n_entries() == 0:
            raise Problem(
                409,
                "the catalog is empty (nothing confirmed matches): nothing to export",
                kind="empty-catalog",
                errors=[{"field": "catalog", "message": "no entries"}],
            )
    ext = {"votable": "vot", "fits": "fits", "csv": "csv", "json": "json"}[format]
    return StreamingResponse(
        iter_export(source, format),
        media_type=media_type(format),
        headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'},
    )


@router.get("/analytics", summary="Discoveries, throughput, agreement, model precision/recall")
def catalog_analytics(
    rt: Rt,
    _: Viewer,
    threshold: Annotated[float, Query(ge=0, le=1, description="Model P(real) cut.")] = 0.5,
) -> dict[str, Any]:
    with rt.db.session() as session:
        return {
            "discoveries_per_night": analytics.discoveries_per_night(session),
            "scanning_throughput": analytics.scanning_throughput(session),
            "agreement": analytics.agreement(session),
            "model_performance": analytics.model_performance(session, threshold),
        }
