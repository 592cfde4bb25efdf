"""Training sets from human-validated detections (curated labels).

:func:`validated_detection_rows` reads labelled detections and their cutout blobs from the
database; :func:`dataset_from_rows` turns such rows into a :class:`LabelledStamps` with
``label_source = curated``. :func:`detection_raw_triplet` reads the raw new / reference /
difference stamps of any stored detection, whichever way they were stored: the detect
stage's one FITS (``fits``: HDUs ``NEW``, ``REF``, ``DIFF``), an alert's gzipped FITS
cutouts (``science``, ``template``, ``difference``) or three arrays (``new``, ``ref``,
``diff``); stamps clipped by a CCD edge are padded to a square with NaN.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from astrid.model.dataset_store import array_from_bytes
from astrid.model.examples import DatasetError, LabelledStamps, StampCollector
from astrid.model.stamps import make_triplet
from astrid.model.ztf import unclip_stamp
from astrid.store.tables import Detection

__all__ = [
    "dataset_from_rows",
    "dataset_from_validated_detections",
    "detection_raw_triplet",
    "validated_detection_rows",
]

_KEY_SETS = (("new", "ref", "diff"), ("science", "template", "difference"))


def _square(stamps: list[np.ndarray]) -> list[np.ndarray]:
    side = max(max(s.shape) for s in stamps)
    return [s if s.shape == (side, side) else unclip_stamp(s, size=side) for s in stamps]


def detection_raw_triplet(keys: Mapping[str, Any], store: Any) -> list[np.ndarray]:
    """Raw ``[new, ref, diff]`` stamps (float64, square, equal shape) of a detection.

    Parameters
    ----------
    keys : mapping
        The detection's ``cutout_keys``.
    store : astrid.store.blobs.BlobStore

    Raises
    ------
    DatasetError
        If the detection has no stored stamps or they cannot be read.
    """
    for names in _KEY_SETS:
        if all(keys.get(k) for k in names):
            stamps = [
                np.asarray(array_from_bytes(store.get(keys[k]), k), np.float64) for k in names
            ]
            break
    else:
        if not keys.get("fits"):
            raise DatasetError("the detection has no stored stamps")
        raw = store.get(keys["fits"])
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        try:
            with fits.open(io.BytesIO(raw)) as hdul:
                stamps = [np.asarray(hdul[n].data, np.float64) for n in ("NEW", "REF", "DIFF")]
        except (KeyError, OSError, TypeError) as exc:
            raise DatasetError(f"unreadable stamp FITS ({exc})") from exc
    if any(s.ndim != 2 or s.size == 0 for s in stamps):
        raise DatasetError(f"stamps of shapes {[s.shape for s in stamps]} are not images")
    return _square(stamps)


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
    samples = StampCollector()
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
        samples.add(
            trip,
            np.asarray(mask, dtype=np.uint8),
            label,
            str(row.get("kind", "validated_real" if label else "validated_bogus")),
            group,
            label_source="curated",
        )
    if not samples:
        raise DatasetError("no validated detections to build a training set from")
    return samples.build({"source": "validated_detections"})


def validated_detection_rows(session: Any, store: Any) -> list[dict[str, Any]]:
    """Rows for :func:`dataset_from_rows` from human-labelled detections in the database.

    A detection qualifies when its ``label`` is ``real`` or ``bogus`` and its stamps are
    stored (any layout :func:`detection_raw_triplet` reads); its group is its observation
    (so splits never share an observation).
    """
    rows = []
    query = select(Detection).where(Detection.label.in_(["real", "bogus"])).order_by(Detection.id)
    for det in session.scalars(query):
        try:
            new, ref, diff = detection_raw_triplet(det.cutout_keys or {}, store)
        except DatasetError:
            continue
        rows.append(
            {
                "new": new,
                "ref": ref,
                "diff": diff,
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
