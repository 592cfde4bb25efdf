"""Latency of the REST API under load: list, detail and cone-search requests on PostgreSQL.

Loads N detections and M observations (COPY) into a dedicated PostgreSQL schema, starts the
API under uvicorn in a separate process on loopback, and drives it with C concurrent httpx
clients. Prints p50/p95/p99 per request kind; results go in docs/api.md.

    python benchmarks/api_latency.py --detections 1000000 --observations 100000 --concurrency 50

The schema (``astrid_bench`` by default) is kept, so later runs skip loading (``--reload``
to rebuild it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SECRET = "bench-secret-key-0123456789abcdef"
DEFAULT_PG = os.environ.get("ASTRID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def load(base: str, schema: str, n_det: int, n_obs: int, reload: bool) -> None:
    import psycopg

    from astrid.store.db import upgrade
    from astrid.store.sky_index import healpix_index

    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from information_schema.schemata where schema_name = %s", (schema,)
        ).fetchone()
        if exists and not reload:
            n = conn.execute(f'select count(*) from "{schema}".detections').fetchone()
            if n and n[0] == n_det:
                print(f"schema {schema} already holds {n_det} detections; not reloading")
                return
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = schema_url(base, schema)
    upgrade(url)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into surveys (id, name, capabilities, is_active, created_at) "
            "values (1, 'bench', '{}', true, now())"
        )
        ra = rng.uniform(0, 360, n_obs)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_obs)))
        hp = healpix_index(ra, dec)
        mjd = rng.uniform(58000, 61000, n_obs)
        statuses = rng.choice(["ingested", "preprocessed", "completed", "failed"], n_obs)
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY observations (id, survey_id, content_hash, blob_key, hdu_index, ra, dec, "
                "healpix, mjd, filter, width, height, footprint, extra, status, created_at, "
                "updated_at) FROM STDIN"
            ) as copy,
        ):
            for i in range(n_obs):
                key = f"{i:064x}"
                copy.write_row(
                    (
                        i + 1,
                        1,
                        key,
                        key,
                        0,
                        float(ra[i]),
                        float(dec[i]),
                        int(hp[i]),
                        float(mjd[i]),
                        "r",
                        2048,
                        2048,
                        "[]",
                        "{}",
                        statuses[i],
                        "2026-01-01T00:00:00+00",
                        "2026-01-01T00:00:00+00",
                    )
                )
        conn.execute("select setval('observations_id_seq', %s)", (n_obs,))
        print(f"observations: {n_obs} in {time.perf_counter() - t0:.1f} s")
        t1 = time.perf_counter()
        obs_idx = rng.integers(0, n_obs, n_det)
        dra = rng.normal(0, 0.05, n_det)
        ddec = rng.normal(0, 0.05, n_det)
        dra_ = (ra[obs_idx] + dra) % 360
        ddec_ = np.clip(dec[obs_idx] + ddec, -90, 90)
        dhp = healpix_index(dra_, ddec_)
        conf = rng.uniform(0, 1, n_det)
        snr = rng.uniform(3, 100, n_det)
        dmjd = mjd[obs_idx]
        dstat = rng.choice(["pending", "validated", "rejected"], n_det, p=[0.8, 0.15, 0.05])
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY detections (id, observation_id, ra, dec, healpix, mjd, snr, confidence, "
                "status, cutout_keys, source, extra, created_at) FROM STDIN"
            ) as copy,
        ):
            for i in range(n_det):
                copy.write_row(
                    (
                        i + 1,
                        int(obs_idx[i]) + 1,
                        float(dra_[i]),
                        float(ddec_[i]),
                        int(dhp[i]),
                        float(dmjd[i]),
                        float(snr[i]),
                        float(conf[i]),
                        dstat[i],
                        "{}",
                        "pipeline",
                        "{}",
                        "2026-01-01T00:00:00+00",
                    )
                )
        conn.execute("select setval('detections_id_seq', %s)", (n_det,))
        conn.commit()
        conn.execute("ANALYZE")
        print(f"detections: {n_det} in {time.perf_counter() - t1:.1f} s")


def _bench_app() -> Any:
    """uvicorn factory for worker processes (reads the URL from ASTRID_BENCH_URL)."""
    from astrid.api import ApiConfig, create_app
    from astrid.runtime import Runtime
    from astrid.settings import Settings

    settings = Settings(
        data_dir=Path(os.environ.get("ASTRID_BENCH_DATA", "/tmp/astrid-bench")),
        database_url=os.environ["ASTRID_BENCH_URL"],
        db_pool_size=20,
        db_max_overflow=40,
        _env_file=None,  # type: ignore[call-arg]
    )
    return create_app(Runtime(settings), ApiConfig(secret_key=SECRET, rate_limit=0))


def serve(url: str, port: int, data_dir: str, workers: int) -> None:
    """Child process: the API on loopback (rate limit off), ``workers`` uvicorn processes."""
    import uvicorn

    os.environ["ASTRID_BENCH_URL"] = url
    os.environ["ASTRID_BENCH_DATA"] = data_dir
    uvicorn.run(
        "api_latency:_bench_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
    )


def token(url: str) -> str:
    from sqlalchemy import select

    from astrid.api import ApiConfig
    from astrid.api.security import TokenService, create_user
    from astrid.store.db import Database
    from astrid.store.tables import User

    db = Database(url)
    try:
        with db.session() as s:
            user = s.scalar(select(User).where(User.username == "bench"))
            if user is None:
                user = create_user(s, "bench", None, "viewer")
            config = ApiConfig(secret_key=SECRET, access_ttl_s=3600)
            return TokenService(config).issue(user).access_token
    finally:
        db.dispose()


def requests_for(kind: str, rng: np.random.Generator, n_det: int) -> str:
    if kind == "list":
        conf = round(float(rng.uniform(0, 0.9)), 2)
        return f"/api/v1/detections?limit=50&min_confidence={conf}"
    if kind == "detail":
        return f"/api/v1/detections/{int(rng.integers(1, n_det + 1))}"
    if kind == "cone":
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        return f"/api/v1/detections?ra={ra:.5f}&dec={dec:.5f}&radius=0.5&limit=50"
    if kind == "obs-cone":
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        return f"/api/v1/observations/cone?ra={ra:.5f}&dec={dec:.5f}&radius=1"
    raise ValueError(kind)


async def drive(base: str, tok: str, kind: str, n: int, conc: int, n_det: int) -> dict[str, Any]:
    import httpx

    rng = np.random.default_rng(1)
    paths = [requests_for(kind, rng, n_det) for _ in range(n)]
    lat: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {tok}"}, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                path = queue.get_nowait()
                t = time.perf_counter()
                try:
                    r = await client.get(path)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - t)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {
        "kind": kind,
        "requests": n,
        "errors": errors,
        "rps": round(n / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="astrid_bench")
    ap.add_argument("--detections", type=int, default=1_000_000)
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--requests", type=int, default=2000, help="per request kind")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", default="/tmp/astrid-bench")
    args = ap.parse_args()
    url = schema_url(args.postgres_url, args.schema)
    if args.serve:
        serve(url, args.port, args.data_dir, args.workers)
        return
    load(args.postgres_url, args.schema, args.detections, args.observations, args.reload)
    tok = token(url)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--postgres-url",
            args.postgres_url,
            "--schema",
            args.schema,
            "--port",
            str(args.port),
            "--data-dir",
            args.data_dir,
            "--workers",
            str(args.workers),
        ]
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{args.port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(drive(base, tok, "detail", 200, 10, args.detections))  # warm up
        print(
            f"{args.detections} detections, {args.observations} observations, "
            f"{args.workers} uvicorn worker(s), {args.requests} requests per kind, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        for conc in args.concurrency:
            for kind in ("list", "detail", "cone", "obs-cone"):
                result = asyncio.run(drive(base, tok, kind, args.requests, conc, args.detections))
                print(json.dumps({"concurrency": conc, **result}))
    finally:
        child.terminate()
        child.wait(timeout=20)


if __name__ == "__main__":
    main()
