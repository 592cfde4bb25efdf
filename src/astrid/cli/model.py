"""Model commands: ``astrid train``, ``astrid models list|promote|rollback``,
``astrid score-alerts``.

Thin faces over :mod:`astrid.model`; this is the only model code that reads settings (the
data directory, the MLflow tracking URI and the database URL).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer

from astrid.cli.app import app
from astrid.errors import AstridError

models_app = typer.Typer(
    help="List, promote and roll back registered models.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

#: The columns of ``astrid score-alerts``, in this order. The first six are the contract other
#: tools depend on; later columns are only ever appended. ``score`` is empty for an alert
#: that could not be scored, and ``problems`` then says why ("; "-separated). ``model_score``
#: is the network's score before the streak demotion, ``streak`` the streak group's key
#: (``pid/n``; see :mod:`astrid.model.alert_streaks`).
SCORE_COLUMNS = [
    "objectId",
    "candid",
    "ra",
    "dec",
    "score",
    "model_version",
    "drb",
    "rb",
    "uncertainty",
    "problems",
    "shadow_score",
    "shadow_version",
    "model_score",
    "streak",
]


def _fail(exc: AstridError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _tracking(uri: str | None) -> str:
    from astrid.settings import get_settings

    return uri or get_settings().resolved_mlflow_uri


def _database() -> Any:
    """The settings' database if it is migrated, else None (recording is then skipped)."""
    try:
        from astrid.settings import get_settings
        from astrid.store.db import Database

        db = Database(get_settings().resolved_database_url)
        return db if db.is_migrated() else None
    except Exception:  # no database configured or reachable: training still works
        return None


def _record_training(cfg: Any, result: Any, data_dir: Path) -> str:
    """Store the training set in object storage and the run in the database, if set up."""
    from astrid.model.dataset_files import load_dataset
    from astrid.model.dataset_store import record_training_dataset, store_dataset
    from astrid.model.evaluate import store_evaluation
    from astrid.runtime import Runtime

    db = _database()
    if db is None or not result.registered:
        return "database not initialised (`astrid init`): run not recorded there"
    runtime = Runtime.from_settings()
    try:
        data = load_dataset(data_dir / "datasets" / result.dataset_version / "manifest.json")
        name = f"simulated-{cfg.third_channel}"
        key, manifest = store_dataset(data, runtime.blobs, name)
        semver = result.registered["semver"]
        test_metrics = {k: v for k, v in result.metrics.items() if k.startswith("test_")}
        with db.session() as session:
            row = record_training_dataset(
                session, name, manifest, key, description=str(data.meta.get("difference"))
            )
            common = {
                "model_name": cfg.model_name,
                "model_version": semver,
                "mlflow_run_id": result.run_id,
                "config": cfg.to_dict(),
                "training_dataset_id": row.id,
            }
            store_evaluation(
                session, metrics=result.metrics, kind="train", params=cfg.to_dict(), **common
            )
            store_evaluation(
                session,
                metrics=test_metrics,
                kind="evaluate",
                params={"test_dataset_version": result.test_version},
                **common,
            )
        return f"recorded dataset {manifest.version[:12]} and the train/evaluate runs"
    finally:
        runtime.close()


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML or JSON training config.")
    ] = None,
    hpo: Annotated[int, typer.Option("--hpo", help="Optuna trials before training.")] = 0,
    export: Annotated[
        Path | None, typer.Option("--export", help="Also write the model package here.")
    ] = None,
    register: Annotated[bool, typer.Option(help="Register in the MLflow registry.")] = True,
    bump: Annotated[str, typer.Option(help="Semver part to bump: major|minor|patch.")] = "minor",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
) -> None:
    """Train the real/bogus U-Net on simulated data, track it in MLflow and register it."""
    from astrid.model.train import TrainConfig, load_config
    from astrid.model.training_run import run_training
    from astrid.settings import get_settings

    try:
        cfg = load_config(config) if config else TrainConfig()
        if seed is not None:
            cfg.seed = seed
        uri = _tracking(tracking_uri)
        data_dir = get_settings().data_dir
        result = run_training(
            cfg,
            tracking_uri=uri,
            data_dir=data_dir,
            export_dir=export,
            register=register,
            bump=bump,
            hpo_trials=hpo,
        )
    except AstridError as exc:
        _fail(exc)
        return
    m = result.metrics
    typer.echo(f"run {result.run_id}  dataset {result.dataset_version[:12]}")
    typer.echo(
        f"test ROC-AUC {m['test_roc_auc']:.4f}  PR-AUC {m['test_pr_auc']:.4f}  "
        f"FPR@FNR1% {m['test_fpr_at_fnr_1pct']:.4f}  FPR@FNR2% {m['test_fpr_at_fnr_2pct']:.4f}  "
        f"train {m['train_seconds']:.0f} s  {m['test_throughput_per_s']:.0f} triplets/s"
    )
    if result.registered:
        r = result.registered
        typer.echo(f"registered {cfg.model_name} v{r['version']} ({r['semver']}) {r['aliases']}")
    typer.echo(_record_training(cfg, result, data_dir))


@models_app.command("list")
def models_list(
    name: Annotated[str, typer.Option(help="Registered model name.")] = "astrid-realbogus",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """List registered versions with their semantic versions and aliases."""
    from astrid.model.registry import list_versions

    rows = list_versions(_tracking(tracking_uri), name)
    if not rows:
        typer.echo(f"no registered versions of {name} (train one with `astrid train`)")
        return
    for r in rows:
        aliases = ",".join(r["aliases"])
        typer.echo(f"{r['version']:>4}  {r['semver']:<8}  {aliases:<22} run {r['run_id']}")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Registry version, semver or alias.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    name: Annotated[str, typer.Option(help="Registered model name.")] = "astrid-realbogus",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Point an alias (default champion) at a version."""
    from astrid.model.registry import promote

    try:
        r = promote(_tracking(tracking_uri), version, name, alias)
    except AstridError as exc:
        _fail(exc)
        return
    typer.echo(f"{alias} -> {name} v{r['version']} ({r['semver']})")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Option(help="Registered model name.")] = "astrid-realbogus",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Point champion back at the previous champion."""
    from astrid.model.registry import rollback

    try:
        r = rollback(_tracking(tracking_uri), name)
    except AstridError as exc:
        _fail(exc)
        return
    typer.echo(f"champion -> {name} v{r['version']} ({r['semver']})")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    return value


@app.command("score-alerts")
def score_alerts_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="ZTF Avro alert files, folders of them, or tar archives of them "
            "(ZTF's nightly ztf_public_YYYYMMDD.tar.gz)."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write.")] = Path(
        "scores.csv"
    ),
    model: Annotated[
        str | None,
        typer.Option(help="Model package folder, or 'default' (the model shipped with AstrID)."),
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="Registry alias/version to score with, e.g. champion.")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    uncertainty: Annotated[
        bool, typer.Option(help="Also write the score's uncertainty (8 passes per alert).")
    ] = True,
    challenger: Annotated[
        str | None,
        typer.Option(help="Shadow model (package folder or registry alias) scoring a fraction."),
    ] = None,
    shadow_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of alerts the challenger scores.")
    ] = 0.1,
    persist: Annotated[bool, typer.Option(help="Also store detections in the database.")] = False,
    symmetry: Annotated[
        bool,
        typer.Option(
            help="Score undecided alerts (0.05-0.95) from their stamps' 8 rotations/flips; "
            "--no-symmetry scores one view (faster without --uncertainty)."
        ),
    ] = True,
) -> None:
    """Score ZTF alerts: one CSV row per alert (objectId,candid,ra,dec,score,model_version,...).

    An unreadable file is reported on stderr and skipped; an alert whose stamps cannot be
    scored gets an empty score and the reason in ``problems``: the batch never stops.
    Alerts of one difference image on one line, or crossed by a trail, are satellite-streak
    pieces: score x0.1, the network's score in ``model_score``, the streak in ``streak``.
    """
    from astrid.model.score import SYMMETRY_BAND, load_scorer, persist_detections, score_alerts
    from astrid.model.ztf import AlertReadError, iter_ztf_alerts

    errors: list[AlertReadError] = []
    try:
        band = SYMMETRY_BAND if symmetry else None
        if alias is not None:
            scorer = load_scorer(
                alias=alias, tracking_uri=_tracking(tracking_uri), symmetry_band=band
            )
        else:
            scorer = load_scorer(model or "default", symmetry_band=band)
        alerts = list(iter_ztf_alerts(paths, errors))
        if challenger is not None:
            from astrid.model.shadow import shadow_agreement, shadow_score_alerts

            shadow = (
                load_scorer(challenger)
                if Path(challenger).is_dir()
                else load_scorer(alias=challenger, tracking_uri=_tracking(tracking_uri))
            )
            rows = shadow_score_alerts(
                scorer, shadow, alerts, shadow_fraction, uncertainty=uncertainty
            )
            typer.echo(f"shadow {shadow.model_version}: {shadow_agreement(rows)}")
        else:
            rows = score_alerts(scorer, alerts, uncertainty=uncertainty)
    except AstridError as exc:
        _fail(exc)
        return
    for err in errors:
        typer.secho(f"skipped: {err}", fg=typer.colors.YELLOW, err=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SCORE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in SCORE_COLUMNS})
    unscored = sum(r["score"] is None for r in rows)
    flagged = sum(bool(r["problems"]) for r in rows)
    on_streaks = sum(r.get("streak") is not None for r in rows)
    typer.echo(
        f"scored {len(rows) - unscored} of {len(rows)} alerts with {scorer.model_version} "
        f"-> {output} ({flagged} with problems, {on_streaks} on streaks, "
        f"{unscored} not scorable, {len(errors)} unreadable files)"
    )
    if persist:
        db = _database()
        if db is None:
            _fail(AstridError("the database is not initialised", hint="run `astrid init`"))
            return
        with db.session() as session:
            persist_detections(session, rows, scorer.model_version)
        typer.echo(f"stored {len(rows)} detections")
    if not rows and errors:
        raise typer.Exit(code=2)
