"""Shared helper of the at-scale benchmarks: seed a persistent PostgreSQL schema fast, issue
tokens, start the real API server, and drive it with ``wrk`` (Debian package).

* :func:`seed_curation` fills a schema (default ``bench_1m``) through the real migrations
  (``alembic upgrade head`` on that schema) with N detections (default 1,000,000) grouped into
  M sky objects (default 200,000): positions uniform on the sphere, every object seen at
  least once and a heavy-tailed share seen many times (median 3, a few hundred at most),
  one detection per object per night over a year of nights, P(real) bimodal (most
  candidates bogus), S/N log-normal from 5, magnitudes 17-22.5; 90 % awaiting review, the
  rest decided; about 5 % of detections carry one or two curator votes. Rows go in by
  ``COPY ... FORMAT csv`` from pandas-formatted blocks (a minute or two for 1M rows on a
  quiet machine). A schema already holding the requested sizes is reused (``reseed=True``
  rebuilds it).
* :func:`seed_catalog` fills a schema (default ``bench_1m_catalog``) with N confirmed
  objects and their catalog entries (the export benchmark's 1,000,000 rows: one entry per
  object, so it cannot share the 200,000-object schema).
* :func:`serve` starts ``astrid serve`` (or ``uvicorn --factory
  astrid.api.app:app_from_settings --workers W`` for several worker processes) on that
  schema, with the rate limit off; :func:`wrk` runs the load tool over a list of requests
  (written to a Lua script, cycled; tokens rotate per request) and returns p50/p95/p99.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PG",
    "SECRET",
    "curator_tokens",
    "cursor_for",
    "free_port",
    "schema_url",
    "seed_catalog",
    "seed_curation",
    "serve",
    "wrk",
]

SECRET = "bench-secret-key-0123456789abcdef"
DEFAULT_PG = os.environ.get("ASTRID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The server's source (ASTRID_BENCH_SRC: another checkout's src, for before/after runs).
SERVER_PIDS: dict[str, int] = {}  # base URL -> pid of the `astrid serve` process (serve())
SRC = os.environ.get("ASTRID_BENCH_SRC") or str(Path(__file__).resolve().parents[1] / "src")
TS0 = "2026-01-01T00:00:00+00"
N_CURATORS = 50


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``search_path`` set to ``schema`` (every connection of the pool)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def _fresh_schema(base: str, schema: str, table: str, key: str, n: int, reseed: bool) -> bool:
    """True when the schema was (re)created and must be filled; False when reusable."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
            (schema, table),
        ).fetchone()
        if exists and not reseed:
            # max of the primary key (ids 1..n): an index probe, not a count of 1M rows
            got = conn.execute(f'select max("{key}") from "{schema}"."{table}"').fetchone()
            if got and got[0] == n:
                print(f"schema {schema}: {table} already holds {n} rows; reused (--reseed)")
                from astrid.store.db import upgrade

                upgrade(schema_url(base, schema))  # a newer checkout's migrations, if any
                vacuum(conn, schema, only_if_needed=True)  # seeded before the seed vacuumed
                return False
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    from astrid.store.db import upgrade

    upgrade(schema_url(base, schema))
    return True


def vacuum(conn: Any, schema: str, only_if_needed: bool = False) -> None:
    """``VACUUM (ANALYZE)`` the seeded tables of ``schema`` (``conn`` in autocommit).

    Autovacuum may be off (it is on the benchmark machine), and a table filled by ``COPY``
    has no visibility map until vacuumed: index-only scans then read the heap, one page per
    row (a cone search around a source seen 31,000 times read 18,000 pages, 0.3-1 s, where
    the covering HEALPix index alone answers it in ~20 ms). Production tables are kept by
    autovacuum. ``only_if_needed``: only the tables less than 90 % all-visible.
    """
    rows = conn.execute(
        "SELECT c.relname, c.relallvisible, c.relpages FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND c.relpages > 0",
        (schema,),
    ).fetchall()
    for name, visible, pages in rows:
        if not only_if_needed or visible < 0.9 * pages:
            conn.execute(f'VACUUM (ANALYZE) "{schema}"."{name}"')


def _copy(conn: Any, table: str, frame: Any, block: int = 200_000) -> None:
    """COPY a pandas frame (columns named as the table's) in CSV blocks."""
    cols = ", ".join(frame.columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        for start in range(0, len(frame), block):
            buf = io.StringIO()
            frame.iloc[start : start + block].to_csv(buf, header=False, index=False)
            cp.write(buf.getvalue())


def _iso(mjd: np.ndarray) -> Any:
    import pandas as pd

    ts = pd.to_datetime((mjd - 40587.0) * 86400.0, unit="s", utc=True)
    return ts.strftime("%Y-%m-%dT%H:%M:%S+00")


def seed_curation(
    base: str = DEFAULT_PG,
    schema: str = "bench_1m",
    n_det: int = 1_000_000,
    n_obj: int = 200_000,
    reseed: bool = False,
    seed: int = 0,
) -> None:
    """Fill ``schema`` with detections, objects, curation states and votes (see module)."""
    import pandas as pd
    import psycopg

    from astrid.api.security import hash_password
    from astrid.store.sky_index import healpix_index

    if not _fresh_schema(base, schema, "curation_states", "detection_id", n_det, reseed):
        return
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_nights, fields_per_night = 365, 60
    # Objects on the sphere; detections: one per object at first, the rest heavy-tailed.
    ora = rng.uniform(0, 360, n_obj)
    odec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_obj)))
    weight = rng.pareto(1.2, n_obj) + 0.05
    extra = rng.choice(n_obj, n_det - n_obj, p=weight / weight.sum())
    owner = np.sort(np.concatenate([np.arange(n_obj), extra]))
    rng.shuffle(owner)  # detection ids in time-ish random order, not grouped by object
    counts = np.bincount(owner, minlength=n_obj)
    night = rng.integers(0, n_nights, n_det)
    mjd = 60000.5 + night + rng.uniform(0, 0.3, n_det)
    sig = 0.3 / 3600
    ra = (
        ora[owner] + rng.normal(0, sig, n_det) / np.maximum(np.cos(np.radians(odec[owner])), 1e-3)
    ) % 360
    dec = np.clip(odec[owner] + rng.normal(0, sig, n_det), -90, 90)
    real = rng.uniform(0, 1, n_det) < 0.15
    conf = np.where(real, rng.beta(8, 1.5, n_det), rng.beta(1.2, 8, n_det))
    snr = 5 + rng.lognormal(1.5, 0.8, n_det)
    mag = rng.uniform(17, 22.5, n_det)
    awaiting = rng.uniform(0, 1, n_det) < 0.9
    decided = np.where(conf > 0.5, "consensus_real", "consensus_bogus")
    state = np.where(awaiting, "awaiting", decided)
    obs_id = night * fields_per_night + rng.integers(0, fields_per_night, n_det) + 1
    n_obs = n_nights * fields_per_night
    with psycopg.connect(schema_url(base, schema)) as conn:
        conn.execute(
            "insert into surveys (id, name, capabilities, is_active, created_at) "
            "values (1, 'ZTF', '{}', true, now())"
        )
        o_night = np.arange(n_obs) // fields_per_night
        o_ra, o_dec = rng.uniform(0, 360, n_obs), np.degrees(np.arcsin(rng.uniform(-1, 1, n_obs)))
        o_mjd = 60000.5 + o_night
        o_ts = _iso(o_mjd)
        _copy(
            conn,
            "observations",
            pd.DataFrame(
                {
                    "id": np.arange(1, n_obs + 1),
                    "survey_id": 1,
                    "content_hash": [f"{i:064x}" for i in range(n_obs)],
                    "blob_key": [f"obs/{i:064x}" for i in range(n_obs)],
                    "hdu_index": 0,
                    "ra": o_ra,
                    "dec": o_dec,
                    "healpix": healpix_index(o_ra, o_dec),
                    "mjd": o_mjd,
                    "filter": "r",
                    "width": 3072,
                    "height": 3080,
                    "footprint": "[]",
                    "extra": "{}",
                    "status": "completed",
                    "created_at": o_ts,
                    "updated_at": o_ts,
                }
            ),
        )
        # Object summaries from their detections.
        order = np.argsort(owner, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first = np.minimum.reduceat(mjd[order], starts)
        last = np.maximum.reduceat(mjd[order], starts)
        peak = np.minimum.reduceat(mag[order], starts)
        maxc = np.maximum.reduceat(conf[order], starts)
        created = _iso(first)
        _copy(
            conn,
            "sky_objects",
            pd.DataFrame(
                {
                    "id": np.arange(1, n_obj + 1),
                    "ra": ora,
                    "dec": odec,
                    "healpix": healpix_index(ora, odec),
                    "sx": 0.0,
                    "sy": 0.0,
                    "sz": 0.0,
                    "weight": counts.astype(float),
                    "first_mjd": first,
                    "last_mjd": last,
                    "peak_mag": peak,
                    "latest_mag": peak + 0.4,
                    "max_confidence": maxc,
                    "n_detections": counts,
                    "aliases": "[]",
                    "created_at": created,
                    "updated_at": created,
                }
            ),
        )
        print(f"  observations + objects: {time.perf_counter() - t0:.0f} s", flush=True)
        keys = json.dumps({"science": "s", "template": "t", "difference": "d"})
        d_ts = _iso(mjd)
        ids = np.arange(1, n_det + 1)
        label = np.where(awaiting, None, np.where(conf > 0.5, "real", "bogus"))
        _copy(
            conn,
            "detections",
            pd.DataFrame(
                {
                    "id": ids,
                    "observation_id": obs_id,
                    "model_version": "bench-1",
                    "ra": ra,
                    "dec": dec,
                    "healpix": healpix_index(ra, dec),
                    "mjd": mjd,
                    "snr": snr,
                    "mag": mag,
                    "confidence": conf,
                    "status": np.where(awaiting, "pending", "validated"),
                    "label": label,
                    "cutout_keys": keys,
                    "source": "pipeline",
                    "extra": "{}",
                    "created_at": d_ts,
                }
            ),
        )
        print(f"  detections: {time.perf_counter() - t0:.0f} s", flush=True)
        _copy(
            conn,
            "object_members",
            pd.DataFrame(
                {
                    "detection_id": ids,
                    "object_id": owner + 1,
                    "separation_arcsec": np.abs(rng.normal(0, 0.3, n_det)),
                    "created_at": d_ts,
                }
            ),
        )
        # Votes: ~5 % of detections, one or two curators agreeing with the decided label.
        pw = hash_password("bench-password")
        conn.cursor().executemany(
            "insert into users (id, username, password_hash, role, is_active, created_at) "
            "values (%s, %s, %s, %s, true, now())",
            [(i + 1, f"curator{i}", pw, "curator") for i in range(N_CURATORS)],
        )
        conn.execute("select setval('users_id_seq', %s)", (N_CURATORS,))
        voted = np.flatnonzero(rng.uniform(0, 1, n_det) < 0.05)
        two = rng.uniform(0, 1, len(voted)) < 0.5
        v_det = np.concatenate([voted, voted[two]])
        v_user = np.concatenate(
            [
                rng.integers(0, N_CURATORS // 2, len(voted)),
                rng.integers(N_CURATORS // 2, N_CURATORS, int(two.sum())),
            ]
        )
        v_label = np.where(conf[v_det] > 0.5, "real", "bogus")
        _copy(
            conn,
            "votes",
            pd.DataFrame(
                {
                    "id": np.arange(1, len(v_det) + 1),
                    "detection_id": v_det + 1,
                    "user_id": v_user + 1,
                    "role": "curator",
                    "label": v_label,
                    "state": "active",
                    "created_at": d_ts[v_det],
                }
            ),
        )
        conn.execute("select setval('votes_id_seq', %s)", (len(v_det),))
        n_votes = np.bincount(v_det, minlength=n_det)
        is_real = conf > 0.5
        _copy(
            conn,
            "curation_states",
            pd.DataFrame(
                {
                    "detection_id": ids,
                    "state": state,
                    "label": label,
                    "score": conf,
                    "margin": np.abs(conf - 0.5),
                    "n_real": np.where(is_real, n_votes, 0),
                    "n_bogus": np.where(is_real, 0, n_votes),
                    "n_skip": 0,
                    "version": n_votes,
                    "updated_at": d_ts,
                }
            ),
        )
        for table, n in (("detections", n_det), ("sky_objects", n_obj), ("observations", n_obs)):
            conn.execute(f"select setval('{table}_id_seq', %s)", (n,))
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
        conn.autocommit = True
        vacuum(conn, schema)
    print(
        f"seeded {schema}: {n_det} detections, {n_obj} objects ({int((counts > 1).sum())} seen "
        f"more than once), {len(v_det)} votes in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )


def seed_catalog(
    base: str = DEFAULT_PG,
    schema: str = "bench_1m_catalog",
    n: int = 1_000_000,
    reseed: bool = False,
    seed: int = 42,
) -> None:
    """Fill ``schema`` with ``n`` confirmed objects and their catalog entries."""
    import pandas as pd
    import psycopg

    from astrid.store.sky_index import healpix_index

    if not _fresh_schema(base, schema, "catalog_entries", "id", n, reseed):
        return
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    hp = healpix_index(ra, dec)
    mag = rng.uniform(15, 22, n)
    first = rng.uniform(60000, 60365, n)
    last = first + rng.exponential(20, n)
    ndet = 1 + rng.geometric(0.3, n)
    classes = np.array(
        ["transient/supernova/Ia", "transient/supernova/II", "variable_star", "agn"]
    )[rng.integers(0, 4, n)]
    ts = _iso(first)
    ids = np.arange(1, n + 1)
    with psycopg.connect(schema_url(base, schema)) as conn:
        _copy(
            conn,
            "sky_objects",
            pd.DataFrame(
                {
                    "id": ids,
                    "ra": ra,
                    "dec": dec,
                    "healpix": hp,
                    "sx": 0.0,
                    "sy": 0.0,
                    "sz": 0.0,
                    "weight": 1.0,
                    "first_mjd": first,
                    "last_mjd": last,
                    "peak_mag": mag,
                    "latest_mag": mag + 0.3,
                    "max_confidence": 0.9,
                    "n_detections": ndet,
                    "aliases": "[]",
                    "label": "real",
                    "classification": classes,
                    "created_at": ts,
                    "updated_at": ts,
                }
            ),
        )
        _copy(
            conn,
            "catalog_entries",
            pd.DataFrame(
                {
                    "object_id": ids,
                    "name": [f"AstrID B{i:07d}" for i in range(n)],
                    "ra": ra,
                    "dec": dec,
                    "healpix": hp,
                    "classification": classes,
                    "n_detections": ndet,
                    "first_mjd": first,
                    "last_mjd": last,
                    "peak_mag": mag,
                    "latest_mag": mag + 0.3,
                    "max_score": 0.9,
                    "importance": rng.integers(1, 6, n),
                    "annotations": [
                        json.dumps({"star": {"name": f"G{i}", "separation_arcsec": 2.1}})
                        for i in range(n)
                    ],
                    "created_at": ts,
                    "updated_at": ts,
                }
            ),
        )
        conn.commit()
        conn.autocommit = True
        vacuum(conn, schema)
    print(f"seeded {schema}: {n} catalog entries in {time.perf_counter() - t0:.0f} s", flush=True)


def curator_tokens(url: str, n: int, role: str = "curator") -> list[str]:
    """Access tokens (1 h) for users curator0..curator{n-1}, created when missing."""
    from sqlalchemy import select

    from astrid.api import ApiConfig
    from astrid.api.security import TokenService, create_user
    from astrid.store.db import Database
    from astrid.store.tables import User

    db = Database(url)
    service = TokenService(ApiConfig(secret_key=SECRET, access_ttl_s=3600))
    out = []
    try:
        with db.session() as s:
            for i in range(n):
                user = s.scalar(select(User).where(User.username == f"curator{i}"))
                if user is None:
                    user = create_user(s, f"curator{i}", None, role)
                out.append(service.issue(user).access_token)
    finally:
        db.dispose()
    return out


def cursor_for(order: str, key: float, last_id: int) -> str:
    """A scanning-queue cursor (as the API encodes its ``next_cursor``) at a keyset position."""
    import base64

    raw = json.dumps([order, key, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    url: str, workers: int = 1, pool_size: int = 10, launcher: str = "astrid"
) -> Iterator[str]:
    """The real API server on a free loopback port; yields its base URL.

    ``launcher="astrid"``: ``python -m astrid serve --workers W`` (what operators run,
    notifications thread included); ``"uvicorn"``: uvicorn's own CLI with ``--workers W``
    over the documented factory; ``"uvicorn-asyncio"``: the same on the stdlib event loop
    and h11 (the launch that showed the flat ~45 ms per request).
    """
    import httpx

    port = free_port()
    data = tempfile.mkdtemp(prefix="astrid-bench-")
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "ASTRID_DATA_DIR": data,
        "ASTRID_DATABASE_URL": url,
        "ASTRID_SECRET_KEY": SECRET,
        "ASTRID_API_RATE_LIMIT": "0",
        "ASTRID_DB_POOL_SIZE": str(pool_size),
    }
    if launcher == "astrid":
        cmd = [sys.executable, "-m", "astrid", "serve", "--port", str(port)]
        cmd += ["--log-level", "warning"] + (["--workers", str(workers)] if workers > 1 else [])
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "astrid.api.app:app_from_settings"]
        cmd += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
        if launcher == "uvicorn-asyncio":  # as before uvloop/httptools (the serve extra)
            cmd += ["--loop", "asyncio", "--http", "h11"]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if child.poll() is not None:
                raise RuntimeError(f"server exited with {child.returncode}")
            try:
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        SERVER_PIDS[base] = child.pid
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(data, ignore_errors=True)


# wrk's own percentiles are corrected for coordinated omission: each request slower than
# the mean interval per connection adds made-up samples at that interval, as if an
# open-loop client had kept sending (one 290 ms stall at one client became ~145 samples).
# The script also times every request itself: the request id (``X-Request-ID``, which the
# API echoes) pairs a response with the moment ``request()`` built it, which wrk does right
# before writing it (``c->start``), read from CLOCK_MONOTONIC through LuaJIT's ffi. Those
# ``own`` percentiles are the latencies the 50 closed-loop clients actually saw.
_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } astrid_ts;
int clock_gettime(int clk, astrid_ts *tp);
]]
local ts = ffi.new("astrid_ts[1]")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts[0].tv_sec) * 1e6 + tonumber(ts[0].tv_nsec) / 1e3
end
local reqs = {%s}
local toks = {%s}
local i = 0
local started = {}
lat = {}
local threads = {}
setup = function(thread) table.insert(threads, thread) end
request = function()
  i = i + 1
  local r = reqs[(i %% #reqs) + 1]
  local id = "bench-" .. i
  local h = {["Authorization"] = "Bearer " .. toks[(i %% #toks) + 1], ["X-Request-ID"] = id}
  if r[2] then h["Content-Type"] = "application/json" end
  started[id] = now_us()
  return wrk.format(r[1], r[3], h, r[2])
end
response = function(status, headers, body)
  local id = headers["x-request-id"] or headers["X-Request-ID"]
  local t = id and started[id]
  if t then
    lat[#lat + 1] = now_us() - t
    started[id] = nil
  end
end
local function pct(all, p)
  if #all == 0 then return 0 end
  return all[math.max(1, math.ceil(p / 100 * #all))] / 1e3
end
done = function(summary, latency, requests)
  local e = summary.errors
  local all = {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("lat")) do all[#all + 1] = v end
  end
  table.sort(all)
  io.write(string.format('WRKJSON {"requests": %%d, "seconds": %%.3f, "non2xx": %%d, '
    .. '"socket_errors": %%d, "p50_ms": %%.2f, "p95_ms": %%.2f, "p99_ms": %%.2f, '
    .. '"mean_ms": %%.2f, "max_ms": %%.2f, "own_n": %%d, "own_p50_ms": %%.2f, '
    .. '"own_p95_ms": %%.2f, "own_p99_ms": %%.2f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3, #all, pct(all, 50), pct(all, 95), pct(all, 99)))
end
"""


def _lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal here


TICK = os.sysconf("SC_CLK_TCK")  # clock ticks per second of /proc/PID/stat's CPU times


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (a PostgreSQL backend)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class CpuProbe:
    """CPU seconds (user + system) used by a served API and by its PostgreSQL backends.

    The API: the ``astrid serve`` process and its workers. PostgreSQL: the backends whose
    client ports are the API processes' connections to port 5432, found through
    ``pg_stat_activity`` at each sample (a backend first seen at the end of a run counts
    from its start). Other engineers' processes are not counted, so the figures hold on a
    shared machine, unlike wall-time latency.
    """

    def __init__(self, base: str, pg_url: str) -> None:
        import psutil

        self.root = psutil.Process(SERVER_PIDS[base])
        self.pg_url = pg_url

    def _api(self) -> tuple[float, list[Any]]:
        procs = [self.root, *self.root.children(recursive=True)]
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # a worker that just exited
                continue
        return total, procs

    def sample(self) -> tuple[float, dict[int, float]]:
        """(API CPU seconds, {backend pid: its CPU seconds})."""
        import psutil
        import psycopg

        api, procs = self._api()
        ports = []
        for p in procs:
            try:
                ports += [
                    c.laddr.port
                    for c in p.net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == 5432
                ]
            except Exception:
                continue
        backends: dict[int, float] = {}
        with psycopg.connect(self.pg_url.split("?")[0], autocommit=True) as conn:
            pids = [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
                )
            ]
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
                backends[pid] = t.user + t.system
            except Exception:
                continue
        return api, backends

    @staticmethod
    def used(
        start: tuple[float, dict[int, float]], end: tuple[float, dict[int, float]]
    ) -> tuple[float, float]:
        """(API, PostgreSQL) CPU seconds between two samples."""
        pg = sum(v - start[1].get(pid, 0.0) for pid, v in end[1].items())
        return end[0] - start[0], pg


def wrk(
    base: str,
    requests: Sequence[tuple[str, str, Any]],
    tokens: Sequence[str],
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """Run ``wrk`` with ``connections`` connections (one thread) for ``seconds``.

    ``requests`` are (method, path, JSON body or None), cycled; tokens rotate per request.
    Returns requests/s, p50/p95/p99 in ms and the count of non-2xx answers.
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    rows = ",".join(
        "{"
        + ",".join((_lua_str(m), "nil" if b is None else _lua_str(json.dumps(b)), _lua_str(p)))
        + "}"
        for m, p, b in requests
    )
    script = _LUA % (rows, ",".join(_lua_str(t) for t in tokens))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        proc = subprocess.run(
            [
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                fh.name,
                base,
            ],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr.strip() or proc.stdout.strip()}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("WRKJSON "))
    out: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    out["rps"] = round(out["requests"] / out["seconds"], 1)
    return out
