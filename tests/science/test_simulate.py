"""Tests of the sky simulator against the numbers it promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrid.science.fitsio import read_image
from astrid.science.simulate import ideal_snr, simulate_pair
from astrid.science.simulate_image import simulate_star_field, write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure, SimulationError, make_wcs


def _measured_fwhm(stamp: np.ndarray) -> float:
    """FWHM from the second moments of a (well-sampled, Gaussian) stamp, pixel term removed."""
    yy, xx = np.indices(stamp.shape)
    tot = stamp.sum()
    cx, cy = (stamp * xx).sum() / tot, (stamp * yy).sum() / tot
    var = ((stamp * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / tot) / 2.0 - 1.0 / 12.0
    return 2.3548 * math.sqrt(var)


@pytest.mark.parametrize("fwhm", [2.0, 3.0, 5.5])
def test_gaussian_psf_has_requested_fwhm_and_unit_sum(fwhm: float) -> None:
    k = AnalyticPSF(fwhm=fwhm).kernel(size=41)
    assert k.sum() == pytest.approx(1.0, abs=1e-9)
    assert _measured_fwhm(k) == pytest.approx(fwhm, rel=0.01)


def test_moffat_half_maximum_at_half_fwhm() -> None:
    psf = AnalyticPSF(fwhm=4.0, beta=2.5)
    prof = psf._profile(np.array([0.0, 2.0]), np.array([0.0, 0.0]), 4.0)
    assert prof[1] / prof[0] == pytest.approx(0.5, rel=1e-9)


def test_elliptical_psf_axis_ratio_and_angle() -> None:
    psf = AnalyticPSF(fwhm=4.0, ellipticity=0.3, angle=90.0)
    k = psf.kernel(size=41)
    yy, xx = np.indices(k.shape) - 20
    var_x = (k * xx**2).sum() - 1 / 12
    var_y = (k * yy**2).sum() - 1 / 12
    # major axis along y for angle 90; b/a = 0.7
    assert math.sqrt(var_x / var_y) == pytest.approx(0.7, rel=0.02)


def test_psf_gradient_changes_fwhm_across_field() -> None:
    psf = AnalyticPSF(fwhm=3.0, fwhm_gradient=(0.2, 0.0))
    assert psf.fwhm_at(0, 50, (101, 101)) == pytest.approx(2.4)
    assert psf.fwhm_at(100, 50, (101, 101)) == pytest.approx(3.6)


def test_star_field_noise_sky_and_header() -> None:
    im = simulate_star_field((200, 220), n_stars=0, seed=3, sky=900.0, gain=1.5, read_noise=6.0)
    expected_sigma = math.sqrt(900 + 36) / 1.5
    assert im.data.shape == (200, 220) and im.data.dtype == np.float32
    assert float(np.mean(im.data)) == pytest.approx(600.0, abs=0.5)
    assert float(np.std(im.data)) == pytest.approx(expected_sigma, rel=0.02)
    assert im.noise_sigma == pytest.approx(expected_sigma)
    assert np.allclose(im.variance, expected_sigma**2, rtol=1e-5)
    for key in ("GAIN", "RDNOISE", "SATURATE", "EXPTIME", "MJD-OBS", "FILTER", "MAGZERO"):
        assert key in im.header


def test_star_fluxes_recovered_by_aperture_sums() -> None:
    im = simulate_star_field(
        (128, 128), n_stars=8, seed=5, flux_range=(2e4, 5e4), sky=10.0, read_noise=1.0
    )
    sub = im.data - im.sky_level
    for row in im.stars:
        x, y = round(row["x"]), round(row["y"])
        if not (10 <= x < 118 and 10 <= y < 118):
            continue
        total = sub[y - 8 : y + 9, x - 8 : x + 9].sum()
        assert total == pytest.approx(row["flux"], rel=0.05)


def test_power_law_slope_of_fluxes() -> None:
    im = simulate_star_field(
        (512, 512), n_stars=4000, seed=9, flux_range=(100, 1e5), flux_slope=1.5
    )
    f = np.asarray(im.stars["flux"])
    a = 1.5
    lo, hi = 100.0**-a, 1e5**-a
    for q in (0.25, 0.5, 0.9):
        f_q = (lo - q * (lo - hi)) ** (-1 / a)  # quantile of the truncated power law
        assert np.mean(f < f_q) == pytest.approx(q, abs=0.03)
    assert f.min() >= 100 and f.max() <= 1e5


def test_wcs_pixel_scale_rotation_and_stars_positions() -> None:
    w = make_wcs((100, 100), ra=10.0, dec=-30.0, pixel_scale=0.27, rotation=10.0)
    scales = w.proj_plane_pixel_scales()
    assert scales[0].to_value("arcsec") == pytest.approx(0.27)
    x0, y0 = w.world_to_pixel_values(10.0, -30.0)
    x1, y1 = w.world_to_pixel_values(10.0, -29.999)
    assert math.degrees(math.atan2(y1 - y0, x1 - x0)) == pytest.approx(100.0, abs=1e-6)
    im = simulate_star_field((64, 64), n_stars=20, seed=1, ra=10.0, dec=-30.0)
    x, y = im.wcs.world_to_pixel_values(im.stars["ra"], im.stars["dec"])
    assert np.allclose(x, im.stars["x"]) and np.allclose(y, im.stars["y"])


def test_saturation_bad_columns_and_cosmic_rays() -> None:
    im = simulate_star_field(
        (128, 128),
        n_stars=40,
        seed=2,
        flux_range=(1e5, 1e6),
        saturation=20000.0,
        bad_columns=[5, 77],
        cosmic_rays=10,
    )
    assert im.data.max() <= 20000.0
    assert im.mask[:, 5].all() and im.mask[:, 77].all()
    assert (im.data[:, 77] == 0).all()
    sat = im.data >= 20000.0
    assert sat.any() and im.mask[sat].all()
    assert 10 <= im.cosmic_ray_mask.sum() <= 60
    assert im.stars["saturated"].any()


def test_same_seed_same_image() -> None:
    a = simulate_star_field((64, 64), n_stars=10, seed=42)
    b = simulate_star_field((64, 64), n_stars=10, seed=42)
    assert np.array_equal(a.data, b.data)


def test_bad_parameters_raise_named_errors() -> None:
    with pytest.raises(SimulationError):
        AnalyticPSF(fwhm=-1)
    with pytest.raises(SimulationError):
        simulate_star_field((8, 8))
    with pytest.raises(SimulationError):
        simulate_star_field((64, 64), flux_range=(10, 1))
    with pytest.raises(SimulationError):
        Exposure(gain=0)


def test_ideal_snr_limits() -> None:
    p = AnalyticPSF(fwhm=3.0).kernel(size=31)
    single = 1000.0 * math.sqrt((p**2).sum()) / 10.0
    assert ideal_snr(1000.0, p, p, 10.0, 0.0) == pytest.approx(single, rel=1e-9)
    assert ideal_snr(1000.0, p, p, 10.0, 10.0) == pytest.approx(single / math.sqrt(2), rel=1e-9)
    # a reference twice as bright (F_r = 2 F_n) with the same noise counts half as much
    assert ideal_snr(1000.0, p, p, 10.0, 10.0, flux_ratio=0.5) == pytest.approx(
        single / math.sqrt(1.25), rel=1e-9
    )


def test_ideal_snr_matches_optimal_statistic_empirically() -> None:
    """Monte-Carlo: the scatter of the ZOGY flux estimator equals flux/ideal_snr."""
    rng = np.random.default_rng(0)
    n = 33
    pn = AnalyticPSF(fwhm=4.0).kernel(size=n)
    pr = AnalyticPSF(fwhm=2.2, ellipticity=0.2).kernel(size=n)
    sn, sr, flux = 7.0, 4.0, 500.0
    pnf = np.fft.fft2(np.fft.ifftshift(pn))
    prf = np.fft.fft2(np.fft.ifftshift(pr))
    noise = sn**2 * np.abs(prf) ** 2 + sr**2 * np.abs(pnf) ** 2
    signal = pnf * prf
    estimates = []
    for _ in range(400):
        new = flux * np.fft.ifftshift(pn) + rng.normal(0, sn, (n, n))
        ref = rng.normal(0, sr, (n, n))
        d = prf * np.fft.fft2(new) - pnf * np.fft.fft2(ref)
        est = np.sum(np.conj(signal) * d / noise).real / np.sum(np.abs(signal) ** 2 / noise)
        estimates.append(est)
    measured = flux / np.std(estimates)
    assert measured == pytest.approx(ideal_snr(flux, pn, pr, sn, sr), rel=0.1)
    assert np.mean(estimates) == pytest.approx(flux, rel=0.05)


def test_pair_truth_positions_and_fluxes() -> None:
    new = Exposure(
        psf=AnalyticPSF(fwhm=3.2),
        offset=(4.3, -2.6),
        rotation=0.4,
        sky=200.0,
        read_noise=1.0,
        flux_scale=1.2,
        mjd=60040.0,
    )
    ref = Exposure(psf=AnalyticPSF(fwhm=2.4), sky=200.0, read_noise=1.0, mjd=60000.0)
    pair = simulate_pair(
        (160, 160),
        n_stars=30,
        seed=7,
        new=new,
        ref=ref,
        n_transients=4,
        transient_flux_range=(2e4, 3e4),
        n_variables=2,
        n_moving=1,
        variable_fraction=(0.8, 1.0),
        flux_range=(1e3, 5e3),
    )
    t = pair.truth
    assert list(t["kind"]).count("transient") == 4
    assert list(t["kind"]).count("variable") == 2
    assert list(t["kind"]).count("moving") == 1
    for row in t:
        xn, yn = pair.new.wcs.world_to_pixel_values(row["ra"], row["dec"])
        assert (xn, yn) == pytest.approx((row["x_new"], row["y_new"]), abs=1e-6)
    diff_new = pair.new.model - pair.new.sky_level
    for row in t[t["kind"] == "transient"]:
        x, y = round(row["x_new"]), round(row["y_new"])
        # the transient is in the new model, absent from the reference model
        assert diff_new[y - 7 : y + 8, x - 7 : x + 8].sum() >= 0.97 * row["flux"]
        xr, yr = round(row["x_ref"]), round(row["y_ref"])
        ref_sub = pair.ref.model - pair.ref.sky_level
        assert ref_sub[yr - 7 : yr + 8, xr - 7 : xr + 8].sum() < 0.5 * row["flux"]
    var = t[t["kind"] == "variable"]
    assert np.allclose(var["delta_flux"], var["flux"] - var["flux_ref"] * 1.2)
    assert (t["ideal_snr"][t["kind"] != "cosmic_ray"] > 0).all()
    # the pointing offset moves stars by (4.3, -2.6) px (+ a 0.4 deg rotation about the centre)
    centre = t[np.argmin(np.hypot(t["x_ref"] - 79.5, t["y_ref"] - 79.5))]
    assert centre["x_new"] - centre["x_ref"] == pytest.approx(4.3, abs=0.6)
    assert centre["y_new"] - centre["y_ref"] == pytest.approx(-2.6, abs=0.6)


def test_pair_transient_snr_follows_flux() -> None:
    pair = simulate_pair(
        (128, 128),
        n_stars=5,
        seed=1,
        transient_positions=[(40.0, 40.0), (90.0, 90.0)],
        transient_fluxes=[1000.0, 2000.0],
    )
    snr = np.asarray(pair.truth["ideal_snr"][:2])
    assert snr[1] / snr[0] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(SimulationError):
        simulate_pair((64, 64), transient_positions=[(30.0, 30.0)], transient_fluxes=[1.0, 2.0])


def test_pair_cosmic_rays_in_truth() -> None:
    pair = simulate_pair(
        (96, 96),
        n_stars=5,
        seed=4,
        n_transients=0,
        new=Exposure(cosmic_rays=3),
        ref=Exposure(cosmic_rays=2),
    )
    cr = pair.truth[pair.truth["kind"] == "cosmic_ray"]
    assert len(cr) == 5
    assert sorted(cr["epoch"]) == ["new", "new", "new", "ref", "ref"]


def test_write_simulated_roundtrip(tmp_path) -> None:
    im = simulate_star_field((64, 80), n_stars=10, seed=0, bad_columns=1)
    data = write_simulated(im, tmp_path / "sim.fits")
    back = read_image(tmp_path / "sim.fits")
    assert np.array_equal(back.data, im.data)
    assert back.header["GAIN"] == im.gain
    assert back.wcs.wcs.crval[0] == pytest.approx(150.0)
    mask = read_image(data, hdu="MASK").data
    assert np.array_equal(mask.astype(bool), im.mask)


def test_same_catalog_new_epoch() -> None:
    a = simulate_star_field((64, 64), n_stars=15, seed=1, flux_range=(1e3, 1e4))
    b = simulate_star_field((64, 64), seed=2, offset=(1.5, 0.0), catalog=a.stars)
    assert len(b.stars) >= len(a.stars) - 3
    common = np.isin(np.asarray(b.stars["ra"]), np.asarray(a.stars["ra"]))
    assert common.all()
    ia = np.searchsorted(
        np.asarray(a.stars["ra"]),
        np.asarray(b.stars["ra"]),
        sorter=np.argsort(np.asarray(a.stars["ra"])),
    )
    order = np.argsort(np.asarray(a.stars["ra"]))[ia]
    assert np.allclose(b.stars["x"] - a.stars["x"][order], 1.5, atol=1e-6)
