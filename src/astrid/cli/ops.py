"""Operations commands: backup and restore of a whole deployment, scheduled flows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress as RichProgress
from rich.progress import TaskID
from rich.table import Table

from astrid.cli.app import app, console
from astrid.flows.backup import Progress, backup, restore
from astrid.flows.library import FLOWS
from astrid.flows.schedules import (
    ScheduleError,
    add_schedule,
    list_flow_runs,
    list_schedules,
    remove_schedule,
    run_due,
    run_flow,
)
from astrid.logs import configure_logging
from astrid.progress import progress_bar
from astrid.runtime import Runtime
from astrid.store.tables import FlowRun


def _bar_callback(bar: RichProgress) -> Progress:
    tasks: dict[str, TaskID] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done, total=total)

    return update


@app.command("backup")
def backup_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="New or empty backup folder.")],
    blobs_to: Annotated[
        str | None,
        typer.Option(help="Sync blobs to this second storage URL (file:// or s3://) instead."),
    ] = None,
) -> None:
    """Back up the database, blobs and MLflow store of the configured deployment."""
    runtime = Runtime.from_settings()
    try:
        with progress_bar(console) as bar:
            report = backup(runtime, output, blobs_to=blobs_to, progress=_bar_callback(bar))
    finally:
        runtime.close()
    rows = sum(report.rows.values())
    console.print(
        f"backup written to {report.path}: {rows} rows in {len(report.rows)} tables "
        f"(schema {report.revision}), {report.blobs} blobs, MLflow {report.mlflow}; "
        f"{report.size_bytes / 1e6:.1f} MB in {report.seconds:.1f} s",
        highlight=False,
    )
    for warning in report.warnings:
        console.print(f"warning: {warning}", highlight=False)


@app.command("restore")
def restore_command(
    path: Annotated[Path, typer.Argument(help="A folder written by `astrid backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty deployment.")
    ] = False,
) -> None:
    """Restore a backup into the configured (empty) deployment, verifying every checksum."""
    runtime = Runtime.from_settings()
    try:
        with progress_bar(console) as bar:
            report = restore(runtime, path, force=force, progress=_bar_callback(bar))
    finally:
        runtime.close()
    console.print(
        f"restored {sum(report.rows.values())} rows in {len(report.rows)} tables and "
        f"{report.blobs} blobs from {report.path} (checksums verified), MLflow "
        f"{report.mlflow}; {report.seconds:.1f} s",
        highlight=False,
    )


# --- schedules -----------------------------------------------------------------------------

schedule_app = typer.Typer(
    help="Flows on cron schedules: add, list, remove, run the due ones, history.",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")


def _params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ScheduleError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ScheduleError('--params must be a JSON object, e.g. \'{"folder": "/backups"}\'')
    return value


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="A unique name for the schedule.")],
    flow: Annotated[str, typer.Option(help="Flow to run (see `astrid schedule flows`).")],
    cron: Annotated[str, typer.Option(help="Five-field cron expression, e.g. '0 3 * * *'.")],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of the cron times.")] = "UTC",
    params: Annotated[str | None, typer.Option(help="Flow parameters as a JSON object.")] = None,
) -> None:
    """Add a schedule: FLOW runs whenever CRON fires in time zone TZ."""
    runtime = Runtime.from_settings()
    try:
        runtime.require_migrated()
        row = add_schedule(runtime, name, flow, cron, tz, _params(params))
    finally:
        runtime.close()
    console.print(
        f"schedule {row.name}: {row.flow} at '{row.cron}' ({row.timezone}), "
        f"next run {row.next_run_at:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


@schedule_app.command("list")
def schedule_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the schedules with their next and last run."""
    runtime = Runtime.from_settings()
    try:
        runtime.require_migrated()
        rows = list_schedules(runtime)
    finally:
        runtime.close()
    data = [
        {
            "name": r.name,
            "flow": r.flow,
            "cron": r.cron,
            "timezone": r.timezone,
            "enabled": r.enabled,
            "next_run_at": r.next_run_at.isoformat(),
            "last_run_at": r.last_run_at.isoformat() if r.last_run_at else None,
            "params": r.params,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    table = Table("name", "flow", "cron", "tz", "next run (UTC)", "last run (UTC)")
    for r in rows:
        last = f"{r.last_run_at:%Y-%m-%d %H:%M}" if r.last_run_at else "never"
        table.add_row(r.name, r.flow, r.cron, r.timezone, f"{r.next_run_at:%Y-%m-%d %H:%M}", last)
    console.print(table)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="Schedule to delete.")]) -> None:
    """Remove a schedule (its run history stays)."""
    runtime = Runtime.from_settings()
    try:
        runtime.require_migrated()
        remove_schedule(runtime, name)
    finally:
        runtime.close()
    console.print(f"schedule {name} removed", highlight=False)


def _report_runs(runs: list[FlowRun]) -> int:
    failed = 0
    for run in runs:
        line = f"{run.flow} (run {run.id}): {run.status} after {run.attempts} attempt(s)"
        if run.error:
            line += f": {run.error}"
            failed += 1
        console.print(line, highlight=False)
    return failed


@schedule_app.command("run-due")
def schedule_run_due() -> None:
    """Run every schedule that is due now (call it from cron or a systemd timer)."""
    runtime = Runtime.from_settings()
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    try:
        runtime.require_migrated()
        runs = run_due(runtime)
    finally:
        runtime.close()
    if not runs:
        console.print("no schedule is due", highlight=False)
    if _report_runs(runs):
        raise typer.Exit(1)


@schedule_app.command("serve")
def schedule_serve(
    every: Annotated[
        float | None,
        typer.Option(min=1, help="Seconds between checks [ASTRID_SCHEDULER_EVERY_S]."),
    ] = None,
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect",
            help="Serve the schedules as Prefect deployments (needs astrid[prefect]; "
            "ASTRID_PREFECT_API_URL, else Prefect's local mode).",
        ),
    ] = False,
    once: Annotated[bool, typer.Option(help="Check once and exit (for tests and timers).")] = False,
) -> None:
    """Run the scheduler until stopped: due schedules run every EVERY seconds (or on Prefect)."""
    import time

    runtime = Runtime.from_settings()
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    try:
        runtime.require_migrated()
        if prefect:
            from astrid.flows.prefect_runner import serve_on_prefect

            serve_on_prefect(runtime)
            return
        pause = every or runtime.settings.scheduler_every_s
        while True:
            # A failed flow is recorded in its history and shown by `astrid status`; the
            # scheduler itself goes on.
            _report_runs(run_due(runtime))
            if once:
                return
            time.sleep(pause)
    finally:
        runtime.close()


@schedule_app.command("run")
def schedule_run(
    flow: Annotated[str, typer.Argument(help="Flow to run now.")],
    params: Annotated[str | None, typer.Option(help="Flow parameters as a JSON object.")] = None,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run it as a Prefect flow run (astrid[prefect]).")
    ] = False,
) -> None:
    """Run a flow now, outside its schedule (recorded in the history)."""
    runtime = Runtime.from_settings()
    try:
        runtime.require_migrated()
        if prefect:
            from astrid.flows.prefect_runner import prefect_context, prefect_flow

            with prefect_context(runtime):
                state: Any = prefect_flow(flow, runtime.settings)(
                    params=_params(params), return_state=True
                )
            console.print(f"Prefect flow run: {state.name}", highlight=False)
            runs = list_flow_runs(runtime, limit=1, flow=flow)
        else:
            runs = [run_flow(runtime, flow, _params(params))]
    finally:
        runtime.close()
    if _report_runs(runs):
        raise typer.Exit(1)


@schedule_app.command("history")
def schedule_history(
    limit: Annotated[int, typer.Option(min=1, help="How many runs.")] = 20,
    log: Annotated[bool, typer.Option("--log", help="Print each run's log.")] = False,
) -> None:
    """The latest flow runs, newest first."""
    runtime = Runtime.from_settings()
    try:
        runtime.require_migrated()
        runs = list_flow_runs(runtime, limit)
    finally:
        runtime.close()
    for run in runs:
        started = f"{run.started_at:%Y-%m-%d %H:%M:%S}" if run.started_at else "?"
        console.print(
            f"{run.id} {started} {run.flow}: {run.status} ({run.attempts} attempt(s))"
            + (f" — {run.error}" if run.error else ""),
            highlight=False,
        )
        if log and run.log:
            console.print(run.log, highlight=False, markup=False)


@schedule_app.command("flows")
def schedule_flows() -> None:
    """The flows a schedule can run."""
    for spec in FLOWS.values():
        console.print(f"{spec.name}: {spec.description}", highlight=False)
