"""Per-image detection limits against the Gaussian-noise theory and on a real ZOGY difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from astrid.science.limits import DetectionLimitsError, detection_limits
from astrid.science.psf import gaussian_psf


def _unit_noise_map(shape: tuple[int, int], sigma: float, seed: int) -> np.ndarray:
    """Unit-variance noise correlated like a PSF matched filter's output."""
    white = np.random.default_rng(seed).normal(size=shape)
    sm = ndimage.gaussian_filter(white, sigma)
    return (sm / sm.std()).astype(np.float32)


def test_limits_match_gaussian_theory() -> None:
    shape = (700, 700)
    score = _unit_noise_map(shape, 1.5, seed=1)
    sigma_f = 40.0  # flux units
    ferr = np.full(shape, sigma_f)
    psf = gaussian_psf(3.0, 15)
    zp = 25.0
    # minarea=1: a fake is found when its peak pixel exceeds the threshold, P = Φ(S/N - 5)
    lim = detection_limits(score, ferr, psf, zero_point=zp, minarea=1, n_per_bin=200, seed=2)
    m_theory_50 = zp - 2.5 * math.log10(5.0 * sigma_f)
    m_theory_90 = zp - 2.5 * math.log10((5.0 + 1.2816) * sigma_f)
    assert lim.m50 == pytest.approx(m_theory_50, abs=0.1)
    assert lim.m90 == pytest.approx(m_theory_90, abs=0.1)
    assert lim.completeness[0] >= 0.98 and lim.completeness[-1] <= 0.05
    assert lim.n_injected.sum() == 200 * len(lim.mag)
    # twice the noise: limits 0.75 mag brighter
    lim2 = detection_limits(score, 2 * ferr, psf, zero_point=zp, minarea=1, n_per_bin=200, seed=2)
    assert lim.m50 - lim2.m50 == pytest.approx(2.5 * math.log10(2.0), abs=0.1)
    # the candidates' minarea=3 asks for three pixels above 5 sigma: the next pixels of the
    # response (0.86 of the peak one pixel away) cap the cost at 2.5 log10(1 / 0.86) mag
    lim3 = detection_limits(score, ferr, psf, zero_point=zp, minarea=3, n_per_bin=200, seed=2)
    assert 0.0 < lim.m50 - lim3.m50 < 2.5 * math.log10(1 / 0.857) + 0.03


def test_limits_avoid_sources_and_masks() -> None:
    shape = (200, 200)
    score = _unit_noise_map(shape, 1.5, seed=3)
    mask = np.zeros(shape, bool)
    mask[:, :150] = True  # only a 50-px strip is usable
    lim = detection_limits(score, np.full(shape, 10.0), gaussian_psf(3.0, 15), mask,
                           n_per_bin=20, avoid_xy=np.array([[175.0, 100.0]]))  # fmt: skip
    assert np.isfinite(lim.m50)
    with pytest.raises(DetectionLimitsError):
        detection_limits(score, np.full(shape, 10.0), gaussian_psf(3.0, 15), np.ones(shape, bool))
    with pytest.raises(DetectionLimitsError):
        detection_limits(score, np.full((10, 10), 1.0), gaussian_psf(3.0, 15))


def test_limits_on_a_simulated_zogy_difference_agree_with_injection() -> None:
    """On a real ZOGY difference the 50% limit matches where injected transients are found."""
    from astrid.science.difference import subtract_pair
    from astrid.science.extract import extract_candidates
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_image import write_simulated

    p = simulate_pair((384, 384), 150, seed=7, n_transients=0)
    res, _ = subtract_pair(write_simulated(p.new), write_simulated(p.ref), "zogy")
    cands = extract_candidates(res, 5.0)
    lim = detection_limits(res.score, res.flux_err, res.psf, res.mask, zero_point=25.0,
                           avoid_xy=np.c_[cands["x"], cands["y"]], n_per_bin=60)  # fmt: skip
    # median flux error → the S/N = 5 magnitude; with minarea=3 the measured m50 sits up to
    # 0.17 mag brighter (see above)
    good = ~res.mask & np.isfinite(res.flux_err)
    m5 = 25.0 - 2.5 * math.log10(5.0 * float(np.median(res.flux_err[good])))
    assert -0.25 < lim.m50 - m5 < 0.05
    assert lim.m90 < lim.m50


def test_float32_flux_errors_give_the_float64_result() -> None:
    """A float32 flux-error map (ZOGY's) is used as it is: the limits are those of its
    float64 copy (the earlier computation), bit for bit, here and in the pipeline stage."""
    from astrid.pipeline.stages.limits import measure_limits
    from astrid.science.difference import subtract_pair
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_image import write_simulated

    p = simulate_pair((384, 384), 150, seed=7, n_transients=0)
    res, _ = subtract_pair(write_simulated(p.new), write_simulated(p.ref), "zogy")
    assert res.flux_err.dtype == np.float32
    ferr64 = res.flux_err.astype(np.float64)
    for kwargs in ({"mag": None}, {"mag": np.array([19.0, 20.0, 21.0])}):
        got = detection_limits(res.score, res.flux_err, res.psf, res.mask, zero_point=25.0,
                               n_per_bin=30, **kwargs)  # fmt: skip
        want = detection_limits(res.score, ferr64, res.psf, res.mask, zero_point=25.0,
                                n_per_bin=30, **kwargs)  # fmt: skip
        np.testing.assert_array_equal(got.mag, want.mag)
        np.testing.assert_array_equal(got.completeness, want.completeness)
        assert (got.m50, got.m90) == (want.m50, want.m90) or np.isnan(want.m50)
    xy = np.array([[100.0, 100.0]])
    stage32 = measure_limits(res, xy, 25.0, 5.0, 66)
    res.flux_err = ferr64
    assert measure_limits(res, xy, 25.0, 5.0, 66) == stage32
    assert "error" not in stage32 and stage32["n_injected"] == 66


def test_stamps_looked_up_or_summed_agree() -> None:
    """The first draw's direct look-up of each stamp and the integral image (the earlier
    test, kept for further draws) find the same free positions, edges and corners too."""
    from astrid.science.limits import _box_free, _box_sums, _integral, _sample_free

    rng = np.random.default_rng(4)
    bad = rng.random((300, 260)) < 0.002
    bad[:, 100:103] = True
    half = 7
    ys = np.concatenate([rng.integers(half, 300 - half, 3000), [half, 300 - half - 1]])
    xs = np.concatenate([rng.integers(half, 260 - half, 3000), [half, 260 - half - 1]])
    want = _box_sums(_integral(bad), ys, xs, half) == 0
    got = _box_free(bad, ys, xs, half)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(got, want)
    # a draw that needs more than one pass (few free places) mixes both and stays valid
    crowded = rng.random((300, 260)) < 0.01
    pick = _sample_free(crowded, half, None, 0.0, 300, np.random.default_rng(1))
    assert pick.size > 0 and np.unique(pick).size == pick.size
    py, px = np.divmod(pick, 260)
    assert (_box_sums(_integral(crowded), py, px, half) == 0).all()
