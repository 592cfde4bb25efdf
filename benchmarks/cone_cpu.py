"""CPU per cone search of the hot read path, API side and PostgreSQL side, without HTTP.

    PYTHONPATH=src python benchmarks/cone_cpu.py [--n 1000] [--blocks 4]

Runs what :class:`astrid.api.hotpath.HotReads` does for ``GET /detections?ra&dec&radius=0.5
&limit=50`` (plan with its HEALPix ranges, SQL, the route's exact cut, page, JSON) on the
``bench_1m`` schema of ``curation_scale.py`` (seed it first), on one asyncpg connection:
this process's CPU (``process_time``) and the backend's (``/proc/PID/stat``, PostgreSQL
on this machine) per request, in alternating blocks of ``--n`` random cones, median of the
blocks. ``two-step`` is the route's way (candidates, cut in Python, rows by id), ``one``
the one-statement page (``plan.page_sql``) where the checkout has it; with another
checkout's ``src`` on ``PYTHONPATH`` (before a change) only ``two-step`` runs. CPU time
moves less with other engineers' load than latency does, but on two shared cores it still
moves (cache and hyper-thread contention): compare runs made minutes apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _scale import DEFAULT_PG, backend_cpu

from astrid.api import hotpath as hp
from astrid.api import routes_detections as rd
from astrid.api.fastjson import dumps
from astrid.api.pagination import page_of


async def two_step(conn: Any, plan: Any) -> list[Any]:
    cand = await conn.fetch(plan.sql, *plan.args)
    chosen = rd.cone_page_ids(cand, plan.cone, plan.page)
    by_id = {}
    if chosen:
        by_id = {r[0]: r for r in await conn.fetch(hp._BY_IDS_SQL, chosen)}
    return [by_id[i] for i in chosen]


async def one(conn: Any, plan: Any) -> list[Any]:
    rows = hp._cone_page(await conn.fetch(plan.page_sql, *plan.page_args), plan)
    return rows if rows is not None else await two_step(conn, plan)


async def main(url: str, schema: str, n: int, blocks: int) -> None:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    rng = np.random.default_rng(5)
    queries = []
    for _ in range(n):
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        queries.append(f"ra={ra:.5f}&dec={dec:.5f}&radius=0.5&limit=50".encode())
    ways = [("two-step", two_step)] + ([("one", one)] if hasattr(hp, "_cone_page") else [])
    for q in queries[:200]:  # warm: caches, prepared statements
        for _, way in ways:
            await way(conn, hp._list_plan(q))
    got: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in ways}
    for b in range(blocks):
        for name, way in ways if b % 2 == 0 else ways[::-1]:
            c0, p0, w0 = time.process_time(), backend_cpu(pid), time.perf_counter()
            for q in queries:
                plan = hp._list_plan(q)
                rows = await way(conn, plan)
                items = [dict(zip(rd.OUT_FIELDS, r, strict=True)) for r in rows]
                dumps(page_of(items, plan.page, lambda i: i, id_of=lambda i: i["id"]))
            got[name].append(
                (
                    (time.process_time() - c0) / n * 1e3,
                    (backend_cpu(pid) - p0) / n * 1e3,
                    (time.perf_counter() - w0) / n * 1e3,
                )
            )
    for name, runs in got.items():
        a = np.array(runs)
        print(
            f"{name:8s}: API CPU {np.median(a[:, 0]):.3f} ms  PG CPU {np.median(a[:, 1]):.3f} ms  "
            f"wall {np.median(a[:, 2]):.3f} ms per cone (median of {blocks} blocks of {n}; "
            f"load average {os.getloadavg()[0]:.1f})"
        )
    await conn.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="bench_1m")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--blocks", type=int, default=4)
    args = ap.parse_args()
    asyncio.run(main(args.postgres_url, args.schema, args.n, args.blocks))
