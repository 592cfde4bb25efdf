"""Time of ``GET /api/v1/queues`` and ``GET /api/v1/workers`` with many finished stage runs.

Loads N stage runs finished over the last 24 h (10 % parked) and W worker rows into a
fresh SQLite file (or a PostgreSQL schema with ``--postgres URL``), then times the two
routes through the app in process (TestClient, no network), best and median of R calls.
Results go in docs/operations.md.

    python benchmarks/ops_queues.py --runs 10000,100000 --workers 20 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="10000,100000")
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--postgres", default=None, help="PostgreSQL URL (a schema is made)")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import insert

    from astrid.api import ApiConfig, create_app
    from astrid.api.security import TokenService, create_user
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade
    from astrid.store.tables import StageRun, WorkerProcess, utcnow

    print("| stage runs (24 h) | backend | GET /queues best / median (ms) | GET /workers (ms) |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.runs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            if args.postgres:
                import psycopg

                schema = f"astrid_bq_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(args.postgres, autocommit=True) as c:
                    c.execute(f'CREATE SCHEMA "{schema}"')
                url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            else:
                url = f"sqlite:///{Path(tmp) / 'b.db'}"
            upgrade(url)
            rt = Runtime(Settings(data_dir=Path(tmp), database_url=url, _env_file=None))  # type: ignore[call-arg]
            now = utcnow()
            rng = np.random.default_rng(1)
            ages = rng.uniform(0, 86400, n)
            rows = [
                {
                    "key": f"{i:064x}",
                    "stage": "detect",
                    "stage_version": "1",
                    "params_hash": "p",
                    "input_hash": f"{i}",
                    "params": {},
                    "inputs": {},
                    "result": {},
                    "attempts": 1,
                    "status": "failed" if i % 10 == 0 else "succeeded",
                    "error": "boom" if i % 10 == 0 else None,
                    "finished_at": now - timedelta(seconds=float(ages[i])),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ]
            with rt.db.session() as s:
                for k in range(0, n, 5000):
                    s.execute(insert(StageRun), rows[k : k + 5000])
                for w in range(args.workers):
                    s.add(WorkerProcess(id=f"h:{w}", host="h", pid=w, queues=["astrid"]))
                user = create_user(s, "bench", None, "viewer")
                s.flush()
                config = ApiConfig(secret_key="bench-secret-key-0123456789abcdef", rate_limit=0)
                token = TokenService(config).issue(user).access_token
            client = TestClient(create_app(rt, config))
            headers = {"Authorization": f"Bearer {token}"}

            def timed(
                path: str, client: TestClient = client, headers: dict = headers
            ) -> list[float]:
                out = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    r = client.get(path, headers=headers)
                    out.append(1000 * (time.perf_counter() - t0))
                    assert r.status_code == 200, r.text
                return out

            q, w = timed("/api/v1/queues"), timed("/api/v1/workers")
            backend = "postgres" if args.postgres else "sqlite"
            print(
                f"| {n} | {backend} | {min(q):.0f} / {statistics.median(q):.0f} "
                f"| {statistics.median(w):.0f} |",
                flush=True,
            )
            client.close()
            rt.close()
            if args.postgres:
                with psycopg.connect(args.postgres, autocommit=True) as c:
                    c.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
