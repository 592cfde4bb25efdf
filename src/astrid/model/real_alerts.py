"""Training examples from real alert packets, with the source of each label recorded.

Real ZTF alerts carry no human label. Each alert gets the best label available, and the
label's source and a confidence weight (used by the loss, :func:`astrid.model.train.fit`):

=================  =====  ==============================================================
label source       label  weight
=================  =====  ==============================================================
``curated``        vote   1 (a human vote, given in ``curated``; overrides the rest)
``known_asteroid`` 1      1 (a known solar-system object within ``asteroid_radius``
                          arcsec, ``ssdistnr``: a real moving source, whatever a
                          classifier says)
``streak``         0      1 (a satellite trail across the alert's own difference stamp:
                          :func:`astrid.model.alert_streaks.alert_streaks`, in-stamp test)
``drb``            drb≥½  ``|2 drb - 1|``: ZTF's deep model is a weak label; alerts it
                          is unsure about (drb ≈ 0.5) barely count
``rb``             rb≥½   ``|2 rb - 1|`` (older packets without ``drb``)
=================  =====  ==============================================================

**Satellite streaks** (``streaks=True``, the default). ZTF's ``drb`` calls the pieces of a
dotted satellite trail real (11 pieces on night JD 2460235 carry drb = 1.00), and each piece
is a clean point in its own stamp. The alerts of one difference image on one line (the
group test of :mod:`astrid.model.alert_streaks`, run over *every* readable alert given,
before any night or object filter, so a filter cannot break up a trail) are therefore
**dropped**: a per-stamp model cannot tell them from a real point source, so a bogus label
would only teach it to doubt clean points, and the streak test demotes them at scoring
anyway. Each is counted in ``meta["skipped"]["on_streak"]`` and recorded in
``meta["streak_dropped"]`` (``candid -> streak key``). A trail across the alert's own
difference stamp is visible to the model, so that alert is kept and relabelled bogus
(``streak``). A curated vote or a known asteroid takes precedence over both.

Alerts with none of these, and alerts that cannot be scored (see :mod:`astrid.model.ztf`),
are left out and counted in ``meta["skipped"]``. Each example's group is its ``objectId``
(an object's alerts never straddle two splits) and its night is ``floor(jd - 0.5)`` (the
JD at the start of the observing night at Palomar), so evaluation can hold out whole nights.

Masks (the per-pixel target) for real alerts are a 5x5 box at the stamp centre: the PSF
footprint is not known exactly, and the candidate logit reads only the centre.

``input_stats`` holds :func:`astrid.model.drift.stamp_statistics` of each alert's *raw*
cutouts (padded square with NaN where a CCD edge clipped them, as a stored alert detection's
are), so a model trained on alerts keeps a drift reference in the alerts' own units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from astrid.model.alert_streaks import AlertStreak, alert_streaks
from astrid.model.drift import stamp_statistics
from astrid.model.examples import DatasetError, LabelledStamps
from astrid.model.ztf import ZtfAlert, iter_ztf_alerts, prepare_alert, unclip_stamp

__all__ = ["alert_label", "alert_night", "build_alert_dataset"]


def alert_night(alert: ZtfAlert) -> str:
    """The observing night of an alert, ``floor(jd - 0.5)`` as a string ("" without jd)."""
    jd = alert.candidate.get("jd")
    return "" if jd is None else str(int(math.floor(float(jd) - 0.5)))


def alert_label(
    alert: ZtfAlert,
    curated: Mapping[int, int] | None = None,
    asteroid_radius: float = 5.0,
    streak: AlertStreak | None = None,
) -> tuple[int, str, float] | None:
    """``(label, label_source, weight)`` for one alert, or None when nothing labels it.

    ``streak`` is the alert's verdict of :func:`astrid.model.alert_streaks.alert_streaks`:
    on a group (a dotted trail) the weak labels no longer apply (None), a trail across its
    own stamp makes it bogus (``streak``); a vote or a known asteroid still wins.
    """
    if curated and alert.candid in curated:
        return int(curated[alert.candid]), "curated", 1.0
    ss = alert.candidate.get("ssdistnr")
    if ss is not None and 0.0 <= float(ss) <= asteroid_radius:
        return 1, "known_asteroid", 1.0
    if streak is not None:
        return (0, "streak", 1.0) if streak.units == "stamp" else None
    for source, value in (("drb", alert.drb), ("rb", alert.rb)):
        if value is not None and math.isfinite(value):
            return int(value >= 0.5), source, float(abs(2.0 * value - 1.0))
    return None


def build_alert_dataset(
    paths: Iterable[str | Path],
    *,
    curated: Mapping[int, int] | None = None,
    nights: Iterable[str] | None = None,
    exclude_nights: Iterable[str] = (),
    exclude_objects: Iterable[str] = (),
    stamp_size: int = 64,
    min_weight: float = 0.0,
    streaks: bool = True,
) -> LabelledStamps:
    """Labelled examples from ZTF alert files or folders (any folder, recursively).

    Parameters
    ----------
    paths : iterable of path
        Avro files or folders (e.g. ``../shared/data/ztf_alerts_train``).
    curated : mapping, optional
        ``candid -> 1/0`` human votes; they take precedence over every other label.
    nights, exclude_nights : iterable of str, optional
        Keep only these nights / drop these nights (``floor(jd - 0.5)``).
    exclude_objects : iterable of str
        objectIds to drop (e.g. objects of held-out nights).
    stamp_size : int
        Side of the model's stamps, in pixels.
    min_weight : float
        Drop weak labels with a smaller confidence weight.
    streaks : bool
        Apply the streak test (module docstring): drop the members of a dotted trail,
        relabel an alert with a trail across its stamp bogus. False keeps every alert's
        classifier label (how the sets of 1.1.0 and 1.2.0 were built).

    Raises
    ------
    DatasetError
        If no alert could be used.
    """
    paths = list(paths)
    keep_nights = None if nights is None else {str(n) for n in nights}
    drop_nights = {str(n) for n in exclude_nights}
    drop_objects = set(exclude_objects)
    errors: list[Any] = []
    stamps, masks, labels, kinds, groups, sources, weights, night_of = ([] for _ in range(8))
    raw_stats: list[dict[str, np.ndarray]] = []
    skipped = {"unlabelled": 0, "unscorable": 0, "low_weight": 0, "on_streak": 0}
    streak_dropped: dict[str, str] = {}
    box = np.zeros((stamp_size, stamp_size), np.uint8)
    c = stamp_size // 2
    box[c - 2 : c + 3, c - 2 : c + 3] = 1
    alerts = list(iter_ztf_alerts(paths, errors))
    wanted = [
        (keep_nights is None or alert_night(a) in keep_nights)
        and alert_night(a) not in drop_nights
        and a.object_id not in drop_objects
        for a in alerts
    ]
    triplets = [
        prepare_alert(a, stamp_size)[0] if w else None for a, w in zip(alerts, wanted, strict=True)
    ]
    # every readable alert goes through the group test, so no filter breaks up a trail
    on_streak = alert_streaks(alerts, triplets) if streaks else [None] * len(alerts)
    for alert, keep, triplet, streak in zip(alerts, wanted, triplets, on_streak, strict=True):
        if not keep:
            continue
        labelled = alert_label(alert, curated, streak=streak)
        if labelled is None:
            if streak is not None:
                skipped["on_streak"] += 1
                streak_dropped[str(alert.candid)] = streak.key
            else:
                skipped["unlabelled"] += 1
            continue
        label, source, weight = labelled
        if weight < min_weight:
            skipped["low_weight"] += 1
            continue
        if triplet is None:
            skipped["unscorable"] += 1
            continue
        stamps.append(triplet)
        raw_stats.append(stamp_statistics(_raw_triplet(alert)[None]))
        masks.append(box if label else np.zeros_like(box))
        labels.append(label)
        kinds.append(f"alert_{'real' if label else 'bogus'}")
        groups.append(f"ztf-{alert.object_id}")
        sources.append(source)
        weights.append(weight)
        night_of.append(alert_night(alert))
    if not stamps:
        raise DatasetError("no usable alert in the given paths", hint="pass ZTF .avro files")
    return LabelledStamps(
        np.stack(stamps).astype(np.float32),
        np.stack(masks),
        np.asarray(labels, dtype=np.int64),
        kinds,
        groups,
        {
            "source": "ztf_alerts",
            "paths": [str(p) for p in paths],
            "skipped": {**skipped, "unreadable_files": len(errors)},
            "streaks": "group members dropped, stamp trails bogus" if streaks else "kept",
            "streak_dropped": streak_dropped,
        },
        sources,
        np.asarray(weights, np.float32),
        night_of,
        {k: np.concatenate([st[k] for st in raw_stats]) for k in raw_stats[0]},
    )


def _raw_triplet(alert: ZtfAlert) -> np.ndarray:
    """The alert's raw science, template and difference cutouts ``(3, S, S)``, float64,
    padded square with NaN where an edge clipped them (only called on scorable alerts)."""
    arrays = [np.asarray(a, np.float64) for a in (alert.science, alert.template, alert.difference)]
    side = max(max(a.shape) for a in arrays)
    x, y = alert.candidate.get("xpos"), alert.candidate.get("ypos")
    return np.stack([a if a.shape == (side, side) else unclip_stamp(a, x, y, side) for a in arrays])
