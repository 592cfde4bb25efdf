"""Injection-recovery of ``astrid detect`` (ZOGY) over the simulation family.

Every case of :func:`astrid.science.simfamily.simulation_family` is rendered at ``--size``²,
written to FITS bytes and run through :func:`astrid.science.difference.detect_pair` exactly as
``astrid detect`` does (alignment, PSFs, ZOGY, extraction, rule score). Scored with
:func:`astrid.science.simfamily.score_recovery` against the simulator's truth:

* completeness of transients with ideal S/N ≥ 7 (target ≥ 0.98), and of those among them
  that are *measurable*: :func:`astrid.science.simfamily.measurable_snr` (the ideal S/N with
  the shot noise of the star or host under the transient, from the pixels masked in neither
  image) ≥ 7; the table says how many strong transients that rule leaves out;
* median measured S/N / ideal S/N of those found (target ≥ 0.95);
* false detections with score ≥ 0.5 per 4 Mpix (target ≤ 1), and how many are within 5 px
  of a star;
* precision of the detections with score ≥ 0.5 (target ≥ 0.95).

Run: ``python benchmarks/injection_family.py [--size 1024] [--seed 0] [--cases a,b]``
"""

from __future__ import annotations

import argparse
import math
import time

from astrid.science.difference import detect_pair
from astrid.science.simfamily import score_recovery, simulate_case, simulation_family
from astrid.science.simulate_image import write_simulated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    wanted = {c for c in args.cases.split(",") if c}
    cases = [c for c in simulation_family() if not wanted or c.name in wanted]
    print(f"size {args.size}², seed {args.seed}; thresholds: ideal S/N ≥ 7, score ≥ 0.5\n")
    print(
        "| case | strong | completeness | strong masked | completeness unmasked "
        "| unmeasurable | completeness measurable | S/N / ideal "
        "| false (score ≥ 0.5) | near stars | false / 4 Mpix | precision | detect s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    tot = {
        "strong": 0,
        "hit": 0.0,
        "masked": 0,
        "clear": 0,
        "hit_clear": 0.0,
        "false": 0,
        "near": 0,
        "area": 0.0,
        "good": 0,
        "real": 0.0,
        "unmeas": 0,
        "hit_meas": 0.0,
    }
    ratios: list[float] = []
    for case in cases:
        pair = simulate_case(case, args.size, args.seed)
        nb, rb = write_simulated(pair.new), write_simulated(pair.ref)
        t0 = time.perf_counter()
        tab = detect_pair(nb, rb, "zogy", threshold=5.0)
        dt = time.perf_counter() - t0
        area = float(tab.meta["area_pix"])
        s = score_recovery(tab, pair, area)
        n_good = int((tab["score"] >= 0.5).sum())
        print(
            f"| {case.name} | {s.n_strong} | {s.completeness:.3f} | {s.n_strong_masked} "
            f"| {s.completeness_unmasked:.3f} | {s.n_unmeasurable} "
            f"| {s.completeness_measurable:.3f} | {s.snr_ratio:.3f} "
            f"| {s.n_false} | {s.n_false_near_stars} | {s.false_per_4mpix:.1f} "
            f"| {s.precision:.3f} | {dt:.1f} |",
            flush=True,
        )
        tot["strong"] += s.n_strong
        tot["hit"] += 0.0 if math.isnan(s.completeness) else s.completeness * s.n_strong
        tot["false"] += s.n_false
        tot["masked"] += s.n_strong_masked
        n_clear = s.n_strong - s.n_strong_masked
        tot["clear"] += n_clear
        if not math.isnan(s.completeness_unmasked):
            tot["hit_clear"] += s.completeness_unmasked * n_clear
        tot["unmeas"] += s.n_unmeasurable
        if not math.isnan(s.completeness_measurable):
            tot["hit_meas"] += s.completeness_measurable * (s.n_strong - s.n_unmeasurable)
        tot["near"] += s.n_false_near_stars
        tot["area"] += area
        tot["good"] += n_good
        tot["real"] += 0.0 if math.isnan(s.precision) else s.precision * n_good
        if not math.isnan(s.snr_ratio):
            ratios.append(s.snr_ratio)
    ratios.sort()
    med = ratios[len(ratios) // 2] if ratios else float("nan")
    print(
        f"| **all** | {tot['strong']} | {tot['hit'] / max(tot['strong'], 1):.3f} "
        f"| {tot['masked']} | {tot['hit_clear'] / max(tot['clear'], 1):.3f} "
        f"| {tot['unmeas']} | {tot['hit_meas'] / max(tot['strong'] - tot['unmeas'], 1):.3f} "
        f"| {med:.3f} (median of cases) | {tot['false']} | {tot['near']} "
        f"| {tot['false'] * 2048.0**2 / max(tot['area'], 1.0):.1f} "
        f"| {tot['real'] / max(tot['good'], 1):.3f} | |"
    )


if __name__ == "__main__":
    main()
