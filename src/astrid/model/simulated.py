"""The simulator driver: simulated pairs -> differencing -> labelled candidate cutouts.

The builder follows AstrID's own data path. For each simulated pair (one field per pair) it
differences the two epochs with a *pluggable* differencing function
(:mod:`astrid.model.differencers`; by default AstrID's ZOGY), finds candidates as local
extrema of the detection significance, cuts them with :func:`astrid.science.cutouts.stamp`
(the one stamp convention) and labels each with the simulator's truth table
(``label_source = truth``):

- real (1): injected transients, variable stars (either sign) and moving objects (real
  point sources on the sky; removing solar-system objects is a later, separate step);
- bogus (0): cosmic rays, residuals of bright and saturated stars, bad columns, image
  edges, whole misaligned pairs (the reference shifted by a fraction of a pixel to a couple
  of pixels before differencing), and anything else the truth does not explain.

References are simulated deeper than the new images (a random depth factor up to 20, as
for co-added survey templates), so the reference channel is as much less noisy than the new
one as in real surveys' stamps. Each sample holds a ``(3, 64, 64)`` stamp (new, reference,
difference; normalised by :func:`astrid.model.stamps.make_triplet`, negative candidates
flipped positive), a ``(64, 64)`` target mask (the injected PSF footprint for reals, empty
for bogus), its label, its kind and its group (the field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astrid.model.differencers import DifferenceFn, default_difference_fn
from astrid.model.drift import stamp_statistics
from astrid.model.examples import REAL_KINDS, DatasetError, LabelledStamps, StampCollector
from astrid.model.stamps import InvalidStampError, make_triplet
from astrid.science.cutouts import stamp

__all__ = ["SimulationSpec", "build_simulated_dataset"]


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
) -> LabelledStamps:
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
    LabelledStamps
    """
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_model import AnalyticPSF, Exposure

    spec = spec or SimulationSpec()
    if difference_fn is None:
        difference_name, difference_fn = default_difference_fn()
    difference_name = difference_name or getattr(difference_fn, "__name__", "custom")
    size = spec.stamp_size
    samples = StampCollector()
    raw_stats: list[dict[str, np.ndarray]] = []  # input statistics of the raw stamps
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
            raw = [stamp(img, x, y, size, dtype=np.float64) for img in (new.data, ref.data, third)]
            try:
                trip = make_triplet(*raw, size=size, negative=negative)
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
            samples.add(trip, mask, label, kind, f"sim-field-{field_id}")
            raw_stats.append(stamp_statistics(np.stack(raw)[None]))
    if not samples:
        raise DatasetError("the simulation produced no candidates", hint="simulate more pairs")
    return samples.build(
        {
            "source": "simulation",
            "seed": seed,
            "field_offset": field_offset,
            "spec": {**spec.__dict__, "shape": list(spec.shape)},
            "difference": difference_name,
        },
        input_stats={k: np.concatenate([st[k] for st in raw_stats]) for k in raw_stats[0]},
    )
