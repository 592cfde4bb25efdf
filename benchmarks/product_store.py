"""Storing one product: CPU per blob, the joined ``bytes`` against the pieces.

* A 2-d float32 and a uint8 ``--size``² map with a TAN WCS header stored in a local blob
  store (a temporary folder) as ``blobs.put(fits_bytes(...))`` (one ``bytes``: a byte-swapped
  copy and a joined copy) and as ``put_parts(blobs, fits_parts(...))`` (what ``put_fits``
  does: a megabyte at a time from one reused buffer), alternated, in a process whose
  ``malloc`` keeps freed memory as a pipeline process's does. Each write has new bytes (one
  pixel changed), so each is hashed, written, fsynced and renamed.
* The detect stage's cutout FITS and the triplet's WCS per candidate: a verified header
  built and a header parsed for each candidate (the template forgotten before each call), and
  the observation's template reused (the pipeline's path).

CPU time (``time.process_time``: the shared machine's load inflates it less than wall
time), median of ``--repeat``. Run by hand (results in docs/benchmarks.md)::

    python benchmarks/product_store.py --size 2048
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from astropy.wcs import WCS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from product_writer import bench_header

from astrid.pipeline.heap import retain_freed_memory
from astrid.pipeline.stages import stamps
from astrid.pipeline.stages.products import fits_bytes, fits_parts
from astrid.store.blobs import LocalBlobStore, put_parts


def _cpu(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _maps(size: int, repeat: int, folder: str) -> None:
    store = LocalBlobStore(folder)
    header, extra = bench_header(size), {"ASTRSTG": "difference"}
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.uint8):
        data = rng.normal(0.0, 50.0, (size, size)).astype(dtype)
        joined: list[float] = []
        pieces: list[float] = []
        for i in range(repeat + 2):
            data.flat[0] = 2 * i
            a = _cpu(lambda: store.put(fits_bytes(data, header, extra)))  # noqa: B023
            data.flat[0] = 2 * i + 1
            b = _cpu(lambda: put_parts(store, fits_parts(data, header, extra)))  # noqa: B023
            if i >= 2:  # the first ones warm the heap and the folders
                joined.append(a)
                pieces.append(b)
        same = put_parts(store, fits_parts(data, header, extra))
        assert same == store.put(fits_bytes(data, header, extra))
        j, p = np.median(joined) * 1e3, np.median(pieces) * 1e3
        print(
            f"{np.dtype(dtype).name:8s} put(fits_bytes) {j:6.2f} ms   "
            f"put_parts(fits_parts) {p:6.2f} ms   saved {j - p:5.2f} ms per product (median CPU)"
        )


def _cutouts(repeat: int) -> None:
    grid = bench_header(2048)
    rng = np.random.default_rng(2)
    st = {n: rng.normal(0.0, 1.0, (63, 63)).astype(np.float32) for n in ("new", "ref", "diff")}
    headers = []
    for i in range(repeat):
        h = grid.copy()
        h["CRPIX1"] = grid["CRPIX1"] - 7 * i
        h["CRPIX2"] = grid["CRPIX2"] - 3 * i
        headers.append(h)

    def each_built() -> None:
        for h in headers:
            stamps._TEMPLATE = None
            stamps._fits_bytes(st, h)
            WCS(h)

    def reused() -> None:
        stamps._TEMPLATE = None
        for h in headers:
            stamps._fits_bytes(st, h)
            stamps._stamp_wcs(st, h)

    for _ in range(2):
        a, b = _cpu(each_built) / repeat * 1e3, _cpu(reused) / repeat * 1e3
        print(
            f"cutout FITS + WCS per candidate: built each time {a:5.2f} ms   "
            f"template reused {b:5.2f} ms   saved {a - b:5.2f} ms per candidate"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"{args.size}² maps, heap retained ({retain_freed_memory()}), load {os.getloadavg()}")
    folder = tempfile.mkdtemp(prefix="astrid-store-bench-")
    try:
        _maps(args.size, args.repeat, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _cutouts(max(args.repeat, 50))


if __name__ == "__main__":
    main()
