"""every_nth_valid is values[~excluded][::step] (same values, same order)."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.stats import every_nth_valid

CASES = [((700, 613), 0.1, 7), ((2048, 300), 0.5, 3), ((5, 4), 0.3, 2), ((1, 9), 0.0, 4),
         ((300, 300), 1.0, 5), ((64, 64), 0.2, 1), ((0, 8), 0.0, 3)]  # fmt: skip


@pytest.mark.parametrize(("shape", "fraction", "step"), CASES)
def test_every_nth_valid_is_the_strided_selection(
    shape: tuple[int, int], fraction: float, step: int
) -> None:
    rng = np.random.default_rng(shape[0] + step)
    values = rng.normal(size=shape).astype(np.float32)
    excluded = rng.random(shape) < fraction
    got = every_nth_valid(values, excluded, step)
    want = values[~excluded][::step]
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, want)
