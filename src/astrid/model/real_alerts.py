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
``drb``            drb≥½  ``|2 drb - 1|``: ZTF's deep model is a weak label; alerts it
                          is unsure about (drb ≈ 0.5) barely count
``rb``             rb≥½   ``|2 rb - 1|`` (older packets without ``drb``)
=================  =====  ==============================================================

Alerts with none of these, and alerts that cannot be scored (see :mod:`astrid.model.ztf`),
are left out and counted in ``meta["skipped"]``. Each example's group is its ``objectId``
(an object's alerts never straddle two splits) and its night is ``floor(jd - 0.5)`` (the
JD at the start of the observing night at Palomar), so evaluation can hold out whole nights.

Masks (the per-pixel target) for real alerts are a 5x5 box at the stamp centre: the PSF
footprint is not known exactly, and the candidate logit reads only the centre.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from astrid.model.examples import DatasetError, LabelledStamps
from astrid.model.ztf import ZtfAlert, iter_ztf_alerts, prepare_alert

__all__ = ["alert_label", "alert_night", "build_alert_dataset"]


def alert_night(alert: ZtfAlert) -> str:
    """The observing night of an alert, ``floor(jd - 0.5)`` as a string ("" without jd)."""
    jd = alert.candidate.get("jd")
    return "" if jd is None else str(int(math.floor(float(jd) - 0.5)))


def alert_label(
    alert: ZtfAlert,
    curated: Mapping[int, int] | None = None,
    asteroid_radius: float = 5.0,
) -> tuple[int, str, float] | None:
    """``(label, label_source, weight)`` for one alert, or None when nothing labels it."""
    if curated and alert.candid in curated:
        return int(curated[alert.candid]), "curated", 1.0
    ss = alert.candidate.get("ssdistnr")
    if ss is not None and 0.0 <= float(ss) <= asteroid_radius:
        return 1, "known_asteroid", 1.0
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
    skipped = {"unlabelled": 0, "unscorable": 0, "low_weight": 0}
    box = np.zeros((stamp_size, stamp_size), np.uint8)
    c = stamp_size // 2
    box[c - 2 : c + 3, c - 2 : c + 3] = 1
    for alert in iter_ztf_alerts(paths, errors):
        night = alert_night(alert)
        if (keep_nights is not None and night not in keep_nights) or night in drop_nights:
            continue
        if alert.object_id in drop_objects:
            continue
        labelled = alert_label(alert, curated)
        if labelled is None:
            skipped["unlabelled"] += 1
            continue
        label, source, weight = labelled
        if weight < min_weight:
            skipped["low_weight"] += 1
            continue
        triplet, _problems = prepare_alert(alert, stamp_size)
        if triplet is None:
            skipped["unscorable"] += 1
            continue
        stamps.append(triplet)
        masks.append(box if label else np.zeros_like(box))
        labels.append(label)
        kinds.append(f"alert_{'real' if label else 'bogus'}")
        groups.append(f"ztf-{alert.object_id}")
        sources.append(source)
        weights.append(weight)
        night_of.append(night)
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
        },
        sources,
        np.asarray(weights, np.float32),
        night_of,
    )
