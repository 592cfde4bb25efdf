"""Candidate extraction, features, the cosmic-ray test and the rule-based score."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from astrid.science.extract import (
    CANDIDATE_COLUMNS,
    extract_candidates,
    rule_score,
    zero_point_from_header,
    zero_point_from_stars,
)
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_model import AnalyticPSF, Exposure
from astrid.science.zogy import zogy


@pytest.fixture(scope="module")
def crpair():  # type: ignore[no-untyped-def]
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, cosmic_rays=40)
    ref = Exposure(psf=AnalyticPSF(fwhm=3.0))
    p = simulate_pair((512, 512), 300, seed=8, new=new, ref=ref, n_transients=40,
                      transient_flux_range=(500, 4000))  # fmt: skip
    res = zogy(p.new.data, p.ref.data, new_mask=p.new.mask, ref_mask=p.ref.mask)
    return p, res, extract_candidates(res, 5.0, wcs=p.ref.wcs, zero_point=p.ref.zeropoint)


def _match(cand, rows):  # type: ignore[no-untyped-def]
    x = np.where(np.isfinite(rows["x_ref"]), rows["x_ref"], rows["x_new"])
    y = np.where(np.isfinite(rows["y_ref"]), rows["y_ref"], rows["y_new"])
    d, j = cKDTree(np.c_[cand["x"], cand["y"]]).query(np.c_[x, y])
    return d < 2, j


def test_columns_positions_and_photometry(crpair) -> None:  # type: ignore[no-untyped-def]
    p, _res, cand = crpair
    assert tuple(cand.colnames) == CANDIDATE_COLUMNS
    tr = p.truth[p.truth["kind"] == "transient"]
    hit, j = _match(cand, tr)
    strong = hit & (np.asarray(tr["ideal_snr"]) > 15)
    dx = np.asarray(cand["x"])[j[strong]] - np.asarray(tr["x_ref"])[strong]
    dy = np.asarray(cand["y"])[j[strong]] - np.asarray(tr["y_ref"])[strong]
    assert np.median(np.hypot(dx, dy)) < 0.25  # sub-pixel peak positions
    # sky positions agree with the truth to a fraction of a pixel (0.5"/px)
    sep = np.hypot((np.asarray(cand["ra"])[j[strong]] - tr["ra"][strong]) * np.cos(np.radians(2)),
                   np.asarray(cand["dec"])[j[strong]] - tr["dec"][strong]) * 3600  # fmt: skip
    assert np.median(sep) < 0.15
    # magnitudes from the reference zero point match the truth
    dm = np.asarray(cand["mag"])[j[strong]] - np.asarray(tr["mag"])[strong]
    assert np.median(dm) == pytest.approx(0.0, abs=0.05)
    # PSF-like candidates: sharpness ~1, round, little opposite-sign flux
    assert np.median(np.asarray(cand["sharpness"])[j[strong]]) == pytest.approx(1.0, abs=0.2)
    assert np.median(np.asarray(cand["elongation"])[j[strong]]) < 1.3
    assert np.median(np.asarray(cand["neg_frac"])[j[strong]]) < 0.1
    assert np.all(np.asarray(cand["sign"])[j[strong]] == 1)


def test_cosmic_rays_are_told_apart_from_transients(crpair) -> None:  # type: ignore[no-untyped-def]
    p, _, cand = crpair
    t = p.truth
    tr_hit, tr_j = _match(cand, t[t["kind"] == "transient"])
    cr_hit, cr_j = _match(cand, t[(t["kind"] == "cosmic_ray") & (t["epoch"] == "new")])
    assert cr_hit.sum() >= 20
    assert np.mean(cand["flag_cr"][cr_j[cr_hit]]) >= 0.5
    assert np.mean(cand["flag_cr"][tr_j[tr_hit]]) <= 0.1
    assert np.median(cand["score"][cr_j[cr_hit]]) < 0.3
    assert np.median(cand["score"][tr_j[tr_hit]]) > 0.8


def test_fading_sources_are_negative_candidates() -> None:
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030)
    p = simulate_pair((256, 256), 100, seed=5, new=new, n_transients=6,
                      transient_flux_range=(3000, 5000))  # fmt: skip
    res = zogy(p.ref.data, p.new.data)  # swapped: the transients vanish
    cand = extract_candidates(res, 5.0)
    tr = p.truth[p.truth["kind"] == "transient"]
    hit, j = _match(cand, tr)
    assert hit.sum() >= 5
    assert np.all(np.asarray(cand["sign"])[j[hit]] == -1)
    assert np.all(np.asarray(cand["flux"])[j[hit]] < 0)
    no_neg = extract_candidates(res, 5.0, negative=False)
    assert not np.any(no_neg["sign"] == -1)


def test_zero_points() -> None:
    h = fits.Header()
    assert zero_point_from_header(h) is None
    h["MAGZERO"] = 27.5
    assert zero_point_from_header(h) == 27.5
    flux = np.array([1000.0, 2000.0, 500.0, 800.0, 1e4])
    mags = 25.0 - 2.5 * np.log10(flux)
    mags[-1] += 1.0  # an outlier
    assert zero_point_from_stars(flux, mags) == pytest.approx(25.0, abs=1e-6)
    assert zero_point_from_stars(flux[:2], mags[:2]) is None


def test_rule_score_penalises_each_rule() -> None:
    one = np.ones(1)
    f = np.zeros(1, bool)
    t = np.ones(1, bool)
    base = rule_score(20 * one, 5, one, one, 0 * one, f, f, f, f, f)
    assert base[0] == pytest.approx(1.0)
    assert rule_score(5 * one, 5, one, one, 0 * one, f, f, f, f, f)[0] == pytest.approx(0.7)
    assert rule_score(20 * one, 5, one, one, 0 * one, t, f, f, f, f)[0] == pytest.approx(0.1)
    assert rule_score(20 * one, 5, 3 * one, one, 0 * one, f, f, f, f, f)[0] == pytest.approx(0.3)
    assert rule_score(20 * one, 5, one, one, 0.5 * one, f, f, f, f, f)[0] == pytest.approx(0.3)
    assert rule_score(20 * one, 5, one, one, 0 * one, f, f, t, f, f)[0] == pytest.approx(0.2)
    assert rule_score(20 * one, 5, one, one, 0 * one, f, f, f, f, f, t)[0] == pytest.approx(0.5)
    assert rule_score(20 * one, 5, one, one, 0 * one, f, f, f, f, f, f)[0] == pytest.approx(1.0)


def test_sharpness_counts_only_when_the_centre_pixel_departs_significantly() -> None:
    one = np.ones(1)
    f = np.zeros(1, bool)
    odd = 0.3 * one  # centre pixel at 0.3 of the PSF's predicted peak
    # without the significance (old callers) the rule applies as before
    assert rule_score(20 * one, 5, one, odd, 0 * one, f, f, f, f, f)[0] == pytest.approx(0.5)
    # a 1.5 sigma departure (a faint source's noisy centre) does not count; 4 sigma does
    insignificant = rule_score(20 * one, 5, one, odd, 0 * one, f, f, f, f, f, f, -1.5 * one)
    significant = rule_score(20 * one, 5, one, odd, 0 * one, f, f, f, f, f, f, -4.0 * one)
    assert insignificant[0] == pytest.approx(1.0) and significant[0] == pytest.approx(0.5)
    hot = rule_score(20 * one, 5, one, 3 * one, 0 * one, f, f, f, f, f, f, 12.0 * one)
    assert hot[0] == pytest.approx(0.5)
