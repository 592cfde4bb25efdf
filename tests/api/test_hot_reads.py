"""The hot detection reads served through asyncpg (``astrid.api.hotpath``) answer exactly
what the FastAPI routes answer: the same status, headers and bytes for lists, cone
searches, details, 404s, refusals (422, 400, 401, 403, 429) and a database outage; metrics
and request ids as before. Each check runs the same requests against two apps over the same
PostgreSQL schema, one with the hot path (``fast_reads``, lifespan entered so its pool is
open) and one without, and checks the hot path did serve them (``served``). SQLite has no
hot path: its apps serve every request through the routes (the other detection tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from astrid.api import create_app
from astrid.api.security import create_api_key
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection, DetectionStatus, User
from tests.api.conftest import Api
from tests.tcp_proxy import TcpProxy

N = 240


@dataclass
class Pair:
    """The same runtime served with the hot path (``fast``) and without it (``slow``)."""

    fast: Api
    slow: Api

    @property
    def served(self) -> int:
        reader = self.fast.app.state.fast_reader
        return int(reader.served)

    def both(self, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
        return (
            self.fast.client.get(path, headers=headers, follow_redirects=False),
            self.slow.client.get(path, headers=headers, follow_redirects=False),
        )

    def same(self, path: str, headers: dict[str, str], hot: bool = True) -> Any:
        """GET ``path`` on both; assert equal answers, served by the hot path iff ``hot``."""
        before = self.served
        fast, slow = self.both(path, headers)
        assert fast.status_code == slow.status_code, (path, fast.text, slow.text)
        assert fast.content == slow.content, path
        for name in ("content-type", "content-length", "www-authenticate", "retry-after"):
            assert fast.headers.get(name) == slow.headers.get(name), (path, name)
        assert self.served == before + (1 if hot else 0), path
        return fast


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def make_pair(
    make_runtime: Callable[..., Runtime], make_api: Callable[..., Api]
) -> Iterator[Callable[..., Pair]]:
    entered: list[TestClient] = []

    def factory(url: str, **overrides: Any) -> Pair:
        runtime = make_runtime(url)
        slow = make_api(runtime_override=runtime, fast_reads=False, **overrides)
        fast = make_api(runtime_override=runtime, fast_reads=True, **overrides)
        fast.client.__enter__()  # the lifespan opens the asyncpg pool on the client's loop
        entered.append(fast.client)
        assert fast.app.state.fast_reader is not None
        assert slow.app.state.fast_reader is None
        return Pair(fast, slow)

    yield factory
    for client in entered:
        client.__exit__(None, None, None)


@pytest.fixture
def make_api(make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., Api]]:
    """Overrides the shared factory: apps over a given runtime, users made once per runtime."""
    from dataclasses import replace

    from tests.api.conftest import CLOSED_ARCHIVE, SECRET, make_users

    clients: list[TestClient] = []
    users: dict[int, Any] = {}

    def factory(runtime_override: Runtime, **overrides: Any) -> Api:
        from astrid.api import ApiConfig

        # auth_cache_s: an hour, so that a slow machine (CI's took over 10 s, the default,
        # between a token's first use and its 30th hot request) never sees a remembered
        # caller expire mid-test and the request go to FastAPI unexpectedly
        cfg = replace(
            ApiConfig(
                secret_key=SECRET,
                rate_limit=0,
                archive_base_url=CLOSED_ARCHIVE,
                auth_cache_s=3600.0,
            ),
            **overrides,
        )
        app = create_app(runtime_override, cfg)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        if id(runtime_override) not in users:
            users[id(runtime_override)] = make_users(runtime_override, cfg)
        headers, ids = users[id(runtime_override)]
        return Api(app, client, runtime_override, cfg, headers, ids)

    yield factory
    for client in clients:
        client.close()


def _seed(runtime: Runtime) -> list[int]:
    rng = np.random.default_rng(5)
    ra = rng.uniform(150.0, 151.0, N)
    dec = rng.uniform(2.0, 3.0, N)
    statuses = list(DetectionStatus)
    with runtime.db.session() as s:
        rows = [
            Detection(
                ra=float(ra[i]),
                dec=float(dec[i]),
                healpix=int(healpix_index(ra[i], dec[i])),
                confidence=[float(rng.uniform()), 0.333333333333, None, 1.0][i % 4],
                snr=[float(rng.uniform(3, 40)), math.nan, 1e-7, 12.0][i % 4],
                mjd=60000.123456789 + i,
                mag=None if i % 2 else 19.25,
                status=statuses[i % len(statuses)],
                source="alert" if i % 3 == 0 else "pipeline",
                label="réal ✓" if i % 7 == 1 else ("real" if i % 5 == 0 else None),
                observation_id=None,
                external_id=f"c{i}" if i % 2 else None,
                validated_by="expert" if i % 11 == 2 else None,
                validated_at=datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
                if i % 11 == 2
                else None,
                cutout_keys={"science": f"k/{i}.png"} if i % 2 else {},
                extra={"nested": {"a": [1, 2.5, None]}, "s": "x"} if i % 13 == 3 else {},
            )
            for i in range(N)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


LISTS = [
    "",
    "?limit=7",
    "?limit=7&order=desc",
    "?min_confidence=0.3&max_confidence=0.9",
    "?min_snr=5&max_snr=30&limit=1000",
    "?mjd_min=60010&mjd_max=60100.5",
    "?status=pending",
    "?status=validated&source=alert",
    "?label=r%C3%A9al%20%E2%9C%93",
    "?label=real&order=desc&limit=3",
    "?source=pipeline&min_confidence=0",
    "?observation_id=1",
    "?ra=150.5&dec=2.5&radius=0.2",
    "?ra=150.5&dec=2.5&radius=0.3&order=desc&limit=5",
    "?ra=150.5&dec=2.5&radius=0.3&status=pending&min_confidence=0.1",
    "?ra=10&dec=-80&radius=0.5",
    "?ra=150.5&dec=2.5&radius=10",
    "?bogus=1&limit=9&limit=2",
]


def _pages(pair: Pair, query: str, headers: dict[str, str]) -> int:
    """Follow the cursors of ``query`` on both apps; the number of pages."""
    path, pages = f"/api/v1/detections{query}", 0
    while True:
        body = pair.same(path, headers).json()
        pages += 1
        if not body["next_cursor"]:
            return pages
        sep = "&" if "?" in query else "?"
        path = f"/api/v1/detections{query}{sep}cursor={body['next_cursor']}"


def test_lists_cones_and_details_are_the_routes_bytes(
    pg_url: str, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(pg_url)
    ids = _seed(pair.fast.runtime)
    h = pair.fast.as_role("viewer")
    pair.same("/api/v1/detections/1", h, hot=False)  # a fresh token: FastAPI verifies it
    assert _pages(pair, "?limit=7", h) > 1
    for query in LISTS:
        _pages(pair, query, h)
    for i in ids[:40]:
        body = pair.same(f"/api/v1/detections/{i}", h).json()
        assert body["id"] == i
    r = pair.same("/api/v1/detections/999999", h)  # the route's 404 problem
    assert r.status_code == 404 and r.json()["detail"] == "no detection with id 999999"
    for role in ("curator", "expert", "admin"):  # every role reads
        pair.same(f"/api/v1/detections/{ids[0]}", pair.fast.as_role(role), hot=False)
        pair.same(f"/api/v1/detections/{ids[0]}", pair.fast.as_role(role))


def test_refusals_are_the_routes_own(pg_url: str, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(pg_url)
    _seed(pair.fast.runtime)
    h = pair.fast.as_role("viewer")
    pair.same("/api/v1/detections?limit=1", h, hot=False)
    for query in (
        "?limit=0",
        "?limit=abc",
        "?min_confidence=2",
        "?status=nope",
        "?order=up",
        "?radius=11&ra=1&dec=1",
        "?ra=1&dec=1",
        "?label=",
        "?cursor=bm9wZQ",
        "?cursor=" + "x" * 65,
        "/",
        "/0",
        "/007",
        "/-1",
        "/2147483648",
        "/99999999999",
        "/abc",
        "/1.0",
    ):
        r = pair.same(f"/api/v1/detections{query}", h, hot=False)
        assert r.status_code in (200, 307, 400, 404, 422), (query, r.status_code)
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic dTpw"},
        {"X-API-Key": "astrid_nope_nope"},
        {**h, "X-API-Key": "astrid_nope_nope"},  # a remembered token and a second credential
    ):
        r = pair.same("/api/v1/detections/1", headers, hot=False)
        assert r.status_code == 401


def test_policy_admits_scopes_and_rate_limits(pg_url: str, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(pg_url, rate_limit=4, rate_window_s=3600)
    ids = _seed(pair.fast.runtime)
    runtime = pair.fast.runtime
    with runtime.db.session() as s:
        user = s.get(User, pair.fast.user_ids["viewer"])
        _, write_only = create_api_key(s, pair.fast.config, user, "w", ["write"])
        _, reader = create_api_key(s, pair.fast.config, user, "r", ["read"])
    path = f"/api/v1/detections/{ids[0]}"
    # a key without the read scope: 403 from the policy, on the hot path once remembered
    pair.same(path, {"X-API-Key": write_only}, hot=False)
    r = pair.same(path, {"X-API-Key": write_only})
    assert r.status_code == 403 and "scope" in r.json()["detail"]
    # the rate limit counts hot requests as the route does: 4 answers, then 429
    key = {"Authorization": f"Bearer {reader}"}
    statuses = [pair.same(path, key, hot=i > 0).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_metrics_and_request_ids_count_hot_requests(
    pg_url: str, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(pg_url)
    ids = _seed(pair.fast.runtime)
    h = pair.fast.as_role("viewer")
    pair.same("/api/v1/detections?limit=2", h, hot=False)
    for _ in range(3):
        pair.same(f"/api/v1/detections/{ids[1]}", h)
        pair.same("/api/v1/detections?limit=2", h)
    r = pair.fast.client.get(
        f"/api/v1/detections/{ids[1]}", headers={**h, "X-Request-ID": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    assert len(pair.fast.client.get("/api/v1/detections", headers=h).headers["x-request-id"])
    text = pair.fast.client.get("/metrics").text
    detail = (
        'astrid_http_requests_total{method="GET",route="/api/v1/detections/{detection_id}",'
        'status="200"} 4.0'
    )
    listed = 'astrid_http_requests_total{method="GET",route="/api/v1/detections",status="200"} 5.0'
    assert detail in text and listed in text


def test_a_dropped_connection_or_outage_answers_as_the_routes(
    pg_url: str, make_pair: Callable[..., Pair]
) -> None:
    proxy, url = TcpProxy.for_url(pg_url)
    try:
        pair = make_pair(url)
        ids = _seed(pair.fast.runtime)
        h = pair.fast.as_role("viewer")
        path = f"/api/v1/detections/{ids[3]}"
        pair.same(path, h, hot=False)
        pair.same(path, h)
        # the server ends the pool's connections: the next hot request still answers (only
        # this test's backends, through its proxy: another worker's run in parallel)
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE client_port = ANY(%s) "
                "AND query LIKE 'SELECT \"id\", %%FROM detections WHERE id = $1'",
                (proxy.upstream_ports,),
            ).fetchone()
        assert ended is not None and ended[0] >= 1
        assert pair.same(path, h).status_code == 200
        proxy.cut()  # the database is unreachable: the routes' 503
        r = pair.same(path, h)
        assert r.status_code == 503, r.text
        assert r.json()["detail"] == "the database is unavailable; retry later"
        proxy.restore()
        assert pair.same(path, h).status_code == 200
    finally:
        proxy.cut()


def test_datetimes_follow_the_session_time_zone(
    postgres_url: str, make_pair: Callable[..., Pair]
) -> None:
    url = postgres_url + "%20-cTimeZone%3DEurope/Paris"
    upgrade(url)
    pair = make_pair(url)
    ids = _seed(pair.fast.runtime)
    h = pair.fast.as_role("viewer")
    pair.same("/api/v1/detections?limit=3", h, hot=False)
    body = pair.same(f"/api/v1/detections/{ids[2]}", h).json()
    assert body["validated_at"] == "2026-03-04T06:06:07.123456+01:00"
    pair.same("/api/v1/detections?limit=3", h)


def test_sqlite_serves_through_the_routes(
    tmp_path: Path, make_runtime: Callable[..., Runtime], make_api: Callable[..., Api]
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    api = make_api(make_runtime(url), fast_reads=True)
    with api.client:
        assert api.app.state.fast_reader is None
        ids = _seed(api.runtime)
        h = api.as_role("viewer")
        assert api.client.get(f"/api/v1/detections/{ids[0]}", headers=h).json()["id"] == ids[0]
        body = api.client.get("/api/v1/detections?ra=150.5&dec=2.5&radius=0.2", headers=h)
        assert body.status_code == 200 and body.json()["items"]


def test_the_healpix_index_covers_a_cones_candidates(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        (definition,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_detections_healpix' "
            "AND schemaname = current_schema()"
        ).fetchone()  # type: ignore[misc]
    assert definition.endswith('USING btree (healpix) INCLUDE (id, ra, "dec")'), definition


def test_cones_are_one_statement_and_connections_are_not_reset(
    pg_url: str, make_pair: Callable[..., Pair]
) -> None:
    """A cone's page is one statement (its SQL cut, then the route's), and a connection
    goes back to the pool without asyncpg's reset round trip: the idle connection's last
    statement is the cone's own."""
    # through a proxy, so that only this test's backends are looked at (their client ports),
    # not those of a test running the same cones on another worker
    proxy, url = TcpProxy.for_url(pg_url)
    try:
        pair = make_pair(url)
        _seed(pair.fast.runtime)
        h = pair.fast.as_role("viewer")
        pair.same("/api/v1/detections?limit=1", h, hot=False)
        pair.same("/api/v1/detections?ra=150.5&dec=2.5&radius=0.3&limit=4", h)
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
            rows = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE state = 'idle' "
                "AND client_port = ANY(%s) AND query LIKE "
                "'%%FROM detections WHERE id = ANY(ARRAY(SELECT c.id FROM%%'",
                (proxy.upstream_ports,),
            ).fetchall()
        assert len(rows) == 1, rows
    finally:
        proxy.cut()


def test_a_cone_page_cut_short_takes_the_routes_two_steps() -> None:
    """The SQL cut is a hair wider than the route's: a row it keeps that the route cuts
    drops out, and when the SQL answer was a full page the route's two steps run instead
    (None), since the rows past the SQL limit may belong to the page."""
    from astrid.api.hotpath import _cone_page, _list_plan

    plan = _list_plan(b"ra=10&dec=20&radius=1&limit=2")
    assert plan is not None and plan.cone is not None
    ra_i, dec_i = rd_fields("ra"), rd_fields("dec")

    def row(i: int, dec: float) -> tuple[Any, ...]:
        values: list[Any] = [None] * len(rd_fields())
        values[0], values[ra_i], values[dec_i] = i, 10.0, dec
        return tuple(values)

    inside, edge = row(1, 20.5), row(2, 21.0 + 1e-12)  # the second 1e-12 deg outside
    assert _cone_page([inside, row(3, 20.9)], plan) == [inside, row(3, 20.9)]
    assert _cone_page([inside, edge], plan) == [inside]  # not full: the rest is all
    assert _cone_page([inside, edge, row(3, 20.9)], plan) is None  # full: two steps


def rd_fields(name: str | None = None) -> Any:
    from astrid.api.routes_detections import OUT_FIELDS

    return OUT_FIELDS if name is None else OUT_FIELDS.index(name)


@pytest.mark.parametrize("limit", [0, 2])
def test_concurrent_hot_reads_are_admitted_at_most_n_at_once(
    pg_url: str, make_pair: Callable[..., Pair], limit: int
) -> None:
    """``hot_concurrency``: at most that many hot reads are answered at once, the others
    wait their turn, and every answer is the route's. Unlimited (0), the same concurrent
    load overlaps more than two (which shows the load does overlap)."""
    from concurrent.futures import ThreadPoolExecutor

    pair = make_pair(pg_url, hot_concurrency=limit)
    ids = _seed(pair.fast.runtime)
    h = pair.fast.as_role("viewer")
    pair.same("/api/v1/detections?limit=3", h, hot=False)  # FastAPI verifies the token
    reader = pair.fast.app.state.fast_reader
    assert reader.concurrency == limit and (reader.gate is None) == (limit == 0)
    paths = [
        f"/api/v1/detections?ra=150.5&dec=2.5&radius=0.{3 + i % 5}&limit=20"
        if i % 2
        else f"/api/v1/detections/{ids[i % len(ids)]}"
        for i in range(240)
    ]
    before = reader.served
    with ThreadPoolExecutor(24) as pool:  # the client's requests run on its one event loop
        answers = list(pool.map(lambda p: pair.fast.client.get(p, headers=h), paths))
    assert reader.served == before + len(paths)
    assert reader.in_flight == 0
    if limit:
        assert 1 <= reader.peak_in_flight <= limit
    else:
        assert reader.peak_in_flight > 2
    for path, answer in zip(paths[:40], answers[:40], strict=True):
        assert answer.status_code == 200
        assert answer.content == pair.slow.client.get(path, headers=h).content, path
