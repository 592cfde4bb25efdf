"""Per-difference detection limits: fake point sources in the difference's own pixels.

After the difference stage has extracted its candidates, :func:`measure_limits` injects
``ASTRID_LIMITS_FAKES`` fake point sources (0 = off) into that difference's significance map
(S_corr), at random unmasked places at least 10 px from every candidate and reference star,
over magnitude bins from 1.5 mag brighter to 1 mag fainter than the S/N = threshold
magnitude, and recovers them with the candidates' own detection (same threshold and minimum
area): :func:`astrid.science.limits.detection_limits`. The completeness curve and the 50 % /
90 % limiting magnitudes are stored per difference (``DetectionLimit``) by
:func:`store_limits`; a difference with no free area gets no row and a note saying why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.pipeline.stages.common import json_safe
from astrid.science.limits import DetectionLimitsError, detection_limits
from astrid.science.stats import median_float64
from astrid.science.zogy import DifferenceResult
from astrid.store.tables import DetectionLimit

__all__ = ["LIMIT_BINS", "measure_limits", "store_limits"]

#: Magnitude bins of the completeness curve (fewer when fewer fakes are asked for).
LIMIT_BINS = 11


def measure_limits(
    result: DifferenceResult,
    candidates_xy: np.ndarray,
    zero_point: float | None,
    threshold: float,
    n_fakes: int,
    *,
    minarea: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Completeness and limiting magnitudes of one difference.

    Parameters
    ----------
    result : DifferenceResult
        The difference (its ``score``, ``flux_err``, ``psf``, ``mask``, ``ref_stars``).
    candidates_xy : numpy.ndarray
        Shape (m, 2), (x, y) of the extracted candidates (fakes keep 10 px away).
    zero_point : float or None
        Of ``result.flux_err``'s units; None gives instrumental magnitudes (zero point 0).
    threshold : float
        The candidates' detection threshold in sigma.
    n_fakes : int
        Fakes to inject (rounded down to a multiple of the number of bins, at least one each).
    minarea, seed : int
        The detection's minimum area; random seed of the positions.

    Returns
    -------
    dict
        ``n_injected``, ``n_recovered``, ``threshold``, ``zero_point``, ``m50``, ``m90``,
        ``curve`` (list of ``{"mag", "completeness", "n"}``), or ``{"error": reason}``.
    """
    zp = 0.0 if zero_point is None else float(zero_point)
    # float32 (ZOGY's) stays float32: the median is the float64 one, without the copy
    ferr = np.asarray(result.flux_err)
    if ferr.dtype != np.float32:
        ferr = np.asarray(ferr, float)
    usable = ~result.mask & np.isfinite(ferr) & (ferr > 0)
    if not usable.any() or n_fakes <= 0:
        return {"error": "no usable pixel for fake sources"}
    m_t = zp - 2.5 * math.log10(threshold * median_float64(ferr[usable], overwrite_input=True))
    k = max(1, min(LIMIT_BINS, int(n_fakes)))
    mags = np.round(np.linspace(m_t - 1.5, m_t + 1.0, k), 3)
    avoid = [np.asarray(candidates_xy, float).reshape(-1, 2)]
    stars = getattr(result, "ref_stars", None)
    if stars is not None and len(stars.x):
        avoid.append(np.column_stack([stars.x, stars.y]))
    try:
        lim = detection_limits(
            result.score,
            ferr,
            result.psf,
            result.mask,
            zero_point=zp,
            threshold=threshold,
            minarea=minarea,
            avoid_xy=np.vstack(avoid),
            n_per_bin=max(1, int(n_fakes) // k),
            mag=mags,
            seed=seed,
        )
    except DetectionLimitsError as exc:
        return {"error": str(exc)}
    n = lim.n_injected
    return json_safe(
        {
            "n_injected": int(n.sum()),
            "n_recovered": int(np.round(lim.completeness * n).sum()),
            "threshold": lim.threshold,
            "zero_point": zero_point,
            "m50": lim.m50,
            "m90": lim.m90,
            "curve": [
                {"mag": float(m), "completeness": float(c), "n": int(ni)}
                for m, c, ni in zip(lim.mag, lim.completeness, n, strict=True)
            ],
        }
    )


def store_limits(
    session: Session, difference_id: int, observation_id: int, limits: dict[str, Any] | None
) -> DetectionLimit | None:
    """The difference's ``DetectionLimit`` row (created once; None when not measured)."""
    if not limits or "error" in limits:
        return None
    row = session.scalar(
        select(DetectionLimit).where(DetectionLimit.difference_id == difference_id)
    )
    if row is None:
        row = DetectionLimit(
            difference_id=difference_id,
            observation_id=observation_id,
            n_injected=int(limits["n_injected"]),
            n_recovered=int(limits["n_recovered"]),
            threshold=float(limits["threshold"]),
            zero_point=limits.get("zero_point"),
            m50=limits.get("m50"),
            m90=limits.get("m90"),
            curve=list(limits.get("curve") or []),
        )
        session.add(row)
        session.flush()
    return row
