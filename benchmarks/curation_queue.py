"""Latency of the scanning queue and of voting on PostgreSQL, at 1 and 20 clients.

Loads N detections (default 1,000,000) grouped into M objects (default 200,000) with their
curation states (90 % awaiting review) into a dedicated PostgreSQL schema with COPY, starts
the API under uvicorn in a separate process (``benchmarks/api_latency.py --serve``) and
drives it with C concurrent httpx clients, each a different curator. Prints p50/p95/p99:

* ``queue-score``: ``GET /api/v1/scanning/queue?limit=50`` (highest P(real) first, the
  caller's voted detections left out), from a random keyset position;
* ``queue-uncertainty``: the same ordered by |P(real) − 0.5|, with an S/N filter;
* ``vote``: ``POST /api/v1/detections/{id}/votes`` on random detections.

    python benchmarks/curation_queue.py --detections 1000000 --objects 200000

Results go in docs/curation.md. The schema (``astrid_bench_curation``) is kept; ``--reload``
rebuilds it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from api_latency import DEFAULT_PG, SECRET, schema_url


def load(base: str, schema: str, n_det: int, n_obj: int, reload: bool) -> None:
    import psycopg

    from astrid.store.db import upgrade
    from astrid.store.sky_index import healpix_index

    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from information_schema.schemata where schema_name = %s", (schema,)
        ).fetchone()
        if exists and not reload:
            n = conn.execute(f'select count(*) from "{schema}".curation_states').fetchone()
            if n and n[0] == n_det:
                print(f"schema {schema} already holds {n_det} detections; not reloading")
                return
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = schema_url(base, schema)
    upgrade(url)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ora = rng.uniform(0, 360, n_obj)
    odec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_obj)))
    owner = rng.integers(0, n_obj, n_det)
    ra = (ora[owner] + rng.normal(0, 0.3 / 3600, n_det)) % 360
    dec = np.clip(odec[owner] + rng.normal(0, 0.3 / 3600, n_det), -90, 90)
    hp = healpix_index(ra, dec)
    ohp = healpix_index(ora, odec)
    conf = rng.uniform(0, 1, n_det)
    snr = rng.uniform(3, 100, n_det)
    mag = rng.uniform(16, 23, n_det)
    mjd = rng.uniform(58000, 61000, n_det)
    awaiting = rng.uniform(0, 1, n_det) < 0.9
    ts = "2026-01-01T00:00:00+00"
    with psycopg.connect(url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY sky_objects (id, ra, dec, healpix, sx, sy, sz, weight, n_detections, "
                "aliases, "
                "created_at, updated_at) FROM STDIN"
            ) as copy,
        ):
            for i in range(n_obj):
                copy.write_row(
                    (
                        i + 1,
                        float(ora[i]),
                        float(odec[i]),
                        int(ohp[i]),
                        0.0,
                        0.0,
                        0.0,
                        0.0,
                        0,
                        "[]",
                        ts,
                        ts,
                    )
                )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY detections (id, ra, dec, healpix, mjd, snr, mag, confidence, status, "
                "cutout_keys, source, extra, created_at) FROM STDIN"
            ) as copy,
        ):
            keys = '{"science": "a", "template": "b", "difference": "c"}'
            for i in range(n_det):
                copy.write_row(
                    (
                        i + 1,
                        float(ra[i]),
                        float(dec[i]),
                        int(hp[i]),
                        float(mjd[i]),
                        float(snr[i]),
                        float(mag[i]),
                        float(conf[i]),
                        "pending",
                        keys,
                        "pipeline",
                        "{}",
                        ts,
                    )
                )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY object_members (detection_id, object_id, separation_arcsec, created_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for i in range(n_det):
                copy.write_row((i + 1, int(owner[i]) + 1, 0.3, ts))
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY curation_states (detection_id, state, score, margin, n_real, n_bogus, "
                "n_skip, "
                "version, updated_at) FROM STDIN"
            ) as copy,
        ):
            for i in range(n_det):
                state = "awaiting" if awaiting[i] else "consensus_bogus"
                copy.write_row(
                    (i + 1, state, float(conf[i]), abs(float(conf[i]) - 0.5), 0, 0, 0, 0, ts)
                )
        for table, n in (("detections", n_det), ("sky_objects", n_obj)):
            conn.execute(f"select setval('{table}_id_seq', %s)", (n,))
        conn.commit()
        conn.execute("ANALYZE")
    print(f"loaded {n_det} detections, {n_obj} objects in {time.perf_counter() - t0:.1f} s")


def tokens(url: str, n: int) -> list[str]:
    from sqlalchemy import select

    from astrid.api import ApiConfig
    from astrid.api.security import TokenService, create_user
    from astrid.store.auth_tables import User
    from astrid.store.db import Database

    db = Database(url)
    out = []
    try:
        with db.session() as s:
            service = TokenService(ApiConfig(secret_key=SECRET, access_ttl_s=3600))
            for i in range(n):
                user = s.scalar(select(User).where(User.username == f"curator{i}"))
                if user is None:
                    user = create_user(s, f"curator{i}", None, "curator")
                out.append(service.issue(user).access_token)
    finally:
        db.dispose()
    return out


def _cursor(order: str, key: float, last_id: int) -> str:
    raw = json.dumps([order, key, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def request_for(kind: str, rng: np.random.Generator, n_det: int) -> tuple[str, str, Any]:
    if kind == "queue-score":
        key = float(rng.uniform(0.05, 1.0))
        cursor = _cursor("score", key, n_det + 1)
        return "GET", f"/api/v1/scanning/queue?limit=50&cursor={cursor}", None
    if kind == "queue-uncertainty":
        key = float(rng.uniform(0.0, 0.45))
        cursor = _cursor("uncertainty", key, 0)
        return (
            "GET",
            f"/api/v1/scanning/queue?limit=50&order=uncertainty&min_snr=10&cursor={cursor}",
            None,
        )
    if kind == "vote":
        det = int(rng.integers(1, n_det + 1))
        label = "real" if rng.uniform() < 0.5 else "bogus"
        return "POST", f"/api/v1/detections/{det}/votes", {"label": label}
    raise ValueError(kind)


async def drive(
    base: str, toks: list[str], kind: str, n: int, conc: int, n_det: int
) -> dict[str, Any]:
    import httpx

    rng = np.random.default_rng(hash(kind) % 2**32)
    reqs = [request_for(kind, rng, n_det) for _ in range(n)]
    lat: list[float] = []
    errors = 0
    first_error: list[str] = []
    queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
    for r in reqs:
        queue.put_nowait(r)
    clients = [
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {toks[i]}"}, timeout=60)
        for i in range(conc)
    ]

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            method, path, body = queue.get_nowait()
            t = time.perf_counter()
            try:
                r = await client.request(method, path, json=body)
                ok = r.status_code in (200, 201)
                if not ok and not first_error:
                    first_error.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                ok = False
                first_error.append(repr(exc))
            lat.append(time.perf_counter() - t)
            errors += not ok

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    wall = time.perf_counter() - t0
    for c in clients:
        await c.aclose()
    ms = np.array(lat) * 1000
    return {
        "kind": kind,
        "requests": n,
        "errors": errors,
        "rps": round(n / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        **({"first_error": first_error[0]} if first_error else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="astrid_bench_curation")
    ap.add_argument("--detections", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=200_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--requests", type=int, default=500, help="per kind and concurrency")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--reload", action="store_true")
    args = ap.parse_args()
    url = schema_url(args.postgres_url, args.schema)
    load(args.postgres_url, args.schema, args.detections, args.objects, args.reload)
    toks = tokens(url, max([*args.concurrency, 2]))
    if not args.port:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            args.port = int(sock.getsockname()[1])
    child = subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "api_latency.py"),
            "--serve",
            "--postgres-url",
            args.postgres_url,
            "--schema",
            args.schema,
            "--port",
            str(args.port),
            "--workers",
            str(args.workers),
        ]
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{args.port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(drive(base, toks, "queue-score", 50, 2, args.detections))  # warm up
        print(
            f"{args.detections} detections, {args.objects} objects, {args.workers} uvicorn "
            f"worker(s), {args.requests} requests per kind, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        for conc in args.concurrency:
            for kind in ("queue-score", "queue-uncertainty", "vote"):
                result = asyncio.run(drive(base, toks, kind, args.requests, conc, args.detections))
                print(json.dumps({"concurrency": conc, **result}), flush=True)
    finally:
        child.terminate()
        child.wait(timeout=20)


if __name__ == "__main__":
    main()
