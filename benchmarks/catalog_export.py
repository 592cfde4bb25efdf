"""Catalog export throughput and memory, cone-search latency, and notification latency.

Seeds N catalog entries (default 1,000,000; objects + entries, COPY, by
``benchmarks/_scale.py``) into the persistent schema ``bench_1m_catalog``, then:

* exports the live catalog to each format (CSV, JSON, VOTable, FITS) in a fresh child
  process per format, reporting rows/s and the child's peak RSS (``ru_maxrss``) next to its
  RSS before the export (imports included);
* runs catalog cone searches (radius 1 arcmin, random centres): p50/p95 latency;
* stores detections with their outbox event while a :class:`NotifyWorker` (poll 1 s, the
  default) runs against a real SMTP server (aiosmtpd) on loopback, and measures the time
  from the detection's commit to the message being accepted by the server.

    python benchmarks/catalog_export.py --entries 1000000

Entries carry no light-curve points here (the export of light curves is the same code on a
second table). The schema is kept and reused; ``--reload`` rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _scale import DEFAULT_PG, schema_url, seed_catalog


def _peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM (reset by exec), else ru_maxrss.

    ``ru_maxrss`` survives ``execve`` on Linux, so a child started by a large parent would
    report the parent's peak; VmHWM belongs to the new address space.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_export(url: str, fmt: str) -> None:
    """In a fresh process: export the live catalog to a temp file; print JSON figures."""
    from astrid.catalog.export import iter_export
    from astrid.catalog.releases import LiveSource
    from astrid.store.db import Database

    db = Database(url)
    source = LiveSource(db)
    n = source.n_entries()
    rss_before = _peak_rss_mb()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    size = 0
    with tempfile.TemporaryFile() as fh:
        for chunk in iter_export(source, fmt):
            fh.write(chunk)
            size += len(chunk)
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {
                "format": fmt,
                "rows": n,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "bytes": size,
                "rss_before_mb": rss_before,
                "peak_rss_mb": peak,
            }
        )
    )


def cone_latency(url: str, n: int) -> list[float]:
    from astrid.catalog.entries import CatalogQuery, search_entries
    from astrid.store.db import Database

    db = Database(url)
    rng = np.random.default_rng(7)
    times = []
    for _ in range(n):
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        t0 = time.perf_counter()
        with db.session() as s:
            search_entries(s, CatalogQuery(ra=ra, dec=dec, radius=1 / 60), limit=50)
        times.append((time.perf_counter() - t0) * 1000)
    db.dispose()
    return times


def notify_latency(url: str, repeats: int) -> list[float]:
    from aiosmtpd.controller import Controller

    from astrid.domain.events import EventType, record_event
    from astrid.notify.dispatcher import NotifyWorker
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.sky_index import healpix_index
    from astrid.store.tables import (
        Detection,
        DomainEvent,
        NotificationAttempt,
        NotificationDelivery,
        NotificationRule,
    )

    arrived: list[float] = []
    got = threading.Event()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            arrived.append(time.perf_counter())
            got.set()
            return "250 OK"

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    tmp = tempfile.mkdtemp()
    runtime = Runtime(
        Settings(
            data_dir=Path(tmp),
            database_url=url,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_tls="off",
            _env_file=None,
        )
    )  # type: ignore[call-arg]
    with runtime.db.session() as s:
        s.query(NotificationAttempt).delete()
        s.query(NotificationDelivery).delete()
        s.query(NotificationRule).delete()
        s.query(DomainEvent).filter(DomainEvent.dispatched_at.is_(None)).update(
            {"dispatched_at": DomainEvent.created_at}
        )
        s.add(
            NotificationRule(
                channel="email", target="bench@example.org", min_score=0.5, max_per_hour=10_000
            )
        )
    worker = NotifyWorker(runtime).start()
    out = []
    try:
        for i in range(repeats):
            got.clear()
            with runtime.db.session() as s:
                det = Detection(
                    ra=10.0 + i,
                    dec=5.0,
                    healpix=int(healpix_index(10.0 + i, 5.0)),
                    mjd=60400.0,
                    snr=12.0,
                    confidence=0.97,
                )
                s.add(det)
                s.flush()
                record_event(
                    s,
                    EventType.DETECTION_CREATED,
                    "detection",
                    det.id,
                    {"ra": det.ra, "dec": det.dec, "confidence": 0.97, "snr": 12.0},
                )
            committed = time.perf_counter()
            if not got.wait(30):
                raise RuntimeError("no email within 30 s")
            out.append(arrived[-1] - committed)
            time.sleep(0.37 * (i % 3))  # land at different points of the poll period
    finally:
        worker.stop()
        smtp.stop()
        runtime.close()
    return out


def export_in_child(postgres_url: str, schema: str, fmt: str) -> dict[str, Any]:
    """:func:`child_export` of the catalog in ``schema`` run in a fresh interpreter (its RSS
    and CPU time are the exporter's alone); returns its figures."""
    proc = subprocess.run(
        [sys.executable, __file__, "--postgres-url", postgres_url, "--schema", schema,
         "--child", fmt],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--schema", default="bench_1m_catalog")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--formats", nargs="+", default=["csv", "json", "votable", "fits"])
    ap.add_argument("--cones", type=int, default=200)
    ap.add_argument("--emails", type=int, default=6)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    url = schema_url(args.postgres_url, args.schema)
    if args.child:
        child_export(url, args.child)
        return
    seed_catalog(args.postgres_url, args.schema, args.entries, args.reload)
    for fmt in args.formats:
        r = export_in_child(args.postgres_url, args.schema, fmt)
        print(
            f"export {fmt:8s} {r['rows']:>9d} rows {r['seconds']:7.1f} s "
            f"{r['rows'] / r['seconds']:>9.0f} rows/s  {r['bytes'] / 1e6:8.1f} MB  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (before export {r['rss_before_mb']:.0f} MB), "
            f"exporter CPU {r['cpu_seconds']:.1f} s = {r['rows'] / r['cpu_seconds']:.0f} rows/CPU-s"
        )
    t = cone_latency(url, args.cones)
    print(
        f"cone search r=1': p50 {statistics.median(t):.2f} ms, "
        f"p95 {np.percentile(t, 95):.2f} ms over {len(t)} queries"
    )
    lat = notify_latency(url, args.emails)
    print(
        f"detection stored -> email accepted by SMTP: median {statistics.median(lat):.2f} s, "
        f"max {max(lat):.2f} s over {len(lat)} (dispatcher poll 1 s)"
    )


if __name__ == "__main__":
    main()
