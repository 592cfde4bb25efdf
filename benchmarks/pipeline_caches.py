"""CPU a new observation saves through the pipeline's in-process caches (issue 13).

One simulated demo field (``--size``², epoch 0 the reference, epoch 1 differenced) is run
through the pipeline; then, in this one process and alternating, the work the caches skip is
timed with and without them (CPU seconds of this process, median of ``--repeat``):

* the reference, loaded and prepared (:mod:`astrid.pipeline.stages.refcache`: blob read and
  hash check, FITS parse, mask, :func:`~astrid.science.prepared_reference.prepare_reference`);
* the new image and its mask read back by the difference stage, and the difference, aligned
  image and reference read by the detect stage (:func:`~astrid.pipeline.stages.products.put_fits`
  ``keep=True``).

Run by hand (results go to docs/benchmarks.md, pipeline throughput)::

    python benchmarks/pipeline_caches.py --size 2048 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import process_pending
from astrid.pipeline.runner import StageContext
from astrid.pipeline.stages import difference as difference_stage
from astrid.pipeline.stages import products, refcache
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.pipeline.stages.products import read_array, recent_image
from astrid.runtime import Runtime
from astrid.science.prepared_reference import load_image_input
from astrid.settings import Settings
from astrid.store.db import upgrade
from astrid.store.tables import Difference, StageRun


def _keep(runtime: Runtime, key: str) -> None:
    """Put a stored product among the kept ones, as put_fits(keep=True) would have."""
    raw = runtime.blobs.get(key)
    arr, _ = read_array(runtime, key)
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("=")))
    arr.setflags(write=False)
    products._RECENT[key] = (arr, fits.Header.fromstring(products._header_block(raw)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="astrid-caches-"))
    survey = simulate_demo_survey(root / "raw", seed=42, shape=(args.size, args.size),
                                  n_fields=1, n_epochs=2, n_transients=6,
                                  flux_range=(500.0, 6000.0))  # fmt: skip
    runtime = Runtime(Settings(data_dir=root / "data", _env_file=None))  # type: ignore[call-arg]
    upgrade(runtime.settings.resolved_database_url)
    ingest_paths(runtime, survey.paths, survey="bench")
    process_pending(runtime)
    with runtime.db.session() as s:
        run = s.scalars(select(StageRun).where(StageRun.stage == "difference")).one()
        ctx = StageContext(runtime, dict(run.params), dict(run.inputs))
        diff = s.scalars(select(Difference)).one()
        diff_key, aligned_key = diff.difference_key, diff.stats["aligned_new_key"]
    inp = ctx.inputs
    clock = time.process_time
    cost: dict[str, list[float]] = {}

    def timed(name: str, fn: object) -> None:
        t = clock()
        fn()  # type: ignore[operator]
        cost.setdefault(name, []).append(clock() - t)

    for _ in range(args.repeat):
        refcache.clear_reference_cache()
        products.clear_recent_products()
        timed("reference: load and prepare (miss)", lambda: difference_stage._reference(ctx))
        timed("reference: cached (hit)", lambda: difference_stage._reference(ctx))

        def new_from_storage() -> None:
            load_image_input(runtime.blobs.get(inp["new_image"]))
            read_array(runtime, inp["new_mask"])

        def detect_from_storage() -> None:
            for key in (diff_key, aligned_key, inp["ref_image"]):
                read_array(runtime, key)

        timed("new image + mask: from storage", new_from_storage)
        timed("detect reads: from storage", detect_from_storage)
        for key in (inp["new_image"], inp["new_mask"], diff_key, aligned_key):
            _keep(runtime, key)

        def new_kept() -> None:
            image = recent_image(runtime, inp["new_image"])
            assert image is not None
            load_image_input(image)
            read_array(runtime, inp["new_mask"])

        def detect_kept() -> None:
            read_array(runtime, diff_key)
            read_array(runtime, aligned_key)
            assert refcache.reference_pixels(runtime, inp["ref_image"]) is not None

        timed("new image + mask: kept", new_kept)
        timed("detect reads: kept", detect_kept)
    med = {k: statistics.median(v) for k, v in cost.items()}
    for k, v in med.items():
        print(f"{k:38s} {v:7.3f} CPU s")
    saved = sum(v for k, v in med.items() if "miss" in k or "storage" in k) - sum(
        v for k, v in med.items() if "hit" in k or "kept" in k
    )
    print(f"{'saved per new observation':38s} {saved:7.3f} CPU s  (load average {os.getloadavg()})")
    runtime.close()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
