"""Honest evaluation of a real/bogus scorer: ranking, operating points, speed.

The figures follow the way ZTF reports its braai model (Duev et al. 2019): besides
precision, recall, F1, ROC-AUC and PR-AUC, the false-positive rate at a fixed 1% and 2%
false-negative rate (how much bogus gets through if one may lose only 1-2% of real
transients). Latency is timed per batch (p50/p95), throughput as triplets per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from astrid.errors import AstridError

__all__ = [
    "ClassificationMetrics",
    "SpeedMetrics",
    "classification_metrics",
    "fpr_at_fnr",
    "plot_confusion_matrix",
    "plot_roc_pr",
    "store_evaluation",
    "time_scoring",
]


class EvaluationError(AstridError):
    """Evaluation cannot be done on this input (e.g. one class only, length mismatch)."""


@dataclass
class ClassificationMetrics:
    """Scores of a binary classifier on a labelled set (label 1 = real)."""

    n: int
    n_real: int
    threshold: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    pr_auc: float
    fpr_at_fnr_1pct: float
    fpr_at_fnr_2pct: float
    threshold_at_fnr_1pct: float
    threshold_at_fnr_2pct: float
    confusion: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the metrics as a flat dictionary (confusion as ``tn, fp, fn, tp``)."""
        d = asdict(self)
        (tn, fp), (fn, tp) = d.pop("confusion")
        d.update(tn=tn, fp=fp, fn=fn, tp=tp)
        return d


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise EvaluationError(f"{y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise EvaluationError("scores contain NaN or infinite values")
    if np.unique(y).size < 2:
        raise EvaluationError(
            "evaluation set holds only one class", hint="ROC/PR need real and bogus examples"
        )
    return y, s


def fpr_at_fnr(labels: np.ndarray, scores: np.ndarray, fnr: float) -> tuple[float, float]:
    """False-positive rate when the threshold lets through all but ``fnr`` of the reals.

    The threshold is the ``fnr`` quantile of the real scores (lower order statistic), i.e.
    the largest threshold whose false-negative rate does not exceed ``fnr``; candidates with
    ``score >= threshold`` are accepted.

    Returns
    -------
    (fpr, threshold) : tuple of float
    """
    y, s = _check(labels, scores)
    real = np.sort(s[y == 1])
    k = int(np.floor(fnr * real.size))  # may lose at most k reals
    threshold = real[k]
    fpr = float(np.mean(s[y == 0] >= threshold))
    return fpr, float(threshold)


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> ClassificationMetrics:
    """Compute every ranking and operating-point figure for scores in [0, 1].

    Parameters
    ----------
    labels : numpy.ndarray
        Shape ``(N,)``, 1 = real, 0 = bogus.
    scores : numpy.ndarray
        Shape ``(N,)``, higher = more likely real.
    threshold : float
        Operating point for precision, recall, F1 and the confusion matrix.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _check(labels, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr1, thr1 = fpr_at_fnr(y, s, 0.01)
    fpr2, thr2 = fpr_at_fnr(y, s, 0.02)
    return ClassificationMetrics(
        n=int(y.size),
        n_real=int(y.sum()),
        threshold=float(threshold),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        roc_auc=float(roc_auc_score(y, s)),
        pr_auc=float(average_precision_score(y, s)),
        fpr_at_fnr_1pct=fpr1,
        fpr_at_fnr_2pct=fpr2,
        threshold_at_fnr_1pct=thr1,
        threshold_at_fnr_2pct=thr2,
        confusion=[[tn, fp], [fn, tp]],
    )


@dataclass
class SpeedMetrics:
    """Per-batch latency (seconds) and throughput (triplets per second)."""

    batch_size: int
    n_batches: int
    latency_p50_s: float
    latency_p95_s: float
    throughput_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_scoring(
    score_batch: Callable[[np.ndarray], np.ndarray],
    stamps: np.ndarray,
    batch_size: int = 256,
    repeats: int = 1,
) -> SpeedMetrics:
    """Time ``score_batch`` over ``stamps`` in batches (one warm-up batch not counted).

    Parameters
    ----------
    score_batch : callable
        Takes ``(B, C, H, W)`` stamps and returns ``(B,)`` scores.
    stamps : numpy.ndarray
        Shape ``(N, C, H, W)``.
    batch_size : int
        Triplets per batch.
    repeats : int
        Passes over ``stamps``.
    """
    n = len(stamps)
    if n == 0:
        raise EvaluationError("no stamps to time")
    score_batch(stamps[:batch_size])
    latencies = []
    total = 0
    for _ in range(repeats):
        for start in range(0, n, batch_size):
            batch = stamps[start : start + batch_size]
            t0 = time.perf_counter()
            score_batch(batch)
            latencies.append(time.perf_counter() - t0)
            total += len(batch)
    lat = np.array(latencies)
    return SpeedMetrics(
        batch_size=batch_size,
        n_batches=len(lat),
        latency_p50_s=float(np.percentile(lat, 50)),
        latency_p95_s=float(np.percentile(lat, 95)),
        throughput_per_s=float(total / lat.sum()),
    )


def plot_roc_pr(labels: np.ndarray, scores: np.ndarray, path: str) -> None:
    """Write ROC and precision-recall curves side by side to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y, s = _check(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    prec, rec, _ = precision_recall_curve(y, s)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
    a1.plot(fpr, tpr)
    a1.set(xscale="log", xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    a2.plot(rec, prec)
    a2.set(xlabel="recall", ylabel="precision", title="precision-recall")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_confusion_matrix(confusion: list[list[int]], path: str) -> None:
    """Write a 2x2 confusion matrix (rows: true bogus/real) to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(3.5, 3.2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["bogus", "real"],
        yticklabels=["bogus", "real"],
        xlabel="predicted",
        ylabel="true",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def store_evaluation(
    session: Any,
    *,
    model_name: str,
    model_version: str,
    metrics: dict[str, Any],
    kind: str = "evaluate",
    params: dict[str, Any] | None = None,
    mlflow_run_id: str | None = None,
    config: dict[str, Any] | None = None,
    training_dataset_id: int | None = None,
) -> Any:
    """Record a model (get or create by name and semantic version) and one of its runs.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
    model_name, model_version : str
        Registered name and semantic version.
    metrics : dict
        Figures of :func:`classification_metrics` / :func:`time_scoring` (or training).
    kind : str
        ``train``, ``evaluate`` or ``inference``.

    Returns
    -------
    astrid.store.tables.ModelRun
        The new run row (flushed, so it has an id).
    """
    from sqlalchemy import select

    from astrid.store.tables import Model, ModelRun, utcnow

    model = session.scalar(
        select(Model).where(Model.name == model_name, Model.version == model_version)
    )
    if model is None:
        model = Model(
            name=model_name,
            version=model_version,
            mlflow_run_id=mlflow_run_id,
            config=config or {},
            metrics=metrics,
            training_dataset_id=training_dataset_id,
        )
        session.add(model)
        session.flush()
    run = ModelRun(
        model_id=model.id,
        kind=kind,
        status="finished",
        params=params or {},
        metrics=metrics,
        mlflow_run_id=mlflow_run_id,
        finished_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run
