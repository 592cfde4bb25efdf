"""Grouped splits: no field, observation, object or night contributes to two parts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astrid.model.examples import DatasetError

__all__ = ["grouped_split"]


def grouped_split(
    groups: Sequence[str],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[np.ndarray]:
    """Split sample indices so that each group (field) falls in exactly one part.

    Parameters
    ----------
    groups : sequence of str
        Group of each sample.
    fractions : sequence of float
        Target fraction of *groups* per part (normalised to sum 1).
    seed : int
        Seed of the group shuffle.

    Returns
    -------
    list of numpy.ndarray
        Sample indices of each part.
    """
    uniq = sorted(set(groups))
    if len(uniq) < len(fractions):
        raise DatasetError(
            f"{len(uniq)} group(s) cannot fill {len(fractions)} grouped splits",
            hint="simulate more fields (pairs)",
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    frac = np.asarray(fractions, dtype=float) / np.sum(fractions)
    bounds = np.round(np.cumsum(frac) * len(uniq)).astype(int)
    bounds[-1] = len(uniq)
    # every part gets at least one group
    for k in range(len(bounds)):
        lo = bounds[k - 1] if k else 0
        if bounds[k] <= lo:
            bounds[k] = lo + 1
    part_of = {}
    start = 0
    for k, stop in enumerate(bounds):
        for j in order[start:stop]:
            part_of[uniq[j]] = k
        start = stop
    g = np.asarray([part_of[x] for x in groups])
    return [np.flatnonzero(g == k) for k in range(len(fractions))]
