"""Train the real/bogus U-Net: seeded, tracked in MLflow, with its energy use.

:func:`run_training` is what ``astrid train`` calls:

1. build (or load) a simulated training set (fields ``0 .. n_pairs-1``) and a held-out
   test set from fields never used for training (``test_field_offset ..``);
2. split the training set by field into train and validation (augmentation only on the
   train part, inside :class:`~astrid.model.torch_data.StampDataset`);
3. fit the U-Net with a per-pixel loss (binary cross-entropy against the injected-PSF
   mask) plus a candidate loss on the centre logit, keeping the epoch with the best
   validation ROC-AUC (:func:`fit` can instead keep the epoch with the lowest validation
   FPR at FNR 2 %, or average the weights of the last epochs:
   :mod:`astrid.model.epoch_selection`);
4. fit the calibration on the validation split, evaluate on the test set (classification
   figures, latency, throughput), write ROC/PR and confusion-matrix PNGs;
5. log parameters, per-epoch metrics, artifacts and energy/carbon
   (:class:`~astrid.model.energy.EnergyMeter`: codecarbon offline, else a CPU-time estimate)
   to MLflow, save the model package and register it (alias ``challenger``; the first
   version also becomes ``champion``).

With ``hpo_trials > 0`` a hyperparameter search (:mod:`astrid.model.hpo`) runs first.

All model code takes the tracking URI as a parameter; only the CLI reads settings.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from astrid.errors import AstridError
from astrid.model.calibration import fit_calibrator
from astrid.model.dataset_files import load_dataset, save_dataset
from astrid.model.drift import reference_sample
from astrid.model.energy import EnergyMeter, EnergySettings
from astrid.model.epoch_selection import (
    average_states,
    check_selection,
    selection_key,
    validation_metrics,
)
from astrid.model.evaluate import (
    classification_metrics,
    plot_confusion_matrix,
    plot_roc_pr,
    time_scoring,
)
from astrid.model.examples import DatasetError, LabelledStamps
from astrid.model.registry import DEFAULT_MODEL_NAME, LoadedModel, register_run, save_package
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.splits import grouped_split
from astrid.model.torch_data import StampDataset
from astrid.model.unet import UNet, UNetConfig, centre_logit

__all__ = [
    "SingleClassError",
    "TrainConfig",
    "TrainResult",
    "check_classes",
    "fit",
    "load_config",
    "network_logits",
    "run_training",
]


class TrainingError(AstridError):
    """Training cannot proceed with this configuration or data."""


class SingleClassError(TrainingError):
    """The training set holds only real or only bogus examples."""


@dataclass
class TrainConfig:
    """Everything that determines a trained model (recorded with it).

    Distances in pixels; ``lr`` per Adam step. ``n_pairs`` simulated fields feed the
    train/validation split, ``n_test_pairs`` other fields (numbered from
    ``test_field_offset``) the held-out test set.
    """

    seed: int = 0
    n_pairs: int = 60
    n_test_pairs: int = 20
    test_field_offset: int = 100000
    image_size: int = 256
    stamp_size: int = 64
    third_channel: str = "diff"
    val_fraction: float = 0.2
    base_channels: int = 6
    depth: int = 2
    centre_radius: int = 2
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pixel_loss_weight: float = 1.0
    pixel_pos_weight: float = 5.0
    calibration: str = "temperature"
    num_threads: int = 2
    max_steps: int | None = None
    track_emissions: bool = True
    country_iso_code: str = "FRA"
    model_name: str = DEFAULT_MODEL_NAME
    experiment: str = "astrid-realbogus"
    dataset_manifest: str | None = None
    test_manifest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error (typos must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(
                f"unknown training configuration keys: {unknown}",
                hint=f"known keys: {sorted(known)}",
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def unet_config(self) -> UNetConfig:
        return UNetConfig(
            in_channels=3,
            base_channels=self.base_channels,
            depth=self.depth,
            stamp_size=self.stamp_size,
            centre_radius=self.centre_radius,
        )


def load_config(path: str | Path) -> TrainConfig:
    """Read a training configuration from a TOML or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such configuration file")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TrainingError(f"{path}: unreadable configuration ({exc})") from exc
    data = data.get("train", data)
    return TrainConfig.from_dict(data)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def network_logits(net: UNet, stamps: np.ndarray, batch: int = 512) -> np.ndarray:
    """Centre logits ``(N,)`` of a network (eval mode) for normalised stamps ``(N, C, S, S)``."""
    import torch

    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(stamps), batch):
            x = torch.from_numpy(np.ascontiguousarray(stamps[s : s + batch], dtype=np.float32))
            out.append(centre_logit(net(x), net.config.centre_radius).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def check_classes(data: LabelledStamps, what: str) -> None:
    """Raise :class:`SingleClassError` unless ``data`` (named ``what``) holds both classes."""
    classes = np.unique(data.labels)
    if classes.size < 2:
        only = "real" if classes.size and classes[0] == 1 else "bogus"
        raise SingleClassError(
            f"the {what} holds only {only} examples ({len(data)} samples); a real/bogus "
            "model needs both",
            hint="add examples of the other class or simulate more fields",
        )


@dataclass
class FitResult:
    """A fitted network with its per-epoch history and best validation AUC.

    ``best_epoch`` is the epoch whose weights were kept (the last one when the weights are
    an average); ``best_val_auc`` is the validation ROC-AUC of the returned network (of the
    averaged weights when ``averaged_last`` > 0). When the validation part does not hold
    both classes it is minus the kept epoch's training loss (NaN for averaged weights).
    ``select_by`` is the rule that chose the epoch; ``averaged_last`` the number of epochs
    whose weights were averaged (0: the weights of one epoch).
    """

    net: UNet
    history: list[dict[str, float]]
    best_epoch: int
    best_val_auc: float
    train_seconds: float
    select_by: str = "auc"
    averaged_last: int = 0


def fit(
    train: LabelledStamps,
    val: LabelledStamps,
    config: TrainConfig,
    on_epoch: Any = None,
    init_state: dict[str, Any] | None = None,
    *,
    select_by: str = "auc",
    average_last: int = 0,
    on_state: Any = None,
) -> FitResult:
    """Train a U-Net on ``train``, selecting the epoch on ``val``.

    Each epoch's history row holds ``train_loss`` and, when ``val`` holds both classes,
    ``val_loss``, ``val_roc_auc`` (weighted by the examples' confidence weights) and
    ``val_fpr_at_fnr2`` (unweighted: the fraction of validation bogus scoring at or above
    the threshold that loses at most 2 % of the validation reals,
    :func:`astrid.model.evaluate.fpr_at_fnr`).

    Parameters
    ----------
    train, val : LabelledStamps
        Disjoint (grouped) splits; ``train`` is augmented on the fly.
    config : TrainConfig
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, metrics_dict)`` after each epoch.
    init_state : dict, optional
        A state dict to start from (fine-tuning a trained model) instead of a fresh
        initialisation; it must fit ``config``'s network.
    select_by : {"auc", "fpr2"}
        Which epoch's weights to keep: the highest validation ROC-AUC (the default), or the
        lowest validation FPR at FNR 2 %, ties broken by the higher ROC-AUC. Equal figures
        keep the earlier epoch. Without validation figures, the lowest training loss (as
        before: an epoch is kept only if its figure beats -1, else the last weights stay).
    average_last : int
        If > 0, ignore ``select_by`` and return the element-wise mean of the weights after
        each of the last ``average_last`` epochs
        (:func:`~astrid.model.epoch_selection.average_states`); ``best_epoch`` is then the
        last epoch. If ``config.max_steps`` stops training early, the epochs
        that ran are averaged (at most ``average_last``).
    on_state : callable, optional
        Called as ``on_state(epoch, state_dict)`` after each epoch with a copy of the
        network's weights (e.g. to save every epoch).

    Raises
    ------
    SingleClassError
        If ``train`` holds only one class.
    astrid.model.epoch_selection.EpochSelectionError
        If ``select_by`` is unknown, or ``average_last`` is negative or more than
        ``config.epochs``.
    """
    import torch
    from torch.utils.data import DataLoader

    check_selection(select_by, average_last, config.epochs)
    check_classes(train, "training split")
    _seed_everything(config.seed)
    torch.set_num_threads(max(1, config.num_threads))
    net = UNet(config.unet_config())
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    loader: DataLoader[Any] = DataLoader(
        StampDataset(train, augment=True, seed=config.seed),  # type: ignore[arg-type]
        batch_size=config.batch_size,
        shuffle=True,
        generator=gen,
        drop_last=len(train) > config.batch_size,
    )
    steps_total = config.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=max(1, steps_total)
    )
    pos_weight = torch.tensor(config.pixel_pos_weight)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    history: list[dict[str, float]] = []
    best_state: dict[str, Any] | None = None
    # an epoch must beat -1.0 (as when only the AUC chose): a training loss above 1 or a NaN
    # figure never wins, and then the last weights stay
    best_key: tuple[float, ...] = (-1.0,)
    best_auc, best_epoch = -1.0, -1
    last_states: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    step = 0
    for epoch in range(config.epochs):
        net.train()
        losses = []
        for x, m, y, w in loader:
            logits = net(x)
            # per-sample confidence weights (1 for exact labels, < 1 for weak ones)
            per = bce(centre_logit(logits, config.centre_radius), y, reduction="none")
            loss = (w * per).mean()
            if config.pixel_loss_weight > 0:
                pix = bce(logits, m, pos_weight=pos_weight, reduction="none").mean(dim=(1, 2, 3))
                loss = loss + config.pixel_loss_weight * (w * pix).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if config.max_steps is not None and step >= config.max_steps:
                break
        row = {"train_loss": float(np.mean(losses)) if losses else float("nan")}
        row.update(validation_metrics(lambda x: network_logits(net, x), val))
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        key = selection_key(row, select_by)
        if key > best_key:
            best_key, best_epoch, best_state = key, epoch, state
            best_auc = row.get("val_roc_auc", -row["train_loss"])
        if average_last:
            last_states = [*last_states, state][-average_last:]
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if on_state is not None:
            on_state(epoch, {k: v.clone() for k, v in state.items()})
        if config.max_steps is not None and step >= config.max_steps:
            break
    averaged = 0
    if average_last and last_states:
        net.load_state_dict(average_states(last_states))
        averaged, best_epoch = len(last_states), len(history) - 1
        row = validation_metrics(lambda x: network_logits(net, x), val)
        best_auc = row.get("val_roc_auc", float("nan"))
    elif best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return FitResult(
        net, history, best_epoch, best_auc, time.perf_counter() - t0, select_by, averaged
    )


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
    _seed_everything(config.seed)
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
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        exp = mlflow.get_experiment_by_name(config.experiment)
        # an explicit experiment id (no mlflow.set_experiment): no global state left behind
        experiment_id = (
            exp.experiment_id
            if exp is not None
            else mlflow.create_experiment(
                config.experiment, artifact_location=(data_dir / "mlruns").resolve().as_uri()
            )
        )

    if hpo_trials > 0:
        from astrid.model.hpo import run_hpo

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
