"""Dashboard speed in a real browser (Debian's Chromium under Playwright) on loopback.

Seeds a SQLite database with the demo's pipeline run (one field, three epochs) plus N
synthetic detections in the scanning queue (each pointing at a real stamp triplet, so every
candidate has three images to fetch), starts ``astrid serve`` with the built dashboard, and
measures:

* keypress → next candidate fully drawn (``j`` dispatched, the new candidate's three
  images decoded and a frame painted), p50 / p95 over ``--presses`` keys;
* first load of ``/scan`` (navigation start → first candidate's images drawn), fresh
  browser context each time (empty cache), median and max over ``--loads``;
* the compressed (gzip -9) JavaScript the ``/scan`` route loads (web/out/scan.html's scripts).

    python benchmarks/dashboard_latency.py --synthetic 100000 --presses 100 --loads 5

Needs ``make web`` first and /usr/bin/chromium. Results go in docs/dashboard.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "web" / "out"
SECRET = "bench-secret-key-0123456789abcdef0123456789"
USER, PASSWORD = "bench-curator", "bench curator password"

# Resolves once the candidate shown differs from `before` and its images are decoded, one
# frame later (the frame that shows it).
DRAWN_JS = """
(before) => new Promise((resolve) => {
  const t0 = performance.now();
  const step = () => {
    const el = document.querySelector('[data-testid=candidate]');
    const id = el && el.getAttribute('data-detection-id');
    const imgs = el ? [...el.querySelectorAll('img')] : [];
    const waiting = el ? el.querySelectorAll('[data-testid$=-missing]').length : 1;
    const ready = imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    if (id && id !== String(before) && ready && waiting === 0) {
      requestAnimationFrame(() => resolve(performance.now() - t0));
    } else requestAnimationFrame(step);
  };
  if (before !== null) {
    document.body.dispatchEvent(new KeyboardEvent('keydown', { key: 'j', bubbles: true }));
  }
  step();
})
"""


def seed(data_dir: Path, n_synthetic: int) -> str:
    """Demo pipeline run + ``n_synthetic`` queued detections; returns the database URL."""
    from sqlalchemy import insert, select

    from astrid.api.security import create_user
    from astrid.pipeline.demo import run_demo
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade
    from astrid.store.sky_index import healpix_index
    from astrid.store.tables import CurationState, Detection

    url = f"sqlite:///{data_dir / 'astrid.db'}"
    upgrade(url)
    runtime = Runtime(Settings(data_dir=data_dir, database_url=url, _env_file=None))  # type: ignore[call-arg]
    try:
        run_demo(runtime, n_fields=1, n_epochs=3, report=False, alerts=False)
        rng = np.random.default_rng(7)
        with runtime.db.session() as session:
            stamps = [k for k in session.scalars(select(Detection.cutout_keys)) if k]
            create_user(session, USER, PASSWORD, "curator")
        ra = rng.uniform(0, 360, n_synthetic)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_synthetic)))
        conf = rng.beta(0.5, 0.5, n_synthetic)
        pix = np.asarray(healpix_index(ra, dec))
        start = time.perf_counter()
        for lo in range(0, n_synthetic, 20_000):
            hi = min(lo + 20_000, n_synthetic)
            with runtime.db.session() as session:
                rows = [
                    {
                        "ra": float(ra[i]),
                        "dec": float(dec[i]),
                        "healpix": int(pix[i]),
                        "mjd": 60000.0 + float(i % 300),
                        "snr": float(5 + 50 * conf[i]),
                        "mag": float(21 - 4 * conf[i]),
                        "confidence": float(conf[i]),
                        "cutout_keys": stamps[i % len(stamps)],
                        "source": "pipeline",
                        "extra": {},
                    }
                    for i in range(lo, hi)
                ]
                ids = session.scalars(insert(Detection).returning(Detection.id), rows).all()
                session.execute(
                    insert(CurationState),
                    [
                        {
                            "detection_id": d,
                            "score": r["confidence"],
                            "margin": abs(r["confidence"] - 0.5),
                        }
                        for d, r in zip(ids, rows, strict=True)
                    ],
                )
        print(f"seeded {n_synthetic} synthetic detections in {time.perf_counter() - start:.1f} s")
    finally:
        runtime.close()
    return url


def scan_js_bytes() -> tuple[int, int, int]:
    """(files, raw bytes, gzip -9 bytes) of the scripts /scan loads."""
    html = (OUT / "scan.html").read_text()
    srcs = sorted(set(re.findall(r'<script[^>]+src="([^"]+\.js)"', html)))
    raw = [(OUT / s.lstrip("/")).read_bytes() for s in srcs]
    return len(raw), sum(map(len, raw)), sum(len(gzip.compress(b, 9)) for b in raw)


def serve(data_dir: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "ASTRID_DATA_DIR": str(data_dir),
        "ASTRID_DATABASE_URL": url,
        "ASTRID_SECRET_KEY": SECRET,
        "ASTRID_API_RATE_LIMIT": "0",
        "ASTRID_DASHBOARD_DIR": str(OUT),
    }
    cmd = [sys.executable, "-m", "astrid", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("astrid serve did not start")


def measure(base: str, presses: int, loads: int, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    token = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": USER, "password": PASSWORD}, timeout=30
    ).json()
    session = (
        f'{{"access":"{token["access_token"]}","refresh":"{token["refresh_token"]}",'
        f'"username":"{USER}","role":"curator"}}'
    )
    init = f"localStorage.setItem('astrid.session', {session!r})"
    first: list[float] = []
    steps: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for k in range(loads):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.add_init_script(init)
            page = ctx.new_page()
            page.goto(f"{base}/scan")
            page.evaluate(DRAWN_JS, None)  # first candidate drawn
            first.append(page.evaluate("performance.now()"))
            if k == loads - 1:
                page.wait_for_timeout(1000)  # let the prefetch of the next candidates start
                for _ in range(presses):
                    before = page.get_attribute("[data-testid=candidate]", "data-detection-id")
                    steps.append(page.evaluate(DRAWN_JS, before))
                    page.wait_for_timeout(150)  # a fast scanner: ~6 candidates a second
            ctx.close()
        browser.close()
    return {"first": first, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not (OUT / "scan.html").is_file():
        raise SystemExit("the dashboard is not built: run `make web` first")
    n, raw, gz = scan_js_bytes()
    print(f"/scan JavaScript: {n} files, {raw / 1024:.0f} kB raw, {gz / 1024:.0f} kB gzip -9")
    with tempfile.TemporaryDirectory(prefix="astrid-dash-") as tmp:
        data_dir = Path(tmp)
        url = seed(data_dir, args.synthetic)
        proc, base = serve(data_dir, url)
        try:
            got = measure(base, args.presses, args.loads, args.chromium)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    steps = np.array(got["steps"])
    print(
        f"keypress -> next candidate drawn ({len(steps)} presses): "
        f"p50 {np.percentile(steps, 50):.1f} ms, p95 {np.percentile(steps, 95):.1f} ms, "
        f"max {steps.max():.1f} ms"
    )
    first = got["first"]
    print(
        f"first load of /scan ({len(first)} fresh contexts): median "
        f"{statistics.median(first):.0f} ms, max {max(first):.0f} ms"
    )


if __name__ == "__main__":
    main()
