"""Latency of the scanning queue and of voting on PostgreSQL, at 1 and 20 clients.

    PYTHONPATH=src python benchmarks/curation_queue.py --seconds 10

The ``queue`` section of ``benchmarks/curation_scale.py`` on its own: the persistent
``bench_1m`` schema (1,000,000 detections in 200,000 objects, seeded by
``benchmarks/_scale.py`` on first use), a real ``astrid serve`` and ``wrk``:

* ``queue-score``: ``GET /api/v1/scanning/queue?limit=50`` (highest P(real) first, the
  caller's voted detections left out), from a random keyset position;
* ``queue-uncertainty``: the same ordered by |P(real) - 0.5|, with an S/N filter;
* ``vote``: ``POST /api/v1/detections/{id}/votes`` on random detections, one curator per
  connection.

Results go in docs/benchmarks.md ("Curation and API at 1M rows").
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import curation_scale

if __name__ == "__main__":
    sys.argv[1:1] = ["--only", "queue"]
    curation_scale.main()
