"""Training sets from human-validated detections (curated labels).

:func:`validated_detection_rows` reads labelled detections and their cutout blobs from the
database; :func:`dataset_from_rows` turns such rows into a :class:`LabelledStamps` with
``label_source = curated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import select

from astrid.model.dataset_store import array_from_bytes
from astrid.model.examples import DatasetError, LabelledStamps
from astrid.model.stamps import make_triplet
from astrid.store.tables import Detection

__all__ = ["dataset_from_rows", "dataset_from_validated_detections", "validated_detection_rows"]


def dataset_from_rows(rows: Iterable[Mapping[str, Any]], stamp_size: int = 64) -> LabelledStamps:
    """Build a training set from human-validated detections.

    Parameters
    ----------
    rows : iterable of mapping
        One per validated detection with keys ``new``, ``ref``, ``diff`` (2-D cutouts),
        ``label`` (``"real"``/``"bogus"`` or 1/0), ``group`` (field or observation id),
        optional ``kind``, ``negative`` (candidate negative in the difference) and ``mask``.
        :mod:`astrid.store` rows are turned into such mappings by the caller.
    stamp_size : int
        Cutout side in pixels.

    Raises
    ------
    DatasetError
        If a row lacks a key or has an unknown label, or there are no rows.
    """
    stamps, masks, labels, kinds, groups = [], [], [], [], []
    for i, row in enumerate(rows):
        try:
            raw = row["label"]
            group = str(row["group"])
            trip = make_triplet(
                row["new"],
                row["ref"],
                row["diff"],
                size=stamp_size,
                negative=bool(row.get("negative", False)),
            )
        except KeyError as exc:
            raise DatasetError(f"validated row {i} lacks {exc}") from exc
        if raw in (1, True, "real", "REAL", "Real"):
            label = 1
        elif raw in (0, False, "bogus", "BOGUS", "Bogus"):
            label = 0
        else:
            raise DatasetError(f"validated row {i} has label {raw!r}", hint="use real or bogus")
        mask = row.get("mask")
        if mask is None:
            mask = np.zeros((stamp_size, stamp_size), np.uint8)
            if label:
                c = stamp_size // 2
                mask[c - 2 : c + 3, c - 2 : c + 3] = 1
        stamps.append(trip)
        masks.append(np.asarray(mask, dtype=np.uint8))
        labels.append(label)
        kinds.append(str(row.get("kind", "validated_real" if label else "validated_bogus")))
        groups.append(group)
    if not stamps:
        raise DatasetError("no validated detections to build a training set from")
    return LabelledStamps(
        np.stack(stamps),
        np.stack(masks),
        np.asarray(labels, dtype=np.int64),
        kinds,
        groups,
        {"source": "validated_detections"},
        ["curated"] * len(stamps),
    )


def validated_detection_rows(session: Any, store: Any) -> list[dict[str, Any]]:
    """Rows for :func:`dataset_from_rows` from human-labelled detections in the database.

    A detection qualifies when its ``label`` is ``real`` or ``bogus`` and its
    ``cutout_keys`` name blobs ``new``, ``ref`` and ``diff`` (``.npy`` arrays or FITS
    images); its group is its observation (so splits never share an observation).
    """
    rows = []
    query = select(Detection).where(Detection.label.in_(["real", "bogus"])).order_by(Detection.id)
    for det in session.scalars(query):
        keys = det.cutout_keys or {}
        if not all(k in keys for k in ("new", "ref", "diff")):
            continue
        rows.append(
            {
                "new": array_from_bytes(store.get(keys["new"]), keys["new"]),
                "ref": array_from_bytes(store.get(keys["ref"]), keys["ref"]),
                "diff": array_from_bytes(store.get(keys["diff"]), keys["diff"]),
                "label": det.label,
                "group": f"observation-{det.observation_id}",
                "negative": bool((det.extra or {}).get("negative", False)),
                "kind": f"validated_{det.label}",
            }
        )
    return rows


def dataset_from_validated_detections(
    session: Any, store: Any, stamp_size: int = 64
) -> LabelledStamps:
    """Build a training set from human-validated detections (see
    :func:`validated_detection_rows`)."""
    return dataset_from_rows(validated_detection_rows(session, store), stamp_size)
