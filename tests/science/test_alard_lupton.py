"""Classic Alard-Lupton PSF matching with decorrelation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from astrid.science.alard_lupton import KernelFitError, classic, fit_kernel, gaussian_basis
from astrid.science.diffimage import prepare_image
from astrid.science.extract import extract_candidates
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_model import AnalyticPSF, Exposure


def test_basis_normalisation() -> None:
    basis = gaussian_basis(7, (1.0, 2.0, 4.0), (4, 3, 2))
    assert basis.shape == (15 + 10 + 6, 15, 15)
    assert basis[0].sum() == pytest.approx(1.0)
    assert np.allclose(basis[1:].sum(axis=(1, 2)), 0.0, atol=1e-10)


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    new = Exposure(psf=AnalyticPSF(fwhm=4.0), mjd=60030, flux_scale=1.2)
    ref = Exposure(psf=AnalyticPSF(fwhm=2.5))
    return simulate_pair((512, 512), 500, seed=21, new=new, ref=ref, n_transients=50,
                         transient_flux_range=(400, 4000), flux_range=(300, 2e5))  # fmt: skip


def test_fitted_kernel_is_the_matching_gaussian(pair) -> None:  # type: ignore[no-untyped-def]
    n = prepare_image(pair.new.data, pair.new.mask, gain=2.0)
    r = prepare_image(pair.ref.data, pair.ref.mask, gain=2.0)
    expected_sigma = np.sqrt(4.0**2 - 2.5**2) / 2.3548
    sol = fit_kernel(n, r, half_width=9, sigma_match=expected_sigma, spatial_order=1)
    k = sol.kernel_at(256, 256)
    assert k.sum() == pytest.approx(1.2, rel=0.03)  # the flux ratio
    h = k.shape[0] // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    kk = k / k.sum()
    sigma = np.sqrt((kk * (xx**2 + yy**2)).sum() / 2)
    assert sigma == pytest.approx(expected_sigma, rel=0.1)


def test_classic_recovers_transients_with_calibrated_noise(pair) -> None:  # type: ignore[no-untyped-def]
    res = classic(pair.new.data, pair.ref.data, new_mask=pair.new.mask, ref_mask=pair.ref.mask,
                  new_gain=2.0, ref_gain=2.0, renormalize=False)  # fmt: skip
    assert res.method == "classic"
    valid = ~res.mask
    s = res.score[valid]
    assert 1.4826 * np.median(np.abs(s - np.median(s))) == pytest.approx(1.0, abs=0.08)
    cand = extract_candidates(res, 5.0)
    tr = pair.truth[pair.truth["kind"] == "transient"]
    d, j = cKDTree(np.c_[cand["x"], cand["y"]]).query(np.c_[tr["x_ref"], tr["y_ref"]])
    strong = np.asarray(tr["ideal_snr"]) >= 7
    hit = d < 2
    assert hit[strong].mean() >= 0.95
    ratio = np.asarray(cand["snr"])[j[hit & strong]] / np.asarray(tr["ideal_snr"])[hit & strong]
    assert np.median(ratio) >= 0.85
    flux = np.asarray(cand["flux"])[j[hit & strong]] * res.flux_ratio
    assert np.median(flux / np.asarray(tr["delta_flux"])[hit & strong]) == pytest.approx(
        1, abs=0.07
    )


def test_classic_without_stars_is_a_named_error() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(100, 5, (128, 128)).astype(np.float32)
    b = rng.normal(100, 5, (128, 128)).astype(np.float32)
    with pytest.raises(KernelFitError):
        classic(a, b)
