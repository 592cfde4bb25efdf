"""Pagination convention of every list route: keyset cursors over the row id.

A list answers ``{"items": [...], "limit": n, "next_cursor": str | null}``; pass
``cursor=<next_cursor>`` for the next page (same filters, same ``order``). Keyset paging costs
the same on page 1 and page 10,000, unlike ``OFFSET``. The cursor is opaque (base64 of the
last id and the order) so clients do not build it themselves.
"""

from __future__ import annotations

import base64
import binascii
from operator import attrgetter
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select

from astrid.api.problems import Problem

__all__ = ["MAX_LIMIT", "Page", "PageParams", "apply_page", "page_of", "page_params"]

T = TypeVar("T")
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    limit: int
    next_cursor: str | None = None


class PageParams:
    """``limit``, ``cursor`` and ``order`` of a list request (see :func:`page_params`)."""

    def __init__(self, limit: int, cursor: str | None, order: Literal["asc", "desc"]) -> None:
        self.limit = limit
        self.order = order
        self.after: int | None = _decode(cursor, order) if cursor else None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor of the previous page.")
    ] = None,
    order: Annotated[
        Literal["asc", "desc"], Query(description="By id: oldest or newest first.")
    ] = "asc",
) -> PageParams:
    """The ``limit``, ``cursor`` and ``order`` query parameters (a FastAPI dependency)."""
    return PageParams(limit, cursor, order)


def _encode(last_id: int, order: str) -> str:
    return base64.urlsafe_b64encode(f"{order}:{last_id}".encode()).decode().rstrip("=")


def _decode(cursor: str, order: str) -> int:
    bad = Problem(
        400,
        "cursor is not a next_cursor of this list",
        kind="validation",
        errors=[{"field": "query.cursor", "message": "invalid cursor"}],
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        cursor_order, last = raw.split(":")
        value = int(last)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    if cursor_order != order or value < 0 or value > 2**62:
        raise bad
    return value


def apply_page(stmt: Select[Any], id_column: Any, page: PageParams) -> Select[Any]:
    """Add the keyset condition, order and limit (+1 to know if there is a next page)."""
    if page.order == "asc":
        if page.after is not None:
            stmt = stmt.where(id_column > page.after)
        stmt = stmt.order_by(id_column.asc())
    else:
        if page.after is not None:
            stmt = stmt.where(id_column < page.after)
        stmt = stmt.order_by(id_column.desc())
    return stmt.limit(page.limit + 1)


def page_of(
    rows: list[Any], page: PageParams, convert: Any, id_of: Any = attrgetter("id")
) -> dict[str, Any]:
    """Build the page body from up to ``limit + 1`` rows (``id_of(row)``: its id)."""
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return {
        "items": [convert(r) for r in rows],
        "limit": page.limit,
        "next_cursor": _encode(id_of(rows[-1]), page.order) if more and rows else None,
    }
