"""Training sets on disk: content-addressed folders with a DVC-style manifest.

:func:`save_dataset` writes ``<root>/datasets/<version>/`` (``arrays.npz``, ``members.json``,
``manifest.json`` listing each file with its MD5 and size); :func:`load_dataset` checks every
file and the content hash before returning the set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from astrid.model.examples import DatasetError, LabelledStamps

__all__ = ["load_dataset", "save_dataset"]


def _md5(path: Path) -> str:
    # A file checksum for the manifest, not a security hash.
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def save_dataset(data: LabelledStamps, root: str | Path) -> dict[str, Any]:
    """Write ``data`` content-addressed under ``root/datasets/<version>/`` with a manifest.

    The manifest (``manifest.json``, DVC-style) lists each file with its MD5 and size, the
    member digests, class counts and how the set was made. Writing the same set twice gives
    the same version and the same files.

    Returns
    -------
    dict
        The manifest (its ``path`` entry is where it was written).
    """
    version = data.version
    folder = Path(root) / "datasets" / version
    folder.mkdir(parents=True, exist_ok=True)
    arrays = folder / "arrays.npz"
    np.savez_compressed(
        arrays, stamps=data.stamps, masks=data.masks, labels=data.labels, weights=data.weights
    )
    members = folder / "members.json"
    members.write_text(
        json.dumps(
            {
                "kinds": data.kinds,
                "groups": data.groups,
                "label_sources": data.label_sources,
                "nights": data.nights,
                "digests": data.member_digests(),
            }
        )
    )
    manifest = {
        "version": version,
        "n": len(data),
        "n_real": int(data.labels.sum()),
        "class_counts": data.class_counts(),
        "label_sources": data.source_counts(),
        "meta": data.meta,
        "outs": [
            {"path": p.name, "md5": _md5(p), "size": p.stat().st_size} for p in (arrays, members)
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    manifest["path"] = str(folder / "manifest.json")
    return manifest


def load_dataset(manifest_path: str | Path) -> LabelledStamps:
    """Read a set written by :func:`save_dataset`, checking every file's MD5 and the version."""
    path = Path(manifest_path)
    if not path.is_file():
        raise DatasetError(f"{path}: no dataset manifest")
    manifest = json.loads(path.read_text())
    for out in manifest["outs"]:
        f = path.parent / out["path"]
        if not f.is_file() or _md5(f) != out["md5"]:
            raise DatasetError(f"{f}: missing or changed since the manifest was written")
    arrays = np.load(path.parent / "arrays.npz")
    members = json.loads((path.parent / "members.json").read_text())
    data = LabelledStamps(
        arrays["stamps"],
        arrays["masks"],
        arrays["labels"],
        members["kinds"],
        members["groups"],
        manifest.get("meta", {}),
        members.get("label_sources", []),
        arrays["weights"] if "weights" in arrays.files else np.zeros(0, np.float32),
        members.get("nights", []),
    )
    if data.version != manifest["version"]:
        raise DatasetError(f"{path}: content hash differs from the recorded version")
    return data
