"""Shadow A/B: the champion decides, a challenger scores a fraction of the same candidates.

Which candidates the challenger sees is decided by a hash of the candidate id, not by a
random draw, so a re-run shadows the same ones and two processes agree. The champion's
score is the decision; the challenger's is kept beside it (``shadow_score``,
``shadow_version``) and :func:`shadow_agreement` summarises how often the two agree at a threshold
and, where labels exist (curated votes), the precision and recall of each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from astrid.model.alert_streaks import STREAK_DEMOTION
from astrid.model.registry import IncompatibleModelError
from astrid.model.score import Scorer, score_alerts
from astrid.model.ztf import ZtfAlert

__all__ = ["in_shadow", "shadow_agreement", "shadow_score_alerts"]


def in_shadow(candid: int | str, fraction: float) -> bool:
    """True for a stable ``fraction`` (0 to 1) of candidate ids (SHA-256 of the id)."""
    digest = hashlib.sha256(str(candid).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _convention(scorer: Scorer) -> tuple[Any, ...]:
    cfg = scorer.loaded.config
    return (scorer.size, scorer.channels, (cfg.get("stamp") or {}).get("normalisation"))


def shadow_score_alerts(
    champion: Scorer,
    challenger: Scorer,
    alerts: Sequence[ZtfAlert],
    fraction: float,
    *,
    uncertainty: bool = False,
) -> list[dict[str, Any]]:
    """Rows of :func:`astrid.model.score.score_alerts` by the champion, plus ``shadow_score``
    and ``shadow_version`` (None outside the shadowed fraction).

    Raises
    ------
    IncompatibleModelError
        The challenger takes another input convention (stamp size, channels or
        normalisation): its scores would not be comparable.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"shadow fraction {fraction} is not between 0 and 1")
    if _convention(challenger) != _convention(champion):
        raise IncompatibleModelError(
            f"challenger {challenger.model_version} takes input {_convention(challenger)}, "
            f"the champion {_convention(champion)}",
            hint="shadow only models trained on the same stamp convention",
        )
    rows = score_alerts(champion, alerts, uncertainty=uncertainty)
    chosen = [i for i, a in enumerate(alerts) if in_shadow(a.candid, fraction)]
    # The streak verdict needs the whole batch: the champion's rows carry it, and the
    # challenger's score of a streak member is demoted alike.
    shadow = score_alerts(challenger, [alerts[i] for i in chosen], streaks=False)
    for row in rows:
        row["shadow_score"], row["shadow_version"] = None, None
    for i, srow in zip(chosen, shadow, strict=True):
        on_streak = rows[i].get("streak") is not None and srow["score"] is not None
        rows[i]["shadow_score"] = srow["score"] * STREAK_DEMOTION if on_streak else srow["score"]
        rows[i]["shadow_version"] = challenger.model_version
    return rows


def shadow_agreement(
    rows: Sequence[Mapping[str, Any]],
    labels: Mapping[int, int] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Agreement of champion and challenger on the rows both scored.

    Returns ``n`` (both scored), ``agreement`` (same side of ``threshold``), ``mean_abs_diff``
    and, for the rows with a label in ``labels`` (candid -> 1/0), ``precision``/``recall``
    of each model (None where undefined).
    """
    both = [r for r in rows if r.get("score") is not None and r.get("shadow_score") is not None]
    out: dict[str, Any] = {"n": len(both), "agreement": None, "mean_abs_diff": None}
    if not both:
        return out
    a = np.array([r["score"] for r in both], dtype=float)
    b = np.array([r["shadow_score"] for r in both], dtype=float)
    out["agreement"] = float(np.mean((a >= threshold) == (b >= threshold)))
    out["mean_abs_diff"] = float(np.mean(np.abs(a - b)))
    if labels:
        known = [i for i, r in enumerate(both) if int(r["candid"]) in labels]
        y = np.array([labels[int(both[i]["candid"])] for i in known], dtype=int)
        out["n_labelled"] = len(known)
        for name, s in (("champion", a[known]), ("challenger", b[known])):
            hit = s >= threshold
            tp = int(np.sum(hit & (y == 1)))
            out[f"{name}_precision"] = tp / int(hit.sum()) if hit.any() else None
            out[f"{name}_recall"] = tp / int((y == 1).sum()) if (y == 1).any() else None
    return out
