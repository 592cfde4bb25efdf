"""extract_objects: SEP's objects whatever the pixel stack they need; the global is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import sep

from astrid.science.sepextract import extract_objects


def _field(size: int, big: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    data = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[-6:7, -6:7]
    star = (50.0 * np.exp(-(xx**2 + yy**2) / 4.0)).astype(np.float32)
    for x, y in rng.integers(big + 30, size - 10, (30, 2)):
        data[y - 6 : y + 7, x - 6 : x + 7] += star
    data[10 : 10 + big, 10 : 10 + big] += np.float32(20.0)  # one object of big**2 pixels
    return data


def test_same_objects_as_a_large_stack_and_global_restored() -> None:
    old = sep.get_extract_pixstack()
    # 360,000 pixels in one object: more than the first stack, less than a quarter image
    data = _field(1400, 600)
    got = extract_objects(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1)
    assert sep.get_extract_pixstack() == old
    sep.set_extract_pixstack(300_000)  # the first stack is too small for this field
    try:
        with pytest.raises(Exception, match="pixel buffer full"):
            sep.extract(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1)
    finally:
        sep.set_extract_pixstack(old)
    sep.set_extract_pixstack(data.size)
    try:
        want = sep.extract(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1)
    finally:
        sep.set_extract_pixstack(old)
    assert len(got) == len(want) > 1
    for name in ("x", "y", "flux", "npix", "xpeak", "ypeak"):
        np.testing.assert_array_equal(got[name], want[name])
    # an ordinary field needs only the first stack
    small = _field(400, 0)
    np.testing.assert_array_equal(extract_objects(small, 3.0, err=1.0)["flux"],
                                  sep.extract(small, 3.0, err=1.0)["flux"])  # fmt: skip


def test_other_errors_are_not_retried() -> None:
    try:
        extract_objects(np.zeros((10, 10), np.float32), 3.0, err=-1.0)
    except Exception as exc:  # SEP's own error for a negative noise
        assert "pixel buffer" not in str(exc)
    assert sep.get_extract_pixstack() > 0
