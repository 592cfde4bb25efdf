"""``astrid process``: run the pipeline's stages on ingested observations.

In process by default; with ``ASTRID_BROKER_URL`` set it queues one message per
observation for ``astrid worker`` and (unless ``--no-wait``) follows the batch until done.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from astrid.cli.app import app, console, fail
from astrid.pipeline.stages.common import STAGE_NAMES, StageResult
from astrid.progress import progress_bar
from astrid.runtime import Runtime

if TYPE_CHECKING:
    from astrid.pipeline.orchestrate import ProcessSummary


@app.command()
def process(
    observation_ids: Annotated[
        list[int] | None, typer.Argument(help="Observation ids (default: --pending).")
    ] = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Every observation with work left.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Give failed observations another go.")
    ] = False,
    method: Annotated[str, typer.Option(help="Differencing method: zogy or classic.")] = "zogy",
    threshold: Annotated[
        float, typer.Option(min=1.0, help="Detection threshold, sigma of the score map.")
    ] = 5.0,
    model: Annotated[
        str, typer.Option(help="Scoring model: default, a package folder, or rules.")
    ] = "default",
    report: Annotated[
        Path | None, typer.Option(help="Also write an HTML report (cutouts) to this file.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="With a broker: follow the queued batch until it is done."
        ),
    ] = True,
    timeout: Annotated[
        float | None, typer.Option(min=1.0, help="With a broker: give up waiting after seconds.")
    ] = None,
) -> None:
    """Preprocess, pick references, subtract, extract, score and store detections.

    Without a broker the work runs here; with ASTRID_BROKER_URL it is queued for
    `astrid worker` (one message per observation) and followed until done.
    """
    # Start-up time: the orchestrator imports every stage and its science (seconds); only
    # this command needs it, not `astrid detect` or `astrid status`.
    from astrid.pipeline.orchestrate import pending_observations, process_observations

    if method not in ("zogy", "classic"):
        raise fail(f"unknown method {method!r}: use zogy or classic")
    if observation_ids and pending:
        raise fail("give observation ids or --pending, not both")
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    ids = list(observation_ids or [])
    if not ids:
        ids = pending_observations(runtime)
        if retry_failed:
            from astrid.domain.observations import ObservationService

            ids += [
                o.id for o in ObservationService(runtime.db).list(status="failed", limit=10_000)
            ]
    if not ids:
        console.print("nothing to process (no pending observation)")
        return
    params = {"difference": {"method": method, "threshold": threshold}, "detect": {"model": model}}
    from astrid.pipeline.queue.broker import get_broker, is_in_process

    broker = get_broker()
    summary: ProcessSummary
    if not is_in_process(broker):
        from astrid.pipeline.queue.batch import enqueue_observations, wait_for_batch

        batch = enqueue_observations(runtime, ids, params, retry_failed=retry_failed, broker=broker)
        console.print(
            f"queued {len(batch.observation_ids)} observation(s) as batch {batch.batch}",
            highlight=False,
        )
        if not wait:
            return
        with progress_bar(console) as progress:
            task = progress.add_task("processing (queued)", total=len(batch.observation_ids))

            def done(finished: int, total: int) -> None:
                progress.update(task, completed=finished)

            summary = wait_for_batch(
                runtime, batch, broker=broker, timeout_s=timeout, on_progress=done
            )
    else:
        if runtime.settings.pipeline_retain_heap:
            from astrid.pipeline.heap import retain_freed_memory

            retain_freed_memory()  # large image arrays reuse freed pages (no page faults)
        if runtime.settings.pipeline_one_blas_thread:
            from astrid.pipeline.threads import one_blas_thread

            one_blas_thread()  # one observation per core (astrid.pipeline.threads)
        with progress_bar(console) as progress:
            task = progress.add_task("processing", total=len(ids) * len(STAGE_NAMES))

            def step(obs_id: int, result: StageResult) -> None:
                progress.update(task, advance=1, description=f"{result.stage} #{obs_id}")

            summary = process_observations(
                runtime, ids, params, retry_failed=retry_failed, on_stage=step
            )
    table = Table(
        "id",
        "status",
        "reference",
        "candidates",
        "detections",
        "note",
        title=f"{len(summary.reports)} observation(s)",
    )
    for r in summary.reports:
        note = r.reason or ""
        last = r.stages[-1] if r.stages else None
        if last is not None and last.status == "skipped" and last.error:
            note = last.error
        table.add_row(
            str(r.observation_id),
            r.status,
            str(r.value("reference_observation_id") or ""),
            "" if r.value("n_candidates") is None else str(r.value("n_candidates")),
            "" if r.value("n_detections") is None else str(r.value("n_detections")),
            note,
        )
    console.print(table)
    times = ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items())
    console.print(f"time per stage: {times}; total {summary.wall_s:.1f} s")
    if report is not None:
        from astrid.pipeline.report import write_report

        path = write_report(runtime, report, stage_seconds=summary.stage_seconds)
        console.print(f"report: {path}")
    if any(r.failed for r in summary.reports):
        failed = sum(r.failed for r in summary.reports)
        console.print(f"[yellow]{failed} observation(s) failed[/]; see `astrid status`")
        raise typer.Exit(1)
