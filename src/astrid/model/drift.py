"""Drift of scores and inputs against the training set: population stability index (PSI).

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins of the reference ("expected", e.g.
the training or validation scores) distribution, with ``e_i``, ``a_i`` the fractions of the
reference and of the new sample (e.g. one night's alerts) in bin ``i``. Bins are quantiles of
the reference, so each holds about the same share of it; empty bins get a small floor so
the log stays finite. Common reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 drift.

:func:`stamp_statistics` gives per-candidate input statistics (robust sky and noise of each
channel, NaN fraction) whose PSI tells an input shift (new camera, new normalisation) from a
change of the population of candidates. :func:`reference_sample` is what a model package
keeps of its training set for this (``drift_reference`` in its ``config.json``), written by
``astrid train`` and by the closed loop alike. A model trained on several kinds of input
(AstrID's own difference stamps and survey alerts, whose pixel units and populations differ)
also keeps one reference per kind (``drift_reference_by_source``, from
:func:`references_by_source`): a night of alerts compared with a mixture of both kinds would
read as drift whatever happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DRIFT_THRESHOLD",
    "REFERENCE_SAMPLE",
    "DriftReport",
    "drift_report",
    "population_stability_index",
    "reference_sample",
    "references_by_source",
    "stamp_statistics",
]

#: PSI above which a distribution is said to have drifted.
DRIFT_THRESHOLD = 0.25
_FLOOR = 1e-4
#: Values kept per quantity in a model's drift reference (a random subsample beyond it).
REFERENCE_SAMPLE = 2000


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected`` (1-D samples; NaN ignored), >= 0.

    Raises
    ------
    ValueError
        If either sample has no finite value.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e, a = e[np.isfinite(e)], a[np.isfinite(a)]
    if e.size == 0 or a.size == 0:
        raise ValueError("PSI needs finite values in both samples")
    edges = np.unique(np.quantile(e, np.linspace(0.0, 1.0, bins + 1)))
    inner = edges[1:-1]
    pe = np.bincount(np.searchsorted(inner, e, side="right"), minlength=len(inner) + 1) / e.size
    pa = np.bincount(np.searchsorted(inner, a, side="right"), minlength=len(inner) + 1) / a.size
    pe, pa = np.maximum(pe, _FLOOR), np.maximum(pa, _FLOOR)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def stamp_statistics(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Per-candidate input statistics of raw triplets ``(N, 3, H, W)``.

    Returns ``{"<channel>_median", "<channel>_sigma", "nan_fraction"}`` arrays of shape
    ``(N,)`` (channels ``new``, ``ref``, ``diff``; sigma = 1.4826 MAD, in the stamps' units).
    """
    arr = np.asarray(raw, dtype=np.float64)
    flat = arr.reshape(arr.shape[0], 3, -1)
    out: dict[str, np.ndarray] = {}
    for c, name in enumerate(("new", "ref", "diff")):
        x = flat[:, c]
        med = np.nanmedian(x, axis=1)
        out[f"{name}_median"] = med
        out[f"{name}_sigma"] = 1.4826 * np.nanmedian(np.abs(x - med[:, None]), axis=1)
    out["nan_fraction"] = np.mean(~np.isfinite(flat), axis=(1, 2))
    return out


@dataclass(frozen=True)
class DriftReport:
    """PSI per quantity and whether any crossed the threshold."""

    psi: dict[str, float]
    threshold: float

    @property
    def drifted(self) -> list[str]:
        """Quantities whose PSI exceeds the threshold, sorted."""
        return sorted(k for k, v in self.psi.items() if v > self.threshold)


def drift_report(
    reference: dict[str, np.ndarray],
    sample: dict[str, np.ndarray],
    threshold: float = DRIFT_THRESHOLD,
    bins: int = 10,
) -> DriftReport:
    """PSI of every quantity present in both ``reference`` and ``sample`` (e.g. ``score``
    and the :func:`stamp_statistics` of the training set vs one night)."""
    common = sorted(set(reference) & set(sample))
    return DriftReport(
        {k: population_stability_index(reference[k], sample[k], bins) for k in common}, threshold
    )


def reference_sample(
    scores: np.ndarray, stats: dict[str, np.ndarray] | None, seed: int = 0
) -> dict[str, list[float]]:
    """The drift reference of a model: its calibrated ``scores`` ``(N,)`` on held-back
    training data and the :func:`stamp_statistics` ``{quantity: (M,)}`` of its raw training
    stamps, each as a JSON-ready list of at most :data:`REFERENCE_SAMPLE` finite values
    (a seeded random subsample beyond). Quantities with no finite value are left out."""
    rng = np.random.default_rng(seed)

    def sample(x: np.ndarray) -> list[float]:
        x = np.asarray(x, np.float64).ravel()
        x = x[np.isfinite(x)]
        if len(x) > REFERENCE_SAMPLE:
            x = rng.choice(x, REFERENCE_SAMPLE, replace=False)
        return [float(v) for v in x]

    ref = {"score": sample(scores)}
    ref.update({k: sample(v) for k, v in (stats or {}).items()})
    return {k: v for k, v in ref.items() if v}


def references_by_source(
    scores: np.ndarray,
    stats: dict[str, np.ndarray] | None,
    sources: list[str],
    seed: int = 0,
) -> dict[str, dict[str, list[float]]]:
    """One :func:`reference_sample` per input source.

    Parameters
    ----------
    scores : numpy.ndarray
        Calibrated scores ``(N,)`` on held-back training data.
    stats : dict of str to numpy.ndarray, optional
        :func:`stamp_statistics` of the same ``N`` examples' raw stamps.
    sources : list of str
        Where each example's stamps come from, as ``Detection.source`` names them
        (``pipeline`` for AstrID's own difference images, ``alert`` for survey alerts).

    Raises
    ------
    ValueError
        If ``sources`` and ``scores`` (or a statistic) differ in length.
    """
    kinds = np.asarray(sources)
    scores = np.asarray(scores)
    if len(kinds) != len(scores) or any(len(v) != len(kinds) for v in (stats or {}).values()):
        raise ValueError("sources, scores and statistics must have one entry per example")
    out = {}
    for kind in sorted(set(kinds.tolist())):
        sel = kinds == kind
        sub = {k: np.asarray(v)[sel] for k, v in (stats or {}).items()}
        out[str(kind)] = reference_sample(scores[sel], sub, seed)
    return out
