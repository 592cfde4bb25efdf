"""Ingesting one mosaic file (N CCDs, each with its own WCS) as N observations: CPU seconds of
``ingest_data`` on SQLite with a local blob store, plain and gzipped, and of reading every CCD
of the gzipped file one by one with and without removing the gzip layer once first. With
``--preprocess-only``, instead, the CPU seconds and peak RSS of ingesting the gzipped file, then of
preprocessing every CCD of it (one observation after the other, as ``astrid process`` does) and a
digest of the products' blob keys (content hashes: the same digest, the same products).

    python benchmarks/mosaic_ingest.py                      # 16 CCDs of 1024 x 2048, ~1 min
    python benchmarks/mosaic_ingest.py --ccds 8 --shape 512 1024
    python benchmarks/mosaic_ingest.py --preprocess-only --ccds 8
    ASTRID_PIPELINE_RAW_CACHE_MB=64 python benchmarks/mosaic_ingest.py --preprocess-only
        # the file (134 MB decompressed) above the in-memory cache: spooled to disk once,
        # by ingest, where every CCD's preprocess then finds it

Results go in docs/imaging.md ("Mosaic files").
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import resource
import tempfile
import time
from pathlib import Path

from astropy.io import fits

from astrid.pipeline.stages.ingest import ingest_data, stored_images
from astrid.runtime import Runtime
from astrid.science.fitsio import read_image, science_hdus, uncompressed
from astrid.science.simulate_image import simulate_star_field
from astrid.settings import Settings
from astrid.store.db import upgrade


def _mosaic(n: int, shape: tuple[int, int]) -> bytes:
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for i in range(n):
        sim = simulate_star_field(shape, n_stars=50, seed=i, ra=10.0 + 0.5 * i, dec=-20.0)
        hdus.append(fits.ImageHDU(sim.data, sim.header, name=f"C{i + 1}"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _read_all(data: bytes, once: bool) -> float:
    t = time.process_time()
    src = uncompressed(data) if once else data
    for index, _ in science_hdus(src):
        read_image(src, index, validate=True)
    return time.process_time() - t


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5), so that
    :func:`_peak_rss_mb` measures what follows only; nothing elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float | None:
    """Peak RSS (MB) since :func:`_reset_peak_rss` (``VmHWM``), None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _preprocess_all(runtime: Runtime, data: bytes, ccds: int) -> None:
    """Ingest ``data`` and preprocess each of its observations; print CPU s and a digest of
    the products' keys."""
    from astrid.pipeline.params import PreprocessParams
    from astrid.pipeline.stages.preprocess import preprocess_observation

    params = PreprocessParams(min_quality=0.0)  # a star-poor simulated CCD is kept too

    _reset_peak_rss()
    t = time.process_time()
    out = ingest_data(runtime, data, filename="mosaic.fits.gz")
    spent = time.process_time() - t
    hwm = _peak_rss_mb()
    ids = [i.observation_id for i in stored_images(out) or [] if i.observation_id is not None]
    assert len(ids) == ccds, out
    print(f"| ingest the gzipped file ({ccds} observations) | {spent:.2f} | {spent / ccds:.3f} |")
    if hwm is not None:
        print(f"peak RSS while ingesting {hwm:.0f} MB (the file's bytes built above included)")
    _reset_peak_rss()
    t = time.process_time()
    results = [preprocess_observation(runtime, i, params) for i in ids]
    spent = time.process_time() - t
    hwm = _peak_rss_mb()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    digest = hashlib.sha256(
        "".join(str(r.value["image_key"]) for r in results).encode()
    ).hexdigest()[:16]
    print(f"| preprocess every CCD of the gzipped file ({ccds} observations) | {spent:.2f} | "
          f"{spent / ccds:.3f} |")  # fmt: skip
    print(f"products digest {digest}")
    if hwm is not None:
        print(f"peak RSS while preprocessing {hwm:.0f} MB (the file's bytes built above included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ccds", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=2, default=(1024, 2048), metavar=("NY", "NX"))
    parser.add_argument(
        "--preprocess-only", action="store_true", help="only the preprocess measurement"
    )
    args = parser.parse_args()
    shape = (int(args.shape[0]), int(args.shape[1]))
    plain = _mosaic(args.ccds, shape)
    gz = gzip.compress(plain, 1)
    print(f"{args.ccds} CCDs of {shape[0]} x {shape[1]}: {len(plain) / 1e6:.0f} MB plain, "
          f"{len(gz) / 1e6:.0f} MB gzipped")  # fmt: skip
    print("| step | CPU s | per CCD |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'astrid.db'}"
        upgrade(url)
        runtime = Runtime(Settings(data_dir=Path(tmp), database_url=url, _env_file=None))  # type: ignore[call-arg]
        if args.preprocess_only:
            del plain
            _preprocess_all(runtime, gz, args.ccds)
            runtime.close()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS {peak:.0f} MB")
            return
        for label, data in (("ingest, plain", plain), ("ingest, gzipped", gz)):
            t = time.process_time()
            out = ingest_data(runtime, data, filename=label)
            spent = time.process_time() - t
            images = stored_images(out) or []
            assert out.ok and sum(i.observation_id is not None for i in images) == args.ccds
            print(f"| {label} ({args.ccds} observations) | {spent:.2f} | {spent / args.ccds:.3f} |")
            t = time.process_time()
            again = ingest_data(runtime, data, filename=label)
            assert again.reused
            print(f"| {label}, again (the run reused) | {time.process_time() - t:.3f} | – |")
        runtime.close()
    for once in (False, True):
        spent = _read_all(gz, once)
        how = "gzip removed once" if once else "gzip decompressed per CCD"
        print(f"| read every CCD of the gzipped file, {how} | {spent:.2f} | "
              f"{spent / args.ccds:.3f} |")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
