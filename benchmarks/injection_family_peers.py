"""sfft and ProperImage on the simulation family, scored like ``injection_family.py``.

Every case of :func:`astrid.science.simfamily.simulation_family` is rendered at ``--size``²
and the new image is resampled onto the reference grid with AstrID's own
:func:`astrid.science.pair_alignment.align_to_reference` (both peers need aligned inputs), so all
methods see the same pixels. Pixels masked in either image (the simulator's saturation, bleed
and bad-column masks, and the resampling footprint) are set to the image's median sky for the
peers (neither takes a mask for the subtraction itself). Then:

* ``sfft``: ``Customized_Packet.CP`` (CPU ``Numpy`` backend, one thread), the reference
  convolved (``ForceConv='REF'``; the new image is the broader one in every case), Gaussian
  kernel half-width 2.5 × the new image's true FWHM, kernel and background polynomial order 2,
  the masked pixels (grown by 8 px) excluded from the fit through the ``mREF``/``mSCI`` images.
  SFFT returns a difference, not a significance: it is matched-filtered with the new image's
  true PSF at the field centre and divided by its robust standard deviation (our
  post-processing).
* ``properimage``: ``properimage.operations.subtract(ref, new)`` with its defaults; its
  ``S_corr`` divided by its robust standard deviation.

Candidates on either map: AstrID's own detection step (:func:`astrid.science.extract.detect_peaks`,
5 sigma, both signs), candidates within 2 px of a masked pixel dropped, and the same L.A.Cosmic
stamp vetting as ``astrid detect`` (:func:`astrid.science.vetting.cosmic_ray_hits`) on the image a
candidate comes from: a cosmic ray gets score 0.1, every other candidate 1.0 (the peers have no
rule score; AstrID's star-residual tests are *not* applied to them). Scored with
:func:`astrid.science.simfamily.score_recovery`, the same columns as ``injection_family.py``.

Run: ``python benchmarks/injection_family_peers.py [--size 1024] [--seed 0] [--cases a,b]
[--methods sfft,properimage]``
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from scipy import ndimage  # noqa: E402

from astrid.science.extract import detect_peaks  # noqa: E402
from astrid.science.pair_alignment import align_to_reference  # noqa: E402
from astrid.science.simfamily import (  # noqa: E402
    score_recovery,
    simulate_case,
    simulation_family,
)
from astrid.science.simulate_image import write_simulated  # noqa: E402
from astrid.science.vetting import cosmic_ray_hits  # noqa: E402


def _robust_norm(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    v = a[valid]
    med = float(np.median(v))
    return (a - med) / (1.4826 * float(np.median(np.abs(v - med))))


def _sfft(new: np.ndarray, ref: np.ndarray, bad: np.ndarray, psf: np.ndarray, fwhm: float,
          tmp: Path) -> np.ndarray:  # fmt: skip
    from scipy.signal import fftconvolve
    from sfft.CustomizedPacket import Customized_Packet

    grown = ndimage.binary_dilation(bad, iterations=8)
    paths = {}
    for name, arr in (("new", new), ("ref", ref)):
        fits.writeto(tmp / f"{name}.fits", arr.astype(np.float64), overwrite=True)
        m = np.where(grown, np.median(arr), arr)
        fits.writeto(tmp / f"m{name}.fits", m.astype(np.float64), overwrite=True)
        paths[name] = str(tmp / f"{name}.fits")
        paths["m" + name] = str(tmp / f"m{name}.fits")
    diff_path = tmp / "sfft_diff.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Customized_Packet.CP(FITS_REF=paths["ref"], FITS_SCI=paths["new"],
                             FITS_mREF=paths["mref"], FITS_mSCI=paths["mnew"],
                             ForceConv="REF", GKerHW=int(np.ceil(2.5 * fwhm)),
                             FITS_DIFF=str(diff_path), KerPolyOrder=2, BGPolyOrder=2,
                             ConstPhotRatio=True, BACKEND_4SUBTRACT="Numpy",
                             NUM_CPU_THREADS_4SUBTRACT=1, VERBOSE_LEVEL=0)  # fmt: skip
    diff = np.nan_to_num(fits.getdata(diff_path).astype(float))
    mf = fftconvolve(diff, psf[::-1, ::-1], mode="same")
    return _robust_norm(mf, ~bad)


def _properimage(new: np.ndarray, ref: np.ndarray, bad: np.ndarray) -> np.ndarray:
    from properimage.operations import subtract

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = subtract(ref=ref.astype(np.float64), new=new.astype(np.float64))
    s_corr = np.nan_to_num(np.asarray(result[2]).real)
    return _robust_norm(s_corr, ~bad)


def _candidates(score: np.ndarray, bad: np.ndarray, pair: Any) -> Table:
    near_bad = ndimage.binary_dilation(bad, iterations=2)
    rows: list[tuple[float, float, float, int]] = []
    for sign in (1, -1):
        for o in detect_peaks(sign * score, 5.0):
            xp, yp = int(o["xpeak"]), int(o["ypeak"])
            if not near_bad[yp, xp]:
                rows.append((float(xp), float(yp), float(sign * score[yp, xp]), sign))
    tab = Table(rows=rows or None, names=("x", "y", "snr", "sign"),
                dtype=(float, float, float, int))  # fmt: skip
    tab["score"] = np.ones(len(tab))
    for want, img, msk in ((1, pair.new, pair.new_mask), (-1, pair.ref, pair.ref_mask)):
        sel = np.asarray(tab["sign"]) == want
        if sel.any():
            hits = cosmic_ray_hits(np.asarray(tab["x"])[sel], np.asarray(tab["y"])[sel], img,
                                   msk, gain=2.0)  # fmt: skip
            sc = np.asarray(tab["score"])
            idx = np.flatnonzero(sel)[hits]
            sc[idx] = 0.1
            tab["score"] = sc
    return tab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--methods", default="sfft,properimage")
    args = ap.parse_args()
    wanted = {c for c in args.cases.split(",") if c}
    methods = [m for m in args.methods.split(",") if m]
    cases = [c for c in simulation_family() if not wanted or c.name in wanted]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"size {args.size}², seed {args.seed}; load average {load}; one thread\n")
    print("| case | method | strong | completeness | S/N / ideal | false (score ≥ 0.5) "
          "| false / 4 Mpix | precision | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    tot: dict[str, dict[str, float]] = {m: {} for m in methods}
    for case in cases:
        pair = simulate_case(case, args.size, args.seed)
        al = align_to_reference(write_simulated(pair.new), write_simulated(pair.ref))
        bad = al.new_mask | al.ref_mask
        new = np.where(bad, np.median(al.new[~bad]), al.new).astype(np.float64)
        ref = np.where(bad, np.median(al.ref[~bad]), al.ref).astype(np.float64)
        fwhm = float(pair.new.psf_fwhm)
        psf = pair.new.psf.kernel(size=25)
        area = float((~ndimage.binary_dilation(bad, iterations=2)).sum())
        for m in methods:
            t0 = time.perf_counter()
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    if m == "sfft":
                        score = _sfft(new, ref, bad, np.asarray(psf), fwhm, Path(tmp))
                    elif m == "properimage":
                        score = _properimage(new, ref, bad)
                    else:
                        raise SystemExit(f"unknown method {m}")
            except Exception as exc:  # a peer failing is a result to report, not a crash
                print(f"| {case.name} | {m} | failed: {type(exc).__name__}: {exc} |||||||",
                      flush=True)  # fmt: skip
                continue
            dt = time.perf_counter() - t0
            tab = _candidates(score, bad, al)
            s = score_recovery(tab, pair, area)
            print(f"| {case.name} | {m} | {s.n_strong} | {s.completeness:.3f} "
                  f"| {s.snr_ratio:.3f} | {s.n_false} | {s.false_per_4mpix:.1f} "
                  f"| {s.precision:.3f} | {dt:.0f} |", flush=True)  # fmt: skip
            t = tot[m]
            n_good = int((np.asarray(tab["score"]) >= 0.5).sum())
            for key, val in (
                ("strong", s.n_strong),
                ("hit", 0.0 if math.isnan(s.completeness) else s.completeness * s.n_strong),
                ("false", s.n_false),
                ("area", area),
                ("good", n_good),
                ("real", 0.0 if math.isnan(s.precision) else s.precision * n_good),
            ):
                t[key] = t.get(key, 0.0) + val  # fmt: skip
    for m in methods:
        t = tot[m]
        if not t:
            continue
        print(f"| **all** | {m} | {int(t['strong'])} | {t['hit'] / max(t['strong'], 1):.3f} | "
              f"| {int(t['false'])} | {t['false'] * 2048.0**2 / max(t['area'], 1.0):.1f} "
              f"| {t['real'] / max(t['good'], 1):.3f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
