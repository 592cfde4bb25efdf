"""``astrid demo``: the main job on the embedded defaults, from nothing to a listed survey.

It simulates a small survey (a few fields, two epochs each, with injected transients), writes
the images as FITS, ingests them into the data directory's SQLite database and blob store,
and prints what was recorded. Later stages of the pipeline extend this same entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from astrid.domain.observations import ObservationService
from astrid.pipeline.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.science.simulate import Exposure, PSFModel, simulate_pair, write_simulated
from astrid.store import db as dbmod

__all__ = ["DEMO_FIELDS", "DemoSummary", "run_demo", "write_demo_survey"]

# (name, RA, Dec) of the simulated fields: one near RA 0, one far south, one near the pole.
DEMO_FIELDS = (("field-a", 0.5, 1.0), ("field-b", 318.1, -66.0), ("field-c", 120.0, 85.0))


@dataclass(frozen=True)
class DemoSummary:
    """What the demo produced."""

    files: list[Path]
    ingested: int
    duplicates: int
    failed: int
    observations: int


def write_demo_survey(
    folder: Path, seed: int = 1, shape: tuple[int, int] = (256, 256)
) -> list[Path]:
    """Simulate two epochs of each demo field and write them as FITS files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, ra, dec) in enumerate(DEMO_FIELDS):
        pair = simulate_pair(
            shape=shape,
            n_stars=150,
            seed=seed * 100 + i,
            ra=ra,
            dec=dec,
            ref=Exposure(psf=PSFModel(fwhm=2.6), mjd=60000.0 + i, filter="r"),
            new=Exposure(psf=PSFModel(fwhm=3.2), mjd=60030.0 + i, filter="r", offset=(1.3, -0.7)),
            n_transients=4,
        )
        for epoch, image in (("ref", pair.ref), ("new", pair.new)):
            path = folder / f"{name}-{epoch}.fits"
            path.write_bytes(write_simulated(image))
            paths.append(path)
    return paths


def run_demo(runtime: Runtime, seed: int = 1, console: Console | None = None) -> DemoSummary:
    """Initialise the data directory, simulate, ingest and list a small survey."""
    console = console or Console()
    settings = runtime.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dbmod.upgrade(settings.resolved_database_url)
    console.rule("AstrID demo")
    console.print(f"data directory: {settings.data_dir.resolve()}")
    files = write_demo_survey(settings.data_dir / "demo" / "raw", seed=seed)
    console.print(f"simulated {len(files)} images of {len(DEMO_FIELDS)} fields (2 epochs each)")
    outcomes = ingest_paths(runtime, files, survey="demo")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ingested", "duplicate", "failed")}
    service = ObservationService(runtime.db)
    table = Table("id", "field", "ra", "dec", "mjd", "filter", "status", title="observations")
    for obs in service.list(survey="demo", limit=1000):
        table.add_row(
            str(obs.id),
            (obs.filename or "").removesuffix(".fits"),
            f"{obs.ra:.4f}",
            f"{obs.dec:.4f}",
            f"{obs.mjd:.1f}" if obs.mjd is not None else "",
            obs.filter or "",
            obs.status.value,
        )
    console.print(table)
    console.print(
        f"{counts['ingested']} ingested, {counts['duplicate']} already present, "
        f"{counts['failed']} failed"
    )
    console.print(
        "next: `astrid observations search --ra 318.1 --dec -66.0 --radius 10arcmin`, "
        "`astrid ingest PATH...` for your own FITS files"
    )
    return DemoSummary(
        files=files,
        ingested=counts["ingested"],
        duplicates=counts["duplicate"],
        failed=counts["failed"],
        observations=service.count(survey="demo"),
    )
