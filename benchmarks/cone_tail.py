"""Where a cone search's one-client tail comes from: per-request time against the cone.

    PYTHONPATH=src python benchmarks/cone_tail.py [--n 4000] [--explain 5]

Runs what :class:`astrid.api.hotpath.HotReads` does for ``GET /detections?ra&dec&radius=0.5
&limit=50`` (the plan, its one statement, the route's exact cut, the page's JSON) on the
``bench_1m`` schema of ``curation_scale.py``, one request after the other on one asyncpg
connection (as one wrk client does), and records for each: wall time, this process's CPU,
the backend's CPU, the centre's declination, the HEALPix ranges, the candidate and page
rows, and whether the fallback (the route's two steps) ran. Prints the percentiles, the
slowest requests and the time by declination, then ``EXPLAIN (ANALYZE, BUFFERS)`` of the
slowest ``--explain`` statements as the prepared statement runs them (``plan_cache_mode``
as the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _scale import DEFAULT_PG, TICK, backend_cpu

from astrid.api import hotpath as hp
from astrid.api import routes_detections as rd
from astrid.api.fastjson import dumps
from astrid.api.pagination import page_of


async def answer(conn: Any, plan: Any) -> tuple[int, bool]:
    """The hot path's cone answer; (rows on the page, fallback ran)."""
    rows = hp._cone_page(await conn.fetch(plan.page_sql, *plan.page_args), plan)
    fell_back = rows is None
    if rows is None:
        cand = await conn.fetch(plan.sql, *plan.args)
        chosen = rd.cone_page_ids(cand, plan.cone, plan.page)
        by_id = {}
        if chosen:
            by_id = {r[0]: r for r in await conn.fetch(hp._BY_IDS_SQL, chosen)}
        rows = [by_id[i] for i in chosen]
    items = [dict(zip(rd.OUT_FIELDS, r, strict=True)) for r in rows]
    dumps(page_of(items, plan.page, lambda i: i, id_of=lambda i: i["id"]))
    return len(rows), fell_back


async def main(url: str, schema: str, n: int, explain: int, seed: int) -> None:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        queries.append((ra, dec, f"ra={ra:.5f}&dec={dec:.5f}&radius=0.5&limit=50".encode()))
    for _, _, q in queries[:100]:  # warm: caches, the prepared statement
        await answer(conn, hp._list_plan(q))
    rec = []
    gcs: list[float] = []

    def gc_cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gcs.append(time.perf_counter())

    gc.callbacks.append(gc_cb)
    for ra, dec, q in queries:
        w0, c0, p0 = time.perf_counter(), time.process_time(), backend_cpu(pid)
        ngc = len(gcs)
        plan = hp._list_plan(q)
        t_plan = time.perf_counter() - w0
        rows, fell = await answer(conn, plan)
        wall = time.perf_counter() - w0
        rec.append(
            (
                wall * 1e3,
                (time.process_time() - c0) * 1e3,
                (backend_cpu(pid) - p0) * 1e3,
                dec,
                len(plan.ranges),
                rows,
                fell,
                len(gcs) - ngc,
                t_plan * 1e3,
                ra,
                q,
            )
        )
    gc.callbacks.remove(gc_cb)
    w = np.array([r[0] for r in rec])
    print(
        f"{n} cones, one connection: wall p50 {np.percentile(w, 50):.2f} p95 "
        f"{np.percentile(w, 95):.2f} p99 {np.percentile(w, 99):.2f} max {w.max():.2f} "
        f"mean {w.mean():.2f} ms; API CPU {np.mean([r[1] for r in rec]):.3f} ms, PG CPU "
        f"{np.mean([r[2] for r in rec]):.3f} ms per cone (ticks of {1000 / TICK:.0f} ms); "
        f"fallbacks {sum(r[6] for r in rec)}; GC runs {len(gcs)}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("slowest:  wall   plan   dec      ra  ranges rows fallback gc")
    for r in sorted(rec, key=lambda r: -r[0])[:15]:
        print(
            f"       {r[0]:7.2f} {r[8]:6.2f} {r[3]:6.1f} {r[9]:7.1f} {r[4]:6d} {r[5]:4d} "
            f"{r[6]!s:8s} {r[7]}"
        )
    print("by |dec|:     n   p50    p95    p99   ranges  rows")
    for lo, hi in ((0, 30), (30, 60), (60, 80), (80, 88), (88, 90.1)):
        sel = [r for r in rec if lo <= abs(r[3]) < hi]
        if sel:
            ws = np.array([r[0] for r in sel])
            print(
                f"  {lo:4.0f}-{hi:4.0f} {len(sel):5d} {np.percentile(ws, 50):5.2f} "
                f"{np.percentile(ws, 95):6.2f} {np.percentile(ws, 99):6.2f} "
                f"{np.mean([r[4] for r in sel]):6.1f} {np.mean([r[5] for r in sel]):5.1f}"
            )
    for r in sorted(rec, key=lambda r: -r[0])[:explain]:
        plan = hp._list_plan(r[10])
        # the prepared statement's plan as the server runs it (generic or custom)
        stmt = await conn.prepare("EXPLAIN (ANALYZE, BUFFERS) " + plan.page_sql)
        lines = await stmt.fetch(*plan.page_args)
        print(f"--- dec {r[3]:.2f} ra {r[9]:.2f} ({r[0]:.2f} ms above)")
        print("\n".join(x[0] for x in lines))
    await conn.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="bench_1m")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--explain", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.postgres_url, args.schema, args.n, args.explain, args.seed))
