"""Every product of an end-to-end pipeline run, dumped for comparison across code versions.

Proves that a speed change leaves the products the same: simulate a small survey (the
observations of :mod:`pipeline_throughput`), ingest it into a fresh SQLite database + local
blob store under a temporary directory, run the whole pipeline in process (preprocess →
reference → difference → detect with the default model, as ``astrid process`` does), then
write to JSON

* every row of the product tables (observations, preprocess results, references,
  differences, candidates, detections, detection limits), without the volatile columns
  (row ids and foreign keys, timestamps, ``timings``, the temporary directory in paths),
  rows sorted;
* the sorted list of blob keys (content hashes: one changed byte in one FITS, PNG or
  model input changes a key).

``--compare A.json B.json`` says whether two dumps are identical and, if not, which tables
and how many blob keys differ (exit status 1). Run by hand, e.g. main's code against a
branch's::

    PYTHONPATH=/work/main/src python benchmarks/pipeline_identity.py --out main.json
    PYTHONPATH=src python benchmarks/pipeline_identity.py --out branch.json
    python benchmarks/pipeline_identity.py --compare main.json branch.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_throughput import _runtime, bench_survey

from astrid.pipeline.orchestrate import process_pending
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.store.tables import (
    Candidate,
    Detection,
    DetectionLimit,
    Difference,
    Observation,
    PreprocessResult,
    Reference,
)

TABLES = [
    Observation,
    PreprocessResult,
    Reference,
    Difference,
    Candidate,
    Detection,
    DetectionLimit,
]
#: keys dropped at any depth of a row (durations)
VOLATILE_KEYS = frozenset({"timings"})


def _volatile_column(name: str) -> bool:
    return name == "id" or name.endswith(("_id", "_ids", "_at")) or name in VOLATILE_KEYS


def _clean(value: Any, root: str) -> Any:
    """``value`` as JSON: volatile keys dropped, the run's directory replaced, floats exact
    (``repr``; NaN and infinities as strings)."""
    if isinstance(value, dict):
        return {str(k): _clean(v, root) for k, v in sorted(value.items()) if k not in VOLATILE_KEYS}
    if isinstance(value, list | tuple):
        return [_clean(v, root) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.replace(root, "<root>")
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)  # enums


def dump(runtime: Runtime, root: Path) -> dict[str, Any]:
    """The product rows (module docstring) and the sorted blob keys."""
    out: dict[str, Any] = {"tables": {}}
    with runtime.db.session() as s:
        for table in TABLES:
            cols = [c.key for c in inspect(table).column_attrs if not _volatile_column(c.key)]
            rows = [
                _clean({c: getattr(row, c) for c in cols}, str(root))
                for row in s.scalars(select(table))
            ]
            out["tables"][table.__tablename__] = sorted(
                rows, key=lambda r: json.dumps(r, sort_keys=True)
            )
    out["blob_keys"] = sorted(runtime.blobs.keys())
    return out


def compare(a_path: Path, b_path: Path) -> bool:
    """Print whether the dumps ``a_path`` and ``b_path`` are identical; whether they are."""
    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    same = True
    for name in sorted(set(a["tables"]) | set(b["tables"])):
        ra, rb = a["tables"].get(name, []), b["tables"].get(name, [])
        if ra == rb:
            print(f"  {name:20s} identical ({len(ra)} rows)")
            continue
        same = False
        differ = sum(x != y for x, y in zip(ra, rb, strict=False)) + abs(len(ra) - len(rb))
        print(f"  {name:20s} DIFFERENT: {len(ra)} vs {len(rb)} rows, {differ} rows differ")
    ka, kb = set(a["blob_keys"]), set(b["blob_keys"])
    if ka == kb:
        print(f"  {'blob keys':20s} identical ({len(ka)} keys)")
    else:
        same = False
        print(f"  {'blob keys':20s} DIFFERENT: {len(ka - kb)} only in A, {len(kb - ka)} only in B")
    print("IDENTICAL" if same else "DIFFERENT")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512, help="image side, pixels")
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per field (1st = reference)")
    parser.add_argument("--out", type=Path, default=Path("pipeline_identity.json"))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    import astrid

    print(f"astrid from {Path(astrid.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="astrid-identity-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        survey = bench_survey(root / "raw", args.size, args.fields, args.epochs)
        runtime = _runtime(root / "data")
        outcomes = ingest_paths(runtime, list(survey.paths), survey="bench")
        assert all(o.observation_id for o in outcomes), outcomes
        summary = process_pending(runtime)
        result = dump(runtime, root)
        runtime.close()
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    counts = {name: len(rows) for name, rows in result["tables"].items()}
    print(
        f"{len(survey.paths)} observations {summary.by_status()} in "
        f"{time.perf_counter() - t0:.1f} s: {counts}, {len(result['blob_keys'])} blob keys "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
