"""Candidate vetting: cosmic rays (one and several pixels) and point-symmetric star residuals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF
from astrid.science.vetting import cosmic_ray_hits, psf_contrast, symmetric_residual


def test_cosmic_ray_hits_flags_rays_of_any_length_and_spares_stars() -> None:
    field = simulate_star_field((256, 256), n_stars=60, seed=11, cosmic_rays=40,
                                flux_range=(2e3, 5e4), psf=AnalyticPSF(fwhm=3.0))  # fmt: skip
    img = field.data.astype(float)
    crm = field.cosmic_ray_mask
    # one candidate on the brightest pixel of each ray, one on each star
    from scipy import ndimage

    labels, n = ndimage.label(crm, structure=np.ones((3, 3)))
    ray_xy = []
    sizes = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        i = np.argmax(img[ys, xs])
        ray_xy.append((xs[i], ys[i]))
        sizes.append(len(xs))
    ray_xy_a = np.array(ray_xy, float)
    stars = field.stars[(field.stars["x"] > 15) & (field.stars["x"] < 240)
                        & (field.stars["y"] > 15) & (field.stars["y"] < 240)]  # fmt: skip
    d_cr = np.hypot(stars["x"][:, None] - ray_xy_a[:, 0], stars["y"][:, None] - ray_xy_a[:, 1])
    stars = stars[d_cr.min(axis=1) > 6]
    rays = cosmic_ray_hits(ray_xy_a[:, 0], ray_xy_a[:, 1], img, gain=field.gain)
    on_stars = cosmic_ray_hits(np.asarray(stars["x"]), np.asarray(stars["y"]), img,
                               gain=field.gain)  # fmt: skip
    multi = np.array(sizes) >= 3
    assert multi.sum() >= 5
    assert rays.mean() >= 0.9 and rays[multi].mean() >= 0.9
    assert on_stars.mean() <= 0.05
    assert cosmic_ray_hits(np.zeros(0), np.zeros(0), img).shape == (0,)


def _gaussian(fwhm: float, half: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    return np.exp(-0.5 * (xx**2 + yy**2) / (fwhm / 2.3548) ** 2)


def test_psf_contrast_falls_with_the_fwhm_as_for_la_cosmic_stars() -> None:
    # van Dokkum (2001): objlim ~5 protects the cores of undersampled stars only
    contrasts = [psf_contrast(_gaussian(f)) for f in (1.5, 2.0, 2.5, 3.0, 4.0, 6.0)]
    assert contrasts[0] > 4.5 and 1.5 < contrasts[1] < 3.0
    assert all(c < 1.1 for c in contrasts[3:])
    assert all(a > b for a, b in itertools.pairwise(contrasts))
    assert psf_contrast(3.0 * _gaussian(4.0)) == pytest.approx(psf_contrast(_gaussian(4.0)))


def test_compact_rays_on_a_well_sampled_image_are_found_with_its_psf() -> None:
    """2x2 to 2x3-pixel rays 9-15 sigma high on an image with 5 px stars: L.A.Cosmic's
    default contrast limit (5, for undersampled stars) lets some through; with the image's
    PSF the limit drops to 2 and finds nine in ten, while stars of the same peak stay."""
    rng = np.random.default_rng(4)
    psf = _gaussian(5.0)
    img = rng.normal(1000.0, 20.0, (300, 300))
    rays, stars = [], []
    for k in range(40):
        x, y = 20 + 26 * (k % 10) + rng.integers(0, 4), 20 + 60 * (k // 10) + rng.integers(0, 4)
        if k % 2:
            h, w = (2, 2) if k % 4 == 1 else (2, 3)
            img[y : y + h, x : x + w] += rng.uniform(180, 300)  # 9-15 sigma per pixel
            img[y - 1 : y + h + 1, x - 1 : x + w + 1] += rng.uniform(30, 60)  # a soft edge
            rays.append((x, y))
        else:
            # a star whose peak is as high (200-300 above the sky, 10-15 sigma)
            peak = rng.uniform(200, 300)
            img[y - 12 : y + 13, x - 12 : x + 13] += peak * psf
            stars.append((x, y))
    rx, ry = np.array(rays, float).T
    sx, sy = np.array(stars, float).T
    without = cosmic_ray_hits(rx, ry, img)
    with_psf = cosmic_ray_hits(rx, ry, img, psf=psf)
    assert with_psf.mean() >= 0.9 and without.mean() <= 0.5
    assert not cosmic_ray_hits(sx, sy, img, psf=psf).any()
    # an undersampled PSF raises the limit above the default (its stars are that sharp):
    # these soft-edged rays are then too blunt to be told from its stars
    assert cosmic_ray_hits(rx, ry, img, psf=_gaussian(1.5)).sum() < without.sum()


def test_undersampled_point_sources_are_spared_and_sharp_rays_still_found() -> None:
    """photutils pairs with undersampled PSFs (Gaussian 1.3 x 1.1 px reference, Moffat 1.6 px
    (beta 3) new image, as space telescopes have): the PSF's own contrast (~2.9) times the margin
    raises L.A.Cosmic's limit to ~8.8, above the default 5, which took 10 of 80 strong
    transients for rays (they were then masked and lost); one- and three-pixel rays of 30
    sigma are all still found."""
    from astrid.science.candidate_vetting import psf_arrays
    from astrid.science.difference import subtract_pair
    from tests.peer_simulator import peer_pair

    flagged, strong, found = 0, 0, 0
    for seed in (1, 2):
        pair = peer_pair(seed, ref_fwhm=(1.3, 1.1), new_fwhm=1.6, new_beta=3.0)
        result, aligned = subtract_pair(pair.new, pair.ref, "zogy")
        psf = psf_arrays(result)[0]
        assert psf is not None and psf_contrast(psf) > 2.0  # undersampled
        t = pair.transients[pair.transients["limit"] >= 7.0]
        hits = cosmic_ray_hits(np.asarray(t["x"]), np.asarray(t["y"]), aligned.new,
                               aligned.new_mask, psf=psf)  # fmt: skip
        flagged, strong = flagged + int(hits.sum()), strong + len(t)
        rng = np.random.default_rng(seed)
        img = aligned.new.copy()
        rx, ry = rng.integers(50, 970, 30), rng.integers(50, 970, 30)
        amp = 30.0 * result.new_noise
        for k, (x, y) in enumerate(zip(rx, ry, strict=True)):
            img[y, x : x + (1 if k % 2 else 3)] += amp
        found += int(cosmic_ray_hits(rx.astype(float), ry.astype(float), img, aligned.new_mask,
                                     psf=psf).sum())  # fmt: skip
    assert strong == 80
    assert flagged <= 3  # measured 1 (10 with the default limit)
    assert found == 60


def test_wide_winged_undersampled_transients_are_not_rays_given_the_images_stars() -> None:
    """Moffat beta 2.5 new image (1.6 px), Gaussian 1.3 x 1.1 px reference: three times the
    noise-free PSF contrast (objlim ~7.5-8) still took 6 of 80 strong transients (seeds 1 and
    3) for rays, since noise scatters an undersampled core's contrast far above it. The
    reference's stars (S/N >= 10) raise the limit until none of them is flagged (15-23 here);
    all 30-sigma one- and three-pixel rays are still found."""
    from astrid.science.candidate_vetting import psf_arrays
    from astrid.science.difference import subtract_pair
    from tests.peer_simulator import peer_pair

    flagged, without, strong, found = 0, 0, 0, 0
    for seed in (1, 3):
        pair = peer_pair(seed, ref_fwhm=(1.3, 1.1), new_fwhm=1.6, new_beta=2.5)
        result, aligned = subtract_pair(pair.new, pair.ref, "zogy")
        psf = psf_arrays(result)[0]
        stars = result.ref_stars
        assert psf is not None and stars is not None
        keep = stars.snr >= 10.0
        xy = (stars.x[keep], stars.y[keep])
        t = pair.transients[pair.transients["limit"] >= 7.0]
        tx, ty = np.asarray(t["x"]), np.asarray(t["y"])
        flagged += int(cosmic_ray_hits(tx, ty, aligned.new, aligned.new_mask, psf=psf,
                                       stars=xy).sum())  # fmt: skip
        without += int(cosmic_ray_hits(tx, ty, aligned.new, aligned.new_mask, psf=psf).sum())
        strong += len(t)
        rng = np.random.default_rng(seed)
        img = aligned.new.copy()
        rx, ry = rng.integers(50, 970, 30), rng.integers(50, 970, 30)
        for k, (x, y) in enumerate(zip(rx, ry, strict=True)):
            img[y, x : x + (1 if k % 2 else 3)] += 30.0 * result.new_noise
        found += int(cosmic_ray_hits(rx.astype(float), ry.astype(float), img, aligned.new_mask,
                                     psf=psf, stars=xy).sum())  # fmt: skip
    assert strong == 80
    assert without >= 4  # measured 6: the PSF's contrast alone
    assert flagged <= 1  # measured 0
    assert found == 60


def test_symmetric_residual_separates_rings_from_a_transient_beside_a_star() -> None:
    yy, xx = np.mgrid[0:64, 0:64].astype(float)

    def blob(x0: float, y0: float, amp: float) -> np.ndarray:
        return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.2**2))

    star = (32.0, 32.0)
    # a size-mismatch residual: positive lobes on both sides of the star
    ring = blob(35.0, 32.0, 10.0) + blob(29.0, 32.0, 10.0)
    # a transient 3 px from another star, alone
    lone = blob(35.0, 32.0, 10.0)
    for score, expect in ((ring, True), (lone, False)):
        flag = symmetric_residual(np.array([35.0]), np.array([32.0]), np.array([1]),
                                  np.array([10.0]), score, np.array([star[0]]),
                                  np.array([star[1]]), fwhm=3.0)  # fmt: skip
        assert bool(flag[0]) is expect
    # on the star itself (a variable) or far away: never flagged
    far = symmetric_residual(np.array([32.5, 50.0]), np.array([32.0, 50.0]), np.array([1, 1]),
                             np.array([10.0, 10.0]), ring, np.array([32.0]), np.array([32.0]),
                             fwhm=3.0)  # fmt: skip
    assert not far.any()
