"""Training data for the real/bogus model: simulated pairs -> differencing -> labelled cutouts.

The builder follows AstrID's own data path. For each simulated pair (one field per pair) it
differences the two epochs with a *pluggable* differencing function (by default AstrID's
ZOGY), finds candidates as local extrema of the detection significance, and labels each
candidate with the simulator's truth table:

- real (1): injected transients, variable stars (either sign) and moving objects (real
  point sources on the sky; removing solar-system objects is a later, separate step);
- bogus (0): cosmic rays, residuals of bright and saturated stars, bad columns, image
  edges, whole misaligned pairs (the reference shifted by a fraction of a pixel to a couple
  of pixels before differencing), and anything else the truth does not explain.

References are simulated deeper than the new images (a random depth factor up to 20, as
for co-added survey templates), so the reference channel is as much less noisy than the new
one as in real surveys' stamps.

Each sample holds a ``(3, 64, 64)`` stamp (new, reference, difference; normalised by
:func:`astrid.model.stamps.make_triplet`), a ``(64, 64)`` target mask (the injected PSF
footprint for reals, empty for bogus), its label, its kind and its group (the field).

Splits are grouped by field, so no field contributes to two splits, and augmentation
(rotations, flips, ZTF-style edge padding) is applied only when training batches are drawn
(:class:`StampDataset` with ``augment=True``), never before the split: augmented copies of one
cutout cannot leak across train and validation.

A :class:`TrainingDataset` is versioned by the SHA-256 of its members (each member's record
and stamp bytes); :func:`save_dataset` writes it content-addressed with a DVC-style manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from astrid.errors import AstridError
from astrid.model.stamps import InvalidStampError, make_triplet

__all__ = [
    "ARTEFACT_KINDS",
    "REAL_KINDS",
    "DatasetError",
    "DifferenceFn",
    "SimulationSpec",
    "StampDataset",
    "TrainingDataset",
    "build_simulated_dataset",
    "dataset_from_rows",
    "dataset_from_validated_detections",
    "default_difference_fn",
    "grouped_split",
    "load_dataset",
    "load_stored_dataset",
    "psf_matched_difference",
    "record_training_dataset",
    "save_dataset",
    "store_dataset",
    "validated_detection_rows",
    "zogy_difference",
]

REAL_KINDS = ("transient", "variable", "moving")
ARTEFACT_KINDS = ("cosmic_ray", "star_residual", "bad_column", "edge", "misaligned", "noise")

#: ``fn(new, ref, meta) -> (difference, significance)``; both ``(ny, nx)`` arrays on the
#: new image's grid, significance in sigma and positive where the new image is brighter.
#: ``meta`` holds ``new_mask``, ``ref_mask`` (True = excluded), ``new_gain``, ``ref_gain``
#: (e-/ADU), ``new_saturation``, ``ref_saturation`` (ADU), ``new_fwhm``, ``ref_fwhm`` (px).
DifferenceFn = Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], tuple[np.ndarray, np.ndarray]]


class DatasetError(AstridError):
    """A training set that cannot be built, saved, loaded or used."""


# --------------------------------------------------------------------------- differencing


def psf_matched_difference(
    new: np.ndarray, ref: np.ndarray, meta: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """FALLBACK difference: Gaussian PSF matching of the sharper image, then subtraction.

    Only for when AstrID's own differencing is unavailable. Backgrounds are removed by
    medians, the sharper image is blurred by a Gaussian of width
    ``sqrt(sigma_broad**2 - sigma_sharp**2)`` (FWHMs from ``meta``), and the significance is
    the difference filtered by the broad Gaussian PSF and divided by its robust scatter.
    """
    to_sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    s_new = float(meta.get("new_fwhm", 3.0)) * to_sigma
    s_ref = float(meta.get("ref_fwhm", 3.0)) * to_sigma
    n = np.nan_to_num(new - np.nanmedian(new))
    r = np.nan_to_num(ref - np.nanmedian(ref))
    if s_ref < s_new:
        r = ndimage.gaussian_filter(r, np.sqrt(s_new**2 - s_ref**2))
    elif s_new < s_ref:
        n = ndimage.gaussian_filter(n, np.sqrt(s_ref**2 - s_new**2))
    diff = n - r
    matched = ndimage.gaussian_filter(diff, max(s_new, s_ref))
    mad = 1.4826 * np.median(np.abs(matched - np.median(matched)))
    score = matched / (mad if mad > 0 else 1.0)
    for key in ("new_mask", "ref_mask"):
        if meta.get(key) is not None:
            score[np.asarray(meta[key])] = 0.0
    return diff.astype(np.float32), score.astype(np.float32)


def zogy_difference(
    new: np.ndarray, ref: np.ndarray, meta: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """AstrID's ZOGY difference (:func:`astrid.science.zogy.zogy`): returns ``(D, S_corr)``."""
    from astrid.science.zogy import zogy

    res = zogy(
        new,
        ref,
        new_mask=meta.get("new_mask"),
        ref_mask=meta.get("ref_mask"),
        new_gain=meta.get("new_gain"),
        ref_gain=meta.get("ref_gain"),
        new_saturation=meta.get("new_saturation"),
        ref_saturation=meta.get("ref_saturation"),
    )
    return np.asarray(res.diff), np.asarray(res.score)


def default_difference_fn() -> tuple[str, DifferenceFn]:
    """Return ``(name, fn)``: AstrID's ``difference(method="zogy")`` if present, else its
    :func:`~astrid.science.zogy.zogy`, else the :func:`psf_matched_difference` fallback."""
    try:
        from astrid.science.difference import difference  # type: ignore[import-not-found]

        def _astrid(
            new: np.ndarray, ref: np.ndarray, meta: Mapping[str, Any]
        ) -> tuple[np.ndarray, np.ndarray]:
            res = difference(
                new,
                ref,
                method="zogy",
                new_mask=meta.get("new_mask"),
                ref_mask=meta.get("ref_mask"),
                new_gain=meta.get("new_gain"),
                ref_gain=meta.get("ref_gain"),
                new_saturation=meta.get("new_saturation"),
                ref_saturation=meta.get("ref_saturation"),
            )
            return np.asarray(res.diff), np.asarray(res.score)

        return "astrid.science.difference.difference(method='zogy')", _astrid
    except ImportError:
        pass
    try:
        import astrid.science.zogy  # noqa: F401

        return "astrid.science.zogy.zogy", zogy_difference
    except ImportError:
        return "astrid.model.dataset.psf_matched_difference (fallback)", psf_matched_difference


# --------------------------------------------------------------------------- dataset


@dataclass
class TrainingDataset:
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
        Field (or pair) each sample comes from; splits never share a group.
    meta : dict
        How the set was made (generator, parameters, differencing function).
    """

    stamps: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    kinds: list[str]
    groups: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.stamps) == len(self.masks) == len(self.kinds) == len(self.groups) == n):
            raise DatasetError("stamps, masks, labels, kinds and groups differ in length")
        if self.stamps.ndim != 4:
            raise DatasetError(f"stamps must be (N, C, S, S), got shape {self.stamps.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | Sequence[int]) -> TrainingDataset:
        """Return the samples at ``index`` (same meta)."""
        idx = np.asarray(index, dtype=int)
        return TrainingDataset(
            self.stamps[idx],
            self.masks[idx],
            self.labels[idx],
            [self.kinds[i] for i in idx],
            [self.groups[i] for i in idx],
            dict(self.meta),
        )

    def member_digests(self) -> list[str]:
        """SHA-256 of each member: its record (label, kind, group) and its stamp bytes."""
        out = []
        for i in range(len(self)):
            h = hashlib.sha256()
            h.update(f"{int(self.labels[i])}|{self.kinds[i]}|{self.groups[i]}|".encode())
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

    def class_counts(self) -> dict[str, int]:
        """Number of samples of each kind."""
        kinds, counts = np.unique(np.asarray(self.kinds), return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, counts, strict=True)}


def grouped_split(
    groups: Sequence[str],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[np.ndarray]:
    """Split sample indices so that each group (field) falls in exactly one part.

    Parameters
    ----------
    groups : sequence of str
        Group of each sample.
    fractions : sequence of float
        Target fraction of *groups* per part (normalised to sum 1).
    seed : int
        Seed of the group shuffle.

    Returns
    -------
    list of numpy.ndarray
        Sample indices of each part.
    """
    uniq = sorted(set(groups))
    if len(uniq) < len(fractions):
        raise DatasetError(
            f"{len(uniq)} group(s) cannot fill {len(fractions)} grouped splits",
            hint="simulate more fields (pairs)",
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    frac = np.asarray(fractions, dtype=float) / np.sum(fractions)
    bounds = np.round(np.cumsum(frac) * len(uniq)).astype(int)
    bounds[-1] = len(uniq)
    # every part gets at least one group
    for k in range(len(bounds)):
        lo = bounds[k - 1] if k else 0
        if bounds[k] <= lo:
            bounds[k] = lo + 1
    part_of = {}
    start = 0
    for k, stop in enumerate(bounds):
        for j in order[start:stop]:
            part_of[uniq[j]] = k
        start = stop
    g = np.asarray([part_of[x] for x in groups])
    return [np.flatnonzero(g == k) for k in range(len(fractions))]


class StampDataset:
    """A :class:`torch.utils.data.Dataset` over a :class:`TrainingDataset`.

    Parameters
    ----------
    data : TrainingDataset
    augment : bool
        Apply a random rotation by a multiple of 90 degrees, a random flip, and (with
        probability ``pad_prob``) zero the first row and column as :func:`fit_stamp` does to a
        63x63 ZTF cutout. Use only for the training split.
    seed : int
        Seed of the augmentation stream.
    pad_prob : float
        Probability of the ZTF-style padding augmentation.
    """

    def __init__(
        self, data: TrainingDataset, augment: bool = False, seed: int = 0, pad_prob: float = 0.3
    ) -> None:
        self.data = data
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.pad_prob = pad_prob

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, Any, Any]:
        import torch

        x = np.asarray(self.data.stamps[i], dtype=np.float32)
        m = np.asarray(self.data.masks[i], dtype=np.float32)
        if self.augment:
            k = int(self.rng.integers(4))
            x = np.rot90(x, k, axes=(1, 2))
            m = np.rot90(m, k)
            if self.rng.random() < 0.5:
                x = x[:, :, ::-1]
                m = m[:, ::-1]
            if self.rng.random() < self.pad_prob:
                x = x.copy()
                x[:, 0, :] = 0.0
                x[:, :, 0] = 0.0
        return (
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(m))[None],
            torch.tensor(float(self.data.labels[i])),
        )


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimulationSpec:
    """How :func:`build_simulated_dataset` draws its fields.

    Parameters
    ----------
    n_pairs : int
        Number of simulated fields (one pair of epochs each).
    shape : tuple of int
        Image shape ``(ny, nx)`` in pixels.
    stamp_size : int
        Cutout side in pixels.
    detect_sigma : float
        Candidate threshold on the significance image, in sigma.
    misaligned_fraction : float
        Fraction of pairs whose reference is shifted before differencing (all their
        candidates are labelled ``misaligned`` unless they match a real source).
    third_channel : str
        ``"diff"`` (difference image D, as in ZTF alerts) or ``"score"`` (S_corr).
    match_radius : float
        Largest candidate-truth distance for a match, in pixels.
    edge_margin : int
        Unexplained candidates closer than this to the border are ``edge``, in pixels.
    max_candidates_per_field : int
        Candidates kept per field (random subset), so misaligned pairs do not dominate.
    """

    n_pairs: int = 40
    shape: tuple[int, int] = (256, 256)
    stamp_size: int = 64
    detect_sigma: float = 5.0
    misaligned_fraction: float = 0.15
    third_channel: str = "diff"
    match_radius: float = 2.5
    edge_margin: int = 10
    max_candidates_per_field: int = 40


def _local_extrema(score: np.ndarray, threshold: float) -> list[tuple[int, int, bool]]:
    """Peaks of ``|score| >= threshold``: ``(y, x, negative)``, one per 7x7 neighbourhood."""
    out = []
    for sign in (1.0, -1.0):
        s = sign * np.nan_to_num(score)
        peaks = (s == ndimage.maximum_filter(s, size=7)) & (s >= threshold)
        for y, x in zip(*np.nonzero(peaks), strict=True):
            out.append((int(y), int(x), sign < 0))
    return out


def _cutout(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """``size`` x ``size`` cutout with the candidate at ``(size//2, size//2)``; NaN outside."""
    half = size // 2
    out = np.full((size, size), np.nan, dtype=np.float64)
    ny, nx = image.shape
    y0, x0 = y - half, x - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out


def _footprint(fwhm: float, cx: float, cy: float, size: int) -> np.ndarray:
    """Mask of the injected PSF (>= 10% of its peak) centred at cutout pixel (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size]
    sigma = float(fwhm) / 2.3548
    prof = np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / sigma**2)
    return (prof >= 0.1).astype(np.uint8)


def build_simulated_dataset(
    spec: SimulationSpec | None = None,
    seed: int = 0,
    difference_fn: DifferenceFn | None = None,
    difference_name: str | None = None,
    field_offset: int = 0,
) -> TrainingDataset:
    """Simulate ``spec.n_pairs`` fields, difference them and cut labelled candidates.

    Parameters
    ----------
    spec : SimulationSpec, optional
        What to simulate.
    seed : int
        Master seed; field ``k`` uses seed ``seed * 100003 + field_offset + k``.
    difference_fn : DifferenceFn, optional
        Differencing function; default :func:`default_difference_fn` (AstrID's ZOGY).
    difference_name : str, optional
        Name recorded in ``meta`` for a custom ``difference_fn``.
    field_offset : int
        Added to field numbers, so that test sets use fields never seen in training.

    Returns
    -------
    TrainingDataset
    """
    from astrid.science.simulate import AnalyticPSF, Exposure, simulate_pair

    spec = spec or SimulationSpec()
    if difference_fn is None:
        difference_name, difference_fn = default_difference_fn()
    difference_name = difference_name or getattr(difference_fn, "__name__", "custom")
    size = spec.stamp_size
    stamps, masks, labels, kinds, groups = [], [], [], [], []
    for k in range(spec.n_pairs):
        field_id = field_offset + k
        fseed = seed * 100003 + field_id
        rng = np.random.default_rng(fseed)
        misaligned = rng.random() < spec.misaligned_fraction
        offset = (0.0, 0.0)
        if misaligned:
            mag = rng.uniform(0.4, 2.0)
            ang = rng.uniform(0, 2 * np.pi)
            offset = (float(mag * np.cos(ang)), float(mag * np.sin(ang)))
        new_fwhm = float(rng.uniform(2.2, 4.5))
        ref_fwhm = float(rng.uniform(1.8, min(new_fwhm, 3.2)))
        new_exp = Exposure(
            psf=AnalyticPSF(fwhm=new_fwhm),
            mjd=60030.0,
            cosmic_rays=int(rng.integers(3, 20)),
            bad_columns=int(rng.integers(0, 3)),
            offset=offset,
        )
        # References are usually deep co-adds (ZTF: a dozen or more exposures): depth factor
        # k, log-uniform in [1, 20], scales flux and sky alike, so stars gain sqrt(k) in S/N.
        depth = float(np.exp(rng.uniform(0.0, np.log(20.0))))
        ref_exp = Exposure(
            psf=AnalyticPSF(fwhm=ref_fwhm),
            cosmic_rays=int(rng.integers(0, 4)),
            bad_columns=0,
            flux_scale=depth,
            sky=1000.0 * depth,
            saturation=60000.0 * depth,
        )
        pair = simulate_pair(
            spec.shape,
            n_stars=int(rng.integers(150, 450)),
            seed=fseed,
            new=new_exp,
            ref=ref_exp,
            n_transients=int(rng.integers(4, 14)),
            transient_flux_range=(150.0, 6000.0),
            n_variables=int(rng.integers(5, 20)),
            n_moving=int(rng.integers(0, 3)),
        )
        new, ref = pair.new, pair.ref
        # Half of the pairs are differenced without their defect masks (unknown bad columns,
        # unflagged saturation), which is where bad-column and saturated-star residuals come from.
        masked = rng.random() < 0.5
        meta = {
            "new_mask": new.mask if masked else None,
            "ref_mask": ref.mask if masked else None,
            "new_gain": new.gain,
            "ref_gain": ref.gain,
            "new_saturation": float(new.header["SATURATE"]),
            "ref_saturation": float(ref.header["SATURATE"]),
            "new_fwhm": new.psf_fwhm,
            "ref_fwhm": ref.psf_fwhm,
        }
        diff, score = difference_fn(np.asarray(new.data), np.asarray(ref.data), meta)
        third = diff if spec.third_channel == "diff" else score
        truth = pair.truth
        # truth positions: (x, y, kind) of every injected thing, in new-grid pixels
        points: list[tuple[float, float, str]] = []
        for row in truth:
            for xk, yk in (("x_new", "y_new"), ("x_ref", "y_ref")):
                if row["kind"] != "moving" and xk == "x_ref":
                    continue
                x, y = float(row[xk]), float(row[yk])
                if np.isfinite(x) and np.isfinite(y):
                    points.append((x, y, str(row["kind"])))
        pts = np.array([(p[0], p[1]) for p in points]) if points else np.zeros((0, 2))
        stars = new.stars
        bright = np.asarray(stars["flux"]) > 2e4
        bright_xy = np.column_stack([stars["x"], stars["y"]])[bright]
        bad_cols = np.flatnonzero(new.mask.all(axis=0) | ref.mask.all(axis=0))
        ny, nx = spec.shape
        candidates = _local_extrema(score, spec.detect_sigma)
        if len(candidates) > spec.max_candidates_per_field:
            keep = rng.choice(len(candidates), spec.max_candidates_per_field, replace=False)
            candidates = [candidates[i] for i in sorted(keep)]
        for y, x, negative in candidates:
            kind = "noise"
            truth_xy = None
            if len(pts):
                d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
                j = int(np.argmin(d))
                if d[j] <= spec.match_radius:
                    kind = points[j][2]
                    truth_xy = pts[j]
            if kind == "noise":
                if min(x, y, nx - 1 - x, ny - 1 - y) < spec.edge_margin:
                    kind = "edge"
                elif len(bad_cols) and np.min(np.abs(bad_cols - x)) <= 3:
                    kind = "bad_column"
                elif misaligned:
                    kind = "misaligned"
                elif len(bright_xy) and np.min(np.hypot(*(bright_xy - (x, y)).T)) <= 6:
                    kind = "star_residual"
            try:
                trip = make_triplet(
                    _cutout(new.data, y, x, size),
                    _cutout(ref.data, y, x, size),
                    _cutout(third, y, x, size),
                    size=size,
                    negative=negative,
                )
            except InvalidStampError:
                continue  # mostly outside the image (corner candidates)
            label = int(kind in REAL_KINDS)
            mask = np.zeros((size, size), np.uint8)
            if label and truth_xy is not None:
                mask = _footprint(
                    new.psf_fwhm,
                    size // 2 + float(truth_xy[0]) - x,
                    size // 2 + float(truth_xy[1]) - y,
                    size,
                )
            stamps.append(trip)
            masks.append(mask)
            labels.append(label)
            kinds.append(kind)
            groups.append(f"sim-field-{field_id}")
    if not stamps:
        raise DatasetError("the simulation produced no candidates", hint="simulate more pairs")
    return TrainingDataset(
        np.stack(stamps).astype(np.float32),
        np.stack(masks),
        np.asarray(labels, dtype=np.int64),
        kinds,
        groups,
        {
            "source": "simulation",
            "seed": seed,
            "field_offset": field_offset,
            "spec": {**spec.__dict__, "shape": list(spec.shape)},
            "difference": difference_name,
        },
    )


# --------------------------------------------------------------------------- from the database


def dataset_from_rows(rows: Iterable[Mapping[str, Any]], stamp_size: int = 64) -> TrainingDataset:
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
    return TrainingDataset(
        np.stack(stamps),
        np.stack(masks),
        np.asarray(labels, dtype=np.int64),
        kinds,
        groups,
        {"source": "validated_detections"},
    )


# --------------------------------------------------------------------------- persistence


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def save_dataset(data: TrainingDataset, root: str | Path) -> dict[str, Any]:
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
    np.savez_compressed(arrays, stamps=data.stamps, masks=data.masks, labels=data.labels)
    members = folder / "members.json"
    members.write_text(
        json.dumps({"kinds": data.kinds, "groups": data.groups, "digests": data.member_digests()})
    )
    manifest = {
        "version": version,
        "n": len(data),
        "n_real": int(data.labels.sum()),
        "class_counts": data.class_counts(),
        "meta": data.meta,
        "outs": [
            {"path": p.name, "md5": _md5(p), "size": p.stat().st_size} for p in (arrays, members)
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    manifest["path"] = str(folder / "manifest.json")
    return manifest


def load_dataset(manifest_path: str | Path) -> TrainingDataset:
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
    data = TrainingDataset(
        arrays["stamps"],
        arrays["masks"],
        arrays["labels"],
        members["kinds"],
        members["groups"],
        manifest.get("meta", {}),
    )
    if data.version != manifest["version"]:
        raise DatasetError(f"{path}: content hash differs from the recorded version")
    return data


# --------------------------------------------------------------------------- object store + DB


def _array_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _array_from_bytes(data: bytes, what: str) -> np.ndarray:
    import io

    if data[:6] == b"\x93NUMPY":
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
    if data[:6] == b"SIMPLE" or data[:2] == b"\x1f\x8b":
        import gzip

        from astropy.io import fits

        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with fits.open(io.BytesIO(raw)) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float64)
    raise DatasetError(f"{what}: blob is neither a .npy array nor a FITS image")


def store_dataset(data: TrainingDataset, store: Any, name: str) -> tuple[str, Any]:
    """Put every member (stamp + mask, ``.npy``) and a DVC-style manifest in object storage.

    Parameters
    ----------
    data : TrainingDataset
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
    from astrid.store.blobs import DatasetManifest

    members = []
    for i in range(len(data)):
        blob = np.concatenate([data.stamps[i], data.masks[i][None].astype(np.float32)])
        key = store.put(_array_bytes(blob.astype(np.float32)))
        members.append(
            (key, {"label": int(data.labels[i]), "kind": data.kinds[i], "group": data.groups[i]})
        )
    manifest = DatasetManifest.build(name, members)
    return manifest.save(store), manifest


def load_stored_dataset(store: Any, manifest_key: str) -> TrainingDataset:
    """Rebuild a set written by :func:`store_dataset` (members in manifest order)."""
    from astrid.store.blobs import DatasetManifest

    manifest = DatasetManifest.from_bytes(store.get(manifest_key))
    stamps, masks, labels, kinds, groups = [], [], [], [], []
    for key, meta in manifest.members:
        blob = _array_from_bytes(store.get(key), key)
        stamps.append(blob[:-1])
        masks.append(blob[-1].astype(np.uint8))
        labels.append(int(meta["label"]))
        kinds.append(str(meta.get("kind", "")))
        groups.append(str(meta.get("group", "")))
    return TrainingDataset(
        np.stack(stamps).astype(np.float32),
        np.stack(masks),
        np.asarray(labels, dtype=np.int64),
        kinds,
        groups,
        {"source": "object_store", "manifest_key": manifest_key, "name": manifest.name},
    )


def record_training_dataset(
    session: Any, name: str, manifest: Any, manifest_key: str, description: str | None = None
) -> Any:
    """Get or create the ``training_datasets`` row of a stored manifest (by name+version)."""
    from sqlalchemy import select

    from astrid.store.tables import TrainingDataset as TrainingDatasetRow

    row = session.scalar(
        select(TrainingDatasetRow).where(
            TrainingDatasetRow.name == name, TrainingDatasetRow.version == manifest.version
        )
    )
    if row is None:
        counts: dict[str, int] = {}
        for _key, meta in manifest.members:
            label = "real" if int(meta["label"]) else "bogus"
            counts[label] = counts.get(label, 0) + 1
        row = TrainingDatasetRow(
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


def validated_detection_rows(session: Any, store: Any) -> list[dict[str, Any]]:
    """Rows for :func:`dataset_from_rows` from human-labelled detections in the database.

    A detection qualifies when its ``label`` is ``real`` or ``bogus`` and its
    ``cutout_keys`` name blobs ``new``, ``ref`` and ``diff`` (``.npy`` arrays or FITS
    images); its group is its observation (so splits never share an observation).
    """
    from sqlalchemy import select

    from astrid.store.tables import Detection

    rows = []
    query = select(Detection).where(Detection.label.in_(["real", "bogus"])).order_by(Detection.id)
    for det in session.scalars(query):
        keys = det.cutout_keys or {}
        if not all(k in keys for k in ("new", "ref", "diff")):
            continue
        rows.append(
            {
                "new": _array_from_bytes(store.get(keys["new"]), keys["new"]),
                "ref": _array_from_bytes(store.get(keys["ref"]), keys["ref"]),
                "diff": _array_from_bytes(store.get(keys["diff"]), keys["diff"]),
                "label": det.label,
                "group": f"observation-{det.observation_id}",
                "negative": bool((det.extra or {}).get("negative", False)),
                "kind": f"validated_{det.label}",
            }
        )
    return rows


def dataset_from_validated_detections(
    session: Any, store: Any, stamp_size: int = 64
) -> TrainingDataset:
    """Build a training set from human-validated detections (see
    :func:`validated_detection_rows`)."""
    return dataset_from_rows(validated_detection_rows(session, store), stamp_size)
