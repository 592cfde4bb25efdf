"""astrid.science.neighbours gives cKDTree's answers (nearest, bounded nearest, close pairs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from astrid.science.neighbours import close_pairs, nearest


@pytest.mark.parametrize(
    ("n", "m", "bound", "spread"),
    [
        (3000, 3000, 2.0, 2048.0),  # star matching (flux ratio, residual shift)
        (3000, 300, np.inf, 2048.0),  # candidates to their nearest star
        (12000, 500, np.inf, 4096.0),
        (5, 3, np.inf, 10.0),
        (1, 7, np.inf, 100.0),
        (400, 50, 0.5, 30.0),  # dense: many candidates within the bound
    ],
)
def test_nearest_is_ckdtree_query(n: int, m: int, bound: float, spread: float) -> None:
    rng = np.random.default_rng(n + m)
    points = rng.uniform(0, spread, (n, 2))
    # queries also beyond the points' extent
    queries = rng.uniform(-0.1 * spread, 1.1 * spread, (m, 2))
    dist, index = nearest(points, queries, bound)
    want_d, want_i = cKDTree(points).query(queries, distance_upper_bound=bound)
    np.testing.assert_array_equal(dist, want_d)
    np.testing.assert_array_equal(index, want_i)


def test_nearest_edge_cases() -> None:
    pts = np.array([[0.0, 0.0], [5.0, 5.0]])
    # the bound is strict, as cKDTree's distance_upper_bound
    d, j = nearest(pts, np.array([[2.0, 0.0], [1.999, 0.0]]), 2.0)
    np.testing.assert_array_equal(d, [np.inf, 1.999])
    np.testing.assert_array_equal(j, [2, 0])
    d, j = nearest(np.zeros((0, 2)), np.ones((3, 2)))
    assert np.all(np.isinf(d)) and np.all(j == 0)
    d, j = nearest(pts, np.zeros((0, 2)))
    assert d.shape == (0,) and j.shape == (0,)
    # a non-finite query has no neighbour; a non-finite point is nobody's
    d, j = nearest(np.array([[np.nan, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0], [np.nan, 1.0]]))
    np.testing.assert_array_equal(d, [5.0, np.inf])
    np.testing.assert_array_equal(j, [1, 2])


@pytest.mark.parametrize(("n", "radius", "spread"), [(3000, 17.5, 2048.0), (12000, 17.5, 4096.0),
                                                     (60, 1e6, 100.0), (1, 3.0, 10.0),
                                                     (200, 0.0, 5.0)])  # fmt: skip
def test_close_pairs_is_ckdtree_query_pairs(n: int, radius: float, spread: float) -> None:
    rng = np.random.default_rng(n)
    points = rng.uniform(0, spread, (n, 2))
    if n >= 200:
        points[1] = points[0]  # a duplicate: distance 0, a pair at any radius
    got = close_pairs(points, radius)
    want = cKDTree(points).query_pairs(radius, output_type="ndarray").reshape(-1, 2)
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    np.testing.assert_array_equal(got, want)
    # the boundary is inclusive, as query_pairs'
    assert close_pairs(np.array([[0.0, 0.0], [3.0, 4.0]]), 5.0).tolist() == [[0, 1]]
