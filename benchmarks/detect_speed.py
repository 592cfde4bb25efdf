"""Whole-process wall time, CPU time and peak RSS of ``astrid detect`` (imports included).

Writes a simulated pair per size (Gaussian PSFs 2.5 / 3.5 px, 800 stars and 100 transients
per 1024², the new pointing shifted by (0.37, −0.62) px and rotated 0.1°, so the new image is
resampled as it would be in production) and times ``python -m astrid detect NEW REF -o CSV``
in a fresh process (``OMP_NUM_THREADS=1``: one core), best of ``--repeat`` runs. ``--src``
picks the source tree, so the same pairs time two checkouts (e.g. main before a change, a
worktree after it), which take turns run by run. CPU time (user + sys of the child) is
reported beside wall time: on a shared machine the wall time grows with the other jobs'
load, the CPU time much less.

A second table profiles one ``astrid detect`` per source at ``--profile-size`` in CPU time
(``cProfile`` with ``time.process_time``), split into the phases of the command; a third
times ``import astrid.cli.science, astrid.science.difference`` alone.

Run: ``python benchmarks/detect_speed.py --sizes 1024,2048,4096 [--src a/src,b/src]
[--repeat 3] [--profile-size 2048]``
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure

# phase -> functions (file suffix, name) whose cumulative CPU time it is (cumulative: a phase
# includes the phases nested in it, e.g. align_to_reference includes the resampling)
PHASES = (
    ("align_to_reference (footprint, resample, noise)", ("difference.py", "align_to_reference")),
    ("align_to_reference (footprint, resample, noise)", ("_alignment.py", "align_to_reference")),
    ("- of which resample (reproject_to)", ("align.py", "reproject_to")),
    ("- of which resample (reproject_to)", ("resample.py", "reproject_to")),
    ("prepare_image (background, stars, PSF) ×2", ("diffimage.py", "prepare_image")),
    ("residual shift refinement", ("difference.py", "_refine_shift")),
    ("residual shift refinement", ("pair_alignment.py", "refine_shift")),
    ("ZOGY (flux ratio, tiles, S_corr)", ("zogy.py", "zogy")),
    ("extract_candidates", ("extract.py", "extract_candidates")),
    ("vetting (cosmic rays, symmetric residuals)", ("difference.py", "_vet_cosmic_rays")),
    ("vetting (cosmic rays, symmetric residuals)", ("difference.py", "_vet_symmetric_residuals")),
    ("vetting (cosmic rays, symmetric residuals)", ("candidate_vetting.py", "vet_cosmic_rays")),
    ("vetting (cosmic rays, symmetric residuals)", ("candidate_vetting.py", "vet_star_residuals")),
    ("read FITS", ("cli/science.py", "_read_with_wcs")),
    ("whole detect command (with its import of the science modules)", ("cli/science.py", "detect")),
)

_PROFILE = """
import cProfile, sys, time
prof = cProfile.Profile(time.process_time)
prof.enable()
from astrid.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
prof.disable()
prof.dump_stats(sys.argv[1])
"""


def _run(cmd: list[str], src: str) -> tuple[float, float, float]:
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (CPU, peak RSS)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    # ru_maxrss is in KiB on Linux
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def _phases(stats_file: Path) -> dict[str, float]:
    st = pstats.Stats(str(stats_file))
    stats = st.stats  # type: ignore[attr-defined]
    out: dict[str, float] = {"total profiled (imports included)": st.total_tt}  # type: ignore[attr-defined]
    for (fname, _, func), (_, _, _, cum, _) in stats.items():
        for phase, (suffix, name) in PHASES:
            if func == name and fname.replace("\\", "/").endswith(suffix):
                out[phase] = out.get(phase, 0.0) + cum
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile-size", type=int, default=2048, help="0: no profile")
    args = ap.parse_args()
    srcs = args.src.split(",")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        print("| size | source | wall (s, best) | CPU user+sys (s, best) | peak RSS (MB) "
              "| candidates |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sorted(set(sizes) | ({args.profile_size} - {0})):
            scale = (size / 1024) ** 2
            pair = simulate_pair(
                (size, size), int(800 * scale), seed=1, n_transients=int(100 * scale),
                new=Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0, offset=(0.37, -0.62),
                             rotation=0.1),
                ref=Exposure(psf=AnalyticPSF(fwhm=2.5)),
            )  # fmt: skip
            write_simulated(pair.new, Path(tmp, f"new{size}.fits"))
            write_simulated(pair.ref, Path(tmp, f"ref{size}.fits"))
            del pair
            if size not in sizes:
                continue
            new, ref = Path(tmp, f"new{size}.fits"), Path(tmp, f"ref{size}.fits")
            # the sources take turns (a, b, a, b...) so that a change in the machine's load
            # falls on both
            runs: dict[str, list[tuple[float, float, float]]] = {src: [] for src in srcs}
            counts: dict[str, int] = {}
            for _ in range(args.repeat):
                for k, src in enumerate(srcs):
                    out = Path(tmp, f"out{k}.csv")
                    cmd = [sys.executable, "-m", "astrid", "detect", str(new), str(ref), "-o",
                           str(out)]  # fmt: skip
                    runs[src].append(_run(cmd, src))
                    counts[src] = sum(1 for _ in out.open()) - 1
            for src in srcs:
                r = runs[src]
                print(f"| {size}² | {src} | {min(x[0] for x in r):.2f} "
                      f"| {min(x[1] for x in r):.2f} | {max(x[2] for x in r):.0f} "
                      f"| {counts[src]} |", flush=True)  # fmt: skip
        size = args.profile_size
        new, ref = Path(tmp, f"new{size}.fits"), Path(tmp, f"ref{size}.fits")
        profiles = []
        for k, src in enumerate(srcs if size else []):
            prof = Path(tmp, f"detect{k}.prof")
            cmd = [sys.executable, "-c", _PROFILE, str(prof), "detect", str(new), str(ref), "-o",
                   str(Path(tmp, "p.csv"))]  # fmt: skip
            _run(cmd, src)
            profiles.append(_phases(prof))
        if not size:
            return
        print(f"\nCPU seconds per phase of one `astrid detect` at {size}² (cProfile, process "
              "time; the profiler adds its own overhead):\n")  # fmt: skip
        print("| phase | " + " | ".join(srcs) + " |")
        print("|---|" + "---|" * len(srcs))
        for phase in ["total profiled (imports included)", *dict.fromkeys(p for p, _ in PHASES)]:
            print(f"| {phase} | " + " | ".join(f"{p.get(phase, 0.0):.2f}" for p in profiles)
                  + " |")  # fmt: skip
    print("\n| source | `import astrid.cli.science, astrid.science.difference`: wall (s, best) "
          "| CPU (s, best) |\n|---|---|---|")  # fmt: skip
    for src in srcs:
        cmd = [sys.executable, "-c", "import astrid.cli.science, astrid.science.difference"]
        runs = [_run(cmd, src) for _ in range(args.repeat)]
        print(f"| {src} | {min(r[0] for r in runs):.2f} | {min(r[1] for r in runs):.2f} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
