"""Candidate vetting: cosmic rays (one and several pixels) and point-symmetric star residuals."""

from __future__ import annotations

import numpy as np

from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF
from astrid.science.vetting import cosmic_ray_hits, symmetric_residual


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
