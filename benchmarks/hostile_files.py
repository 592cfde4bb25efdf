"""Peak memory and time of reading hostile FITS files (issue 16, items 1–2).

Each file is generated in a temporary folder (never committed), then read by
:func:`astrid.science.fitsio.read_image` in a fresh Python process that reports its own peak
RSS (``ru_maxrss``), the time of the read and the outcome. ``baseline`` is the same process
reading a small valid image, so the difference is what the hostile file cost.

    python benchmarks/hostile_files.py                 # this tree's code
    python benchmarks/hostile_files.py --cards-only --src /path/to/old/src   # before/after

Results go in docs/operations.md ("Limits").
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

BLOCK = 2880
MiB = 1 << 20

CHILD = r"""
import json, resource, sys, time
from astrid.science import fitsio, fitsmeta
path, max_cards = sys.argv[1], int(sys.argv[2])
kwargs = {}
if hasattr(fitsio, "FitsLimits"):
    kwargs["limits"] = fitsio.FitsLimits(max_cards=max_cards)
t0 = time.perf_counter()
try:
    image = fitsio.read_image(path, **kwargs)
    fitsmeta.image_metadata(image.header, image.data.shape)
    outcome = f"accepted {image.data.shape}"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:90]}"
elapsed = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_rss_mb": rss, "outcome": outcome}))
"""


def header(cards: list[str]) -> bytes:
    text = "".join(c.ljust(80) for c in [*cards, "END"])
    return (text + " " * (-len(text) % BLOCK)).encode("ascii")


def image_cards(nx: int, ny: int) -> list[str]:
    return [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        f"NAXIS1  = {nx:20d}",
        f"NAXIS2  = {ny:20d}",
        "CTYPE1  = 'RA---TAN'",
        "CTYPE2  = 'DEC--TAN'",
        "CRVAL1  =                150.0",
        "CRVAL2  =                  2.0",
        f"CRPIX1  = {nx / 2:20.1f}",
        f"CRPIX2  = {ny / 2:20.1f}",
        "CDELT1  =             -0.00007",
        "CDELT2  =              0.00007",
    ]


def gzip_to(path: Path, pieces: list[tuple[bytes, int]]) -> None:
    """Write gzip of ``piece × count`` in a stream (the plain file never exists)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        for chunk, count in pieces:
            for _ in range(count):
                out.write(comp.compress(chunk))
        out.write(comp.flush())


def small_image(nx: int = 64, ny: int = 64, extra_cards: int = 0) -> bytes:
    import numpy as np

    cards = image_cards(nx, ny) + [f"HIERARCH K{i:07d} = {i}" for i in range(extra_cards)]
    data = np.random.default_rng(1).normal(100, 5, (ny, nx)).astype(">f4").tobytes()
    return header(cards) + data + bytes(-len(data) % BLOCK)


def run(path: Path, src: str, max_cards: int = 10_000) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(max_cards)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        return {"seconds": float("nan"), "peak_rss_mb": float("nan"), "outcome": out.stderr[-200:]}
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    parser.add_argument("--cards-only", action="store_true", help="only the long headers")
    parser.add_argument("--cards", type=int, nargs="*", default=[10_000, 50_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="astrid-hostile-") as tmp:
        folder = Path(tmp)
        cases: list[tuple[str, Path, int]] = []
        base = folder / "baseline.fits"
        base.write_bytes(small_image())
        cases.append(("baseline: valid 64×64 image", base, 10_000))
        if not args.cards_only:
            bomb = folder / "zeros.gz"
            gzip_to(bomb, [(bytes(16 * MiB), 128)])  # 2 GiB of zeros
            cases.append(
                (f"gzip bomb: 2 GiB of zeros ({bomb.stat().st_size / MiB:.1f} MB)", bomb, 0)
            )
            big = folder / "big.fits.gz"
            data_size = 22000 * 22000 * 4
            gzip_to(
                big,
                [
                    (header(image_cards(22000, 22000)), 1),
                    (bytes(16 * MiB), data_size // (16 * MiB) + 1),
                ],
            )
            cases.append(
                (f"valid 22000×22000 float32 ({big.stat().st_size / MiB:.1f} MB gz)", big, 0)
            )
            near = folder / "limit.fits.gz"  # accepted: what a genuine image at the limit costs
            gzip_to(near, [(header(image_cards(10000, 10000)), 1), (b"B" * (8 * MiB), 48)])
            with open(near, "ab") as fh:  # 400 MB of data: 384 MiB above + the rest
                rest = 10000 * 10000 * 4 - 48 * 8 * MiB
                fh.write(gzip.compress(b"B" * rest + bytes(-(10000 * 10000 * 4) % BLOCK)))
            cases.append(("valid 10000×10000 float32 at the pixel limit", near, 0))
            endless = folder / "endless.fits.gz"
            start = "".join(c.ljust(80) for c in image_cards(10, 10)).ljust(BLOCK).encode()
            gzip_to(endless, [(start, 1), (b" " * BLOCK, 400_000)])  # 1.1 GB header, no END
            cases.append(
                (
                    f"header without END (1.1 GB, {endless.stat().st_size / MiB:.1f} MB gz)",
                    endless,
                    0,
                )
            )
        for n in args.cards:
            path = folder / f"cards{n}.fits"
            path.write_bytes(small_image(extra_cards=n))
            cases.append(
                (
                    f"{n:,}-card header ({path.stat().st_size / MiB:.1f} MB), default cap",
                    path,
                    10_000,
                )
            )
            cases.append((f"{n:,}-card header, cap raised to {n + 100:,}", path, n + 100))
        print(f"{'file':58s} {'seconds':>8s} {'peak RSS MB':>12s}  outcome")
        for label, path, cards in cases:
            r = run(path, args.src, cards or 10_000)
            print(f"{label:58s} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f}  {r['outcome']}")


if __name__ == "__main__":
    main()
