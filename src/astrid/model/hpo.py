"""Hyperparameter search for the real/bogus U-Net (``astrid train --hpo N``).

Optuna's TPE sampler, seeded by the training configuration, searches the learning rate,
weight decay, network width and the weight of the per-pixel loss, each trial a full
:func:`astrid.model.train.fit` scored by its best validation ROC-AUC. Optuna is imported
only when a search runs (the ``ml`` extra).
"""

from __future__ import annotations

from typing import Any

from astrid.model.examples import LabelledStamps
from astrid.model.train import TrainConfig, check_classes, fit

__all__ = ["run_hpo"]


def run_hpo(
    config: TrainConfig,
    train: LabelledStamps,
    val: LabelledStamps,
    n_trials: int,
    mlflow: Any = None,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """Search ``lr``, ``weight_decay``, ``base_channels`` and ``pixel_loss_weight`` with
    Optuna (TPE, seeded), maximising validation ROC-AUC; returns the best values.

    Each trial is logged as a nested MLflow run when ``mlflow`` is given.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_classes(train, "training split")

    def objective(trial: Any) -> float:
        params = {
            "lr": trial.suggest_float("lr", 5e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "base_channels": trial.suggest_categorical("base_channels", [4, 6, 8]),
            "pixel_loss_weight": trial.suggest_float("pixel_loss_weight", 0.0, 2.0),
        }
        cfg = TrainConfig.from_dict({**config.to_dict(), **params})
        result = fit(train, val, cfg)
        if mlflow:
            with mlflow.start_run(
                run_name=f"hpo-trial-{trial.number}", experiment_id=experiment_id
            ):
                mlflow.log_params(params)
                mlflow.log_metric("val_roc_auc", result.best_val_auc)
        return result.best_val_auc

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=n_trials)
    return dict(study.best_params)
