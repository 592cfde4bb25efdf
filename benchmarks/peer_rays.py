"""Transients taken for cosmic rays on undersampled photutils pairs, and rays still found.

Pairs from ``tests/peer_simulator.py`` with a 1.3 x 1.1 px Gaussian reference and a 1.6 px
Moffat new image (``--betas``, default 2.5 and 3), seeds ``--seeds`` (default 1-3), 40
transients each. Per beta:

* ``flagged``: transients L.A.Cosmic takes for rays on the aligned new image
  (:func:`astrid.science.vetting.cosmic_ray_hits` with the measured PSF, and the reference's
  stars of S/N >= 10 where the code takes them), all and those at ZOGY limit >= 7;
* ``rays``: 1-pixel and 3-pixel rays of 30 sigma injected at random places of the new image
  and vetted the same way (found / injected);
* ``detect_pair``: transients found (a positive candidate of score >= 0.5 within 2.5 px) and
  false detections (positive candidates of score >= 0.5 matching no transient).

Run: ``PYTHONPATH=src:. python benchmarks/peer_rays.py [--seeds 1,2,3] [--betas 2.5,3]``
(``PYTHONPATH`` may point at another checkout's ``src`` to compare code versions).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402
from tests.peer_simulator import match_transients, peer_pair  # noqa: E402

from astrid.science.candidate_vetting import psf_arrays  # noqa: E402
from astrid.science.difference import detect_pair, subtract_pair  # noqa: E402
from astrid.science.vetting import cosmic_ray_hits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--betas", default="2.5,3")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    takes_stars = "stars" in inspect.signature(cosmic_ray_hits).parameters
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"seeds {seeds}; load average {load}; stars passed: {takes_stars}")
    print("| beta | flagged (all) | flagged (limit ≥ 7) | 1-px rays | 3-px rays "
          "| detect_pair found | false | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for beta in (float(b) for b in args.betas.split(",")):
        t0 = time.perf_counter()
        fl = fl7 = n = n7 = r1 = r3 = found = false = 0
        for seed in seeds:
            pair = peer_pair(seed, ref_fwhm=(1.3, 1.1), new_fwhm=1.6, new_beta=beta)
            result, aligned = subtract_pair(pair.new, pair.ref, "zogy")
            psf = psf_arrays(result)[0]
            extra: dict[str, object] = {}
            if takes_stars and result.ref_stars is not None:
                keep = np.asarray(result.ref_stars.snr) >= 10.0
                extra["stars"] = (result.ref_stars.x[keep], result.ref_stars.y[keep])
            t = pair.transients
            hits = cosmic_ray_hits(np.asarray(t["x"]), np.asarray(t["y"]), aligned.new,
                                   aligned.new_mask, psf=psf, **extra)  # fmt: skip
            strong = np.asarray(t["limit"]) >= 7.0
            fl, fl7 = fl + int(hits.sum()), fl7 + int(hits[strong].sum())
            n, n7 = n + len(t), n7 + int(strong.sum())
            rng = np.random.default_rng(seed)
            img = aligned.new.copy()
            rx, ry = rng.integers(50, 970, 30), rng.integers(50, 970, 30)
            for k, (x, y) in enumerate(zip(rx, ry, strict=True)):
                img[y, x : x + (1 if k % 2 else 3)] += 30.0 * result.new_noise
            got = cosmic_ray_hits(rx.astype(float), ry.astype(float), img, aligned.new_mask,
                                  psf=psf, **extra)  # fmt: skip
            r1, r3 = r1 + int(got[1::2].sum()), r3 + int(got[0::2].sum())
            cand = detect_pair(pair.new, pair.ref)
            snr, _, nf = match_transients(cand, t)
            found, false = found + int(np.isfinite(snr).sum()), false + nf
        dt = time.perf_counter() - t0
        print(
            f"| {beta:g} | {fl} / {n} | {fl7} / {n7} | {r1} / {15 * len(seeds)} "
            f"| {r3} / {15 * len(seeds)} | {found} / {n} | {false} | {dt:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
