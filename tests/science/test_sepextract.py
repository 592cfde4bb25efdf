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


def test_large_stack_for_an_object_over_a_quarter_of_the_image() -> None:
    old = sep.get_extract_pixstack()
    data = _field(1000, 560)  # 313,600 pixels in one object: over a quarter of 1 Mpix
    with pytest.raises(Exception, match="pixel buffer full"):
        extract_objects(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1)
    got = extract_objects(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1, large_stack=data.size)
    assert sep.get_extract_pixstack() == old
    sep.set_extract_pixstack(data.size)
    try:
        want = sep.extract(data, 3.0, err=1.0, minarea=5, deblend_nthresh=1)
    finally:
        sep.set_extract_pixstack(old)
    assert len(got) == len(want) > 1
    for name in ("x", "y", "flux", "npix", "xpeak", "ypeak"):
        np.testing.assert_array_equal(got[name], want[name])


def test_detect_stars_finds_what_a_whole_image_stack_finds() -> None:
    """detect_stars tries SEP's own stack first (cheap), then one of the whole image: the
    objects of the old call, which always set a whole-image stack."""
    from astrid.science.background import estimate_background
    from astrid.science.stars import detect_stars

    old = sep.get_extract_pixstack()
    for big in (0, 560):  # an ordinary field; one object over a quarter of the image
        data = _field(1000, big).astype(np.float64) + 100.0
        bkg = estimate_background(data)
        got = detect_stars(data, background=bkg)
        assert sep.get_extract_pixstack() == old
        sub = np.ascontiguousarray(data - bkg.background)
        rms = np.ascontiguousarray(np.where(bkg.rms > 0, bkg.rms, bkg.global_rms))
        sep.set_extract_pixstack(data.size)  # the old call
        try:
            want = sep.extract(sub, 5.0, err=rms, mask=np.zeros(data.shape, bool), minarea=5)
        finally:
            sep.set_extract_pixstack(old)
        assert len(got) == len(want) > 10
        order = np.argsort(-want["flux"], kind="stable")
        np.testing.assert_array_equal(np.asarray(got["flux"]), want["flux"][order])
        np.testing.assert_array_equal(np.asarray(got["npix"]), want["npix"][order])


def test_detect_stars_noise_map_with_and_without_holes() -> None:
    """An rms map with zeros takes the global rms there (np.where, as before); a positive
    one is used as it is: the same stars as with the np.where copy."""
    from dataclasses import replace

    from astrid.science.background import estimate_background
    from astrid.science.stars import detect_stars

    data = _field(400, 0).astype(np.float64) + 100.0
    bkg = estimate_background(data)
    assert (bkg.rms > 0).all()
    copied = replace(bkg, rms=np.where(bkg.rms > 0, bkg.rms, bkg.global_rms))
    a, b = detect_stars(data, background=bkg), detect_stars(data, background=copied)
    assert len(a) > 10
    np.testing.assert_array_equal(np.asarray(a["flux"]), np.asarray(b["flux"]))
    holed = bkg.rms.copy()
    holed[:50, :50] = 0.0  # no noise known there: the global rms is used
    filled = replace(bkg, rms=np.where(holed > 0, holed, bkg.global_rms))
    c = detect_stars(data, background=replace(bkg, rms=holed))
    np.testing.assert_array_equal(
        np.asarray(c["flux"]), np.asarray(detect_stars(data, background=filled)["flux"])
    )
