"""The recipe that transfers to real stamps: simulations + real alerts, nights held out.

:func:`split_for_transfer` makes the splits:

* **held-out nights** (``holdout_nights``): every alert of those nights goes to the test
  part, which is never used for fitting, epoch selection or calibration; the alerts of
  objects also seen on a held-out night are dropped from training (no object straddles);
* the remaining real alerts are split by object, the simulated candidates by field, into
  train and validation (``val_fraction``).

:func:`train_transfer` fits the network (optionally warm-started from a trained model) on
the union, with each example's confidence weight in the loss (exact labels 1, ZTF ``drb``
weak labels ``|2 drb - 1|``), selects the epoch (best validation ROC-AUC by default, or
lowest validation FPR at FNR 2 %; or averages the weights of the last epochs) and fits the
calibration on the validation part. The input convention is the same for both sources
(:mod:`astrid.model.stamps`: per-stamp robust normalisation, NaN and CCD-edge padding as sky,
the difference signed so the candidate is positive — ZTF sends it so for both
``isdiffpos``), and training augments with rotations, flips and ZTF-style padding.

:func:`drift_references` gives the trained model's drift references from the validation
part: one over everything and one per input source (simulated examples stand for AstrID's
own ``pipeline`` detections, real ones for ``alert`` detections), so the drift job compares a
night of alerts with alerts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from astrid.model.calibration import Calibrator, fit_calibrator
from astrid.model.drift import reference_sample, references_by_source
from astrid.model.examples import DatasetError, LabelledStamps, concat_stamps
from astrid.model.splits import grouped_split
from astrid.model.train import FitResult, TrainConfig, fit, network_logits

if TYPE_CHECKING:  # torch is imported only when a network is used
    from astrid.model.unet import UNet

__all__ = [
    "TransferSplits",
    "balance_real",
    "drift_references",
    "parse_kind_weights",
    "split_for_transfer",
    "train_transfer",
    "weight_kinds",
]


@dataclass
class TransferSplits:
    """Train / validation (fitting, epoch choice, calibration) and held-out real test."""

    train: LabelledStamps
    val: LabelledStamps
    test_real: LabelledStamps | None

    def summary(self) -> dict[str, Any]:
        """Counts per part and label source (for the record)."""
        out: dict[str, Any] = {}
        for name in ("train", "val", "test_real"):
            part = getattr(self, name)
            if part is not None:
                out[name] = {
                    "n": len(part),
                    "n_real": int(part.labels.sum()),
                    **part.source_counts(),
                }
        return out


def balance_real(
    real: LabelledStamps, night_cap: int = 300, bogus_factor: float = 3.0
) -> LabelledStamps:
    """Re-weight real alerts so one big night and the many reals do not dominate the loss.

    Each alert's confidence weight is multiplied by ``min(1, night_cap / n_night)``
    (``n_night``: alerts of its night in ``real``), so a night with more than ``night_cap``
    alerts counts as ``night_cap`` of them, and alerts labelled bogus by a weak label
    (``drb``/``rb`` < 0.5; real alerts are ~90 % real) by ``bogus_factor``.

    Returns
    -------
    LabelledStamps
        A copy with new weights (stamps shared).
    """
    nights = np.asarray(real.nights)
    _, inverse, counts = np.unique(nights, return_inverse=True, return_counts=True)
    factor = np.minimum(1.0, night_cap / counts[inverse])
    weak = np.isin(real.label_sources, ["drb", "rb"])
    factor = factor * np.where(weak & (real.labels == 0), bogus_factor, 1.0)
    out = real.subset(np.arange(len(real)))
    out.weights = (real.weights * factor).astype(np.float32)
    out.meta = {**real.meta, "balance": {"night_cap": night_cap, "bogus_factor": bogus_factor}}
    return out


def weight_kinds(data: LabelledStamps, kind_weights: Mapping[str, float]) -> LabelledStamps:
    """Multiply the loss weight of every example whose ``kind`` is in ``kind_weights``.

    Used on the simulated part to stress the classes that meet at the operating point (the
    low tail of the reals, the upper tail of misaligned-pair and unexplained residuals).
    The weights also enter the validation AUC that chooses the epoch.

    Raises
    ------
    DatasetError
        If a weight is not positive or names a kind that is not in ``data``.
    """
    unknown = set(kind_weights) - set(data.kinds)
    if unknown:
        raise DatasetError(f"kind weights name kinds not in the data: {sorted(unknown)}")
    if any(not w > 0 for w in kind_weights.values()):
        raise DatasetError(f"kind weights must be positive: {dict(kind_weights)}")
    factor = np.array([kind_weights.get(k, 1.0) for k in data.kinds], dtype=np.float64)
    out = data.subset(np.arange(len(data)))
    out.weights = (data.weights * factor).astype(np.float32)
    out.meta = {**data.meta, "kind_weights": dict(kind_weights)}
    return out


def parse_kind_weights(items: Iterable[str]) -> dict[str, float]:
    """``["misaligned=2", "variable=2"]`` -> ``{"misaligned": 2.0, "variable": 2.0}``.

    Raises
    ------
    DatasetError
        If an item is not ``KIND=NUMBER``.
    """
    out: dict[str, float] = {}
    for item in items:
        kind, sep, value = item.partition("=")
        try:
            out[kind.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not kind.strip():
            raise DatasetError(f"a kind weight is KIND=NUMBER, got {item!r}")
    return out


def split_for_transfer(
    simulated: LabelledStamps,
    real: LabelledStamps,
    holdout_nights: Iterable[str],
    val_fraction: float = 0.2,
    seed: int = 0,
) -> TransferSplits:
    """Split simulated (by field) and real (by night, then object) examples.

    Raises
    ------
    DatasetError
        If a part would be empty.
    """
    held = {str(n) for n in holdout_nights}
    nights = np.asarray(real.nights)
    is_test = np.isin(nights, list(held))
    test_groups = {g for g, t in zip(real.groups, is_test, strict=True) if t}
    usable = np.flatnonzero(~is_test & ~np.isin(real.groups, list(test_groups)))
    if len(usable) < 2:
        raise DatasetError("no real alert left for training outside the held-out nights")
    real_fit = real.subset(usable)
    fractions = (1 - val_fraction, val_fraction)
    s_tr, s_va = grouped_split(simulated.groups, fractions, seed=seed)
    r_tr, r_va = grouped_split(real_fit.groups, fractions, seed=seed)
    meta = {"source": "transfer", "holdout_nights": sorted(held)}
    return TransferSplits(
        train=concat_stamps([simulated.subset(s_tr), real_fit.subset(r_tr)], meta),
        val=concat_stamps([simulated.subset(s_va), real_fit.subset(r_va)], meta),
        test_real=real.subset(np.flatnonzero(is_test)) if is_test.any() else None,
    )


def train_transfer(
    splits: TransferSplits,
    config: TrainConfig,
    init_state: dict[str, Any] | None = None,
    on_epoch: Any = None,
    *,
    select_by: str = "auc",
    average_last: int = 0,
    on_state: Any = None,
) -> tuple[FitResult, Calibrator]:
    """Fit on ``splits.train`` (weighted), choose the epoch and calibrate on ``splits.val``.

    The held-out real part is not touched. ``select_by`` (``"auc"``: best validation
    ROC-AUC, ``"fpr2"``: lowest validation FPR at FNR 2 %), ``average_last`` (average the
    weights of the last epochs) and ``on_state`` (``on_state(epoch, state_dict)`` after each
    epoch) go to :func:`astrid.model.train.fit`; the calibration is fitted on the returned
    (selected or averaged) network.

    Raises
    ------
    astrid.model.epoch_selection.EpochSelectionError
        If ``select_by`` or ``average_last`` is not valid for ``config``.
    """
    fitted = fit(
        splits.train,
        splits.val,
        config,
        on_epoch=on_epoch,
        init_state=init_state,
        select_by=select_by,
        average_last=average_last,
        on_state=on_state,
    )
    calibrator = fit_calibrator(
        config.calibration, network_logits(fitted.net, splits.val.stamps), splits.val.labels
    )
    return fitted, calibrator


def drift_references(
    net: UNet, calibrator: Calibrator, val: LabelledStamps, seed: int = 0
) -> dict[str, Any]:
    """The package entries ``drift_reference`` and ``drift_reference_by_source`` of a model
    fitted by :func:`train_transfer`: its calibrated scores on ``val`` (never fitted on) and
    the raw-stamp statistics of ``val``'s examples, over all and per source (``truth`` labels
    are simulations: ``pipeline``; every other label comes from an alert: ``alert``). The
    scores are those the model gives when served (:func:`astrid.model.score.served_scores`:
    undecided candidates scored from 8 views), as the pipeline stores them."""
    from astrid.model.score import served_scores

    scores = served_scores(net, calibrator, val.stamps)
    sources = ["pipeline" if s == "truth" else "alert" for s in val.label_sources]
    return {
        "drift_reference": reference_sample(scores, val.input_stats, seed),
        "drift_reference_by_source": references_by_source(scores, val.input_stats, sources, seed),
    }
