"""Time to build AstrID's sky HiPS (``astrid sky build-hips``) from simulated references.

Simulates ``--fields`` demo fields (epoch 0 = the reference, ``--size``² pixels of 0.5"),
stores them as active references in a fresh SQLite database + local blob store, then times
:func:`astrid.pipeline.hips.build_reference_hips` (a full build, then the no-change check),
and reports the order, tile count and size on disk.

Run by hand (results go to docs/dashboard.md, section "Sky map")::

    python benchmarks/hips_build.py --fields 4 --size 512
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from astropy.io import fits

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.hips import build_reference_hips
from astrid.runtime import Runtime
from astrid.science.fitsio import celestial_wcs
from astrid.settings import Settings
from astrid.store.db import upgrade
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'astrid.db'}"
        upgrade(url)
        runtime = Runtime(Settings(data_dir=root, database_url=url, _env_file=None))  # type: ignore[call-arg]
        survey = simulate_demo_survey(
            root / "sim", shape=(args.size, args.size), n_fields=args.fields, n_epochs=2
        )
        refs = sorted(p for p in survey.paths if p.stem.endswith("-e0"))
        with runtime.db.session() as session:
            for path in refs:
                with fits.open(path) as hdul:
                    ra, dec = celestial_wcs(hdul[0].header).wcs.crval
                key = runtime.blobs.put(path.read_bytes())
                session.add(
                    Reference(
                        filter="r",
                        ra=ra,
                        dec=dec,
                        healpix=int(healpix_index(ra, dec)),
                        blob_key=key,
                    )
                )
        start = time.perf_counter()
        built = build_reference_hips(runtime)
        full = time.perf_counter() - start
        start = time.perf_counter()
        again = build_reference_hips(runtime)
        check = time.perf_counter() - start
        size = sum(f.stat().st_size for f in built.path.rglob("*") if f.is_file())
        runtime.close()
    print(
        f"{len(refs)} references of {args.size}^2 px: HiPS order {built.order}, "
        f"{built.n_tiles} tiles, {size / 1e6:.1f} MB; build {full:.2f} s; "
        f"up-to-date check {check * 1000:.0f} ms (rebuilt={again.rebuilt}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
