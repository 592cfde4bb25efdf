"""Fit the real/bogus U-Net: configuration, seeding, the training loop and its logits.

:func:`fit` trains a :class:`~astrid.model.unet.UNet` with a per-pixel loss (binary
cross-entropy against the injected-PSF mask) plus a candidate loss on the centre logit,
keeping the epoch with the best validation ROC-AUC (or, by :mod:`astrid.model.epoch_selection`,
the lowest validation FPR at FNR 2 %, or an average of the last epochs' weights).
:func:`network_logits` scores stamps with a fitted network.

The tracked run that ``astrid train`` calls (data, fit, calibration, evaluation, MLflow,
registry) is :func:`astrid.model.training_run.run_training`; the hyperparameter search is
:mod:`astrid.model.hpo`.
"""

from __future__ import annotations

import json
import random
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from astrid.errors import AstridError
from astrid.model.epoch_selection import (
    average_states,
    check_selection,
    selection_key,
    validation_metrics,
)
from astrid.model.examples import LabelledStamps
from astrid.model.registry import DEFAULT_MODEL_NAME
from astrid.model.torch_data import StampDataset
from astrid.model.unet import UNet, UNetConfig, centre_logit

__all__ = [
    "SingleClassError",
    "TrainConfig",
    "check_classes",
    "fit",
    "load_config",
    "network_logits",
    "seed_everything",
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


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (one training is reproducible)."""
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
    seed_everything(config.seed)
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
