"""Nearest neighbours and close pairs of 2-D points (pixel positions), in numpy.

The answers of ``scipy.spatial.cKDTree`` (``query`` with or without
``distance_upper_bound``, ``query_pairs``) for the few thousand stars and candidates of one
image, without importing ``scipy.spatial`` (~70 ms of the start-up of ``astrid detect``,
which needs nothing else from it). Points are sorted along x once; each query then measures
only the points within its x-window, so the cost grows with the number of close pairs, not
with the product of the two set sizes. Distances are Euclidean, ``sqrt(dx**2 + dy**2)`` in
float64, in the units of the inputs (pixels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["close_pairs", "nearest"]


def _as_xy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


class _Strips:
    """Points sorted by strip of height ``radius`` along y, then by x.

    A point's key is ``strip * width + (x - x0)``: the points of one strip within
    ``radius`` of a given x are then one contiguous run of keys, so the candidates of a
    query are three runs (its strip and the two beside it).
    """

    def __init__(
        self, px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray, radius: float
    ) -> None:
        self.radius = radius
        # strips at least 1 px high (a zero radius would make the keys overflow); any
        # height >= radius gives the same candidates, only more of them
        self.height = max(radius, 1.0)
        self.x0 = float(min(px.min(), qx.min()))
        self.y0 = float(min(py.min(), qy.min()))
        self.width = float(max(px.max(), qx.max())) - self.x0 + 2.0 * radius + 1.0
        keys = self._strip(py) * self.width + (px - self.x0)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def _strip(self, y: np.ndarray) -> np.ndarray:
        return np.floor((y - self.y0) / self.height)

    def candidates(self, qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, point index) of every point of the three strips around each query
        with ``|dx| <= radius`` (a superset of the points within ``radius``)."""
        strip = self._strip(qy)
        # a hair wider than the radius: the exact distance decides afterwards
        reach = self.radius * (1.0 + 1e-9) + 1e-9
        qis, pis = [], []
        for ds in (-1.0, 0.0, 1.0):
            centre = (strip + ds) * self.width + (qx - self.x0)
            lo = np.searchsorted(self.keys, centre - reach, side="left")
            hi = np.searchsorted(self.keys, centre + reach, side="right")
            counts = hi - lo
            qi = np.repeat(np.arange(qx.size), counts)
            starts = np.cumsum(counts) - counts
            qis.append(qi)
            pis.append(self.order[lo[qi] + (np.arange(qi.size) - starts[qi])])
        return np.concatenate(qis), np.concatenate(pis)


def _nearest_within(
    px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point at a distance ``< radius`` (inf and -1 where none)."""
    dist = np.full(qx.size, np.inf)
    index = np.full(qx.size, -1, dtype=np.intp)
    qi, j = _Strips(px, py, qx, qy, radius).candidates(qx, qy)
    if qi.size == 0:
        return dist, index
    dx = qx[qi] - px[j]
    dy = qy[qi] - py[j]
    d = np.sqrt(dx * dx + dy * dy)
    keep = d < radius
    qi, j, d = qi[keep], j[keep], d[keep]
    if qi.size == 0:
        return dist, index
    # per query the smallest distance (ties: the lowest point index)
    srt = np.lexsort((j, d, qi))
    first = np.ones(srt.size, bool)
    first[1:] = qi[srt][1:] != qi[srt][:-1]
    sel = srt[first]
    dist[qi[sel]] = d[sel]
    index[qi[sel]] = j[sel]
    return dist, index


def nearest(
    points: np.ndarray, queries: np.ndarray, max_distance: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of ``points`` to each of ``queries``: ``cKDTree(points).query(queries,
    distance_upper_bound=max_distance)``.

    Parameters
    ----------
    points : numpy.ndarray
        Shape (n, 2): x, y.
    queries : numpy.ndarray
        Shape (m, 2): x, y.
    max_distance : float
        Only points closer than this (strictly) count.

    Returns
    -------
    dist : numpy.ndarray
        Shape (m,), float64: distance to the nearest point, inf where there is none within
        ``max_distance``.
    index : numpy.ndarray
        Shape (m,), int: its row in ``points``, ``n`` where there is none.
    """
    px, py = _as_xy(points)
    qx, qy = _as_xy(queries)
    n = px.size
    dist = np.full(qx.size, np.inf)
    index = np.full(qx.size, n, dtype=np.intp)
    # non-finite coordinates have no neighbour (and are nobody's)
    keep_p = np.flatnonzero(np.isfinite(px) & np.isfinite(py))
    todo = np.flatnonzero(np.isfinite(qx) & np.isfinite(qy))
    if keep_p.size == 0 or todo.size == 0:
        return dist, index
    px, py = px[keep_p], py[keep_p]
    if np.isfinite(max_distance):
        d, j = _nearest_within(px, py, qx[todo], qy[todo], float(max_distance))
        found = j >= 0
        dist[todo[found]], index[todo[found]] = d[found], keep_p[j[found]]
        return dist, index
    # unbounded: a growing radius; a hit closer than the radius is the nearest point
    span = max(float(np.ptp(np.concatenate([px, qx[todo]]))),
               float(np.ptp(np.concatenate([py, qy[todo]]))))  # fmt: skip
    radius = max(span / np.sqrt(px.size), 1.0) * 2.0
    while todo.size:
        d, j = _nearest_within(px, py, qx[todo], qy[todo], radius)
        found = j >= 0
        dist[todo[found]], index[todo[found]] = d[found], keep_p[j[found]]
        todo = todo[~found]
        radius *= 4.0
    return dist, index


def close_pairs(points: np.ndarray, radius: float) -> np.ndarray:
    """Pairs of ``points`` at most ``radius`` apart: ``cKDTree(points).query_pairs(radius,
    output_type="ndarray")`` (in another order).

    Parameters
    ----------
    points : numpy.ndarray
        Shape (n, 2): x, y.
    radius : float
        Largest distance of a pair (inclusive).

    Returns
    -------
    numpy.ndarray
        Shape (k, 2), int: row indices ``i < j`` of each pair, sorted by ``i`` then ``j``.
    """
    px, py = _as_xy(points)
    ok = np.flatnonzero(np.isfinite(px) & np.isfinite(py))
    if ok.size < 2:
        return np.zeros((0, 2), dtype=np.intp)
    fx, fy = px[ok], py[ok]
    qi, j = _Strips(fx, fy, fx, fy, float(radius)).candidates(fx, fy)
    keep = qi < j
    qi, j = qi[keep], j[keep]
    dx = fx[qi] - fx[j]
    dy = fy[qi] - fy[j]
    near = np.sqrt(dx * dx + dy * dy) <= radius
    pairs = np.column_stack([ok[qi[near]], ok[j[near]]]).astype(np.intp)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
