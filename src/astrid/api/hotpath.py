"""The hot read routes on PostgreSQL served on the event loop through asyncpg.

``GET /api/v1/detections`` (list and cone search) and ``GET /api/v1/detections/{id}`` are
the API's busiest routes. Served by FastAPI they cost, per request: routing, dependency
solving (policy, bearer, API key, query model), a thread-pool hop for the sync route and
SQLAlchemy's execution path on a pooled psycopg connection; with 50 clients on two cores
those, not the SQL, set the latency. :class:`HotReads` is a plain ASGI layer, innermost of
the app's middleware (request ids, metrics, body limits and CORS still wrap it), that
answers exactly those requests itself when it can do so **without changing an answer**:

* the path and query are validated first, with the same models and limits as the routes
  (:class:`~astrid.api.routes_detections.DetectionListQuery`, the detail's id); anything
  they would refuse (422, a bad cursor, a partial cone) is passed on to FastAPI untouched;
* the caller must be in the authentication cache (:class:`~astrid.api.auth.AuthCache`, the
  same credential extraction as the policy); a miss is passed on (FastAPI verifies the
  credential and fills the cache). Then the route's own policy admits the caller
  (:meth:`~astrid.api.auth.Policy.admit`: rate limit, role, scope), so 403/429 are its;
* the SQL selects what the route's does (same columns, conditions, order and limits), run
  on an asyncpg pool of this process's event loop with prepared statements (asyncpg caches
  them per connection; no reset round trip when a connection goes back to the pool). A
  cone is one statement: its HEALPix ranges passed as two arrays and scanned one by one
  (the covering index alone), those candidates cut in SQL to a cone a hair wider than the
  route's, then the filters, cursor, order and limit on the survivors, read by primary key;
  the route's exact cut (the same function) then runs on the page's rows, and where it
  drops a row from a full page the route's own two steps run instead
  (:func:`~astrid.api.routes_detections.cone_page_ids`). The body is serialised as the
  route does (:func:`~astrid.api.fastjson.dumps`) and a missing detection is the route's
  404 problem;
* if asyncpg fails (server restarted, connection dropped, any driver error) the same query
  runs on the synchronous path in the thread pool, whose errors the app's exception
  handlers answer as before (503 when the database is unavailable).

The pool is opened by the app's lifespan (``min_size`` 0: nothing connects before the first
request) on the loop that serves requests; requests on any other loop (a test client
without its lifespan) take the FastAPI path. SQLite has no asyncpg: there the routes serve
every request. ``ASTRID_API_FAST_READS=false`` turns this layer off.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from astrid.api import routes_detections as rd
from astrid.api.auth import Policy, remembered_caller, require
from astrid.api.fastjson import dumps
from astrid.api.pagination import PageParams, page_of
from astrid.api.problems import Problem
from astrid.api.security import AuthError
from astrid.domain.observations import ConeQuery, astuple
from astrid.store.sky_index import angular_separation_deg, cone_ranges

__all__ = ["AsyncReader", "HotReads", "asyncpg_available"]

try:  # the ``postgres`` extra; without it every request takes the FastAPI path
    import asyncpg
except ImportError:  # pragma: no cover - installed with the postgres extra
    asyncpg = None  # type: ignore[assignment]

_DETAIL_ID = re.compile(r"[1-9][0-9]{0,9}")  # canonical ids only; others go to FastAPI
_MAX_ID = 2**31 - 1
_UTC_NAMES = frozenset(("UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Zulu", "Universal"))
# the routes' filters as SQL on the detections table ({} is the parameter's $n)
_CONDITIONS = (
    ("min_confidence", "confidence >= {}"),
    ("max_confidence", "confidence <= {}"),
    ("min_snr", "snr >= {}"),
    ("max_snr", "snr <= {}"),
    ("mjd_min", "mjd >= {}"),
    ("mjd_max", "mjd <= {}"),
    ("status", "status = {}"),
    ("label", "label = {}"),
    ("source", "source = {}"),
    ("observation_id", "observation_id = {}"),
)
# SQL text is built only from fixed column names and condition templates (nosec B608);
# every value a client sends is a bind parameter ($n).
_OUT = ", ".join(f'"{f}"' for f in rd.OUT_FIELDS)
_DETAIL_SQL = (
    "SELECT " + ", ".join(f'"{f}"' for f in rd.DETAIL_FIELDS) + " FROM detections WHERE id = $1"  # nosec B608
)
_BY_IDS_SQL = f"SELECT {_OUT} FROM detections WHERE id = ANY($1::integer[])"  # nosec B608


def asyncpg_available() -> bool:
    """True when the asyncpg driver is installed (the ``postgres`` extra)."""
    return asyncpg is not None


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (``postgresql+psycopg://...``) as an asyncpg DSN.

    Query parameters stay: asyncpg sends unknown ones (``options=-csearch_path=...``) in
    the startup packet, as libpq does.
    """
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: nothing to undo. asyncpg's default sends ``RESET ALL``,
    ``CLOSE ALL``, ``UNLISTEN *`` and ``pg_advisory_unlock_all()``, a round trip per
    request; these connections only run the hot reads' SELECTs in autocommit, which leave
    no session state (the pool still rolls back a transaction left open, e.g. by a
    cancelled request, before this)."""


class AsyncReader:
    """An asyncpg pool for the hot reads, bound to the event loop that opened it.

    Parameters
    ----------
    url : str
        The database URL (PostgreSQL).
    size : int
        Most connections at once (the sync pool's size is a good value).
    concurrency : int
        Requests answered at once (0 = no limit). The others wait at :attr:`gate` in
        arrival order. Without it a saturated process interleaves all its requests at
        every ``await`` (25 at once per process at 50 clients on two processes), so each
        one's latency is its own cost times the number in flight and the slower ones set
        a long tail; first come, first served, every request waits about the same time.
        A few at once still overlap one request's database round trip with another's
        Python work.
    """

    def __init__(self, url: str, size: int, concurrency: int = 0) -> None:
        self.dsn = asyncpg_dsn(url)
        self.size = size
        self.concurrency = concurrency
        self.pool: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.gate: asyncio.Semaphore | None = None  # made on the serving loop (open)
        self.tz: tzinfo | None = None  # the server's TimeZone when not UTC (as psycopg reads)
        self.served = 0  # requests answered through this pool (tests read it)
        self.in_flight = 0  # requests being answered now, and the most at once
        self.peak_in_flight = 0

    async def open(self) -> None:
        """Create the pool on the running loop (no connection is made yet)."""
        assert asyncpg is not None
        # connect timeout: an unreachable server fails over to the sync path in seconds
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self.size,
            init=self._init,
            reset=_keep_session,
            timeout=10,
        )
        self.loop = asyncio.get_running_loop()
        # asyncio.Semaphore wakes its waiters in the order they came
        self.gate = asyncio.Semaphore(self.concurrency) if self.concurrency > 0 else None

    async def close(self) -> None:
        pool, self.pool, self.loop = self.pool, None, None
        if pool is not None:
            await pool.close()

    async def _init(self, conn: Any) -> None:
        # JSON columns as psycopg gives them (json.loads), not as text
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        zone = conn.get_settings().TimeZone
        if zone not in _UTC_NAMES:
            try:  # psycopg gives timestamptz values in the session's zone
                self.tz = ZoneInfo(zone)
            except (ValueError, KeyError):
                self.tz = UTC

    def usable(self) -> bool:
        """True on the loop that opened the pool."""
        return self.pool is not None and asyncio.get_running_loop() is self.loop

    def local(self, value: datetime | None) -> datetime | None:
        if value is None or self.tz is None:
            return value
        return value.astimezone(self.tz)


def _route(endpoint: Callable[..., Any]) -> APIRoute:
    """The route object of ``endpoint`` (what FastAPI's router leaves in the scope)."""
    for route in rd.router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(endpoint.__name__)  # pragma: no cover - the routes are defined


class _Plan:
    """One validated hot request: what to run and how to answer."""

    __slots__ = (
        "args",
        "cone",
        "detail_id",
        "page",
        "page_args",
        "page_sql",
        "query",
        "ranges",
        "sql",
    )

    def __init__(self) -> None:
        self.detail_id: int | None = None
        self.query: rd.DetectionListQuery | None = None
        self.page: PageParams | None = None
        self.cone: ConeQuery | None = None
        self.sql = ""
        self.args: list[Any] = []
        self.ranges: list[tuple[int, int]] = []
        self.page_sql = ""  # a cone's page in one statement (see _list_plan)
        self.page_args: list[Any] = []


def _list_plan(query_string: bytes) -> _Plan | None:
    """The list/cone plan of a query string, or None where the route would refuse it."""
    try:
        raw = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        query = rd.DetectionListQuery.model_validate(raw)
        page = PageParams(query.limit, query.cursor, query.order)
    except (ValidationError, Problem, UnicodeDecodeError, ValueError):
        return None
    plan = _Plan()
    plan.query, plan.page = query, page
    conds: list[str] = []
    args: list[Any] = []
    for name, template in _CONDITIONS:
        value = getattr(query, name)
        if value is not None:
            args.append(getattr(value, "value", value))  # enums by their stored value
            conds.append(template.format(f"${len(args)}"))
    cone_given = [v is not None for v in (query.ra, query.dec, query.radius)]
    if any(cone_given) and not all(cone_given):
        return None  # the route's 422 "a cone needs ra, dec and radius together"
    if all(cone_given):
        try:
            plan.cone = ConeQuery.make(query.ra, query.dec, query.radius)  # type: ignore[arg-type]
        except Exception:
            return None
        plan.ranges = cone_ranges(*astuple(plan.cone))
        # the ranges as two arrays scanned one by one (LATERAL): index-only scans of the
        # covering ix_detections_healpix (migration 0014) where an OR of ranges gives a
        # bitmap heap scan, one heap page per candidate; one statement for any count
        args += [[lo for lo, _ in plan.ranges], [hi for _, hi in plan.ranges]]
        n = len(args)
        ranges = (
            f"unnest(${n - 1}::bigint[], ${n}::bigint[]) AS r(lo, hi) CROSS JOIN LATERAL "  # nosec B608
            f"(SELECT id, ra, dec FROM detections WHERE healpix >= r.lo AND healpix < r.hi"
        )
        # the page in one statement: the candidates (with the route's filters; index only
        # without) cut to a cone a hair wider than the route's (_CUT: a superset of its
        # exact cut), then the cursor, order and limit on those rows, read by primary key
        # (id = ANY: a plan that does not hang on the ranges' row estimates). The route's
        # own cut follows in Python (_cone_page); the route's two steps (plan.sql, then by
        # id) are the fallback when that cut drops a row from a full page
        cut_args = [*args, *_cut_values(plan.cone)]
        k = len(cut_args)
        cut = _CUT.format(*range(k - 5, k + 1), h=_RAD / 2.0, k=_RAD)
        if page.after is not None:
            cut_args.append(page.after)
            cut += f" AND c.id {'>' if page.order == 'asc' else '<'} ${len(cut_args)}::bigint"
        cut_args.append(page.limit + 1)
        # the filters inside, as the route's candidates (the same rows under its limit);
        # the cursor, order and limit too: a dense spot (one source seen 31,000 times) gives
        # a top-N sort of its candidates, not an array of all of them read by primary key.
        # The ranges are disjoint (merged pixels), so no id is a candidate twice
        filtered = "".join(" AND " + c for c in conds)
        order = page.order.upper()
        plan.page_sql = (
            f"SELECT {_OUT} FROM detections WHERE id = ANY(ARRAY("  # nosec B608
            f"SELECT c.id FROM (SELECT d.id, d.ra, d.dec FROM {ranges}{filtered}) AS d "
            f"LIMIT {rd.MAX_CONE_ROWS}) AS c WHERE {cut} ORDER BY c.id {order} "
            f"LIMIT ${len(cut_args)})) ORDER BY id {order}"
        )
        plan.page_args = cut_args
        # the fallback: candidates with the filters, cut and paged as the route does
        plan.sql = (
            f"SELECT d.id, d.ra, d.dec FROM {ranges}{filtered}) AS d "  # nosec B608
            f"LIMIT {rd.MAX_CONE_ROWS}"
        )
    else:
        if page.after is not None:
            args.append(page.after)
            conds.append(f"id {'>' if page.order == 'asc' else '<'} ${len(args)}::bigint")
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        args.append(page.limit + 1)
        plan.sql = (
            f"SELECT {_OUT} FROM detections{where} ORDER BY id {page.order.upper()} "  # nosec B608
            f"LIMIT ${len(args)}"
        )
    plan.args = args
    return plan


# a cone's SQL cut keeps rows within radius * (1 + _WIDER) + _WIDER_DEG: wider than the
# route's exact cut by far more than either formula's rounding (~1e-15 relative, ~1e-16 rad)
_WIDER = 1e-9
_WIDER_DEG = 1e-9
_RAD = math.pi / 180.0
# a declination band (cheap) first, then the haversine of the separation (three sines and
# cosines a row; wrap-safe in RA): $1 .. $6 are _cut_values(); columns of the candidates c
_CUT = (
    "c.dec >= ${} AND c.dec <= ${} AND sin((c.dec - ${}) * {h!r}) ^ 2 + cos(c.dec * {k!r}) * ${} "
    "* sin((c.ra - ${}) * {h!r}) ^ 2 <= ${}"
)


def _cut_values(cone: ConeQuery) -> list[float]:
    """The parameters of :data:`_CUT` for ``cone`` (a hair wider than the route's cut)."""
    wide = cone.radius * (1 + _WIDER) + _WIDER_DEG
    half = min(wide * _RAD, math.pi) / 2.0
    return [
        cone.dec - wide,
        cone.dec + wide,
        cone.dec,
        math.cos(cone.dec * _RAD),
        cone.ra,
        math.sin(half) ** 2,
    ]


_RA, _DEC = rd.OUT_FIELDS.index("ra"), rd.OUT_FIELDS.index("dec")


def _cone_page(rows: list[Any], plan: _Plan) -> list[Any] | None:
    """The page of a cone from the rows of ``plan.page_sql`` (SQL cut, in page order,
    ``limit + 1`` at most): the route's exact cut of those rows, or None when it dropped
    one from a full answer (rows past the SQL limit might belong to the page: the caller
    then runs the route's two steps)."""
    cone, page = plan.cone, plan.page
    assert cone is not None and page is not None
    if not rows:
        return rows
    sep = angular_separation_deg(
        np.array([r[_RA] for r in rows]), np.array([r[_DEC] for r in rows]), cone.ra, cone.dec
    )
    inside = sep <= cone.radius
    if inside.all():
        return rows
    if len(rows) > page.limit:
        return None
    return [r for r, keep in zip(rows, inside.tolist(), strict=True) if keep]


def _detail_plan(tail: str) -> _Plan | None:
    if not _DETAIL_ID.fullmatch(tail):
        return None
    value = int(tail)
    if value > _MAX_ID:
        return None
    plan = _Plan()
    plan.detail_id = value
    return plan


class HotReads:
    """ASGI layer serving the hot detection reads through asyncpg (see the module doc)."""

    def __init__(self, app: ASGIApp, fast: FastAPI, reader: AsyncReader, prefix: str) -> None:
        self.app = app
        self.fast = fast
        self.reader = reader
        self.list_path = prefix + "/detections"
        self.detail_prefix = prefix + "/detections/"
        self.list_route = _route(rd.list_detections)
        self.detail_route = _route(rd.get_detection)
        self.policy: Policy = require("viewer")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path = scope["path"]
            if path == self.list_path:
                plan = _list_plan(scope.get("query_string", b""))
            elif path.startswith(self.detail_prefix):
                plan = _detail_plan(path[len(self.detail_prefix) :])
        if plan is None or not self.reader.usable():
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await remembered_caller(request)
        except AuthError:  # e.g. two different credentials: the policy's 401
            principal = None
        if principal is None:  # not verified lately: FastAPI's policy verifies it
            await self.app(scope, receive, send)
            return
        scope["route"] = self.detail_route if plan.detail_id is not None else self.list_route
        self.reader.served += 1
        gate = self.reader.gate
        if gate is not None:
            await gate.acquire()
        reader = self.reader
        reader.in_flight += 1
        reader.peak_in_flight = max(reader.peak_in_flight, reader.in_flight)
        try:
            await self.policy.admit(request, principal)
            body = await self._answer(plan)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        else:
            response = Response(body, media_type="application/json")
        finally:
            reader.in_flight -= 1
            if gate is not None:
                gate.release()
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Any:
        for cls in type(exc).__mro__:
            if cls in self.fast.exception_handlers:
                return self.fast.exception_handlers[cls]
        return None

    async def _answer(self, plan: _Plan) -> bytes:
        try:
            async with self.reader.pool.acquire() as conn:
                try:
                    return await self._run(conn, plan)
                except asyncpg.InternalClientError:
                    # a connection the server ended while it sat idle in the pool (there is
                    # no reset round trip on release to notice it) can surface as a protocol
                    # state error: never hand it out again
                    conn.terminate()
                    raise
        except Problem:
            raise
        except (
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        ):
            # the database answers through the sync path (its errors, its handlers)
            return await run_in_threadpool(self._sync, plan)

    async def _run(self, conn: Any, plan: _Plan) -> bytes:
        local = self.reader.local
        if plan.detail_id is not None:
            row = await conn.fetchrow(_DETAIL_SQL, plan.detail_id)
            if row is None:
                raise Problem(404, f"no detection with id {plan.detail_id}")
            item = dict(zip(rd.DETAIL_FIELDS, row, strict=True))
            item["created_at"] = local(item["created_at"])
            item["validated_at"] = local(item["validated_at"])
            return dumps(item)
        page = plan.page
        assert page is not None
        if plan.cone is None:
            rows = await conn.fetch(plan.sql, *plan.args)
        else:
            page_rows = _cone_page(await conn.fetch(plan.page_sql, *plan.page_args), plan)
            if page_rows is not None:
                rows = page_rows
            else:
                cand = await conn.fetch(plan.sql, *plan.args)
                chosen = rd.cone_page_ids(cand, plan.cone, page)
                by_id = {}
                if chosen:
                    by_id = {r[0]: r for r in await conn.fetch(_BY_IDS_SQL, chosen)}
                rows = [by_id[i] for i in chosen]
        items = [dict(zip(rd.OUT_FIELDS, r, strict=True)) for r in rows]
        if self.reader.tz is not None:
            for item in items:
                item["created_at"] = local(item["created_at"])
        return dumps(page_of(items, page, lambda item: item, id_of=lambda item: item["id"]))

    def _sync(self, plan: _Plan) -> bytes:
        """The same answer through SQLAlchemy (the routes' own code)."""
        db = self.fast.state.runtime.db
        if plan.detail_id is not None:
            return rd.detail_body(db, plan.detail_id)
        assert plan.query is not None
        return rd.list_body(db, plan.query)
