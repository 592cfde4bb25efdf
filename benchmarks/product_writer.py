"""One product write: :func:`astrid.pipeline.stages.products.fits_bytes` against astropy's
``writeto`` of the same header and array (what ``fits_bytes`` did before its fast path).

A 2-d float32 and a uint8 image of ``--size``² with a TAN WCS header, in a process whose
``malloc`` keeps freed memory as a pipeline process's does
(:func:`astrid.pipeline.heap.retain_freed_memory`; ``--plain-heap`` for glibc's default,
under which every 16 MB buffer page-faults in again and both writers are slower). Prints the
minimum and median of ``--repeat`` writes. Run by hand (results in docs/benchmarks.md)::

    python benchmarks/product_writer.py --size 2048
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from astrid.pipeline.heap import retain_freed_memory
from astrid.pipeline.stages.products import fits_bytes


def bench_header(size: int) -> fits.Header:
    """A TAN WCS header for a ``size`` x ``size`` product (the benchmarks' grid)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    w.wcs.cd = [[-7.3e-5, 1e-6], [1.2e-6, 7.3e-5]]
    return w.to_header(relax=True)


def _writeto(data: np.ndarray, header: fits.Header, extra: dict[str, str]) -> bytes:
    hdr = header.copy()
    for key, value in extra.items():
        hdr[key] = value
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
    return buf.getvalue()


def _time(fn: Callable[[], bytes], repeat: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--plain-heap", action="store_true", help="glibc's default malloc")
    args = parser.parse_args()
    heap = "plain" if args.plain_heap else f"retained ({retain_freed_memory()})"
    header, extra = bench_header(args.size), {"ASTRSTG": "difference", "ASTRVER": "0.1.0"}
    rng = np.random.default_rng(1)
    print(f"{args.size}² images, heap {heap}, {args.repeat} writes each (min / median ms)")
    for dtype in (np.float32, np.uint8):
        data = (rng.normal(0.0, 50.0, (args.size, args.size))).astype(dtype)
        assert fits_bytes(data, header, extra) == _writeto(data, header, extra)
        slow = _time(lambda: _writeto(data, header, extra), args.repeat)  # noqa: B023
        fast = _time(lambda: fits_bytes(data, header, extra), args.repeat)  # noqa: B023
        print(
            f"{np.dtype(dtype).name:8s} writeto {slow[0] * 1e3:6.2f} / {slow[1] * 1e3:6.2f}   "
            f"fits_bytes {fast[0] * 1e3:6.2f} / {fast[1] * 1e3:6.2f}   "
            f"saved {(slow[1] - fast[1]) * 1e3:5.2f} ms per write (median)"
        )


if __name__ == "__main__":
    main()
