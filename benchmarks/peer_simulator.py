"""`astrid detect`'s science on pairs from photutils' image makers, not AstrID's simulator.

    PYTHONPATH=src python benchmarks/peer_simulator.py --seeds 1-10

Each seed is a 1024² pair of :mod:`tests.peer_simulator` (Gaussian reference, Moffat new
image, sky-subtracted e-/s, no GAIN, sub-pixel shift, 40 transients from ~3 to ~30 sigma).
Per seed and over all: completeness at ZOGY-limit S/N ≥ 7 (any score, and score ≥ 0.5),
median measured S/N / ZOGY limit, false detections with score ≥ 0.5 per 4 Mpix and the
precision at score ≥ 0.5. Results are in docs/differencing.md.

``--pipeline`` runs each pair through the whole pipeline instead (a fresh SQLite database
and blob store; ``ingest`` + ``process`` of the reference, then of the new image, as
``astrid process`` does, scored by the shipped U-Net), and reports the same figures for the
stored detections with confidence ≥ 0.5, matched to the truth on the reference grid.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.peer_simulator import SHAPE, PeerPair, match_transients, peer_pair

from astrid.science.difference import detect_pair


def pipeline_candidates(pair: PeerPair) -> Table:
    """The pipeline's detections of ``pair`` as a candidate table on the reference grid:
    ``x``, ``y``, ``snr``, ``sign`` (of their candidates' flux) and ``score`` (the U-Net's
    confidence)."""
    from sqlalchemy import select

    from astrid.pipeline.orchestrate import process_pending
    from astrid.pipeline.stages.ingest import ingest_paths
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade
    from astrid.store.tables import Candidate, Detection

    with tempfile.TemporaryDirectory(prefix="astrid-peer-") as tmp:
        root = Path(tmp)
        runtime = Runtime(Settings(data_dir=root / "data", _env_file=None))  # type: ignore[call-arg]
        upgrade(runtime.settings.resolved_database_url)
        for name, data in (("ref.fits", pair.ref), ("new.fits", pair.new)):
            (root / name).write_bytes(data)
            ingest_paths(runtime, [root / name])
            process_pending(runtime)
        columns = (Candidate.x, Candidate.y, Candidate.snr, Candidate.flux, Detection.confidence)
        query = select(*columns).join(Detection, Detection.candidate_id == Candidate.id)
        with runtime.db.session() as session:
            found = session.execute(query).all()
        rows = [(x, y, snr, int(np.sign(f or 0)), c) for x, y, snr, f, c in found]
        runtime.close()
    names = ("x", "y", "snr", "sign", "score")
    return Table(rows=rows or None, names=names, dtype=(float, float, float, int, float))


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", default="1-10", help="e.g. 1-10 or 1,4,7")
    ap.add_argument("--pipeline", action="store_true", help="ingest + process, U-Net scores")
    args = ap.parse_args()
    mpix = SHAPE[0] * SHAPE[1] / 1e6
    print(
        "| seed | transients limit ≥ 7 | found (any score) | found (score ≥ 0.5) "
        "| median S/N / limit | false (score ≥ 0.5) | detect CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    tot = dict(n=0, any=0, good=0, false=0, tp=0)
    ratios: list[float] = []
    for seed in _seeds(args.seeds):
        pair = peer_pair(seed, dated=args.pipeline)
        t0 = time.process_time()
        cands = pipeline_candidates(pair) if args.pipeline else detect_pair(pair.new, pair.ref)
        dt = time.process_time() - t0
        limit = np.asarray(pair.transients["limit"])
        bright = limit >= 7.0
        snr_any, _, _ = match_transients(cands, pair.transients, min_score=0.0)
        snr_good, matched, false = match_transients(cands, pair.transients, min_score=0.5)
        found = np.isfinite(snr_any)
        r = snr_any[found] / limit[found]
        ratios.extend(r.tolist())
        n, n_any, n_good = (
            int(bright.sum()),
            int((found & bright).sum()),
            int((np.isfinite(snr_good) & bright).sum()),
        )
        tot["n"] += n
        tot["any"] += n_any
        tot["good"] += n_good
        tot["false"] += false
        tot["tp"] += int(matched.sum())
        print(f"| {seed} | {n} | {n_any} | {n_good} | {np.median(r):.3f} | {false} | {dt:.1f} |")
    seeds = len(_seeds(args.seeds))
    prec = tot["tp"] / max(1, tot["tp"] + tot["false"])
    print(
        f"| all | {tot['n']} | {tot['any']} ({tot['any'] / tot['n']:.3f}) | {tot['good']} "
        f"({tot['good'] / tot['n']:.3f}) | {np.median(ratios):.3f} | {tot['false']} "
        f"({tot['false'] / (seeds * mpix) * 4:.2f} per 4 Mpix; precision {prec:.3f}) | |"
    )


if __name__ == "__main__":
    main()
