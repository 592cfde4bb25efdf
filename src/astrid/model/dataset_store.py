"""Training sets in AstrID's object storage and database.

:func:`store_dataset` puts each member (stamp + mask, ``.npy``) as a blob with a DVC-style
:class:`~astrid.store.blobs.DatasetManifest`; :func:`load_stored_dataset` rebuilds it;
:func:`record_training_dataset` adds the ``training_datasets`` row
(:class:`astrid.store.tables.TrainingDataset`).
"""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from astrid.model.examples import DatasetError, LabelledStamps, StampCollector
from astrid.store.blobs import DatasetManifest
from astrid.store.tables import TrainingDataset

__all__ = ["array_from_bytes", "load_stored_dataset", "record_training_dataset", "store_dataset"]


def _array_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(data: bytes, what: str) -> np.ndarray:
    """A ``.npy`` or (gzipped) FITS blob as an array."""
    if data[:6] == b"\x93NUMPY":
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
    if data[:6] == b"SIMPLE" or data[:2] == b"\x1f\x8b":
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with fits.open(io.BytesIO(raw)) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float64)
    raise DatasetError(f"{what}: blob is neither a .npy array nor a FITS image")


def store_dataset(data: LabelledStamps, store: Any, name: str) -> tuple[str, Any]:
    """Put every member (stamp + mask, ``.npy``) and a DVC-style manifest in object storage.

    Parameters
    ----------
    data : LabelledStamps
    store : astrid.store.blobs.BlobStore
        Content-addressed store (local files or S3/R2).
    name : str
        Dataset name.

    Returns
    -------
    (manifest_key, manifest) : tuple
        The manifest's blob key and the :class:`astrid.store.blobs.DatasetManifest`, whose
        ``version`` is the hash of its sorted member keys.
    """
    members = []
    for i in range(len(data)):
        blob = np.concatenate([data.stamps[i], data.masks[i][None].astype(np.float32)])
        key = store.put(_array_bytes(blob.astype(np.float32)))
        record = {"label": int(data.labels[i]), "kind": data.kinds[i], "group": data.groups[i]}
        if data.label_sources[i] != "truth" or data.weights[i] != 1.0:
            record["label_source"] = data.label_sources[i]
            record["weight"] = float(data.weights[i])
            record["night"] = data.nights[i]
        members.append((key, record))
    manifest = DatasetManifest.build(name, members)
    return manifest.save(store), manifest


def load_stored_dataset(store: Any, manifest_key: str) -> LabelledStamps:
    """Rebuild a set written by :func:`store_dataset` (members in manifest order)."""
    manifest = DatasetManifest.from_bytes(store.get(manifest_key))
    samples = StampCollector()
    for key, meta in manifest.members:
        blob = array_from_bytes(store.get(key), key)
        samples.add(
            blob[:-1],
            blob[-1].astype(np.uint8),
            int(meta["label"]),
            str(meta.get("kind", "")),
            str(meta.get("group", "")),
            label_source=str(meta.get("label_source", "truth")),
            weight=float(meta.get("weight", 1.0)),
            night=str(meta.get("night", "sim")),
        )
    return samples.build(
        {"source": "object_store", "manifest_key": manifest_key, "name": manifest.name}
    )


def record_training_dataset(
    session: Any, name: str, manifest: Any, manifest_key: str, description: str | None = None
) -> Any:
    """Get or create the ``training_datasets`` row of a stored manifest (by name+version)."""
    row = session.scalar(
        select(TrainingDataset).where(
            TrainingDataset.name == name, TrainingDataset.version == manifest.version
        )
    )
    if row is None:
        counts: dict[str, int] = {}
        for _key, meta in manifest.members:
            label = "real" if int(meta["label"]) else "bogus"
            counts[label] = counts.get(label, 0) + 1
        row = TrainingDataset(
            name=name,
            version=manifest.version,
            manifest_key=manifest_key,
            n_members=len(manifest.members),
            label_counts=counts,
            description=description,
        )
        session.add(row)
        session.flush()
    return row
