"""median_float64: np.median of the float64 copy, bit for bit, from float32 values."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.stats import median_float64


@pytest.mark.parametrize("n", [1, 2, 3, 4, 1001, 1000, 65536])
def test_equals_numpy_median_of_the_float64_copy(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (
        rng.normal(100.0, 5.0, n).astype(np.float32),
        rng.lognormal(0.0, 8.0, n).astype(np.float32),  # neighbours far apart in exponent
        rng.integers(0, 3, n).astype(np.float32),  # ties
    ):
        want = float(np.median(values.astype(np.float64)))
        got = median_float64(values)
        assert got == want and type(got) is float
        assert median_float64(values.copy(), overwrite_input=True) == want
        assert median_float64(values.reshape(1, -1)) == want
    # the average of the middle two need not be a float32 value
    pair = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], np.float32)
    assert median_float64(pair) == float(np.median(pair.astype(np.float64)))
    assert float(np.float32(median_float64(pair))) != median_float64(pair)


def test_nan_empty_and_other_dtypes_as_numpy() -> None:
    values = np.array([1.0, np.nan, 3.0, 2.0], np.float32)
    assert np.isnan(median_float64(values))
    assert median_float64(np.array([3, 1, 2], np.int16)) == 2.0
    assert median_float64(np.array([1.0, 4.0])) == 2.5
    with pytest.warns(RuntimeWarning):
        assert np.isnan(median_float64(np.array([], np.float32)))
