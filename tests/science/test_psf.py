"""PSF estimation from the images' own stars, and its documented fallback."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.psf import PSFError, gaussian_psf, recentre_psf
from astrid.science.psf_estimate import estimate_psf
from astrid.science.psf_stars import background_and_noise, find_stars
from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF


def test_gaussian_psf_has_unit_sum_and_the_asked_fwhm() -> None:
    psf = gaussian_psf(4.0, 41)
    assert psf.sum() == pytest.approx(1.0, abs=1e-6)
    profile = psf[20]
    half = profile.max() / 2
    above = np.flatnonzero(profile >= half)
    # pixel-integrated Gaussian: width at half maximum within half a pixel of 4
    assert above.size in (3, 4, 5)
    with pytest.raises(PSFError):
        gaussian_psf(-1.0)


@pytest.mark.parametrize("fwhm,beta", [(2.5, None), (4.0, None), (3.5, 3.0)])
def test_estimated_psf_matches_the_simulated_one(fwhm: float, beta: float | None) -> None:
    img = simulate_star_field((512, 512), 600, seed=4, psf=AnalyticPSF(fwhm=fwhm, beta=beta),
                              flux_range=(2000, 2e5))  # fmt: skip
    data = img.data - img.sky_level
    model = estimate_psf(data, img.noise_sigma, img.mask, saturation=60000 - img.sky_level)
    assert not model.fallback
    assert model.n_stars >= 20
    true = img.psf.kernel(size=model.size)
    assert np.abs(model.array - true).max() < 0.03 * true.max()
    if beta is None:
        assert model.fwhm == pytest.approx(fwhm, rel=0.1)


def test_too_few_stars_falls_back_to_a_gaussian_and_says_so() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (128, 128)).astype(np.float32)
    model = estimate_psf(data, 1.0, default_fwhm=3.3)
    assert model.fallback
    assert "usable star" in model.reason
    assert model.fwhm == pytest.approx(3.3)
    assert model.array.sum() == pytest.approx(1.0, abs=1e-5)


def test_background_noise_and_star_list() -> None:
    img = simulate_star_field((256, 256), 150, seed=2, flux_range=(3000, 1e5))
    back, noise = background_and_noise(img.data, img.mask)
    assert float(np.median(back)) == pytest.approx(img.sky_level, rel=0.01)
    assert noise == pytest.approx(img.noise_sigma, rel=0.05)
    stars = find_stars(img.data - back, noise, img.mask)
    assert len(stars) >= 0.8 * len(img.stars)


def test_recentre_moves_the_centroid_to_the_central_pixel() -> None:
    from scipy import ndimage

    off = ndimage.shift(gaussian_psf(3.0, 25).astype(float), (0.4, -0.3), order=3)
    psf = recentre_psf(off)
    yy, xx = np.mgrid[-12:13, -12:13]
    assert abs((psf * xx).sum()) < 0.02 and abs((psf * yy).sum()) < 0.02
