"""Per-process cache of prepared references (difference and detect stages).

Every new image of a field is differenced against the same reference: loading it (blob
read and hash check, FITS parse, mask, noise) and preparing it (background, stars, PSF:
:func:`astrid.science.prepared_reference.prepare_reference`) gives the same product each
time, so the difference stage keeps it here and the 2nd..Nth image of the field skips it.
Entries are keyed by the content keys of their inputs (reference image, mask and variance
blobs, the noise recorded for them) and the difference stage's version: a new reference
version is a new image blob, hence a new entry, never a stale one. Bounded by
``ASTRID_PIPELINE_REFERENCE_CACHE_MB`` (least recently used dropped first; 0 = off). The
cached arrays are made read-only, so that no caller can change what the next one gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from astrid.runtime import Runtime
from astrid.science.prepared_reference import PreparedReference

__all__ = ["CachedReference", "cached_reference", "clear_reference_cache", "reference_pixels"]


@dataclass(frozen=True)
class CachedReference:
    """A prepared reference with the noise the difference stage gave it (None: measured)."""

    image_key: str
    reference: PreparedReference
    noise: float | None


_LOCK = threading.Lock()
_ENTRIES: OrderedDict[Hashable, CachedReference] = OrderedDict()


def _freeze(ref: PreparedReference) -> None:
    p = ref.prepared
    for arr in (ref.data, ref.mask, p.data, p.mask, p.saturated, p.psf.array):
        if arr is not None:
            arr.setflags(write=False)


def _limit_bytes(runtime: Runtime) -> int:
    return int(runtime.settings.pipeline_reference_cache_mb) * 1024 * 1024


def cached_reference(
    runtime: Runtime, key: Hashable, build: Callable[[], CachedReference]
) -> tuple[CachedReference, bool]:
    """The entry under ``key`` (built by ``build`` on a miss and kept); True on a hit.

    ``key`` must name every input of ``build`` by content (blob keys, values)."""
    limit = _limit_bytes(runtime)
    if limit > 0:
        with _LOCK:
            hit = _ENTRIES.get(key)
            if hit is not None:
                _ENTRIES.move_to_end(key)
                return hit, True
    entry = build()
    if limit > 0 and entry.reference.nbytes <= limit:
        _freeze(entry.reference)
        with _LOCK:
            _ENTRIES[key] = entry
            _ENTRIES.move_to_end(key)
            total = sum(e.reference.nbytes for e in _ENTRIES.values())
            while total > limit and len(_ENTRIES) > 1:
                _, old = _ENTRIES.popitem(last=False)
                total -= old.reference.nbytes
    return entry, False


def reference_pixels(runtime: Runtime, image_key: str) -> np.ndarray | None:
    """The pixels of the reference image blob ``image_key`` if a cached entry holds them
    (read-only float32, the values of the blob's primary array), else None."""
    if _limit_bytes(runtime) <= 0:
        return None
    with _LOCK:
        for entry in reversed(_ENTRIES.values()):
            if entry.image_key == image_key:
                return entry.reference.data
    return None


def clear_reference_cache() -> None:
    """Drop every entry (tests; a process that wants its memory back)."""
    with _LOCK:
        _ENTRIES.clear()
