"""Reference selection: scoring factors, eligibility, single vs coadd."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.reference import (
    NoReferenceError,
    footprint_overlap,
    score_reference,
    select_reference,
)

SQUARE = [(10.0, 0.0), (10.1, 0.0), (10.1, 0.1), (10.0, 0.1)]
HALF = [(10.05, 0.0), (10.15, 0.0), (10.15, 0.1), (10.05, 0.1)]
NEW = {"filter": "r", "fwhm": 1.2, "depth": 21.0, "mjd": 60100.0, "footprint": SQUARE}


def test_footprint_overlap() -> None:
    assert footprint_overlap(SQUARE, SQUARE) == pytest.approx(1.0, abs=1e-6)
    assert footprint_overlap(SQUARE, HALF) == pytest.approx(0.5, abs=0.01)
    far = [(r + 1.0, d) for r, d in SQUARE]
    assert footprint_overlap(SQUARE, far) == 0.0


def test_factors() -> None:
    deep = score_reference({**NEW, "depth": 23.0, "mjd": 60000.0}, NEW)
    shallow = score_reference({**NEW, "depth": 20.0, "mjd": 60000.0}, NEW)
    assert deep["depth"] == pytest.approx(1 / np.sqrt(1 + 10**-1.6))
    assert shallow["depth"] == pytest.approx(1 / np.sqrt(1 + 10**0.8))
    blurry = score_reference({**NEW, "fwhm": 2.4, "mjd": 60000.0}, NEW)
    assert blurry["seeing"] == pytest.approx(0.5**0.5)
    same_night = score_reference({**NEW, "mjd": 60100.01}, NEW)
    assert same_night["baseline"] < 0.05
    other = score_reference({**NEW, "filter": "g"}, NEW)
    assert not other["eligible"] and other["score"] == 0 and "filter" in other["reason"]
    half = score_reference({**NEW, "footprint": HALF, "mjd": 60000.0}, NEW, min_overlap=0.6)
    assert not half["eligible"]
    bare = score_reference({}, NEW)
    assert bare["eligible"] and set(bare["missing"].split(",")) == {
        "overlap",
        "depth",
        "fwhm",
        "mjd",
    }


def test_select_single_coadd_and_none() -> None:
    good = {**NEW, "depth": 23.0, "fwhm": 1.0, "mjd": 60000.0}
    mediocre = {**NEW, "depth": 21.0, "fwhm": 1.5, "mjd": 60000.0}
    wrong = {**NEW, "filter": "i", "depth": 25.0, "mjd": 60000.0}
    choice = select_reference([mediocre, wrong, good], NEW)
    assert choice.action == "single" and choice.indices == (2,)
    assert choice.table["index"][0] == 2
    coadd = select_reference([mediocre, dict(mediocre), dict(mediocre)], NEW)
    assert coadd.action == "coadd" and sorted(coadd.indices) == [0, 1, 2]
    with pytest.raises(NoReferenceError):
        select_reference([wrong], NEW)


# --------------------------------------------------------------------------- coadds


def _noise_images(n: int, sigma: float, shape: tuple[int, int], shifts: list[int]) -> tuple:
    from astrid.science.simulate_model import make_wcs

    rng = np.random.default_rng(11)
    images, headers = [], []
    for k in range(n):
        sky = 100.0 + 10.0 * k  # different skies: removed before averaging
        images.append(sky + rng.normal(0.0, sigma, shape))
        # integer-pixel pointing shifts: the bicubic resampling is then exact, the noise white
        h = make_wcs(shape, offset=(float(shifts[k]), 0.0)).to_header()
        h["MAGZP"] = 25.0
        headers.append(h)
    return images, headers


def test_coadd_noise_falls_as_one_over_sqrt_n() -> None:
    """Inverse-variance coadd of N equal-depth images: noise ≈ single / √N within 10 %,
    its variance map agrees, and the sky level of the first image is kept."""
    from astrid.science.reference import coadd_reference
    from astrid.science.stats import robust_sigma

    n, sigma, shape = 4, 5.0, (160, 160)
    images, headers = _noise_images(n, sigma, shape, [0, 3, -2, 5])
    variances = [np.full(shape, sigma**2) for _ in range(n)]
    co = coadd_reference(images, headers, variances)
    assert co.used == (0, 1, 2, 3)
    inner = co.data[20:-20, 20:-20]  # every image covers this part
    measured = robust_sigma(inner)
    assert measured == pytest.approx(sigma / np.sqrt(n), rel=0.10)
    assert np.median(co.variance[20:-20, 20:-20]) == pytest.approx(sigma**2 / n, rel=0.02)
    assert np.median(inner) == pytest.approx(100.0, abs=0.5)
    assert co.header["NCOMBINE"] == n
    # MAGZP 2.5 mag higher: 10x the ADU per flux, so the image is scaled by 0.1 to the first
    # one's zero point and its noise with it: weight 1 / (σ² · 0.1²), 100 times the others'
    headers[1]["MAGZP"] = 27.5
    scaled = coadd_reference(images, headers, variances)
    assert scaled.weights[1] == pytest.approx(100 / (3 + 100), rel=1e-3)
    assert any("scaled by 0.1" in note for note in scaled.notes)


def test_coadd_inputs_that_do_not_overlap_are_named() -> None:
    from astrid.science.reference import CoaddOverlapError, coadd_reference
    from astrid.science.simulate_model import make_wcs

    shape = (64, 64)
    images, headers = _noise_images(3, 5.0, shape, [0, 1, 2])
    far = make_wcs(shape, ra=151.0).to_header()  # one degree away: no common pixel
    mostly_off = make_wcs(shape, offset=(48.0, 0.0)).to_header()  # covers 25 % only
    with pytest.raises(CoaddOverlapError, match="only 1 of the 3 images"):
        coadd_reference(images, [headers[0], far, mostly_off])
    co = coadd_reference(images, [headers[0], headers[1], far])
    assert co.used == (0, 1)
    assert any(note.startswith("image 2 left out") for note in co.notes)
