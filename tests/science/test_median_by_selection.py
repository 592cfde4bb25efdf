"""median_by_selection is np.median, value and dtype, on the maps it serves and on traps."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.stats import median_by_selection


def _same(a: object, b: object) -> bool:
    return bool(np.asarray(a).dtype == np.asarray(b).dtype and (a == b or (a != a and b != b)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [1 << 20, (1 << 20) + 1, 70_001, 1000])
@pytest.mark.parametrize("kind", ["noise", "smooth", "ties", "sorted", "reversed"])
def test_equals_numpy_median(dtype: type, n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    if kind == "noise":
        v = rng.normal(16.0, 1.0, n)
    elif kind == "smooth":  # a background map's kind of values
        v = 16.0 + 10.0 * np.sin(np.linspace(0.0, 7.0, n))
    elif kind == "ties":
        v = rng.integers(0, 5, n)
    elif kind == "sorted":  # a strided sample far from typical: the fallback answers
        v = np.sort(rng.normal(0.0, 1.0, n))
    else:
        v = np.sort(rng.normal(0.0, 1.0, n))[::-1]
    v = v.astype(dtype)
    assert _same(median_by_selection(v), np.median(v))


def test_nan_gives_nan_and_maps_any_shape() -> None:
    rng = np.random.default_rng(2)
    v = rng.normal(0.0, 1.0, (512, 300)).astype(np.float32)
    assert _same(median_by_selection(v), np.median(v))
    v[100, 7] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(median_by_selection(v))
    v[:] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(median_by_selection(v))
