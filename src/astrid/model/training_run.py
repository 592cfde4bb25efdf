"""One tracked training run of the real/bogus U-Net: what ``astrid train`` calls.

:func:`run_training`:

1. build (or load) a simulated training set (fields ``0 .. n_pairs-1``) and a held-out
   test set from fields never used for training (``test_field_offset ..``);
2. split the training set by field into train and validation (augmentation only on the
   train part, inside :class:`~astrid.model.torch_data.StampDataset`); with
   ``hpo_trials > 0`` a hyperparameter search (:mod:`astrid.model.hpo`) runs first;
3. fit the network (:func:`astrid.model.train.fit`);
4. fit the calibration on the validation split, evaluate on the test set (classification
   figures, latency, throughput), write ROC/PR and confusion-matrix PNGs;
5. log parameters, per-epoch metrics, artifacts and energy/carbon
   (:class:`~astrid.model.energy.EnergyMeter`: codecarbon offline, else a CPU-time estimate)
   to MLflow, save the model package with its drift reference and register it (alias
   ``challenger``; the first version also becomes ``champion``).

All model code takes the tracking URI as a parameter; only the CLI reads settings.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astrid.model.calibration import fit_calibrator
from astrid.model.dataset_files import load_dataset, save_dataset
from astrid.model.drift import reference_sample
from astrid.model.energy import EnergyMeter, EnergySettings
from astrid.model.evaluate import (
    classification_metrics,
    plot_confusion_matrix,
    plot_roc_pr,
    time_scoring,
)
from astrid.model.examples import DatasetError, LabelledStamps
from astrid.model.hpo import run_hpo
from astrid.model.registry import LoadedModel, experiment_for, register_run, save_package
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.splits import grouped_split
from astrid.model.train import (
    TrainConfig,
    check_classes,
    fit,
    network_logits,
    seed_everything,
)

__all__ = ["TrainResult", "run_training"]


def _datasets(
    config: TrainConfig, data_dir: Path
) -> tuple[LabelledStamps, LabelledStamps, dict[str, Any], dict[str, Any]]:
    spec = SimulationSpec(
        n_pairs=config.n_pairs,
        shape=(config.image_size, config.image_size),
        stamp_size=config.stamp_size,
        third_channel=config.third_channel,
    )
    if config.dataset_manifest:
        data = load_dataset(config.dataset_manifest)
    else:
        data = build_simulated_dataset(spec, seed=config.seed)
    if config.test_manifest:
        test = load_dataset(config.test_manifest)
    else:
        test_spec = SimulationSpec(**{**spec.__dict__, "n_pairs": config.n_test_pairs})
        test = build_simulated_dataset(
            test_spec, seed=config.seed, field_offset=config.test_field_offset
        )
    overlap = set(data.groups) & set(test.groups)
    if overlap:
        raise DatasetError(f"test fields also in training: {sorted(overlap)[:5]}")
    return data, test, save_dataset(data, data_dir), save_dataset(test, data_dir)


@dataclass
class TrainResult:
    """What :func:`run_training` produced."""

    run_id: str | None
    package_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]
    dataset_version: str
    test_version: str
    registered: dict[str, Any] | None
    loaded: LoadedModel | None = None


def run_training(
    config: TrainConfig,
    *,
    tracking_uri: str | None,
    data_dir: str | Path,
    export_dir: str | Path | None = None,
    register: bool = True,
    bump: str = "minor",
    hpo_trials: int = 0,
) -> TrainResult:
    """Build data, train, calibrate, evaluate, log to MLflow and register.

    Parameters
    ----------
    config : TrainConfig
    tracking_uri : str or None
        MLflow tracking/registry URI (e.g. ``sqlite:///astrid-data/mlflow.db``); ``None``
        trains without MLflow (and cannot register).
    data_dir : str or pathlib.Path
        Where datasets (content-addressed) and the model package are written.
    export_dir : str or pathlib.Path, optional
        Also write the model package here (how the shipped default model was made).
    register : bool
        Register the run's model in the MLflow registry.
    bump : str
        Semantic-version part to bump when registering.
    hpo_trials : int
        If > 0, first search hyperparameters with Optuna
        (:func:`astrid.model.hpo.run_hpo`).
    """
    from astrid.model.registry import load_package

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    data, test, manifest, test_manifest = _datasets(config, data_dir)
    check_classes(data, "training set")
    train_idx, val_idx = grouped_split(
        data.groups, (1 - config.val_fraction, config.val_fraction), seed=config.seed
    )
    train, val = data.subset(train_idx), data.subset(val_idx)
    check_classes(train, "training split")

    mlflow: Any = None
    experiment_id: str | None = None
    if tracking_uri:
        import mlflow as _mlflow

        mlflow = _mlflow
        experiment_id = experiment_for(tracking_uri, config.experiment, data_dir / "mlruns")

    if hpo_trials > 0:
        best = run_hpo(config, train, val, hpo_trials, mlflow=mlflow, experiment_id=experiment_id)
        config = TrainConfig.from_dict({**config.to_dict(), **best})

    work = Path(tempfile.mkdtemp(prefix="astrid-train-"))
    run_ctx: Any = mlflow.start_run(experiment_id=experiment_id) if mlflow else None
    run_id = None
    try:
        if mlflow:
            run_id = run_ctx.info.run_id
            params = {k: v for k, v in config.to_dict().items() if k != "extra"}
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_params(
                {
                    "dataset_version": data.version,
                    "test_dataset_version": test.version,
                    "difference": data.meta.get("difference"),
                    "n_train": len(train),
                    "n_val": len(val),
                    "n_test": len(test),
                }
            )
            mlflow.log_dict(manifest, "datasets/train_manifest.json")
            mlflow.log_dict(test_manifest, "datasets/test_manifest.json")

        def log_epoch(epoch: int, row: dict[str, float]) -> None:
            if mlflow:
                mlflow.log_metrics(row, step=epoch)

        energy = EnergySettings(
            enabled=config.track_emissions, country_iso_code=config.country_iso_code
        )
        with EnergyMeter(energy) as emissions:
            fitted = fit(train, val, config, on_epoch=log_epoch)
        calibrator = fit_calibrator(
            config.calibration if np.unique(val.labels).size == 2 else "identity",
            network_logits(fitted.net, val.stamps),
            val.labels,
        )
        test_scores = calibrator(network_logits(fitted.net, test.stamps))
        # What the drift job compares each night with: scores on the validation part (never
        # fitted on), as served, and the input statistics of the raw training stamps.
        from astrid.model.score import served_scores

        drift_reference = reference_sample(
            served_scores(fitted.net, calibrator, val.stamps), data.input_stats, config.seed
        )
        cm = classification_metrics(test.labels, test_scores)
        package = data_dir / "models" / f"run-{run_id or int(time.time())}"
        extra = {
            "semver": None,
            "train_config": config.to_dict(),
            "dataset_version": data.version,
            "test_dataset_version": test.version,
            "difference": data.meta.get("difference"),
            "test_metrics": cm.as_dict(),
            "train_seconds": fitted.train_seconds,
            "best_epoch": fitted.best_epoch,
            "mlflow_run_id": run_id,
            "drift_reference": drift_reference,
        }
        save_package(fitted.net, calibrator, package, extra)
        from astrid.model.score import Scorer

        scorer = Scorer(load_package(package), batch_size=256)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            speed = time_scoring(scorer.score, test.stamps, batch_size=256)
        finally:
            torch.set_num_threads(threads)
        metrics = {
            **{f"test_{k}": float(v) for k, v in cm.as_dict().items()},
            **{f"test_{k}": float(v) for k, v in speed.as_dict().items()},
            "train_seconds": fitted.train_seconds,
            "best_epoch": float(fitted.best_epoch),
            "best_val_roc_auc": fitted.best_val_auc,
            **emissions.metrics(),
        }
        cfg = json.loads((package / "config.json").read_text())
        cfg["test_metrics"] = metrics
        (package / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
        plot_roc_pr(test.labels, test_scores, str(work / "roc_pr.png"))
        plot_confusion_matrix(cm.confusion, str(work / "confusion_matrix.png"))
        registered = None
        if mlflow:
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(str(work / "roc_pr.png"), "plots")
            mlflow.log_artifact(str(work / "confusion_matrix.png"), "plots")
            mlflow.log_param("energy_method", emissions.result.get("energy_method", "off"))
        if mlflow and register:
            # the package logged as artifact folder "model" must carry its semver
            from astrid.model.registry import _bump, list_versions

            rows = list_versions(tracking_uri or "", config.model_name)
            semvers = [r["semver"] for r in rows if r["semver"]]
            latest = max(semvers, key=lambda v: tuple(int(p) for p in v.split(".")), default=None)
            cfg["semver"] = _bump(latest, bump)
            (package / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
            mlflow.log_artifacts(str(package), "model")
            registered = register_run(tracking_uri or "", run_id or "", config.model_name, bump)
        elif mlflow:
            mlflow.log_artifacts(str(package), "model")
        if export_dir is not None:
            export = Path(export_dir)
            export.mkdir(parents=True, exist_ok=True)
            for name in ("model.pt", "config.json"):
                (export / name).write_bytes((package / name).read_bytes())
    finally:
        if mlflow:
            mlflow.end_run()
    return TrainResult(
        run_id,
        package,
        metrics,
        fitted.history,
        data.version,
        test.version,
        registered,
        load_package(package),
    )
