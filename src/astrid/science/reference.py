"""Choosing a reference image: a pure scoring function over candidate metadata records.

The platform hands :func:`select_reference` the metadata of the stored images of the same
field (dicts or :class:`~astrid.science.fitsmeta.ImageMetadata`-like mappings) and the new
image's; it returns a ranked table with a transparent score per candidate and a decision:
use the best single image, or coadd the best few when no single image is good enough.

The score of a candidate is a product of factors in [0, 1] (1 is ideal):

* ``depth``: ``1 / sqrt(1 + 10**(-0.8 (depth - depth_new)))`` — the S/N of a difference
  relative to a noiseless reference (equal PSFs): 0.71 at equal depth, 0.99 for a reference
  2 mag deeper;
* ``seeing``: ``min(1, (fwhm_new / fwhm_ref))**0.5`` when the reference is blurrier, else 1
  (a sharper reference costs nothing for ZOGY; a blurrier one loses S/N);
* ``overlap``: the fraction of the new image the candidate covers;
* ``baseline``: ``1 - exp(-|dt| / min_baseline)`` — epochs too close in time hide slow
  transients (``min_baseline`` days);
* records in another filter, or that overlap less than ``min_overlap``, are not eligible.

Missing fields count as neutral (factor 1) and are listed in the ``missing`` column.

:func:`coadd_reference` builds the deeper reference: the chosen images resampled onto the
best one's grid and averaged with inverse-variance weights (their sky removed, their flux
scaled to the best image's zero point); images that do not cover at least ``min_overlap``
of that grid are left out and named, and with fewer than two left it raises
:class:`CoaddOverlapError` (callers fall back to the best single image and say so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from astrid.errors import AstridError

__all__ = [
    "CoaddOverlapError",
    "NoReferenceError",
    "ReferenceChoice",
    "ReferenceCoadd",
    "coadd_reference",
    "footprint_overlap",
    "score_reference",
    "select_reference",
]


class NoReferenceError(AstridError):
    """No stored image qualifies as a reference (filter, overlap)."""


def _get(rec: Any, key: str) -> Any:
    if isinstance(rec, Mapping):
        return rec.get(key)
    return getattr(rec, key, None)


def _num(rec: Any, key: str) -> float | None:
    value = _get(rec, key)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def footprint_overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Fraction of footprint ``a`` covered by footprint ``b`` (tangent-plane polygons).

    Parameters
    ----------
    a, b : sequence of (ra, dec)
        Polygon corners in degrees (e.g. ``ImageMetadata.footprint``).

    Returns
    -------
    float
        Area(a ∩ b) / Area(a), in [0, 1]; 0 if either polygon is degenerate.
    """
    if len(a) < 3 or len(b) < 3:
        return 0.0
    pa, pb = np.asarray(a, float), np.asarray(b, float)
    ra0, dec0 = np.radians(pa.mean(axis=0))

    def project(p: np.ndarray) -> list[tuple[float, float]]:
        ra, dec = np.radians(p[:, 0]), np.radians(p[:, 1])
        cosc = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
        x = np.cos(dec) * np.sin(ra - ra0) / cosc
        y = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cosc
        return list(zip(x.tolist(), y.tolist(), strict=True))

    poly_a, poly_b = project(pa), project(pb)
    area_a = abs(_area(poly_a))
    if area_a == 0:
        return 0.0
    inter = _clip(poly_a, poly_b)
    return float(min(1.0, abs(_area(inter)) / area_a)) if len(inter) >= 3 else 0.0


def _area(poly: list[tuple[float, float]]) -> float:
    x = np.array([p[0] for p in poly])
    y = np.array([p[1] for p in poly])
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _clip(
    subject: list[tuple[float, float]], clip: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Sutherland-Hodgman polygon clipping (clip polygon made counter-clockwise)."""
    if _area(clip) < 0:
        clip = clip[::-1]

    def inside(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> bool:
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0

    def cross(
        p: tuple[float, float],
        q: tuple[float, float],
        a: tuple[float, float],
        b: tuple[float, float],
    ) -> tuple[float, float]:
        x1, y1, x2, y2 = p[0], p[1], q[0], q[1]
        x3, y3, x4, y4 = a[0], a[1], b[0], b[1]
        den = (x1 - x2) * (y3 - y4) - (y1 - y2) * (x3 - x4)
        if den == 0:
            return q
        t = ((x1 - x3) * (y3 - y4) - (y1 - y3) * (x3 - x4)) / den
        return (x1 + t * (x2 - x1), y1 + t * (y2 - y1))

    output = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        inp, output = output, []
        if not inp:
            break
        s = inp[-1]
        for e in inp:
            if inside(e, a, b):
                if not inside(s, a, b):
                    output.append(cross(s, e, a, b))
                output.append(e)
            elif inside(s, a, b):
                output.append(cross(s, e, a, b))
            s = e
    return output


def score_reference(
    candidate: Mapping[str, Any] | Any,
    new: Mapping[str, Any] | Any,
    *,
    min_baseline: float = 1.0,
    min_overlap: float = 0.5,
) -> dict[str, Any]:
    """Score one candidate reference for a new image.

    Parameters
    ----------
    candidate, new : mapping or object
        Metadata with any of: ``filter`` (str), ``fwhm`` (arcsec or pixels, both in the
        same unit), ``depth`` (limiting magnitude), ``mjd`` (days), ``footprint`` (list of
        (ra, dec) corners in degrees) or a precomputed ``overlap`` (fraction of the new
        image covered, on the candidate).
    min_baseline : float
        Time baseline in days at which the baseline factor reaches 63%.
    min_overlap : float
        Smallest eligible overlap fraction.

    Returns
    -------
    dict
        ``score`` (0 when not eligible), ``eligible``, the factors ``depth``, ``seeing``,
        ``overlap``, ``baseline``, ``reason`` (why not eligible) and ``missing`` (fields
        that were absent and counted as neutral).
    """
    missing: list[str] = []
    reason = ""
    f_c, f_n = _get(candidate, "filter"), _get(new, "filter")
    if f_c is not None and f_n is not None and str(f_c).strip().lower() != str(f_n).strip().lower():
        reason = f"filter {f_c!r} differs from {f_n!r}"
    overlap = _num(candidate, "overlap")
    if overlap is None:
        fp_c, fp_n = _get(candidate, "footprint"), _get(new, "footprint")
        if fp_c and fp_n:
            overlap = footprint_overlap(fp_n, fp_c)
        else:
            missing.append("overlap")
            overlap = 1.0
    if not reason and overlap < min_overlap:
        reason = f"overlap {overlap:.0%} below {min_overlap:.0%}"
    d_c, d_n = _num(candidate, "depth"), _num(new, "depth")
    if d_c is None or d_n is None:
        missing.append("depth")
        depth = 1.0
    else:
        depth = 1.0 / np.sqrt(1.0 + 10 ** (-0.8 * (d_c - d_n)))
    s_c, s_n = _num(candidate, "fwhm"), _num(new, "fwhm")
    if s_c is None or s_n is None or s_c <= 0:
        missing.append("fwhm")
        seeing = 1.0
    else:
        seeing = float(min(1.0, s_n / s_c) ** 0.5)
    t_c, t_n = _num(candidate, "mjd"), _num(new, "mjd")
    if t_c is None or t_n is None:
        missing.append("mjd")
        baseline = 1.0
    else:
        baseline = float(1.0 - np.exp(-abs(t_n - t_c) / max(min_baseline, 1e-9)))
    eligible = not reason
    score = depth * seeing * overlap * baseline if eligible else 0.0
    return {
        "score": float(score),
        "eligible": eligible,
        "depth": float(depth),
        "seeing": float(seeing),
        "overlap": float(overlap),
        "baseline": float(baseline),
        "reason": reason,
        "missing": ",".join(missing),
    }


@dataclass(frozen=True)
class ReferenceChoice:
    """The outcome of :func:`select_reference`.

    Attributes
    ----------
    action : str
        ``"single"`` (use ``indices[0]``) or ``"coadd"`` (coadd ``indices``).
    indices : tuple of int
        Positions in the input sequence, best first.
    table : astropy.table.Table
        One row per candidate: ``index``, ``score`` and the factors, sorted by score.
    """

    action: str
    indices: tuple[int, ...]
    table: Table


def select_reference(
    candidates: Sequence[Mapping[str, Any] | Any],
    new: Mapping[str, Any] | Any,
    *,
    good_enough: float = 0.7,
    max_coadd: int = 10,
    min_baseline: float = 1.0,
    min_overlap: float = 0.5,
) -> ReferenceChoice:
    """Rank candidate references and decide between one image and a coadd.

    Parameters
    ----------
    candidates : sequence of mapping or object
        Metadata of the stored images of the field (see :func:`score_reference`).
    new : mapping or object
        Metadata of the new image.
    good_enough : float
        If the best single score reaches this, use it alone; otherwise coadd the eligible
        images whose score is at least half the best one (at most ``max_coadd``), which
        gains depth. A single eligible image is always used alone.
    max_coadd : int
        Largest number of images to coadd.
    min_baseline, min_overlap : float
        Passed to :func:`score_reference`.

    Returns
    -------
    ReferenceChoice

    Raises
    ------
    NoReferenceError
        If no candidate is eligible.
    """
    rows = []
    for i, cand in enumerate(candidates):
        r = score_reference(cand, new, min_baseline=min_baseline, min_overlap=min_overlap)
        r["index"] = i
        rows.append(r)
    names = ["index", "score", "eligible", "depth", "seeing", "overlap", "baseline", "reason",
             "missing"]  # fmt: skip
    table = (
        Table(rows=[[r[n] for n in names] for r in rows], names=names)
        if rows
        else Table(names=names, dtype=[int, float, bool, float, float, float, float, str, str])
    )
    if len(table):
        table.sort("score", reverse=True)
    eligible = [int(r["index"]) for r in table if r["eligible"]]
    if not eligible:
        reasons = "; ".join(sorted({str(r["reason"]) for r in table if r["reason"]}))
        raise NoReferenceError(
            f"none of the {len(rows)} stored image(s) can serve as a reference"
            + (f" ({reasons})" if reasons else ""),
            hint="observe the field again in the same filter to build a reference",
        )
    best = float(table["score"][0])
    if best >= good_enough or len(eligible) == 1:
        return ReferenceChoice("single", (eligible[0],), table)
    scores = {int(r["index"]): float(r["score"]) for r in table}
    chosen = tuple(i for i in eligible if scores[i] >= 0.5 * best)[:max_coadd]
    if len(chosen) == 1:
        return ReferenceChoice("single", chosen, table)
    return ReferenceChoice("coadd", chosen, table)


class CoaddOverlapError(NoReferenceError):
    """Fewer than two of the images to coadd cover the reference grid."""


@dataclass
class ReferenceCoadd:
    """Result of :func:`coadd_reference`.

    Attributes
    ----------
    data, variance : numpy.ndarray
        Coadd (units of the first image, its sky level kept) and its variance, float32,
        shape of the first image; NaN where masked.
    mask : numpy.ndarray
        Bool, True where no image contributes.
    header : astropy.io.fits.Header
        The first image's header with ``NCOMBINE``, ``COADD`` and the effective ``GAIN``.
    used : tuple of int
        Positions of the images that went in (the first always).
    weights : tuple of float
        Their weights (normalised to sum 1).
    notes : list of str
        Images left out and why; zero-point scaling.
    """

    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    header: fits.Header
    used: tuple[int, ...]
    weights: tuple[float, ...]
    notes: list[str]


def _sky(data: np.ndarray, mask: np.ndarray) -> float:
    vals = data[~mask & np.isfinite(data)]
    if vals.size == 0:
        return 0.0
    step = max(1, vals.size // 200_000)
    med = float(np.median(vals[::step]))
    mad = float(np.median(np.abs(vals[::step] - med))) * 1.4826
    keep = vals[::step][np.abs(vals[::step] - med) < 3 * max(mad, 1e-12)]
    return float(np.median(keep)) if keep.size else med


def coadd_reference(
    images: Sequence[np.ndarray],
    headers: Sequence[fits.Header],
    variances: Sequence[np.ndarray | None] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    min_overlap: float = 0.5,
) -> ReferenceCoadd:
    """Inverse-variance coadd of images of one field onto the grid of the first.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        Images (each (ny_i, nx_i)), the best first: its grid is the coadd's.
    headers : sequence of astropy.io.fits.Header
        Their headers, with a celestial WCS (an image without one must have the first's
        shape and is taken as on its grid); ``MAGZP``-like keywords scale the fluxes.
    variances : sequence of numpy.ndarray, optional
        Per-pixel variances (image units²); without one an image's robust pixel scatter.
    masks : sequence of numpy.ndarray, optional
        True = excluded.
    min_overlap : float
        Smallest fraction of the first image's pixels another image must cover to be used.

    Returns
    -------
    ReferenceCoadd
        ``data = sky_0 + Σ w_i s_i (I_i - sky_i) / Σ w_i``, ``w_i = 1 / (s_i² median V_i)``,
        ``variance = Σ w_i² s_i² V_i / (Σ w_i)²`` (per pixel, over the images covering it).

    Raises
    ------
    CoaddOverlapError
        If fewer than two images cover ``min_overlap`` of the grid.
    NoReferenceError
        If the lists have different lengths or are empty.
    """
    # Imported here: the coadd module (scikit-image, through align) is only needed to build a
    # coadd.
    from astrid.science.coadd import coadd
    from astrid.science.extract import zero_point_from_header
    from astrid.science.fitsio import celestial_wcs
    from astrid.science.resample import AlignError
    from astrid.science.resample import reproject_to as _reproject

    n = len(images)
    variances = list(variances) if variances is not None else [None] * n
    masks = list(masks) if masks is not None else [None] * n
    if n == 0 or len(headers) != n or len(variances) != n or len(masks) != n:
        raise NoReferenceError(
            "coadd_reference needs as many headers, variances and masks as images"
        )
    base = np.asarray(images[0], dtype=np.float64)
    shape = base.shape

    def wcs_of(h: fits.Header) -> Any:
        try:
            return celestial_wcs(h)
        except AstridError:
            return None

    grid = wcs_of(headers[0])
    zp0 = zero_point_from_header(headers[0])
    arrs, vars_, msks, scales, skies, used, notes = [], [], [], [], [], [], []
    for i in range(n):
        data = np.asarray(images[i], dtype=np.float64)
        var = None if variances[i] is None else np.asarray(variances[i], dtype=np.float64)
        bad = np.zeros(data.shape, bool) if masks[i] is None else np.asarray(masks[i], bool)
        bad = bad | ~np.isfinite(data)
        sky = _sky(data, bad)
        wcs = wcs_of(headers[i])
        if i > 0:
            if grid is None or wcs is None:
                if data.shape != shape:
                    notes.append(f"image {i} left out: no WCS and another shape")
                    continue
            else:
                try:
                    rep = _reproject(data - sky, wcs, grid, shape, variance=var, mask=bad)
                except AlignError as exc:
                    notes.append(f"image {i} left out: {exc}")
                    continue
                bad = rep.mask | (rep.footprint < 1) | ~np.isfinite(rep.data)
                data = np.where(bad, 0.0, rep.data) + sky
                var = rep.variance
            cover = float((~bad).mean())
            if cover < min_overlap:
                notes.append(
                    f"image {i} left out: it covers {cover:.0%} of the grid "
                    f"(minimum {min_overlap:.0%})"
                )
                continue
        zp = zero_point_from_header(headers[i])
        scale = 10.0 ** (0.4 * (zp0 - zp)) if zp0 is not None and zp is not None else 1.0
        if scale != 1.0:
            notes.append(f"image {i} scaled by {scale:.4g} to the first image's zero point")
        arrs.append(data - sky)
        vars_.append(var)
        msks.append(bad)
        scales.append(scale)
        skies.append(sky)
        used.append(i)
    if len(used) < 2:
        raise CoaddOverlapError(
            f"only {len(used)} of the {n} images to coadd cover the reference grid"
            + (f" ({'; '.join(notes)})" if notes else ""),
            hint="the best single image is used instead",
        )
    co = coadd(arrs, variances=vars_, masks=msks, scales=scales)
    w = np.asarray(co.weights, dtype=float)
    header = headers[0].copy()
    header["NCOMBINE"] = (len(used), "images in this AstrID coadd")
    header["COADD"] = (True, "AstrID inverse-variance coadd")
    gain = header.get("GAIN")
    if isinstance(gain, int | float) and not isinstance(gain, bool) and gain > 0:
        n_eff = float(w.sum() ** 2 / (w**2).sum())
        header["GAIN"] = (float(gain) * n_eff, "effective e-/ADU of the coadd")
    return ReferenceCoadd(
        data=(co.data + np.float32(skies[0])).astype(np.float32),
        variance=co.variance,
        mask=co.mask,
        header=header,
        used=tuple(used),
        weights=tuple(float(x) for x in w / w.sum()),
        notes=notes,
    )
