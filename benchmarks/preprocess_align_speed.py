"""Speed of the two costliest imaging steps: WCS resampling and cosmic-ray detection.

On a simulated ``--size``² pair (the new image offset and rotated against the reference,
``--cosmics`` injected cosmic rays with a truth mask) it times, ``--repeats`` times each
(median and min reported):

* ``reproject_to`` (data + variance + mask) onto the reference WCS, and ``reproject_interp``
  alone for comparison;
* ``cosmic_ray_mask`` (L.A.Cosmic), with its recall (truth cosmic-ray pixels flagged) and
  false-positive pixels (flagged pixels that are not cosmic rays);
* the whole :func:`astrid.science.preprocess.preprocess_image` (no reference, no calibration).

Pin it to one core for per-core figures (results go to docs/imaging.md)::

    taskset -c 0 python benchmarks/preprocess_align_speed.py --size 2048 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from astrid.science.background import estimate_background
from astrid.science.cosmics import cosmic_ray_mask
from astrid.science.preprocess import preprocess_image
from astrid.science.resample import reproject_to
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_model import AnalyticPSF, Exposure

_CPU: list[float] = []  # CPU seconds (user + sys, this process) of the last _time call, min


def _fmt(med: float, best: float) -> str:
    return f"median {med:.3f} s  min {best:.3f} s  CPU {_CPU[0]:.3f} s"


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    times, cpus = [], []
    out = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    _CPU[:] = [min(cpus)]
    return statistics.median(times), min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cosmics", type=int, default=300)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    n = args.size
    pair = simulate_pair(
        (n, n),
        n_stars=int(3000 * (n / 2048) ** 2),
        seed=args.seed,
        new=Exposure(
            psf=AnalyticPSF(fwhm=3.5),
            offset=(3.4, -2.7),
            rotation=0.3,
            cosmic_rays=args.cosmics,
            mjd=60030,
        ),
    )
    new, ref = pair.new, pair.ref
    print(f"image {n}x{n}, {args.cosmics} cosmic rays ({int(new.cosmic_ray_mask.sum())} px)")

    med, best, rp = _time(
        lambda: reproject_to(
            new.data, new.wcs, ref.wcs, (n, n), variance=new.variance, mask=new.mask
        ),
        args.repeats,
    )
    print(f"reproject_to (data+variance+mask): {_fmt(med, best)}")

    from reproject import reproject_interp

    def _plain() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reproject_interp(
                (new.data.astype(np.float64), new.wcs), ref.wcs, shape_out=(n, n), order="bicubic"
            )

    med, best, (exact, _) = _time(_plain, args.repeats)
    print(f"reproject_interp bicubic (data only): {_fmt(med, best)}")
    both = np.isfinite(exact) & ~rp.mask
    diff = np.abs(rp.data[both] - exact[both])
    print(
        f"reproject_to vs reproject_interp on {both.sum()} common px: max |diff| "
        f"{diff.max():.3g} ADU (noise sigma {new.noise_sigma:.1f} ADU)"
    )

    bkg = estimate_background(new.data, new.mask)
    gain, sat = new.gain, new.exposure.saturation
    med, best, crs = _time(
        lambda: cosmic_ray_mask(new.data, mask=new.mask, background=bkg, gain=gain, saturation=sat),
        args.repeats,
    )
    truth = new.cosmic_ray_mask & ~new.mask
    recall = (crs & truth).sum() / max(truth.sum(), 1)
    # hits per cosmic ray: a ray counts as found if any of its pixels is flagged
    from scipy import ndimage

    lab, nlab = ndimage.label(truth, structure=np.ones((3, 3)))
    found = np.unique(lab[crs & truth])
    found = found[found > 0]
    fp = int((crs & ~ndimage.binary_dilation(truth, iterations=1)).sum())
    print(
        f"cosmic_ray_mask: {_fmt(med, best)}; pixel recall {recall:.4f} "
        f"({(crs & truth).sum()}/{truth.sum()}), rays found {len(found)}/{nlab}, "
        f"false-positive px (beyond 1 px of a ray) {fp}"
    )

    med, best, res = _time(
        lambda: preprocess_image(new.data, new.header, mask=new.mask, variance=new.variance),
        args.repeats,
    )
    steps = ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items())
    print(f"preprocess (no reference): {_fmt(med, best)}  [last: {steps}]")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
