"""Which epoch of a training to keep: the selection rules of :func:`astrid.model.train.fit`.

``fit`` scores the validation split after every epoch (:func:`validation_metrics`) and keeps
the epoch whose :func:`selection_key` is largest: the best validation ROC-AUC (``"auc"``,
the default) or the lowest validation FPR at FNR 2 % (``"fpr2"``). It can instead return the
mean of the last epochs' weights (:func:`average_states`). :func:`check_selection` checks
the options before any data is built. docs/model.md records what each rule gave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from astrid.errors import AstridError
from astrid.model.evaluate import EvaluationError, fpr_at_fnr
from astrid.model.examples import LabelledStamps

__all__ = [
    "SELECT_BY",
    "EpochSelectionError",
    "average_states",
    "check_selection",
    "selection_key",
    "validation_metrics",
]


class EpochSelectionError(AstridError, ValueError):
    """An unknown epoch-selection rule or an impossible number of epochs to average."""


#: Epoch-selection rules of :func:`fit`: best validation ROC-AUC, or lowest validation FPR
#: at FNR 2 % (ties broken by the higher ROC-AUC).
SELECT_BY = ("auc", "fpr2")


def average_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Element-wise mean of network state dicts (weight averaging of checkpoints).

    Parameters
    ----------
    states : list of dict
        State dicts of one architecture (same keys, same tensor shapes), e.g. the weights
        after each of the last few epochs.

    Returns
    -------
    dict
        Floating-point tensors: the mean over ``states`` (computed in float64, returned in
        the original dtype). Other tensors (integer buffers such as BatchNorm's
        ``num_batches_tracked``): copied from the last state.

    Raises
    ------
    EpochSelectionError
        If ``states`` is empty or the state dicts do not share keys and shapes.
    """
    import torch

    if not states:
        raise EpochSelectionError("no state dict to average")
    keys = list(states[-1])
    for i, state in enumerate(states):
        if list(state) != keys:
            raise EpochSelectionError(f"state dict {i} has other keys than the last one")
    out: dict[str, Any] = {}
    for key in keys:
        last = states[-1][key]
        shapes = {tuple(s[key].shape) for s in states}
        if len(shapes) != 1:
            raise EpochSelectionError(f"{key!r} has different shapes across states: {shapes}")
        if torch.is_floating_point(last):
            total = torch.zeros(last.shape, dtype=torch.float64)
            for state in states:
                total += state[key].detach().to(torch.float64)
            out[key] = (total / len(states)).to(last.dtype)
        else:
            out[key] = last.detach().clone()
    return out


def check_selection(select_by: str, average_last: int, epochs: int) -> None:
    """Check :func:`fit`'s epoch-selection arguments before any data is built.

    Raises
    ------
    EpochSelectionError
        If ``select_by`` is not in :data:`SELECT_BY`, or ``average_last`` is not an integer
        in ``0 .. epochs``.
    """
    if select_by not in SELECT_BY:
        raise EpochSelectionError(
            f"unknown epoch selection {select_by!r}", hint=f"choose one of {list(SELECT_BY)}"
        )
    if isinstance(average_last, bool) or not isinstance(average_last, int | np.integer):
        raise EpochSelectionError(f"average_last must be an integer, got {average_last!r}")
    if average_last < 0:
        raise EpochSelectionError(f"average_last must be >= 0, got {average_last}")
    if average_last > epochs:
        raise EpochSelectionError(
            f"cannot average the last {average_last} epochs of a {epochs}-epoch training",
            hint="lower average_last or raise epochs",
        )


def validation_metrics(
    logits: Callable[[np.ndarray], np.ndarray], val: LabelledStamps
) -> dict[str, float]:
    """Validation loss, ROC-AUC (weighted) and FPR at FNR 2 % (unweighted) of the centre
    logits that ``logits(stamps)`` gives for ``val``; empty when ``val`` does not hold both
    classes (then nothing is scored)."""
    from sklearn.metrics import roc_auc_score

    if not (len(val) and np.unique(val.labels).size == 2):
        return {}
    z = logits(val.stamps)
    yv = val.labels.astype(float)
    row = {
        "val_loss": float(np.mean(np.logaddexp(0, -z) * yv + np.logaddexp(0, z) * (1 - yv))),
        "val_roc_auc": float(roc_auc_score(val.labels, z, sample_weight=val.weights)),
    }
    try:
        row["val_fpr_at_fnr2"] = fpr_at_fnr(val.labels, z, 0.02)[0]
    except EvaluationError:  # non-finite logits (a diverged network): never the best
        row["val_fpr_at_fnr2"] = float("nan")
    return row


def selection_key(row: dict[str, float], select_by: str) -> tuple[float, ...]:
    """Larger is better; without validation figures, the lower training loss wins."""
    if "val_roc_auc" not in row:
        return (-row["train_loss"],)
    if select_by == "fpr2":
        fpr = row["val_fpr_at_fnr2"]
        return (-fpr if np.isfinite(fpr) else -np.inf, row["val_roc_auc"])
    return (row["val_roc_auc"],)
