"""CPU of the detect stage's cutout writing (FITS + four PNGs per candidate), and its bytes.

Runs the loop of ``astrid.pipeline.stages.detect`` (header copy, two CRPIX cards,
``store_cutouts``) on a simulated 2048² new / reference / difference with 300 candidates
(some on the edges, a NaN corner). ``time N`` prints user+sys CPU seconds of N repeats;
``dump FILE`` pickles (keys, blobs) so that two versions can be compared byte for byte::

    PYTHONPATH=/work/main/src python benchmarks/cutout_writing.py dump /tmp/before.pkl
    PYTHONPATH=src python benchmarks/cutout_writing.py dump /tmp/after.pkl
"""

from __future__ import annotations

import hashlib
import pickle
import resource
import sys

import numpy as np
from astropy.wcs import WCS

from astrid.pipeline.stages.products import wcs_header
from astrid.pipeline.stages.stamps import store_cutouts
from astrid.science.cutouts import stamp, stamp_origin


class _Blobs:
    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}

    def put(self, b: bytes) -> str:
        k = hashlib.sha256(b).hexdigest()
        self.d[k] = b
        return k


class _Runtime:
    def __init__(self) -> None:
        self.blobs = _Blobs()


rng = np.random.default_rng(1)
N = 2048
_w = WCS(naxis=2)
_w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
_w.wcs.crval = [150.1, 2.2]
_w.wcs.crpix = [1024.5, 1020.3]
_w.wcs.cd = [[-7.3e-5, 1e-6], [1.2e-6, 7.3e-5]]
HDR = _w.to_header(relax=True)
NEW = rng.normal(100, 5, (N, N)).astype(np.float32)
REF = rng.normal(100, 4, (N, N)).astype(np.float32)
DIFF = (NEW - REF).astype(np.float32)
DIFF[:40, :40] = np.nan
XS = rng.uniform(-10, N + 10, 300)
YS = rng.uniform(-10, N + 10, 300)
XS[:5] = [0, 3, N - 1, 20.5, 1.49]
YS[:5] = [0, N - 2, 5, 20.5, 7.5]
SIZE = 63


def run() -> tuple[_Runtime, list[dict[str, str]]]:
    rt = _Runtime()
    keys = []
    grid = wcs_header(HDR)
    for x, y in zip(XS, YS, strict=True):
        stamps = {n: stamp(a, x, y, SIZE) for n, a in (("new", NEW), ("ref", REF), ("diff", DIFF))}
        x0, y0 = stamp_origin(x, y, SIZE)
        h = grid.copy()
        h["CRPIX1"] = grid["CRPIX1"] - x0
        h["CRPIX2"] = grid["CRPIX2"] - y0
        keys.append(store_cutouts(rt, stamps, h))  # type: ignore[arg-type]
    return rt, keys


def main() -> None:
    mode = sys.argv[1]
    if mode == "dump":
        rt, keys = run()
        with open(sys.argv[2], "wb") as f:
            pickle.dump((keys, rt.blobs.d), f)
        return
    run()  # warm: imports, first zscale
    for _ in range(int(sys.argv[2])):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        run()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        print(f"{cpu:.3f} CPU s for {len(XS)} candidates")


if __name__ == "__main__":
    main()
