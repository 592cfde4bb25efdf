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
