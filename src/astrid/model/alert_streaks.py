"""The streak test on ZTF alerts: pieces of one satellite trail cut into several alerts.

ZTF's alerts of one difference image (one exposure, one readout quadrant) share the
processing id ``pid``; a candidate id is ``pid * 10**6 + n`` (checked on the 1,311 packets of
``ztf_alerts_train``), so packets without ``pid`` are grouped by that prefix. In each group
the alerts' positions go through :func:`astrid.science.streaks.collinear_groups`:

* on the quadrant's pixels (``xpos``, ``ypos``) when every alert of the group has them --
  the trail is a straight line on the detector, and the positions do not depend on the WCS;
* otherwise on the tangent plane of ``ra``, ``dec`` (arcsec, the same 2-unit tolerance:
  ZTF's pixels are 1.01").

The region is a ZTF quadrant (3072 x 3080 px; diagonal 4350 px). The parameters are the
science module's a-priori defaults (tolerance 2 px, at least 4 members, at most 1e-3 false
alarms); nothing here was tuned on the alerts it is evaluated on.

A continuous trail is often one alert only (the extraction keeps one peak of a connected
trail): each alert's difference stamp also goes through
:func:`astrid.science.streaks.stamp_trail` (a 3-sigma footprint through the centre that
spans 75 % of the stamp with an axis ratio of at least 4), on the normalised difference
channel the model sees (``3 asinh(z / 3)``, thresholded at the image of 3 sigma).

A flagged alert keeps its model score in ``model_score``; its ``score`` (and uncertainty)
is multiplied by :data:`STREAK_DEMOTION` = 0.1, so it can no longer pass 0.5 and keeps its
rank among flagged alerts, and ``problems`` gets an entry starting with ``on a streak:``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from astrid.model.ztf import ZTF_QUADRANT_SHAPE, ZtfAlert
from astrid.science.streaks import (
    STREAK_DEMOTION,
    TRAIL_THRESHOLD_SIGMA,
    collinear_groups,
    stamp_trail,
    tangent_plane,
)

__all__ = [
    "STREAK_DEMOTION",
    "STREAK_PROBLEM",
    "ZTF_PIXEL_SCALE_ARCSEC",
    "AlertStreak",
    "alert_streaks",
    "demote_streaks",
    "exposure_key",
]

#: Start of the ``problems`` entry of an alert on a streak.
STREAK_PROBLEM = "on a streak"
#: ZTF's plate scale, arcsec per pixel.
ZTF_PIXEL_SCALE_ARCSEC = 1.012


@dataclass(frozen=True)
class AlertStreak:
    """The streak an alert was found on.

    Attributes
    ----------
    key : str
        ``"<pid>/<n>"``: the difference image and the group's number in it.
    n_members : int
        Alerts of the batch on the line.
    false_alarms : float
        The group's number of false alarms (see :mod:`astrid.science.streaks`).
    units : str
        ``"px"`` (quadrant pixels) or ``"arcsec"`` (tangent plane); ``"stamp"`` for a trail
        across the alert's own difference stamp (then ``n_members`` is 1, ``false_alarms``
        NaN and ``key`` ``"<pid>/stamp"``).
    extent : float
        For a trail in the stamp: its length in pixels (NaN otherwise).
    """

    key: str
    n_members: int
    false_alarms: float
    units: str
    extent: float = float("nan")

    @property
    def problem(self) -> str:
        """The ``problems`` entry of a member."""
        if self.units == "stamp":
            return (
                f"{STREAK_PROBLEM}: a trail {self.extent:.0f} px long crosses the difference "
                f"stamp: score x{STREAK_DEMOTION:g}"
            )
        return (
            f"{STREAK_PROBLEM}: {self.n_members} alerts of difference image "
            f"{self.key.split('/')[0]} on one line (false alarms {self.false_alarms:.1g}): "
            f"score x{STREAK_DEMOTION:g}"
        )


def exposure_key(alert: ZtfAlert) -> int | None:
    """The alert's difference image: ``pid``, else ``candid // 10**6``; None if unknown."""
    pid = alert.candidate.get("pid")
    if isinstance(pid, (int, float)) and not isinstance(pid, bool) and math.isfinite(pid):
        return int(pid)
    return int(alert.candid) // 10**6 if int(alert.candid) >= 10**12 else None


#: :data:`~astrid.science.streaks.TRAIL_THRESHOLD_SIGMA` on the model's 3 asinh(z / 3) scale.
_Y_THRESHOLD = 3.0 * math.asinh(TRAIL_THRESHOLD_SIGMA / 3.0)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def alert_streaks(
    alerts: Sequence[ZtfAlert], triplets: Sequence[np.ndarray | None] | None = None
) -> list[AlertStreak | None]:
    """The streak each alert lies on (None for most).

    Parameters
    ----------
    alerts : sequence of ZtfAlert
        A batch; alerts of one difference image are tested together.
    triplets : sequence of numpy.ndarray or None, optional
        The model inputs of the alerts (:func:`astrid.model.ztf.prepare_alert`; None where
        not scorable): their difference channels get the in-stamp test. Without them only
        the group test runs.
    """
    out: list[AlertStreak | None] = [None] * len(alerts)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(alerts):
        key = exposure_key(a)
        if key is not None and math.isfinite(a.ra) and math.isfinite(a.dec):
            groups[key].append(i)
    ny, nx = ZTF_QUADRANT_SHAPE
    for pid, idx in groups.items():
        if len(idx) < 3:
            continue
        members = [alerts[i] for i in idx]
        if all(
            _finite(a.candidate.get("xpos")) and _finite(a.candidate.get("ypos")) for a in members
        ):
            x = np.array([float(a.candidate["xpos"]) for a in members])
            y = np.array([float(a.candidate["ypos"]) for a in members])
            scale, units = 1.0, "px"
        else:
            x, y = tangent_plane(
                np.array([a.ra for a in members]), np.array([a.dec for a in members])
            )
            scale, units = ZTF_PIXEL_SCALE_ARCSEC, "arcsec"
            ok = np.isfinite(x) & np.isfinite(y)  # a position far off is no trail piece
            idx, x, y = [i for i, k in zip(idx, ok, strict=True) if k], x[ok], y[ok]
        found = collinear_groups(x, y, area=nx * ny * scale**2, chord=math.hypot(nx, ny) * scale)
        for g, grp in enumerate(found):
            streak = AlertStreak(f"{pid}/{g}", len(grp.members), grp.false_alarms, units)
            for m in grp.members:
                out[idx[int(m)]] = streak
    for i, trip in enumerate(triplets or ()):
        if out[i] is not None or trip is None:
            continue
        # the channel is 3 asinh(z / 3), monotonic in z: threshold it at the image of 3 sigma
        # (the footprint's moments are unweighted, so the scale does not matter)
        found_trail = stamp_trail(trip[2], normalised=True, threshold=_Y_THRESHOLD)
        if found_trail.is_trail:
            key = exposure_key(alerts[i])
            out[i] = AlertStreak(f"{key}/stamp", 1, float("nan"), "stamp", found_trail.extent)
    return out


def demote_streaks(rows: list[dict[str, Any]], streaks: Sequence[AlertStreak | None]) -> None:
    """Apply the streak verdicts to score rows, in place (see the module docstring).

    Each row gets ``model_score`` (the score before) and ``streak`` (the group's key or
    None); a member's ``score`` and ``uncertainty`` are multiplied by
    :data:`STREAK_DEMOTION` and its ``problems`` list gets the streak entry.
    """
    for row, streak in zip(rows, streaks, strict=True):
        row["model_score"] = row.get("score")
        row["streak"] = None if streak is None else streak.key
        if streak is None:
            continue
        if row.get("score") is not None:
            row["score"] = float(row["score"]) * STREAK_DEMOTION
        if row.get("uncertainty") is not None:
            row["uncertainty"] = float(row["uncertainty"]) * STREAK_DEMOTION
        row["problems"] = [*row.get("problems", []), streak.problem]
