"""Injection test of the streak test: satellite trails in simulated pairs, exact labels.

    python benchmarks/streak_injection.py [--size 1024] [--seeds 8]

Each field: ``simulate_pair`` with stars, transients, moving objects (asteroids), cosmic
rays (10 in the new image) and one satellite trail (half dotted, half continuous), then
AstrID's own differencing and extraction (``subtract_pair`` + ``extract_candidates``,
ZOGY, 5 sigma, both signs) and the two streak tests with their a-priori defaults: the
group test on the candidates' pixel positions (``collinear_groups``: tolerance 2 px, >= 4
members, NFA <= 1e-3, the region = the image) and the in-stamp test on each candidate's
63-px difference stamp (``stamp_trail``: 3-sigma footprint spanning >= 75 % of the stamp,
axis ratio >= 4). Candidates are labelled by the nearest truth row within 2.5 px: a spot
of a trail, a transient, a moving object (either epoch), a cosmic ray, else other. A
control set of the same fields without trails gives the chance rate.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.spatial import cKDTree

from astrid.science.cutouts import stamp
from astrid.science.difference import subtract_pair
from astrid.science.extract import extract_candidates
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure
from astrid.science.streaks import collinear_groups, stamp_trail, streak_labels

TESTS = ("group", "stamp", "either")


def field(
    seed: int, size: int, n_streaks: int
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], str]:
    """(flags per test, trail of each candidate, kind of each candidate, the trail's
    description) for one field."""
    rng = np.random.default_rng(seed)
    new = Exposure(psf=AnalyticPSF(fwhm=float(rng.uniform(2.0, 4.5))), mjd=60030, cosmic_rays=10)
    ref = Exposure(psf=AnalyticPSF(fwhm=float(rng.uniform(1.8, 3.0))))
    scale = (size / 1024) ** 2
    p = simulate_pair(
        (size, size),
        int(800 * scale),
        seed=seed,
        new=new,
        ref=ref,
        n_transients=int(40 * scale) + 2,
        transient_flux_range=(300, 5000),
        n_moving=int(10 * scale) + 1,
        n_streaks=n_streaks,
    )
    result, pair = subtract_pair(write_simulated(p.new), write_simulated(p.ref), "zogy")
    tab = extract_candidates(result, 5.0, wcs=pair.wcs)
    x, y = np.asarray(tab["x"], float), np.asarray(tab["y"], float)
    groups = collinear_groups(x, y, area=float(size * size), chord=math.hypot(size, size))
    in_group = streak_labels(len(x), groups) >= 0
    in_stamp = np.array(
        [
            stamp_trail(sg * stamp(result.diff, xx, yy, 63)).is_trail
            for xx, yy, sg in zip(x, y, np.asarray(tab["sign"], float), strict=True)
        ],
        dtype=bool,
    )
    flags = {"group": in_group, "stamp": in_stamp, "either": in_group | in_stamp}
    t = p.truth
    # both epochs of every object (the two grids coincide: no pointing offset here)
    tx = np.concatenate([np.asarray(t["x_ref"]), np.asarray(t["x_new"])])
    ty = np.concatenate([np.asarray(t["y_ref"]), np.asarray(t["y_new"])])
    kinds = np.concatenate([np.asarray(t["kind"]), np.asarray(t["kind"])])
    trails = np.concatenate([np.asarray(t["trail"]), np.asarray(t["trail"])])
    ok = np.isfinite(tx) & np.isfinite(ty)
    tx, ty, kinds, trails = tx[ok], ty[ok], kinds[ok], trails[ok]
    if len(x) and len(tx):
        d, j = cKDTree(np.c_[tx, ty]).query(np.c_[x, y])
        kind = [str(kinds[k]) if dd < 2.5 else "other" for dd, k in zip(d, j, strict=True)]
        trail = np.where(d < 2.5, trails[np.minimum(j, len(trails) - 1)], -1)
    else:
        kind, trail = ["other"] * len(x), np.full(len(x), -1)
    spots = t[t["kind"] == "streak"]
    what = "no trail"
    if len(spots) > 1:
        step = float(np.hypot(np.diff(spots["x_new"]), np.diff(spots["y_new"])).mean())
        peak = float(np.asarray(p.new.data)[int(spots["y_new"][0]), int(spots["x_new"][0])])
        kind_of = f"dotted {step:4.1f} px" if step > 1 else "continuous   "
        what = f"{kind_of}, {len(spots):4d} spots, FWHM {new.psf.fwhm:.1f} px, peak {peak:.0f}"
    return flags, np.asarray(trail), kind, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    t0 = time.perf_counter()
    for n_streaks, label in ((1, "with one trail per field"), (0, "control, no trail")):
        counts: dict[str, dict[str, int]] = {}
        found = dict.fromkeys(TESTS, 0)
        for seed in range(args.seeds):
            flags, trail, kind, what = field(1000 + seed, args.size, n_streaks)
            if n_streaks:
                on = trail == 0
                print(
                    f"  field {seed:2d}: {what}: {int(on.sum()):3d} candidates on it, "
                    + ", ".join(f"{t} {int((flags[t] & on).sum())}" for t in TESTS[:2]),
                    flush=True,
                )
            for i, k in enumerate(kind):
                c = counts.setdefault(k, {"n": 0, **dict.fromkeys(TESTS, 0)})
                c["n"] += 1
                for t in TESTS:
                    c[t] += int(flags[t][i])
            for t in TESTS:
                found[t] += int(bool((flags[t] & (trail == 0)).any()))
        print(f"\n{label}: {args.seeds} fields of {args.size}^2; candidates flagged by")
        print(f"  {'kind':<12} {'n':>5} " + " ".join(f"{t:>16}" for t in TESTS))
        for k in sorted(counts):
            c = counts[k]
            cells = " ".join(f"{c[t]:5d} ({c[t] / c['n']:6.1%})" for t in TESTS)
            print(f"  {k:<12} {c['n']:5d} {cells}")
        if n_streaks:
            print(
                "  trails with >= 1 piece flagged: "
                + ", ".join(f"{t} {found[t]}/{args.seeds}" for t in TESTS)
            )
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
