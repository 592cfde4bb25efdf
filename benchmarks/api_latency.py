"""Latency of the REST API under load: list, detail and cone search on PostgreSQL.

    PYTHONPATH=src python benchmarks/api_latency.py --seconds 10 [--workers 2]

The ``api`` section of ``benchmarks/curation_scale.py`` on its own: the persistent
``bench_1m`` schema (1,000,000 detections, seeded by ``benchmarks/_scale.py`` on first
use) and ``bench_1m_catalog`` (1,000,000 catalog entries), a real ``astrid serve`` (or
uvicorn with ``--workers``) and ``wrk`` at 1 and 50 connections. Results go in
docs/benchmarks.md ("Curation and API at 1M rows").
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import curation_scale

if __name__ == "__main__":
    sys.argv[1:1] = ["--only", "api"]
    curation_scale.main()
