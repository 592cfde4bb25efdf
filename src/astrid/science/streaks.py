"""Satellite streaks and dotted trails cut into several candidates of one exposure.

A satellite, a piece of debris or an aircraft crossing the field during an exposure leaves
a trail; the survey's source extraction cuts it into pieces (a continuous trail broken at
its brightest spots, or the dots of a tumbling, glinting object). Each piece is a clean
point in its own difference stamp, so a model that sees one stamp at a time calls it real.
What gives the pieces away is their **geometry**: several candidates of one exposure lying
on one straight line. A great circle is a straight line in the gnomonic (tangent-plane)
projection, and over one CCD a satellite's apparent track is a great circle to within its
small curvature, so the test is done on the tangent plane (:func:`tangent_plane`) or on the
detector's pixels.

The test (:func:`collinear_groups`) is *a contrario* (Desolneux, Moisan & Morel 2000): the
null hypothesis is that the candidates are scattered independently and uniformly over the
region (area ``area``, longest chord ``chord``). For the line through two candidates, a
third one falls within ``tolerance`` of it with probability at most
``p = 2 * tolerance * chord / area``; ``k`` of the ``n`` candidates on one such line have a
**number of false alarms**

    NFA = n (n - 1) / 2 * P[Binomial(n - 2, p) >= k - 2]

(the expected number of lines at least as populated among uniformly scattered candidates).
A group is a streak when ``k >= min_points`` and ``NFA <= max_false_alarms``. The default
parameters were chosen a priori, from geometry, before the test was run on any real alert:

* ``tolerance = 2`` pixels (2 arcsec for ZTF's 1.01"/px): the centroid error of a 5-sigma
  point source is about ``FWHM / (2.35 * 5) <= 0.4`` px for seeings up to 4.5 px, so 2 px
  keeps a piece whose centroid is 5 sigma off, and the sagitta of a moderately curved
  apparent track (radius of curvature >= 30 degrees) over a 0.86-degree ZTF quadrant is
  about 11" -- larger than the tolerance, so a strongly curved track is found in straight
  pieces, never forced;
* ``min_points = 4``: three points are on a line within 2 px far too often by chance, and
  a satellite streak crossing a quadrant leaves many more pieces;
* ``max_false_alarms = 1e-3``: at most one chance group per thousand difference images
  when the candidates are uniform. Dense images therefore need more points: on a ZTF
  quadrant (3072 x 3080 px) 5 of 15 candidates, 7 of 50, 10 of 200.

Asteroids are single points per exposure: they are flagged only by lying on another
object's streak by chance (probability ``p`` per streak, 0.2% on a ZTF quadrant).

Cost: for ``m`` candidates each greedy extraction is ``O(m^3)`` vectorised (every line
through two candidates against every candidate); ``max_points`` (default 600) bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_MAX_FALSE_ALARMS",
    "DEFAULT_MIN_POINTS",
    "DEFAULT_TOLERANCE_PX",
    "STREAK_DEMOTION",
    "TRAIL_MIN_AXIS_RATIO",
    "TRAIL_MIN_EXTENT",
    "TRAIL_THRESHOLD_SIGMA",
    "StampTrail",
    "StreakGroup",
    "StreakInputError",
    "chance_probability",
    "collinear_groups",
    "false_alarms",
    "image_streaks",
    "stamp_trail",
    "streak_labels",
    "tangent_plane",
]

#: Perpendicular tolerance of a piece from its line, in pixels (or arcsec on ZTF).
DEFAULT_TOLERANCE_PX = 2.0
#: Fewest candidates on one line that can make a streak.
DEFAULT_MIN_POINTS = 4
#: Largest number of false alarms (expected chance groups) a streak may have.
DEFAULT_MAX_FALSE_ALARMS = 1e-3
#: Most candidates examined at once (the search is cubic in their number).
DEFAULT_MAX_POINTS = 600
#: Factor the callers (score-alerts, the detect stage) apply to a streak member's score: it
#: can no longer pass 0.5, and flagged candidates keep their order.
STREAK_DEMOTION = 0.1


class StreakInputError(ValueError):
    """Positions or region parameters the streak test cannot use (shapes, NaN, area <= 0)."""


@dataclass(frozen=True)
class StreakGroup:
    """Candidates of one exposure lying on one straight line.

    Attributes
    ----------
    members : numpy.ndarray
        Indices into the positions given, shape ``(k,)``, sorted along the line.
    angle : float
        Direction of the line, degrees from +x towards +y, in [0, 180).
    length : float
        Distance between the two outermost members, in the units of the positions.
    rms : float
        Root-mean-square perpendicular distance of the members from the fitted line.
    false_alarms : float
        The group's NFA (see the module docstring); smaller is more significant.
    """

    members: np.ndarray
    angle: float
    length: float
    rms: float
    false_alarms: float


def tangent_plane(
    ra: np.ndarray, dec: np.ndarray, ra0: float | None = None, dec0: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection of sky positions, in arcsec (great circles become lines).

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Positions in degrees, shape ``(n,)``.
    ra0, dec0 : float, optional
        Tangent point in degrees; default the medoid of the positions.

    Returns
    -------
    xi, eta : numpy.ndarray
        Standard coordinates in arcsec (xi towards east, eta towards north), shape ``(n,)``;
        NaN for positions more than 60 degrees from the tangent point (not one exposure).
    """
    a = np.radians(np.asarray(ra, dtype=np.float64))
    d = np.radians(np.asarray(dec, dtype=np.float64))
    if a.shape != d.shape or a.ndim != 1:
        raise StreakInputError(f"ra and dec must be 1-D of one shape, got {a.shape}, {d.shape}")
    if (ra0 is None or dec0 is None) and len(a):
        # the medoid (largest summed cosine to the others): a far-off position cannot move it
        v = np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
        m = int(np.argmax((v @ v.T).sum(axis=1)))
        a0, d0 = float(a[m]), float(d[m])
    elif ra0 is None or dec0 is None:
        a0 = d0 = 0.0
    else:
        a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    cosc = np.where(cosc > 0.5, cosc, np.nan)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    arcsec = 180.0 / math.pi * 3600.0
    return xi * arcsec, eta * arcsec


def chance_probability(tolerance: float, area: float, chord: float) -> float:
    """Probability that a uniformly placed point lies within ``tolerance`` of a line.

    The band of half-width ``tolerance`` around a line has at most ``2 * tolerance * chord``
    of the region's area (``chord``: the longest line segment inside the region, e.g. the
    diagonal of a rectangle). Capped at 1.
    """
    if area <= 0 or chord <= 0 or tolerance < 0:
        raise StreakInputError(
            f"area {area}, chord {chord} must be > 0 and tolerance {tolerance} >= 0"
        )
    return min(1.0, 2.0 * tolerance * chord / area)


def false_alarms(n: int, k: int, p: float) -> float:
    """Number of false alarms of ``k`` of ``n`` uniform points on one line through two.

    ``n (n - 1) / 2 * P[Binomial(n - 2, p) >= k - 2]``, summed in log space (exact for the
    tiny tails that matter).
    """
    if n < 2 or k < 2:
        return float(n * (n - 1) / 2) if n >= 2 else 0.0
    trials, need = n - 2, k - 2
    if need > trials:
        return 0.0
    if p <= 0.0:
        return 0.0 if need > 0 else n * (n - 1) / 2
    if p >= 1.0:
        return n * (n - 1) / 2
    lp, lq = math.log(p), math.log1p(-p)
    tail = 0.0
    for i in range(need, trials + 1):
        term = math.exp(
            math.lgamma(trials + 1)
            - math.lgamma(i + 1)
            - math.lgamma(trials - i + 1)
            + i * lp
            + (trials - i) * lq
        )
        tail += term
        if term < tail * 1e-16:
            break
    return n * (n - 1) / 2 * min(tail, 1.0)


def _fit_line(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total-least-squares line: (a point on it, unit direction)."""
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    return c, vt[0]


def _perp(pts: np.ndarray, c: np.ndarray, u: np.ndarray) -> np.ndarray:
    rel = pts - c
    return np.abs(rel[:, 0] * u[1] - rel[:, 1] * u[0])


def _sites(x: np.ndarray, y: np.ndarray, tol: float) -> np.ndarray:
    """Site number of each point: points within ``tol`` of an earlier site's first point
    join it (greedy, in input order)."""
    site = np.full(len(x), -1, dtype=np.int64)
    for i in range(len(x)):
        if site[i] >= 0:
            continue
        near = (np.hypot(x - x[i], y - y[i]) <= tol) & (site < 0)
        site[near] = i
    return site


def _best_line(pts: np.ndarray, tol: float, min_sep: float) -> tuple[int, int, int]:
    """(count, i, j): the line through two points (>= min_sep apart) with most inliers."""
    m = len(pts)
    best = (0, -1, -1)
    for i in range(m - 1):
        d = pts[i + 1 :] - pts[i]
        r = np.hypot(d[:, 0], d[:, 1])
        ok = r >= min_sep
        if not ok.any():
            continue
        u = d[ok] / r[ok, None]
        rel = pts - pts[i]
        dist = np.abs(u[:, :1] * rel[None, :, 1] - u[:, 1:] * rel[None, :, 0])
        counts = (dist <= tol).sum(axis=1)
        k = int(np.argmax(counts))
        if counts[k] > best[0]:
            best = (int(counts[k]), i, i + 1 + int(np.flatnonzero(ok)[k]))
    return best


def collinear_groups(
    x: np.ndarray,
    y: np.ndarray,
    *,
    area: float,
    chord: float,
    tolerance: float = DEFAULT_TOLERANCE_PX,
    min_points: int = DEFAULT_MIN_POINTS,
    max_false_alarms: float = DEFAULT_MAX_FALSE_ALARMS,
    max_points: int = DEFAULT_MAX_POINTS,
) -> list[StreakGroup]:
    """Groups of candidates of one exposure that lie on one straight line (streaks).

    Candidates within ``tolerance`` of each other count as one (the same source twice: a
    duplicate packet, a double detection) and are flagged together. Greedy and
    deterministic: the line through two candidates with the most candidates within
    ``tolerance`` is refitted (total least squares, twice), kept if significant
    (``k >= min_points`` and NFA ``<= max_false_alarms``; see the module docstring), its
    members removed, and the search repeated on the rest. The most populated line is the
    most significant one, so the search stops at the first that is not.

    Parameters
    ----------
    x, y : numpy.ndarray
        Positions of the candidates of **one** exposure (one difference image), shape
        ``(n,)``, in any linear unit: detector pixels, or arcsec on the tangent plane
        (:func:`tangent_plane`).
    area : float
        Area of the region the candidates come from (the image), in units squared.
    chord : float
        Longest straight segment inside that region (the image's diagonal), in units.
    tolerance : float
        Largest perpendicular distance of a member from the line, in units.
    min_points : int
        Fewest members of a streak (>= 3).
    max_false_alarms : float
        Largest NFA of a streak.
    max_points : int
        With more candidates (sites) than this, only the first ``max_points`` in input order
        are examined: it bounds the cubic cost (0.3 s of CPU for 600 uniform candidates).
        The detect stage passes its candidates in extraction order, brightest first.

    Returns
    -------
    list of StreakGroup
        Most significant first; a candidate belongs to at most one group.

    Raises
    ------
    StreakInputError
        Shapes differ, positions are not finite, or region parameters are not positive.
    """
    px = np.asarray(x, dtype=np.float64)
    py = np.asarray(y, dtype=np.float64)
    if px.shape != py.shape or px.ndim != 1:
        raise StreakInputError(f"x and y must be 1-D of one shape, got {px.shape}, {py.shape}")
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        raise StreakInputError("positions must be finite")
    if min_points < 3:
        raise StreakInputError(f"min_points must be >= 3, got {min_points}")
    p = chance_probability(tolerance, area, chord)
    # Candidates within ``tolerance`` of each other are one source (a packet sent twice, a
    # double detection): they are counted once, as one site, and flagged together.
    site = _sites(px, py, tolerance)
    first = np.unique(site, return_index=True)[1]
    idx = first[:max_points]
    pts_all = np.column_stack([px, py])
    groups: list[StreakGroup] = []
    while len(idx) >= min_points:
        pts = pts_all[idx]
        count, i, j = _best_line(pts, tolerance, min_sep=2.0 * tolerance)
        if count < min_points:
            break
        c, u = pts[i], (pts[j] - pts[i]) / np.hypot(*(pts[j] - pts[i]))
        inl = _perp(pts, c, u) <= tolerance
        for _ in range(2):  # refit on the inliers, recount
            c2, u2 = _fit_line(pts[inl])
            inl2 = _perp(pts, c2, u2) <= tolerance
            if inl2.sum() < inl.sum():
                break
            c, u, inl = c2, u2, inl2
        k = int(inl.sum())
        nfa = false_alarms(len(idx), k, p)
        if k < min_points or nfa > max_false_alarms:
            break
        members = np.flatnonzero(np.isin(site, site[idx[inl]]))
        along = (pts_all[members] - c) @ u
        order = np.argsort(along, kind="stable")
        resid = _perp(pts[inl], c, u)
        groups.append(
            StreakGroup(
                members=members[order],
                angle=float(math.degrees(math.atan2(u[1], u[0])) % 180.0),
                length=float(along.max() - along.min()),
                rms=float(np.sqrt(np.mean(resid**2))),
                false_alarms=float(nfa),
            )
        )
        idx = idx[~inl]
    return groups


def streak_labels(n: int, groups: list[StreakGroup]) -> np.ndarray:
    """Per-candidate group number (0, 1, ... in the order of ``groups``), -1 for none."""
    out = np.full(n, -1, dtype=np.int64)
    for g, grp in enumerate(groups):
        out[grp.members] = g
    return out


# --------------------------------------------------------------------------- in one stamp

#: Segmentation threshold of the in-stamp test, robust sigmas of the difference stamp.
TRAIL_THRESHOLD_SIGMA = 3.0
#: Smallest extent of the centre's footprint along its major axis, fraction of the side.
TRAIL_MIN_EXTENT = 0.75
#: Smallest ratio of the footprint's major to minor axis (square root of the moments).
TRAIL_MIN_AXIS_RATIO = 4.0


@dataclass(frozen=True)
class StampTrail:
    """Shape of the footprint around a stamp's centre (see :func:`stamp_trail`).

    Attributes
    ----------
    is_trail : bool
        The footprint is a trail crossing the stamp.
    extent : float
        Length of the footprint along its major axis, pixels.
    axis_ratio : float
        ``sqrt(lambda_1 / lambda_2)`` of its second moments (1 for a round source).
    angle : float
        Major-axis direction, degrees from +x towards +y, in [0, 180).
    n_pixels : int
        Pixels of the footprint.
    """

    is_trail: bool
    extent: float
    axis_ratio: float
    angle: float
    n_pixels: int


def stamp_trail(
    diff: np.ndarray,
    *,
    threshold: float = TRAIL_THRESHOLD_SIGMA,
    min_extent: float = TRAIL_MIN_EXTENT,
    min_axis_ratio: float = TRAIL_MIN_AXIS_RATIO,
    centre_radius: int = 3,
    normalised: bool = False,
) -> StampTrail:
    """Whether a continuous trail runs through the candidate at a stamp's centre.

    The difference stamp (candidate positive, at ``(size // 2, size // 2)``) is divided by
    its robust sigma (1.4826 MAD about the median; NaN pixels count as sky) and
    thresholded at ``threshold``; the 8-connected footprint holding the brightest pixel
    within ``centre_radius`` of the centre is measured. It is a trail when it spans at
    least ``min_extent`` of the stamp's side along its major axis **and** its axis ratio is
    at least ``min_axis_ratio``. A priori: the footprint of a point source above 3 sigma
    has a radius of ``sigma_psf * sqrt(2 ln(peak / 3))``, under 2 FWHM even for a peak of
    10^4 sigma, so under 20 px for seeings up to 4.5 px, far from 0.75 of a 63-px stamp
    (47 px); a straight trail of width ``w`` crossing the stamp has an axis ratio of about
    ``47 / w`` (above 5 for ``w`` up to 9 px). Dotted trails are not connected: the group
    test (:func:`collinear_groups`) finds those.

    Parameters
    ----------
    diff : numpy.ndarray
        Difference stamp, shape ``(size, size)``, candidate positive at the centre.
    threshold : float
        Segmentation threshold, robust sigmas.
    min_extent : float
        Smallest major-axis extent of a trail, fraction of the stamp's side.
    min_axis_ratio : float
        Smallest axis ratio of a trail.
    centre_radius : int
        The footprint must reach within this many pixels of the centre.
    normalised : bool
        ``diff`` is already normalised (robust sigmas about its median, or any increasing
        function of them with ``threshold`` mapped alike; NaN as 0): skip that step.

    Returns
    -------
    StampTrail
        ``is_trail`` False (and zero measures) when nothing around the centre is above
        the threshold or too few pixels are to span ``min_extent``.
    """
    from scipy import ndimage  # light compared with the scoring it accompanies

    arr = np.asarray(diff)
    if arr.ndim != 2 or arr.size == 0:
        raise StreakInputError(f"difference stamp must be 2-D, got shape {arr.shape}")
    none = StampTrail(False, 0.0, 1.0, 0.0, 0)
    if normalised:
        z = arr  # NaN compares False below: it is never part of a footprint
    else:
        arr = arr.astype(np.float64)
        good = np.isfinite(arr)
        if good.sum() < 10:
            return none
        vals = arr[good]
        med = float(np.median(vals))
        sig = 1.4826 * float(np.median(np.abs(vals - med)))
        if not sig > 0:
            sig = float(np.std(vals)) or 1.0
        z = np.where(good, (arr - med) / sig, 0.0)
    ny, nx = z.shape
    cy, cx = ny // 2, nx // 2
    r = centre_radius
    box = z[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
    if not (box >= threshold).any():
        return none
    above = z >= threshold
    n_above = int(np.count_nonzero(above))
    # an 8-connected footprint spanning E pixels has at least E / sqrt(2) of them: most
    # stamps are decided here, without labelling
    if n_above < min_extent * max(nx, ny) / math.sqrt(2.0):
        return StampTrail(False, 0.0, 1.0, 0.0, n_above)
    box = np.where(np.isfinite(box), box, -np.inf)
    by, bx = np.unravel_index(int(np.argmax(box)), box.shape)
    seed = (max(cy - r, 0) + int(by), max(cx - r, 0) + int(bx))
    labels, _ = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    yy, xx = np.nonzero(labels == labels[seed])
    n = len(xx)
    if n < 3:
        return StampTrail(False, float(n), 1.0, 0.0, n)
    pts = np.column_stack([xx, yy]).astype(np.float64)
    c = pts - pts.mean(axis=0)
    cov = c.T @ c / n
    evals, evecs = np.linalg.eigh(cov)  # ascending
    u = evecs[:, 1]
    along = c @ u
    extent = float(along.max() - along.min() + 1.0)
    ratio = float(math.sqrt(evals[1] / max(evals[0], 1.0 / 12.0)))
    angle = float(math.degrees(math.atan2(u[1], u[0])) % 180.0)
    is_trail = extent >= min_extent * max(nx, ny) and ratio >= min_axis_ratio
    return StampTrail(bool(is_trail), extent, ratio, angle, n)


def image_streaks(
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    diff_stamps: list[np.ndarray] | None = None,
) -> list[str | None]:
    """Which candidates of one difference image are on a satellite streak, and why.

    Both tests with their a-priori defaults: the group test (:func:`collinear_groups` on
    the pixel positions, the region being the image) and, when stamps are given, the
    in-stamp test (:func:`stamp_trail`).

    Parameters
    ----------
    x, y : numpy.ndarray
        Candidate positions, 0-based pixels of the image, shape ``(n,)``.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    diff_stamps : list of numpy.ndarray, optional
        Each candidate's difference stamp, candidate positive at the centre.

    Returns
    -------
    list of str or None
        Per candidate, a reason starting with ``"on a streak"`` or None.
    """
    ny, nx = shape
    out: list[str | None] = [None] * len(np.atleast_1d(x))
    groups = collinear_groups(x, y, area=float(nx * ny), chord=math.hypot(nx, ny))
    for g, grp in enumerate(groups):
        for m in grp.members:
            out[int(m)] = (
                f"on a streak: {len(grp.members)} candidates of the image on one line "
                f"(group {g}, false alarms {grp.false_alarms:.1g})"
            )
    for i, st in enumerate(diff_stamps or ()):
        if out[i] is None and st is not None:
            trail = stamp_trail(st)
            if trail.is_trail:
                out[i] = f"on a streak: a trail {trail.extent:.0f} px long crosses the stamp"
    return out
