"""The point-source test on the difference: broad light against the PSF."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.extract import EXTENDED_SIGMA, extract_candidates
from astrid.science.pointsource import broadened_template, extended_significance
from astrid.science.zogy import zogy


def _gaussian(size: int, fwhm: float) -> np.ndarray:
    h = size // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    g = np.exp(-(xx**2 + yy**2) / (2 * (fwhm / 2.3548) ** 2))
    return g / g.sum()


def _statistic(signal: np.ndarray, psf: np.ndarray, trials: int, seed: int) -> np.ndarray:
    """``t`` at the centre of ``signal`` + unit white noise, ``trials`` times."""
    broad, rho = broadened_template(psf)
    n = broad.shape[0]
    pad = (n - psf.shape[0]) // 2
    p = np.pad(psf, pad) / np.sqrt((psf**2).sum())
    s = np.pad(signal, (n - signal.shape[0]) // 2)
    noise = np.random.default_rng(seed).normal(size=(trials, n, n))
    d = s + noise
    z_p = (d * p).sum(axis=(1, 2))
    z_b = (d * broad).sum(axis=(1, 2))
    return extended_significance(z_p, z_b, rho, z_p)


@pytest.mark.parametrize("snr", [6.0, 20.0, 100.0])
def test_point_sources_give_a_unit_normal_statistic_at_any_flux(snr: float) -> None:
    psf = _gaussian(25, 4.0)
    amp = snr / np.sqrt((psf**2).sum())  # matched-filter S/N of the source
    t = _statistic(amp * psf, psf, 2000, seed=int(snr))
    assert np.mean(t) == pytest.approx(0.0, abs=0.1)
    assert np.std(t) == pytest.approx(1.0, abs=0.1)
    assert np.mean(t > EXTENDED_SIGMA) < 0.006  # one-sided 3 sigma: 0.00135 expected


def test_light_broader_than_the_psf_is_flagged() -> None:
    psf = _gaussian(25, 4.0)
    blob = _gaussian(25, 10.0)  # a smudge 2.5 times the PSF's width
    amp = 6.0 / float((blob * psf).sum() / np.sqrt((psf**2).sum()))  # 6 sigma through the PSF
    t = _statistic(amp * blob, psf, 500, seed=3)
    assert np.mean(t > EXTENDED_SIGMA) > 0.9


def test_template_is_unit_norm_and_correlation_below_one() -> None:
    broad, rho = broadened_template(_gaussian(25, 4.0))
    assert float((broad**2).sum()) == pytest.approx(1.0, rel=1e-9)
    # Gaussians of sigma s and sqrt(5) s: rho = 2 sqrt(5) / 6
    assert rho == pytest.approx(2 * np.sqrt(5) / 6, abs=0.01)
    with pytest.raises(ValueError, match="positive light"):
        broadened_template(np.zeros((5, 5)))


def test_extraction_halves_the_score_of_a_smudge_and_keeps_a_transient() -> None:
    rng = np.random.default_rng(11)
    size, fwhm, sky_sigma = 160, 4.0, 10.0
    psf = _gaussian(31, fwhm)
    ref = rng.normal(0.0, sky_sigma, (size, size))
    new = rng.normal(0.0, sky_sigma, (size, size))
    # a transient of S/N ~8 on S_corr (12 in the new image alone), and a smudge 2.5x the
    # PSF's width reaching S/N ~6-7 through the PSF's matched filter
    new[80 - 15 : 80 + 16, 50 - 15 : 50 + 16] += 12 * sky_sigma / np.sqrt((psf**2).sum()) * psf
    blob = _gaussian(41, 2.5 * fwhm)
    new[110 - 20 : 110 + 21, 100 - 20 : 100 + 21] += 30 * sky_sigma / np.sqrt((psf**2).sum()) * blob
    res = zogy(new, ref, new_psf=psf, ref_psf=psf)
    cand = extract_candidates(res, 5.0)
    d_point = np.hypot(cand["x"] - 50.0, cand["y"] - 80.0)
    d_blob = np.hypot(cand["x"] - 100.0, cand["y"] - 110.0)
    assert d_point.min() < 1.5 and d_blob.min() < 3
    i, j = int(np.argmin(d_point)), int(np.argmin(d_blob))
    assert cand["extended_sigma"][i] < EXTENDED_SIGMA
    assert cand["score"][i] > 0.5
    assert cand["extended_sigma"][j] > EXTENDED_SIGMA
    assert cand["score"][j] <= 0.5
    # without the test the smudge would pass as a point source (sharpness, shape, sign)
    assert cand["score"][j] * 2 > 0.5
