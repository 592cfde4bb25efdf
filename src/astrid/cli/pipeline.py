"""Pipeline commands: ingest-position, ingest-alerts, worker, status."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from astrid.cli.app import app, console, fail
from astrid.cli.core import parse_angle
from astrid.logs import configure_logging
from astrid.progress import progress_bar
from astrid.runtime import Runtime


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


@app.command("ingest-position")
def ingest_position_cmd(
    survey: Annotated[str, typer.Option(help="SkyView survey ('DSS2 Red') or MAST collection.")],
    ra: Annotated[float, typer.Option(help="Field centre RA, degrees.")],
    dec: Annotated[float, typer.Option(help="Field centre Dec, degrees.")],
    fov: Annotated[str, typer.Option(help="Field of view: 5arcmin, 300arcsec, or degrees.")],
    archive: Annotated[str, typer.Option(help="skyview | mast")] = "skyview",
    pixels: Annotated[int, typer.Option(help="Image side in pixels (SkyView).")] = 300,
    max_images: Annotated[int, typer.Option(help="At most this many images.")] = 5,
    archive_url: Annotated[
        str | None, typer.Option(help="Server root of an archive mirror (default: the archive).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Write the JSON manifest here (default: data dir).")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Ask the archive again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fetch the images of a field from SkyView or MAST and ingest them."""
    from astrid.pipeline.archives import (
        PositionRequest,
        ingest_position,
        open_archive,
        validate_request,
    )
    from astrid.pipeline.queue.actors import submit
    from astrid.pipeline.queue.broker import get_broker, is_in_process

    runtime = Runtime.from_settings()
    runtime.require_migrated()
    request = PositionRequest(archive, survey, ra, dec, parse_angle(fov), pixels, max_images)
    # Everything is checked before anything is queued: a bad request costs nothing.
    request = validate_request(request, open_archive(archive, archive_url))
    if not is_in_process(get_broker()):
        sub = submit(
            "ingest_position",
            archive=request.archive,
            survey=request.survey,
            ra=request.ra,
            dec=request.dec,
            fov=request.fov,
            pixels=request.pixels,
            max_images=request.max_images,
            base_url=archive_url,
            refresh=refresh,
        )
        console.print(f"queued ingest_position as message {sub.message_id}")
        return
    with progress_bar(console) as progress:
        task = progress.add_task(f"{request.archive} {request.survey}", total=None)

        def step(outcome: Any) -> None:
            progress.update(task, advance=1)

        out = ingest_position(
            runtime,
            request,
            base_url=archive_url,
            refresh=refresh,
            check_survey=False,
            on_image=step,
        )
    if not out.fetch.ok:
        raise fail(f"{request.archive} query failed: {out.fetch.error}")
    entries = out.manifest
    path = manifest or (
        runtime.settings.data_dir
        / "manifests"
        / f"{request.archive}_{_slug(request.survey)}_{request.ra:.5f}_{request.dec:+.5f}_"
        f"{request.fov:.5f}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2, default=str))
    failures = [o for o in out.ingests if not o.ok]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "images": len(out.ingests),
                    "manifest_path": str(path),
                    "manifest": entries,
                    "failed": [o.error for o in failures],
                },
                indent=2,
                default=str,
            )
        )
    else:
        new = sum(1 for o in out.ingests if o.ok and o.result.get("created") and not o.reused)
        for o in failures:
            console.print(f"[yellow]failed[/] {o.error}", highlight=False)
        console.print(
            f"{len(out.ingests)} image(s) from {request.archive} {request.survey!r}: "
            f"{new} new, {len(entries) - new} already present, {len(failures)} failed; "
            f"manifest {path}",
            highlight=False,
        )
    if not out.ingests:
        raise fail(f"{request.archive} has no {request.survey!r} image at this position", code=1)


@app.command("ingest-alerts")
def ingest_alerts_cmd(
    paths: Annotated[list[Path], typer.Argument(help="ZTF Avro alert files or folders.")],
    model: Annotated[
        str, typer.Option(help="Scoring model: 'default', a model folder, or 'none'.")
    ] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ingest ZTF alert packets: keep packet and cutouts, record and score detections."""
    from astrid.errors import AstridError
    from astrid.pipeline.alerts import (
        AlertOutcome,
        find_alert_files,
        ingest_alert_file,
        load_alert_scorer,
    )
    from astrid.pipeline.queue.actors import submit
    from astrid.pipeline.queue.broker import get_broker, is_in_process

    for p in paths:
        if not p.exists():
            raise fail(f"{p} does not exist")
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    files = list(find_alert_files(paths))
    if not files:
        raise fail("no .avro alert files found (looked in " + ", ".join(map(str, paths)) + ")")
    model_arg = None if model.lower() == "none" else model
    if not is_in_process(get_broker()):
        for f in files:
            submit("ingest_alert_file", path=str(f.resolve()), model=model_arg)
        console.print(f"queued {len(files)} alert file(s)")
        return
    scorer = None
    if model_arg is not None:
        try:
            scorer = load_alert_scorer(model_arg)
        except AstridError as exc:
            console.print(
                f"[yellow]not scoring:[/] model {model_arg!r} unavailable ({exc}); "
                "alerts are recorded with confidence=None",
                highlight=False,
            )
    outcomes: list[AlertOutcome] = []
    with progress_bar(console) as progress:
        task = progress.add_task("alerts", total=len(files))
        for f in files:
            outcomes.extend(ingest_alert_file(runtime, f, scorer=scorer))
            progress.update(task, advance=1, description=f.name)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
        return
    for o in outcomes:
        if o.status in {"failed", "kept"}:
            console.print(f"[yellow]{o.status}[/] {o.path}: {o.error}", highlight=False)
        elif o.problems:
            console.print(
                f"[yellow]problems[/] {o.path} candid {o.candid}: {'; '.join(o.problems)}",
                highlight=False,
            )
    scored = sum(1 for o in outcomes if o.confidence is not None)
    console.print(
        f"{counts.get('stored', 0)} stored, {counts.get('updated', 0)} updated, "
        f"{counts.get('duplicate', 0)} already present, {counts.get('kept', 0)} kept "
        f"(unknown schema), {counts.get('failed', 0)} failed; {scored} scored",
        highlight=False,
    )


@app.command()
def worker(
    processes: Annotated[int, typer.Option(min=1, max=256, help="Worker processes.")] = 1,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Threads per process.")] = 1,
) -> None:
    """Consume pipeline tasks from the broker (ASTRID_BROKER_URL) until stopped."""
    from astrid.pipeline.queue.worker import require_broker, run_worker, run_workers

    # Refuse to start (one line, exit 2) rather than consume tasks that cannot be recorded.
    require_broker()
    runtime = Runtime.from_settings()
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    try:
        runtime.require_migrated()
    finally:
        runtime.close()

    if processes == 1:
        run_worker(threads)
    else:
        raise typer.Exit(run_workers(processes, threads))


@app.command()
def status(
    failures: Annotated[int, typer.Option(min=0, help="Parked failures to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queue depth, observations per status, stage runs per status, parked failures."""
    from astrid.domain.observations import ObservationService
    from astrid.pipeline.queue.broker import broker_config, get_broker, queue_stats
    from astrid.pipeline.runner import failed_runs, retried_runs, run_counts

    runtime = Runtime.from_settings()
    db = runtime.require_migrated()
    broker = get_broker()
    config = broker_config(broker)
    report: dict[str, Any] = {
        "broker": config.kind,
        "queue": config.queue,
        "queue_stats": queue_stats(broker),
        "observations": ObservationService(db).counts_by_status(),
        "stage_runs": run_counts(runtime),
        "failures": [
            {
                "id": r.id,
                "stage": r.stage,
                "attempts": r.attempts,
                "kind": r.error_kind,
                "inputs": r.inputs,
                "error": r.error,
                "at": r.finished_at,
            }
            for r in failed_runs(runtime, failures)
        ],
        # redelivered (a worker lost mid-task) or retried (transient failure) runs
        "retried": [
            {
                "id": r.id,
                "stage": r.stage,
                "observation_id": r.observation_id,
                "attempts": r.attempts,
                "status": r.status,
                "worker": r.worker,
            }
            for r in retried_runs(runtime, failures)
        ],
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    qs = report["queue_stats"]
    console.print(
        f"broker: {config.kind}  queue {config.queue!r}: "
        + ", ".join(f"{k} {'?' if v is None else v}" for k, v in qs.items()),
        highlight=False,
    )
    obs = Table("status", "observations", title="observations")
    for k, v in report["observations"].items():
        obs.add_row(k, str(v))
    console.print(obs)
    runs = Table("stage", "running", "retrying", "succeeded", "failed", title="stage runs")
    for stage, by in sorted(report["stage_runs"].items()):
        runs.add_row(
            stage, *(str(by.get(s, 0)) for s in ("running", "retrying", "succeeded", "failed"))
        )
    console.print(runs)
    if report["retried"]:
        retried = Table("run", "stage", "observation", "attempts", "status", "last worker",
                        title="runs that took more than one attempt")  # fmt: skip
        for r in report["retried"]:
            retried.add_row(str(r["id"]), r["stage"], str(r["observation_id"] or ""),
                            str(r["attempts"]), r["status"], r["worker"] or "")  # fmt: skip
        console.print(retried)
    if report["failures"]:
        fails = Table("run", "stage", "attempts", "kind", "reason", title="parked failures")
        for f in report["failures"]:
            fails.add_row(str(f["id"]), f["stage"], str(f["attempts"]), str(f["kind"]), f["error"])
        console.print(fails)
