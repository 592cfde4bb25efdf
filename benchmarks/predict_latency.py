"""Latency of ``POST /api/v1/models/{name}/predict``: p50/p95 for 1 and 32 triplets.

Starts ``astrid serve`` (one uvicorn process, as a user runs it) on loopback over a fresh
SQLite database, logs in a viewer with a password, and sends ``--n`` sequential requests of
1 and of 32 raw ZTF-sized triplets (3 x 63 x 63, ``.npy`` body; also JSON for 1) to the
shipped default model (``name = default``). Results go in docs/model.md.

    python benchmarks/predict_latency.py --n 200
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789abcdef0123"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _triplets(n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:63, 0:63] - 31
    blob = 300.0 * np.exp(-0.5 * (xx**2 + yy**2) / 2.0**2)
    out = rng.normal(100.0, 5.0, (n, 3, 63, 63))
    out[:, 0] += blob
    out[:, 2] += blob - 100.0
    return out


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float32))
    return buf.getvalue()


def _percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="Requests per case.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from astrid.api.security import create_user
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade

    data = Path(tempfile.mkdtemp(prefix="astrid-predict-bench-"))
    url = f"sqlite:///{data / 'astrid.db'}"
    upgrade(url)
    settings = Settings(data_dir=data, database_url=url, _env_file=None)  # type: ignore[call-arg]
    runtime = Runtime(settings)
    with runtime.db.session() as s:
        create_user(s, "bench", "bench password 123", "viewer")
    runtime.close()
    port = _port()
    env = {
        **os.environ,
        "ASTRID_DATA_DIR": str(data),
        "ASTRID_DATABASE_URL": url,
        "ASTRID_SECRET_KEY": SECRET,
        "ASTRID_API_RATE_LIMIT": "0",
        "PYTHONPATH": str(ROOT / "src"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "astrid", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("astrid serve did not start")
            time.sleep(0.3)
        tok = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "bench", "password": "bench password 123"},
        ).json()["access_token"]
        rng = np.random.default_rng(0)
        with httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {tok}"}, timeout=60
        ) as client:
            one, many = _triplets(1, rng), _triplets(32, rng)
            cases = {
                "1 triplet, .npy": (_npy(one), "application/octet-stream"),
                "1 triplet, JSON": (
                    json.dumps({"triplets": one.round(3).tolist()}).encode(),
                    "application/json",
                ),
                "32 triplets, .npy": (_npy(many), "application/octet-stream"),
            }
            for name, (body, ctype) in cases.items():
                for _ in range(5):  # warm-up (loads the model once)
                    r = client.post(
                        "/models/default/predict", content=body, headers={"content-type": ctype}
                    )
                    r.raise_for_status()
                times = []
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    r = client.post(
                        "/models/default/predict", content=body, headers={"content-type": ctype}
                    )
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                print(f"{name:<20} {len(body) / 1024:7.0f} KiB  {_percentiles(times)}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
