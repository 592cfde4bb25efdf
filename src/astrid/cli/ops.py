"""Operations commands: backup and restore of a whole deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress as RichProgress
from rich.progress import TaskID

from astrid.cli.app import app, console
from astrid.progress import progress_bar
from astrid.runtime import Runtime
from astrid.store.backup import Progress, backup, restore


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
