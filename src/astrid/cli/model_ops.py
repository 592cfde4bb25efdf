"""Model operations: ``astrid model retrain`` (the closed loop), ``astrid model drift``.

Thin faces over :mod:`astrid.domain.retrain` and :mod:`astrid.domain.model_drift`; each
run is recorded as a flow run (``astrid schedule history``), exactly as the scheduled
``retrain`` and ``drift`` flows and ``POST /api/v1/models/{name}/retrain`` are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from astrid.cli.app import app
from astrid.errors import AstridError

model_app = typer.Typer(
    help="The closed loop and model monitoring: retrain, drift.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


def _run(flow: str, params: dict[str, Any]) -> Any:
    import logging
    import os

    from astrid.flows.schedules import RetryPlan, run_flow

    # MLflow announces creating its store at INFO; the command's output is its own lines.
    # Importing mlflow resets its logger to MLFLOW_LOGGING_LEVEL (INFO unless set), so the
    # level goes through that variable too when mlflow is not imported yet.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from astrid.runtime import Runtime

    runtime = Runtime.from_settings()
    try:
        return run_flow(runtime, flow, params, retry=RetryPlan(retries=0))
    finally:
        runtime.close()


@model_app.command("retrain")
def retrain_command(
    promote_if_better: Annotated[
        bool, typer.Option("--promote-if-better", help="Promote the challenger if it wins.")
    ] = False,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=1000)] = 3,
    name: Annotated[str, typer.Option(help="Registered model name.")] = "astrid-realbogus",
    alerts: Annotated[
        list[Path] | None, typer.Option("--alerts", help="Folder of ZTF alerts to add.")
    ] = None,
    holdout_night: Annotated[
        list[str] | None, typer.Option("--holdout-night", help="Alert night held out.")
    ] = None,
    sim_pairs: Annotated[int, typer.Option(help="Simulated fields to add.", min=0)] = 4,
    min_gain: Annotated[float, typer.Option(help="Margin the challenger must beat by.")] = 0.0,
) -> None:
    """Curated votes → a versioned dataset → a challenger, evaluated against the champion on
    held-out curated detections and alert nights; promoted only if better."""
    params: dict[str, Any] = {
        "model_name": name,
        "epochs": epochs,
        "promote_if_better": promote_if_better,
        "sim_pairs": sim_pairs,
        "min_gain": min_gain,
        "alerts": [str(p) for p in alerts or []],
    }
    if holdout_night:
        params["holdout_nights"] = list(holdout_night)
    for folder in alerts or []:
        if not folder.exists():
            typer.secho(f"error: {folder}: no such alert folder", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2)
    try:
        run = _run("retrain", params)
    except AstridError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    if run.status != "succeeded":
        typer.secho(f"error: retrain failed: {run.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    r = run.result
    ch = r["challenger"]
    typer.echo(f"flow run {run.id}  MLflow run {r['mlflow_run_id']}")
    typer.echo(f"dataset {r['dataset_version'][:12]}  {json.dumps(r['counts']['by_source'])}")
    typer.echo(f"challenger {name} v{ch['version']} ({ch['semver']})  {r['challenger_metrics']}")
    if r["champion"]:
        typer.echo(f"champion {r['champion']['version']}  {r['champion_metrics']}")
    typer.echo(f"decision: {r['decision']}")
    typer.echo(f"{'promoted' if r['promoted'] else 'not promoted'}")


@model_app.command("drift")
def drift_command(
    name: Annotated[str, typer.Option(help="Registered model name.")] = "astrid-realbogus",
    night: Annotated[list[str] | None, typer.Option("--night", help="Night (MJD).")] = None,
    last_nights: Annotated[int, typer.Option(min=1, max=365)] = 1,
) -> None:
    """Per-night PSI of scores and inputs against the champion's training reference."""
    params: dict[str, Any] = {"model_name": name, "last_nights": last_nights}
    if night:
        params["nights"] = list(night)
    try:
        run = _run("drift", params)
    except AstridError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    typer.echo(run.log)
    if run.status != "succeeded":
        typer.secho(f"error: drift check failed: {run.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
