"""The training-set container: labelled stamps with their provenance and version.

:class:`LabelledStamps` holds normalised triplets ``(N, 3, S, S)``, per-pixel target masks,
labels, what each sample is (``kind``), the group that splits must keep together (field,
observation or object), the night, where each label comes from (``label_source``) and how
much it is trusted (``weight``). Its version is a content hash of its members.

(The database table of stored sets is :class:`astrid.store.tables.TrainingDataset`; this is
the in-memory set a model trains on.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astrid.errors import AstridError

__all__ = [
    "ARTEFACT_KINDS",
    "LABEL_SOURCES",
    "REAL_KINDS",
    "DatasetError",
    "LabelledStamps",
    "StampCollector",
    "concat_stamps",
]

REAL_KINDS = ("transient", "variable", "moving")
ARTEFACT_KINDS = ("cosmic_ray", "star_residual", "bad_column", "edge", "misaligned", "noise")
#: Where a label comes from: the simulator's truth, a human vote, ZTF's deep model (``drb``)
#: or random forest (``rb``) as weak labels, a known solar-system object (real by physics), a
#: satellite trail across an alert's stamp (bogus by geometry, :mod:`astrid.model.alert_streaks`).
LABEL_SOURCES = ("truth", "curated", "drb", "rb", "known_asteroid", "streak")


class DatasetError(AstridError):
    """A training set that cannot be built, saved, loaded or used."""


@dataclass
class LabelledStamps:
    """Labelled cutouts with their provenance.

    Attributes
    ----------
    stamps : numpy.ndarray
        ``float32``, shape ``(N, 3, S, S)``: normalised new, reference, difference.
    masks : numpy.ndarray
        ``uint8``, shape ``(N, S, S)``: 1 on a real source's PSF footprint.
    labels : numpy.ndarray
        ``int64``, shape ``(N,)``: 1 = real, 0 = bogus.
    kinds : list of str
        What each sample is (``transient``, ``cosmic_ray``, ...).
    groups : list of str
        Field (or pair, or object) each sample comes from; splits never share a group.
    meta : dict
        How the set was made (generator, parameters, differencing function).
    label_sources : list of str
        Where each label comes from (:data:`LABEL_SOURCES`); default ``truth``.
    weights : numpy.ndarray
        ``float32``, shape ``(N,)``: confidence of each label, used as a loss weight
        (1 for exact labels; less for weak labels such as ZTF's ``drb``); default 1.
    nights : list of str
        Night of each sample (``sim`` for simulations); held-out evaluation is by night.
    input_stats : dict of str to numpy.ndarray
        :func:`astrid.model.drift.stamp_statistics` of each sample's *raw* stamps
        (``{quantity: (N,)}``), where the builder had them (simulations, alerts); empty
        otherwise (a set loaded from files). Kept for the model's drift reference; not part
        of the set's content hash.
    """

    stamps: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    kinds: list[str]
    groups: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    label_sources: list[str] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    nights: list[str] = field(default_factory=list)
    input_stats: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not self.label_sources:
            self.label_sources = ["truth"] * n
        if len(self.weights) == 0:
            self.weights = np.ones(n, np.float32)
        if not self.nights:
            self.nights = ["sim"] * n
        self.weights = np.asarray(self.weights, np.float32)
        if not (len(self.label_sources) == len(self.weights) == len(self.nights) == n):
            raise DatasetError("label_sources, weights and nights differ in length from labels")
        unknown = set(self.label_sources) - set(LABEL_SOURCES)
        if unknown:
            raise DatasetError(
                f"unknown label source(s) {sorted(unknown)}", hint=str(LABEL_SOURCES)
            )
        if not (len(self.stamps) == len(self.masks) == len(self.kinds) == len(self.groups) == n):
            raise DatasetError("stamps, masks, labels, kinds and groups differ in length")
        if any(len(v) != n for v in self.input_stats.values()):
            raise DatasetError("input_stats differ in length from labels")
        if self.stamps.ndim != 4:
            raise DatasetError(f"stamps must be (N, C, S, S), got shape {self.stamps.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | Sequence[int]) -> LabelledStamps:
        """Return the samples at ``index`` (same meta)."""
        idx = np.asarray(index, dtype=int)
        return LabelledStamps(
            self.stamps[idx],
            self.masks[idx],
            self.labels[idx],
            [self.kinds[i] for i in idx],
            [self.groups[i] for i in idx],
            dict(self.meta),
            [self.label_sources[i] for i in idx],
            self.weights[idx],
            [self.nights[i] for i in idx],
            {k: np.asarray(v)[idx] for k, v in self.input_stats.items()},
        )

    def member_digests(self) -> list[str]:
        """SHA-256 of each member: its record (label, kind, group; label source and weight
        when not ``truth``/1, so versions of earlier sets are unchanged) and its stamp bytes."""
        out = []
        for i in range(len(self)):
            h = hashlib.sha256()
            h.update(f"{int(self.labels[i])}|{self.kinds[i]}|{self.groups[i]}|".encode())
            if self.label_sources[i] != "truth" or self.weights[i] != 1.0:
                h.update(f"{self.label_sources[i]}|{float(self.weights[i]):.6g}|".encode())
            h.update(np.ascontiguousarray(self.stamps[i], dtype=np.float32).tobytes())
            h.update(np.ascontiguousarray(self.masks[i], dtype=np.uint8).tobytes())
            out.append(h.hexdigest())
        return out

    @property
    def version(self) -> str:
        """Content hash of the set: SHA-256 over its sorted member digests (order-free)."""
        h = hashlib.sha256()
        for d in sorted(self.member_digests()):
            h.update(d.encode())
        return h.hexdigest()

    def source_counts(self) -> dict[str, int]:
        """Number of samples per label source."""
        out: dict[str, int] = {}
        for s in self.label_sources:
            out[s] = out.get(s, 0) + 1
        return out

    def class_counts(self) -> dict[str, int]:
        """Number of samples of each kind."""
        kinds, counts = np.unique(np.asarray(self.kinds), return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, counts, strict=True)}


@dataclass
class StampCollector:
    """Labelled samples gathered one at a time by a set's builder, then :meth:`build`.

    The per-sample lists are those of :class:`LabelledStamps`; a sample added without
    ``label_source``, ``weight`` or ``night`` gets the defaults ``truth``, 1 and ``sim``.
    """

    stamps: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    label_sources: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    nights: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def add(
        self,
        stamp: np.ndarray,
        mask: np.ndarray,
        label: int,
        kind: str,
        group: str,
        *,
        label_source: str = "truth",
        weight: float = 1.0,
        night: str = "sim",
    ) -> None:
        """One sample: its stamp triplet (3, S, S), mask (S, S), label, kind and group."""
        self.stamps.append(stamp)
        self.masks.append(mask)
        self.labels.append(label)
        self.kinds.append(kind)
        self.groups.append(group)
        self.label_sources.append(label_source)
        self.weights.append(weight)
        self.nights.append(night)

    def build(
        self, meta: dict[str, Any], input_stats: dict[str, np.ndarray] | None = None
    ) -> LabelledStamps:
        """The set (stamps as float32, labels as int64); ``meta`` says how it was made."""
        return LabelledStamps(
            np.stack(self.stamps).astype(np.float32),
            np.stack(self.masks),
            np.asarray(self.labels, dtype=np.int64),
            self.kinds,
            self.groups,
            meta,
            self.label_sources,
            np.asarray(self.weights, np.float32),
            self.nights,
            input_stats or {},
        )


def concat_stamps(
    parts: Sequence[LabelledStamps], meta: dict[str, Any] | None = None
) -> LabelledStamps:
    """Join sets (same stamp shape) into one; ``meta`` records the parts' metas."""
    if not parts:
        raise DatasetError("nothing to concatenate")
    return LabelledStamps(
        np.concatenate([p.stamps for p in parts]).astype(np.float32),
        np.concatenate([p.masks for p in parts]),
        np.concatenate([p.labels for p in parts]).astype(np.int64),
        [k for p in parts for k in p.kinds],
        [g for p in parts for g in p.groups],
        meta if meta is not None else {"source": "combined", "parts": [p.meta for p in parts]},
        [s for p in parts for s in p.label_sources],
        np.concatenate([p.weights for p in parts]),
        [n for p in parts for n in p.nights],
        _joined_stats(parts),
    )


def _joined_stats(parts: Sequence[LabelledStamps]) -> dict[str, np.ndarray]:
    """The input statistics every part has, joined (none if one part has none)."""
    keys = set.intersection(*(set(p.input_stats) for p in parts))
    return {k: np.concatenate([np.asarray(p.input_stats[k]) for p in parts]) for k in sorted(keys)}
