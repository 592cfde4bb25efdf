"""AstrID ZOGY side by side with ProperImage and SFFT on the same simulated pairs.

Peers (benchmark-only dependencies, the ``bench`` extra)::

    pip install "setuptools<81" wheel && pip install --no-build-isolation tinynpydb
    pip install properimage sfft

For each size a pair (new 3.5 px FWHM, reference 2.5 px, same grid, injected transients)
is simulated and written to FITS; each method then runs in a fresh process (so that peak
RSS is its own) on one core (``OMP_NUM_THREADS=1`` etc., scipy.fft ``workers=1``):

* ``astrid``: :func:`astrid.science.zogy.zogy` on the arrays read from FITS, PSF
  estimation and flux-ratio fit included, then :func:`extract_candidates`;
  ``astrid-bg`` is the same without the source-noise terms (background-only S_corr, the
  same normalisation as the peers' numbers and the ideal S/N).
* ``properimage``: ``properimage.operations.subtract(ref, new)`` with its defaults
  (``beta=True, shift=True, fitted_psf=True``), the authors' documented call; its
  ``S_corr`` divided by its robust standard deviation is used as the significance (it is
  not returned in units of sigma).
* ``sfft``: ``Customized_Packet.CP`` with ``BACKEND_4SUBTRACT='Numpy'`` (the CPU backend),
  the reference (sharper) convolved, Gaussian kernel half-width 2.5 x FWHM of the new image,
  kernel and background polynomial order 2, nothing masked. SFFT outputs a difference, not a
  significance: the S/N used here is that difference matched-filtered with the new image's
  true PSF and divided by its robust standard deviation (our post-processing).

Reported: wall time of the call, peak RSS of the process, completeness at ideal S/N >= 7
(a 5 sigma peak within 2 px) and the median measured / ideal S/N.

Run: ``taskset -c 0 python benchmarks/difference_peers.py [--sizes 1024,2048] [--rss 4096]
[--repeats 5]`` (``--repeats``: our subtraction is run that many times per process and the
median wall and CPU (process) times are reported; the CPU time is the meaningful one on a
shared machine, where the wall time also counts the time other jobs hold the core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ONE_CORE = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def _score_at(score: np.ndarray, truth: dict[str, list[float]]) -> dict[str, float]:
    import sep

    s = np.ascontiguousarray(np.nan_to_num(score), dtype=np.float32)
    objs = sep.extract(s, 5.0, minarea=3, filter_kernel=None)
    x, y, ideal = (np.asarray(truth[k]) for k in ("x", "y", "ideal_snr"))
    if len(objs):
        from scipy.spatial import cKDTree

        d, _ = cKDTree(np.c_[objs["x"], objs["y"]]).query(np.c_[x, y])
    else:
        d = np.full(x.size, np.inf)
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    peak = np.array([s[b - 1 : b + 2, a - 1 : a + 2].max() for a, b in zip(xi, yi, strict=True)])
    strong = ideal >= 7
    hit = d < 2
    return {
        "completeness": float(hit[strong].mean()),
        "ratio": float(np.median(peak[strong & hit] / ideal[strong & hit])),
        "n_detections": len(objs),
    }


def worker(method: str, folder: Path) -> None:
    """Run one method on the pair in ``folder`` and print a JSON line."""
    truth = json.loads((folder / "truth.json").read_text())
    new_path, ref_path = folder / "new.fits", folder / "ref.fits"
    out: dict[str, object] = {"method": method}
    if method in ("astrid", "astrid-bg"):
        from astrid.science.extract import extract_candidates
        from astrid.science.fitsio import read_image
        from astrid.science.zogy import zogy

        new, ref = read_image(new_path), read_image(ref_path)
        walls, cpus, with_ext = [], [], []
        res = None
        for _ in range(max(1, int(os.environ.get("ASTRID_BENCH_REPEATS", "1")))):
            res = None  # free the previous run's products: peak RSS is that of one run
            t0, c0 = time.perf_counter(), time.process_time()
            res = zogy(new.data, ref.data, new_gain=2.0, ref_gain=2.0, workers=1,
                       source_noise=method == "astrid")  # fmt: skip
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            extract_candidates(res, 5.0)
            with_ext.append(time.perf_counter() - t0)
        out["wall"] = float(np.median(walls))
        out["cpu"] = float(np.median(cpus))
        out["walls"] = [round(w, 2) for w in walls]
        out["wall_with_extraction"] = float(np.median(with_ext))
        assert res is not None
        score = res.score
    elif method == "properimage":
        from properimage.operations import subtract

        t0 = time.perf_counter()
        result = subtract(ref=str(ref_path), new=str(new_path))
        out["wall"] = time.perf_counter() - t0
        s_corr = np.asarray(result[2]).real
        # ProperImage's S_corr is not in units of sigma: divide by its robust std.
        score = s_corr / (1.4826 * np.median(np.abs(s_corr - np.median(s_corr))))
    elif method == "sfft":
        from astropy.io import fits
        from scipy.signal import fftconvolve
        from sfft.CustomizedPacket import Customized_Packet

        diff_path = folder / "sfft_diff.fits"
        t0 = time.perf_counter()
        Customized_Packet.CP(FITS_REF=str(ref_path), FITS_SCI=str(new_path),
                             FITS_mREF=str(ref_path), FITS_mSCI=str(new_path),
                             ForceConv="REF", GKerHW=int(np.ceil(2.5 * truth["fwhm_new"])),
                             FITS_DIFF=str(diff_path), KerPolyOrder=2, BGPolyOrder=2,
                             ConstPhotRatio=True, BACKEND_4SUBTRACT="Numpy",
                             NUM_CPU_THREADS_4SUBTRACT=1, VERBOSE_LEVEL=0)  # fmt: skip
        out["wall"] = time.perf_counter() - t0
        diff = fits.getdata(diff_path).astype(float)
        psf = np.asarray(truth["psf_new"])
        mf = fftconvolve(np.nan_to_num(diff), psf[::-1, ::-1], mode="same")
        score = mf / (1.4826 * np.median(np.abs(mf - np.median(mf))))
    else:
        raise SystemExit(f"unknown method {method}")
    out.update(_score_at(score, truth))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(out))


def make_pair(folder: Path, size: int) -> None:
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_image import write_simulated
    from astrid.science.simulate_model import AnalyticPSF, Exposure

    new = Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030)
    ref = Exposure(psf=AnalyticPSF(fwhm=2.5))
    p = simulate_pair((size, size), int(800 * (size / 1024) ** 2), seed=7, new=new, ref=ref,
                      n_transients=int(150 * (size / 1024) ** 2),
                      transient_flux_range=(150, 3000))  # fmt: skip
    write_simulated(p.new, folder / "new.fits", extensions=False)
    write_simulated(p.ref, folder / "ref.fits", extensions=False)
    tr = p.truth[p.truth["kind"] == "transient"]
    (folder / "truth.json").write_text(json.dumps({
        "x": list(map(float, tr["x_ref"])), "y": list(map(float, tr["y_ref"])),
        "ideal_snr": list(map(float, tr["ideal_snr"])), "fwhm_new": 3.5,
        "psf_new": p.new.psf.kernel(size=25).tolist(),
    }))  # fmt: skip


def run(method: str, folder: Path, timeout: float) -> dict[str, object]:
    env = {**os.environ, **ONE_CORE}
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", method, str(folder)],
                              capture_output=True, text=True, env=env, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--methods", default="astrid,properimage,sfft")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--rss", type=int, default=0, help="also: astrid alone at this size")
    ap.add_argument("--repeats", type=int, default=1,
                    help="ours: run the subtraction this many times in the process, report "
                         "the median (the first run pays imports and FFT plans)")  # fmt: skip
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return
    os.environ["ASTRID_BENCH_REPEATS"] = str(args.repeats)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before the run: {load}; CPU affinity {sorted(os.sched_getaffinity(0))}; "
          f"ours: median of {args.repeats} run(s), CPU = process time\n")  # fmt: skip
    print("| size | method | wall (s) | peak RSS (MB) | completeness (ideal S/N ≥ 7) | "
          "median S/N / ideal | detections ≥5σ |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    jobs = [(s, m) for s in sizes for m in args.methods.split(",")]
    if args.rss:
        jobs.append((args.rss, "astrid"))
    made: dict[int, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, method in jobs:
            if size not in made:
                made[size] = Path(tmp) / str(size)
                made[size].mkdir()
                make_pair(made[size], size)
            r = run(method, made[size], args.timeout)
            if "error" in r:
                print(f"| {size}² | {method} | {r['error']} | | | | |", flush=True)
                continue
            wall = f"{r['wall']:.2f}"
            if "wall_with_extraction" in r:
                wall += f" ({r['wall_with_extraction']:.2f} with extraction)"
            if "cpu" in r:
                wall += f"; CPU {r['cpu']:.2f}; runs {r['walls']}"
            print(f"| {size}² | {method} | {wall} | {r['peak_rss_mb']:.0f} | "
                  f"{r['completeness']:.1%} | {r['ratio']:.3f} | {r['n_detections']} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
