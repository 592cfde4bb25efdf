"""The simulation family: its effects against their definitions, and detection against truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from astrid.science.difference import detect_pair
from astrid.science.simfamily import (
    score_recovery,
    simulate_case,
    simulation_family,
)
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_effects import bleed_columns, galaxy_stamp
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure

CASES = {c.name: c for c in simulation_family()}


def test_bleed_conserves_charge_along_the_column() -> None:
    img = np.full((60, 5), 100.0)
    img[28:31, 2] = [50_000.0, 90_000.0, 50_000.0]  # 70 000 ADU above a 40 000 well
    total = img.sum()
    bled = bleed_columns(img, 40_000.0)
    assert img.sum() == pytest.approx(total, rel=1e-12)
    assert img.max() == pytest.approx(40_000.0)
    # half the excess (35 000 ADU) fills 35 000 / 39 900 of a pixel on each side
    assert bled[:, 2].sum() == 3 + 2 and not bled[:, [0, 1, 3, 4]].any()
    assert img[27, 2] == pytest.approx(35_100.0) and img[31, 2] == pytest.approx(35_100.0)
    # a long trail: 200 000 ADU of excess runs ~2.5 wells each way
    img2 = np.full((60, 1), 0.0)
    img2[30, 0] = 240_000.0
    bled2 = bleed_columns(img2, 40_000.0)
    assert bled2.sum() == 1 + 3 + 3 and img2.sum() == pytest.approx(240_000.0)


def test_galaxy_stamp_is_unit_sum_centred_with_its_half_light_radius() -> None:
    tiny = AnalyticPSF(fwhm=0.5).kernel(5)
    gal, x0, y0 = galaxy_stamp(60.3, 40.7, 4.0, 0.0, 0.0, tiny)
    assert gal.sum() == pytest.approx(1.0, rel=1e-9)
    yy, xx = np.indices(gal.shape)
    assert (gal * (xx + x0)).sum() == pytest.approx(60.3, abs=0.01)
    assert (gal * (yy + y0)).sum() == pytest.approx(40.7, abs=0.01)
    r = np.hypot(xx + x0 - 60.3, yy + y0 - 40.7)
    inside = gal[r <= 4.0].sum()
    assert inside == pytest.approx(0.5, abs=0.05)  # half the light inside r_eff (Sérsic n=1)
    # ellipticity 0.5 at 90 degrees: the light spreads along y, not x
    el, *_ = galaxy_stamp(60.0, 40.0, 4.0, 0.5, 90.0, tiny)
    yy, xx = np.indices(el.shape) - el.shape[0] // 2
    assert (el * yy**2).sum() > 3.0 * (el * xx**2).sum()


def test_transients_sit_on_their_hosts() -> None:
    p = simulate_pair(
        (200, 200),
        150,
        seed=4,
        n_transients=2,
        n_galaxies=10,
        n_host_transients=6,
        n_star_transients=6,
        star_offset_range=(1.0, 2.0),
    )
    tr = p.truth[p.truth["kind"] == "transient"]
    assert sorted(set(tr["host"])) == ["", "galaxy", "star"]
    from astropy.wcs.utils import proj_plane_pixel_scales

    scale = proj_plane_pixel_scales(p.ref.wcs)[0] * 3600.0  # arcsec / px
    for row in tr[tr["host"] == "galaxy"]:
        sep = (
            np.hypot(
                (p.galaxies["ra"] - row["ra"]) * np.cos(np.radians(row["dec"])),
                p.galaxies["dec"] - row["dec"],
            )
            * 3600.0
            / scale
        )
        assert (sep <= 1.5 * p.galaxies["r_eff"] + 1e-6).any()
    stars = p.ref.stars
    for row in tr[tr["host"] == "star"]:
        d = np.hypot(stars["x"] - row["x_ref"], stars["y"] - row["y_ref"])
        assert 1.0 - 1e-6 <= d.min() <= 2.0 + 1e-6
    # the galaxies add their flux to both epochs (same catalogue, flux_scale 1)
    assert p.new.model.sum() == pytest.approx(p.ref.model.sum(), rel=0.01)


def test_family_cases_render_what_they_say() -> None:
    assert len(CASES) == 8
    sat = simulate_case(CASES["saturation_defects"], 256, seed=1, flux_range=(1e4, 2e6))
    assert sat.new.cosmic_ray_mask.any() and sat.ref.cosmic_ray_mask.any()
    cols = sat.new.mask.all(axis=0)
    assert cols.sum() == 2  # two dead columns
    trails = sat.new.mask & ~cols[None, :]
    assert trails.any()
    # a bleed trail is taller than it is wide
    ys, xs = np.nonzero(trails)
    assert np.ptp(ys) > np.ptp(xs) or trails.sum(axis=0).max() >= 5
    hosts = simulate_case(CASES["galaxy_hosts"], 256, seed=1)
    assert len(hosts.galaxies) == round(200 * (256 / 1024) ** 2)
    assert (hosts.truth["host"] == "galaxy").sum() == round(33 * (256 / 1024) ** 2)
    ell = CASES["moffat_elliptical"]
    assert ell.new.psf.angle != ell.ref.psf.angle and ell.new.psf.beta != ell.ref.psf.beta


def test_score_recovery_counts_by_hand() -> None:
    p = simulate_pair((128, 128), 30, seed=2, n_transients=3, transient_fluxes=[3e3, 3e3, 3e3])
    tr = p.truth[p.truth["kind"] == "transient"]
    cand = Table(
        {
            "x": [tr["x_ref"][0] + 0.5, tr["x_ref"][1], 5.0, 120.0],
            "y": [tr["y_ref"][0], tr["y_ref"][1] - 1.0, 5.0, 3.0],
            "snr": [0.5 * tr["ideal_snr"][0], tr["ideal_snr"][1], 9.0, 9.0],
            "sign": [1, 1, 1, -1],
            "score": [0.9, 0.9, 0.9, 0.2],
        }
    )
    s = score_recovery(cand, p, 128 * 128)
    assert s.n_strong == 3
    assert s.completeness == pytest.approx(2 / 3)
    assert s.snr_ratio == pytest.approx(0.75)
    assert s.n_false == 1  # the fourth candidate has a low score
    assert s.false_per_4mpix == pytest.approx(2048**2 / 128**2)
    assert s.precision == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", ["gaussian_seeing", "moffat_elliptical"])
def test_detect_recovers_the_family_truth(name: str) -> None:
    """ZOGY through detect_pair on 384² pairs: completeness and S/N against the ideal."""
    pair = simulate_case(CASES[name], 384, seed=3, transient_flux_range=(600.0, 3000.0))
    tab = detect_pair(write_simulated(pair.new), write_simulated(pair.ref), "zogy")
    s = score_recovery(tab, pair, float(tab.meta["area_pix"]))
    assert s.n_strong >= 5
    assert s.completeness >= 0.9
    assert 0.75 <= s.snr_ratio <= 1.1
    assert s.n_false <= 3


def test_exposure_bleed_off_by_default_clips_only() -> None:
    e = Exposure(psf=AnalyticPSF(fwhm=2.0), saturation=5000.0)
    p = simulate_pair((96, 96), 40, seed=5, new=e, ref=e, n_transients=0, flux_range=(1e4, 1e6))
    sat = p.new.data >= 5000.0
    assert np.array_equal(p.new.mask, sat)
