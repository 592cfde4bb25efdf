"""Curation and API at 1M rows: scanning queue, votes, list/detail/cone, catalog cone, export.

    PYTHONPATH=src python benchmarks/curation_scale.py            # everything, ~10 min
    PYTHONPATH=src python benchmarks/curation_scale.py --only api queue --seconds 10

First run seeds two persistent PostgreSQL schemas (``benchmarks/_scale.py``; reused on
later runs, ``--reseed`` rebuilds them): ``bench_1m`` with 1,000,000 detections in 200,000
objects, and ``bench_1m_catalog`` with 1,000,000 catalog entries (the export's rows). Then,
against a real ``astrid serve`` (uvicorn, rate limit off) driven by ``wrk`` (Debian package;
one wrk thread, keep-alive connections, each request a different path, tokens rotating):

* ``api``: ``GET /api/v1/detections`` (list, score filter), ``/detections/{id}`` (detail),
  ``/detections?ra&dec&radius=0.5`` (cone) and ``/catalog?ra&dec&radius=1'`` at 1 and 50
  connections (issue 15 item 6: p95 <= 50 ms at 50);
* ``queue``: ``GET /api/v1/scanning/queue`` by score and by uncertainty (from random keyset
  positions) and ``POST /detections/{id}/votes`` at 1 and 20 connections, 20 curators
  (issue 11: p95 <= 30 ms at 1);
* ``catalog``: catalog cone search r = 1' in process (``search_entries``): p50/p95
  (target <= 10 ms);
* ``export``: the 1,000,000-entry live catalog to CSV, JSON, VOTable and FITS, each in a
  fresh process: rows/s and peak RSS (targets >= 100,000 rows/s CSV, <= 300 MB).

Votes change the seeded schema (they are real votes); the queue skips what the caller voted.
Prints one compact table; ``--json FILE`` also writes the rows. ``C/X`` is the mean latency
by Little's law (clients / throughput, exact for a closed loop): on the loaded machine wrk's
own latency statistics were sometimes inconsistent with its throughput (at 1 connection,
mean x requests above the run's duration), so read p50/p95 next to C/X. ``CPU/req api``
and ``pg`` are the CPU milliseconds (user + system) per answered request of the API
processes and of their PostgreSQL backends during the run (``_scale.CpuProbe``): what
bounds the throughput on a 2-core machine, and unlike latency not inflated by other
engineers' processes. ``own p50/p95/p99`` are the latencies of the requests as the clients saw
them, timed per request by the wrk script (``_scale._LUA``); wrk's own p50/p95/p99 add
coordinated-omission samples for every slow request, which inflates the tail of a closed
loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _scale import (
    DEFAULT_PG,
    CpuProbe,
    curator_tokens,
    cursor_for,
    schema_url,
    seed_catalog,
    seed_curation,
    serve,
    wrk,
)
from catalog_export import export_in_child

N_PATHS = 4000


def _sky(rng: np.random.Generator) -> tuple[float, float]:
    return float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))


def api_requests(kind: str, n_det: int, rng: np.random.Generator) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for _ in range(N_PATHS):
        if kind == "list":
            conf = round(float(rng.uniform(0, 0.9)), 2)
            path = f"/api/v1/detections?limit=50&min_confidence={conf}"
        elif kind == "detail":
            path = f"/api/v1/detections/{int(rng.integers(1, n_det + 1))}"
        elif kind == "cone":
            ra, dec = _sky(rng)
            path = f"/api/v1/detections?ra={ra:.5f}&dec={dec:.5f}&radius=0.5&limit=50"
        elif kind == "catalog-cone":
            ra, dec = _sky(rng)
            path = f"/api/v1/catalog?ra={ra:.5f}&dec={dec:.5f}&radius=0.0166667"
        elif kind == "queue-score":
            cursor = cursor_for("score", float(rng.uniform(0.05, 1.0)), n_det + 1)
            path = f"/api/v1/scanning/queue?limit=50&cursor={cursor}"
        elif kind == "queue-uncertainty":
            cursor = cursor_for("uncertainty", float(rng.uniform(0.0, 0.45)), 0)
            path = f"/api/v1/scanning/queue?limit=50&order=uncertainty&min_snr=10&cursor={cursor}"
        elif kind == "vote":
            det = int(rng.integers(1, n_det + 1))
            label = "real" if rng.uniform() < 0.5 else "bogus"
            out.append(("POST", f"/api/v1/detections/{det}/votes", {"label": label}))
            continue
        else:
            raise ValueError(kind)
        out.append(("GET", path, None))
    return out


KINDS: list[str] | None = None
CLIENTS: list[int] | None = None


def run_load(
    base: str,
    tokens: list[str],
    kinds: list[str],
    conns: list[int],
    seconds: float,
    n_det: int,
    section: str,
) -> list[dict[str, Any]]:
    rows = []
    kinds = [k for k in kinds if KINDS is None or k in KINDS]
    for c in [c for c in conns if CLIENTS is None or c in CLIENTS]:
        for kind in kinds:
            reqs = api_requests(kind, n_det, np.random.default_rng(abs(hash((kind, c))) % 2**32))
            probe = CpuProbe(base, DEFAULT_PG)
            before = probe.sample()
            r = wrk(base, reqs, tokens[: max(c, 1)] if kind == "vote" else tokens, c, seconds)
            api_s, pg_s = CpuProbe.used(before, probe.sample())
            r["api_cpu_ms"] = 1000 * api_s / max(r["requests"], 1)
            r["pg_cpu_ms"] = 1000 * pg_s / max(r["requests"], 1)
            row = {"section": section, "what": kind, "clients": c, **r}
            rows.append(row)
            print(_fmt(row), flush=True)
    return rows


def catalog_cones(url: str, n: int) -> dict[str, Any]:
    from astrid.catalog.entries import CatalogQuery, search_entries
    from astrid.store.db import Database

    db = Database(url)
    rng = np.random.default_rng(7)
    times = []
    try:
        for _ in range(n):
            ra, dec = _sky(rng)
            t0 = time.perf_counter()
            with db.session() as s:
                search_entries(s, CatalogQuery(ra=ra, dec=dec, radius=1 / 60), limit=50)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        db.dispose()
    return {
        "section": "catalog",
        "what": "cone r=1' (in process)",
        "clients": 1,
        "requests": n,
        "p50_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "p99_ms": float(np.percentile(times, 99)),
    }


def exports(base: str, schema: str, formats: list[str]) -> list[dict[str, Any]]:
    rows = []
    for fmt in formats:
        r = export_in_child(base, schema, fmt)
        row = {
            "section": "export",
            "what": fmt,
            "clients": 1,
            "requests": r["rows"],
            "rows_per_s": r["rows"] / r["seconds"],
            "rows_per_cpu_s": r["rows"] / max(r["cpu_seconds"], 1e-9),
            "seconds": r["seconds"],
            "peak_rss_mb": r["peak_rss_mb"],
            "rss_before_mb": r["rss_before_mb"],
            "mb": r["bytes"] / 1e6,
        }
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


def profile(url: str, kind: str, n_det: int, n: int = 300) -> None:
    """cProfile of ``n`` requests of ``kind`` through the app in process.

    The ASGI app is called in this thread (httpx's ASGI transport) and the thread pool is
    replaced by direct calls, so the profile sees routes and dependencies too.
    """
    import asyncio
    import cProfile
    import pstats
    import tempfile
    from pathlib import Path

    import fastapi.dependencies.utils
    import fastapi.routing
    import httpx
    import starlette.concurrency
    from _scale import SECRET

    from astrid.api import ApiConfig, create_app
    from astrid.runtime import Runtime
    from astrid.settings import Settings

    async def inline(func: Any, *a: Any, **k: Any) -> Any:
        return func(*a, **k)

    for mod in (starlette.concurrency, fastapi.routing, fastapi.dependencies.utils):
        if hasattr(mod, "run_in_threadpool"):
            mod.run_in_threadpool = inline  # type: ignore[attr-defined]
    import astrid.api.bodyguard

    astrid.api.bodyguard.run_in_threadpool = inline  # type: ignore[attr-defined]
    settings = Settings(  # type: ignore[call-arg]
        data_dir=Path(tempfile.mkdtemp()), database_url=url, _env_file=None
    )
    app = create_app(Runtime(settings), ApiConfig(secret_key=SECRET, rate_limit=0))
    tokens = curator_tokens(url, 20)
    reqs = api_requests(kind, n_det, np.random.default_rng(3))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        # the lifespan opens the hot reads' asyncpg pool on this loop (astrid.api.hotpath)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):

            async def go(i: int) -> None:
                m, p, b = reqs[i % len(reqs)]
                h = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                r = await client.request(m, p, json=b, headers=h)
                assert r.status_code < 300, r.text

            for i in range(20):
                await go(i)
            # unprofiled first: wall and this process's CPU per request (PostgreSQL's CPU is
            # in its own process; the httpx client's share is included, ~0.2 ms)
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(20 + n, 20 + 2 * n):
                await go(i)
            wall = (time.perf_counter() - w0) / n * 1000
            cpu = (time.process_time() - c0) / n * 1000
            print(f"{kind}: {wall:.2f} ms wall, {cpu:.2f} ms CPU per request in process")
            prof = cProfile.Profile(time.process_time)  # CPU, not waits for PostgreSQL
            t0 = time.perf_counter()
            prof.enable()
            for i in range(20, 20 + n):
                await go(i)
            prof.disable()
            ms = (time.perf_counter() - t0) / n * 1000
            print(f"{kind}: {ms:.2f} ms per request in process (profiled)")
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(45)

    asyncio.run(run())


def _fmt(r: dict[str, Any]) -> str:
    head = f"{r['section']:8s} {r['what']:24s} {r['clients']:>4d}"
    if r["section"] == "export":
        return (
            f"{head}  {r['requests']:>8d} rows {r['seconds']:6.1f} s "
            f"{r['rows_per_s']:>9.0f} rows/s ({r['rows_per_cpu_s']:.0f}/CPU-s)  "
            f"{r['mb']:7.1f} MB  peak RSS {r['peak_rss_mb']:.0f} MB "
            f"({r['rss_before_mb']:.0f} before)"
        )
    rps = f"{r['rps']:8.1f}" if "rps" in r else "       -"
    bad = r.get("non2xx", 0) + r.get("socket_errors", 0)
    return (
        f"{head}  {r['requests']:>8d} req {rps} req/s  p50 {r['p50_ms']:7.1f}  "
        f"p95 {r['p95_ms']:7.1f}  p99 {r['p99_ms']:7.1f}  mean {r.get('mean_ms', 0):6.1f}  "
        f"C/X {1000 * r['clients'] / r['rps'] if r.get('rps') else 0:7.1f} ms  errors {bad}"
        + (
            f"  CPU/req api {r['api_cpu_ms']:.2f} pg {r['pg_cpu_ms']:.2f} ms"
            if "api_cpu_ms" in r
            else ""
        )
        + (
            f"  own p50 {r['own_p50_ms']:.1f} p95 {r['own_p95_ms']:.1f} p99 {r['own_p99_ms']:.1f}"
            if r.get("own_n")
            else ""
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="bench_1m")
    ap.add_argument("--catalog-schema", default="bench_1m_catalog")
    ap.add_argument("--detections", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=200_000)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--only", nargs="+", default=["api", "queue", "catalog", "export"])
    ap.add_argument("--seconds", type=float, default=10, help="per wrk run")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--launcher",
        choices=["astrid", "uvicorn", "uvicorn-asyncio"],
        default="astrid",
        help="astrid serve, or uvicorn's own CLI (on asyncio its --workers lacks TCP_NODELAY)",
    )
    ap.add_argument("--pool-size", type=int, default=10, help="ASTRID_DB_POOL_SIZE")
    ap.add_argument("--kinds", nargs="+", help="only these request kinds (e.g. detail)")
    ap.add_argument("--clients", type=int, nargs="+", help="only these client counts")
    ap.add_argument("--formats", nargs="+", default=["csv", "json", "votable", "fits"])
    ap.add_argument("--cones", type=int, default=300)
    ap.add_argument("--reseed", action="store_true")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--profile", help="cProfile one request kind in process, then stop")
    args = ap.parse_args()
    global KINDS, CLIENTS
    KINDS, CLIENTS = args.kinds, args.clients
    url = schema_url(args.postgres_url, args.schema)
    if args.profile:
        profile(url, args.profile, args.detections)
        return
    curl = schema_url(args.postgres_url, args.catalog_schema)
    if {"api", "queue"} & set(args.only):
        seed_curation(args.postgres_url, args.schema, args.detections, args.objects, args.reseed)
    if {"api", "catalog", "export"} & set(args.only):
        seed_catalog(args.postgres_url, args.catalog_schema, args.entries, args.reseed)
    print(
        f"# {args.detections} detections / {args.objects} objects, {args.entries} catalog "
        f"entries; {args.launcher}, {args.workers} uvicorn worker(s), pool {args.pool_size}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    if {"api", "queue"} & set(args.only):
        tokens = curator_tokens(url, 50)
        with serve(url, args.workers, args.pool_size, args.launcher) as base:
            wrk(
                base,
                api_requests("detail", args.detections, np.random.default_rng(0)),
                tokens,
                4,
                2,
            )  # warm up
            if "api" in args.only:
                rows += run_load(
                    base,
                    tokens,
                    ["list", "detail", "cone"],
                    [1, 50],
                    args.seconds,
                    args.detections,
                    "api",
                )
            if "queue" in args.only:
                rows += run_load(
                    base,
                    tokens,
                    ["queue-score", "queue-uncertainty", "vote"],
                    [1, 20],
                    args.seconds,
                    args.detections,
                    "queue",
                )
    if "api" in args.only:
        ctokens = curator_tokens(curl, 50, "viewer")
        with serve(curl, args.workers, args.pool_size, args.launcher) as base:
            rows += run_load(
                base, ctokens, ["catalog-cone"], [1, 50], args.seconds, args.entries, "api"
            )
    if "catalog" in args.only:
        row = catalog_cones(curl, args.cones)
        rows.append(row)
        print(_fmt(row), flush=True)
    if "export" in args.only:
        rows += exports(args.postgres_url, args.catalog_schema, args.formats)
    print(f"# load average {os.getloadavg()[0]:.1f} at end", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
