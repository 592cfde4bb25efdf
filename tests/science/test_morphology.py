"""astrid.science.morphology gives scipy.ndimage.binary_dilation's masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from astrid.science.morphology import dilate_cross, dilate_square


@pytest.mark.parametrize(("shape", "fraction"), [((300, 257), 0.002), ((31, 17), 0.1),
                                                 ((1, 9), 0.3), ((9, 1), 0.3), ((40, 40), 0.0),
                                                 ((40, 40), 1.0)])  # fmt: skip
def test_dilations_match_ndimage(shape: tuple[int, int], fraction: float) -> None:
    rng = np.random.default_rng(shape[0] * shape[1])
    mask = rng.random(shape) < fraction
    if 0 < fraction < 1:
        mask[0, 0] = mask[-1, -1] = mask[0, -1] = True  # set pixels on the edges and corners
    square = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool))
    np.testing.assert_array_equal(dilate_square(mask), square)
    for iterations in (1, 2, 3, 6):
        want = ndimage.binary_dilation(mask, iterations=iterations)
        np.testing.assert_array_equal(dilate_cross(mask, iterations), want)
    # new arrays, the input untouched
    before = mask.copy()
    assert dilate_cross(mask, 2) is not mask and dilate_square(mask) is not mask
    np.testing.assert_array_equal(mask, before)


def test_dilate_cross_needs_an_iteration() -> None:
    with pytest.raises(ValueError, match="at least one"):
        dilate_cross(np.zeros((3, 3), bool), 0)
