"""Whole-process wall time and peak RSS of ``astrid detect`` (imports included).

Writes a simulated pair per size (Gaussian PSFs 2.5 / 3.5 px, 800 stars and 100 transients
per 1024², the new pointing shifted by (0.37, −0.62) px and rotated 0.1°, so the new image is
resampled as it would be in production) and times ``python -m astrid detect NEW REF -o CSV``
in a fresh process, best of ``--repeat`` runs. ``--src`` picks the source tree, so the same
pairs time two checkouts (e.g. main before a change, a worktree after it). A second table
times ``python -c "import astrid.science.difference"`` alone.

Run: ``python benchmarks/detect_speed.py --sizes 1024,2048 [--src a/src,b/src] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure


def _run(cmd: list[str], src: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (peak RSS)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    srcs = args.src.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        print("| size | source | wall (s, best) | peak RSS (MB) | candidates |")
        print("|---|---|---|---|---|")
        for size in (int(s) for s in args.sizes.split(",")):
            scale = (size / 1024) ** 2
            pair = simulate_pair(
                (size, size), int(800 * scale), seed=1, n_transients=int(100 * scale),
                new=Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0, offset=(0.37, -0.62),
                             rotation=0.1),
                ref=Exposure(psf=AnalyticPSF(fwhm=2.5)),
            )  # fmt: skip
            new, ref = Path(tmp, f"new{size}.fits"), Path(tmp, f"ref{size}.fits")
            write_simulated(pair.new, new)
            write_simulated(pair.ref, ref)
            for src in srcs:
                out = Path(tmp, "out.csv")
                cmd = [sys.executable, "-m", "astrid", "detect", str(new), str(ref), "-o", str(out)]
                runs = [_run(cmd, src) for _ in range(args.repeat)]
                n = sum(1 for _ in out.open()) - 1
                print(f"| {size}² | {src} | {min(r[0] for r in runs):.2f} "
                      f"| {max(r[1] for r in runs):.0f} | {n} |", flush=True)  # fmt: skip
        print("\n| source | `import astrid.science.difference` (s, best) |\n|---|---|")
        for src in srcs:
            cmd = [sys.executable, "-c", "import astrid.science.difference"]
            print(f"| {src} | {min(_run(cmd, src)[0] for _ in range(args.repeat)):.2f} |")


if __name__ == "__main__":
    main()
