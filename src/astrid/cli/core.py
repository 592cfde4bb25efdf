"""Foundation commands: init, db, ingest, observations, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import astropy.units as u
import typer
from rich.table import Table

from astrid.cli.app import app, console, fail
from astrid.domain.observations import InvalidCoordinatesError, ObservationService
from astrid.pipeline.stages.ingest import IngestOutcome, find_fits_files, ingest_paths
from astrid.progress import progress_bar
from astrid.runtime import Runtime
from astrid.store import db as dbmod
from astrid.store.tables import Observation, ObservationStatus

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
obs_app = typer.Typer(help="List, show and search observations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(obs_app, name="observations")

OBS_COLUMNS = ("id", "survey", "ra", "dec", "mjd", "filter", "exposure_time", "status", "filename")


def parse_angle(text: str, default_unit: str = "deg") -> float:
    """Parse ``2arcmin``, ``30 arcsec``, ``0.1deg`` or a bare number (``default_unit``) → deg."""
    try:
        quantity = u.Quantity(text)
        if quantity.unit == u.dimensionless_unscaled:
            quantity = quantity.value * u.Unit(default_unit)
        return float(quantity.to_value(u.deg))
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise InvalidCoordinatesError(
            f"cannot read angle {text!r}", hint="use e.g. 2arcmin, 30arcsec or 0.05 (degrees)"
        ) from exc


def _row(obs: Observation, survey: str) -> dict[str, Any]:
    return {
        "id": obs.id,
        "survey": survey,
        "ra": round(obs.ra, 6),
        "dec": round(obs.dec, 6),
        "mjd": obs.mjd,
        "filter": obs.filter,
        "exposure_time": obs.exposure_time,
        "status": obs.status.value,
        "filename": obs.filename,
    }


def _survey_names(runtime: Runtime) -> dict[int, str]:
    from sqlalchemy import select

    from astrid.store.tables import Survey

    with runtime.db.session() as session:
        return dict(session.execute(select(Survey.id, Survey.name)).tuples().all())


def _print_observations(runtime: Runtime, rows: list[Observation], as_json: bool) -> None:
    names = _survey_names(runtime)
    records = [_row(o, names.get(o.survey_id, "?")) for o in rows]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table(*OBS_COLUMNS, title=f"{len(records)} observation(s)")
    for rec in records:
        table.add_row(*("" if rec[c] is None else str(rec[c]) for c in OBS_COLUMNS))
    console.print(table)


@app.command()
def init() -> None:
    """Create the data directory and the database schema (safe to run again)."""
    runtime = Runtime.from_settings()
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
    dbmod.upgrade(runtime.settings.resolved_database_url)
    runtime.blobs.check()
    console.print(f"data directory: {runtime.settings.data_dir.resolve()}")
    console.print(f"database:       {runtime.db.engine.url.render_as_string(hide_password=True)}")
    console.print(f"blob store:     {runtime.blobs.url}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the database migrations (creates the schema on an empty database)."""
    url = Runtime.from_settings().settings.resolved_database_url
    dbmod.upgrade(url, revision)
    console.print(f"database at revision {dbmod.current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    url = Runtime.from_settings().settings.resolved_database_url
    console.print(dbmod.current_revision(url) or "(not migrated)")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Revert migrations down to a revision (``base`` drops every table)."""
    url = Runtime.from_settings().settings.resolved_database_url
    dbmod.downgrade(url, revision)
    console.print(f"database at revision {dbmod.current_revision(url) or '(base)'}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="FITS files or directories.")],
    survey: Annotated[
        str | None, typer.Option(help="Survey name (default: from INSTRUME/TELESCOP).")
    ] = None,
) -> None:
    """Ingest local FITS images: store their bytes and record one observation each (one
    per CCD of a mosaic file)."""
    for p in paths:
        if not p.exists():
            raise fail(f"{p} does not exist")
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    files = list(find_fits_files(paths))
    if not files:
        raise fail("no FITS files found (looked for " + ", ".join(map(str, paths)) + ")")
    counts = {"ingested": 0, "duplicate": 0, "failed": 0}
    failures: list[IngestOutcome] = []
    with progress_bar(console) as progress:
        task = progress.add_task("ingesting", total=len(files))

        seen: set[str] = set()

        def step(outcome: IngestOutcome) -> None:  # one per file, or per CCD of a mosaic
            counts[outcome.status] += 1
            if outcome.status == "failed":
                failures.append(outcome)
            seen.add(outcome.path)
            progress.update(task, completed=len(seen), description=Path(outcome.path).name)

        ingest_paths(runtime, files, survey=survey, on_progress=step)
    for f in failures:
        console.print(f"[yellow]skipped[/] {f.label}: {f.error}", highlight=False, soft_wrap=True)
    console.print(
        f"{counts['ingested']} ingested, {counts['duplicate']} already present, "
        f"{counts['failed']} failed"
    )
    if counts["failed"] and not (counts["ingested"] or counts["duplicate"]):
        raise typer.Exit(1)


@obs_app.command("list")
def observations_list(
    survey: Annotated[str | None, typer.Option(help="Only this survey.")] = None,
    status: Annotated[ObservationStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List observations, oldest first."""
    runtime = Runtime.from_settings()
    service = ObservationService(runtime.require_migrated())
    rows = service.list(survey=survey, status=status, limit=limit, offset=offset)
    _print_observations(runtime, rows, as_json)


@obs_app.command("show")
def observations_show(observation_id: int) -> None:
    """Show every recorded field of one observation as JSON."""
    runtime = Runtime.from_settings()
    obs = ObservationService(runtime.require_migrated()).get(observation_id)
    record = {c.key: getattr(obs, c.key) for c in Observation.__table__.columns}
    typer.echo(json.dumps(record, indent=2, default=str))


@obs_app.command("search")
def observations_search(
    ra: Annotated[float, typer.Option(help="Centre RA, degrees.")],
    dec: Annotated[float, typer.Option(help="Centre Dec, degrees.")],
    radius: Annotated[str, typer.Option(help="Radius: 2arcmin, 30arcsec, or degrees.")],
    survey: Annotated[str | None, typer.Option(help="Only this survey.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cone search: observations whose centre lies within the radius, nearest first."""
    runtime = Runtime.from_settings()
    service = ObservationService(runtime.require_migrated())
    rows = service.cone_search(ra, dec, parse_angle(radius), survey=survey)
    _print_observations(runtime, rows, as_json)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Random seed of the simulated survey.")] = 1,
    fields: Annotated[int, typer.Option(min=1, max=20, help="Simulated fields.")] = 3,
    epochs: Annotated[int, typer.Option(min=2, max=20, help="Epochs per field.")] = 4,
    report: Annotated[bool, typer.Option(help="Write the HTML report.")] = True,
    alerts: Annotated[
        bool, typer.Option(help="Also ingest and score the real ZTF alerts if present.")
    ] = True,
) -> None:
    """The main job: simulate a small survey, run the whole pipeline on it, and report.

    Simulates a few fields over several epochs with injected transients, ingests them into
    the data directory, preprocesses, selects references, subtracts (ZOGY), extracts and
    scores candidates, compares what was found with the injected truth, and writes an HTML
    report with a cutout gallery and a completeness plot. Runs offline on the embedded
    defaults (SQLite, local files, in-process workers).
    """
    from astrid.pipeline.demo import run_demo

    run_demo(
        Runtime.from_settings(),
        seed=seed,
        console=console,
        n_fields=fields,
        n_epochs=epochs,
        report=report,
        alerts=alerts,
    )
