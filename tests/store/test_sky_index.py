"""The HEALPix pre-filter never loses a position inside the cone: poles, RA 0/360, all radii."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrid.store.sky_index import angular_separation_deg, cone_ranges, healpix_index

CENTRES = [
    (0.0, 0.0),
    (359.9999, 0.0),
    (0.0001, 45.0),
    (180.0, 89.9999),
    (10.0, -89.99),
    (318.108, -66.016),
    (90.0, 90.0),
    (270.0, -90.0),
]


@pytest.mark.parametrize("radius", [1 / 3600, 2 / 60, 0.5, 5.0, 60.0])
@pytest.mark.parametrize("centre", CENTRES)
def test_ranges_cover_every_point_in_the_cone(centre: tuple[float, float], radius: float) -> None:
    rng = np.random.default_rng(42)
    ra0, dec0 = centre
    # Points spread up to 1.5 radii around the centre, through the pole and across RA 0.
    n = 4000
    rho = radius * 1.5 * np.sqrt(rng.uniform(0, 1, n))
    theta = rng.uniform(0, 2 * np.pi, n)
    c0 = SkyCoord(ra0, dec0, unit="deg")
    pts = c0.directional_offset_by(theta * 180 / np.pi * u.deg, rho * u.deg)
    ra, dec = pts.ra.deg % 360.0, pts.dec.deg
    inside = angular_separation_deg(ra, dec, ra0, dec0) <= radius
    pix = np.asarray(healpix_index(ra, dec))
    ranges = cone_ranges(ra0, dec0, radius)
    covered = np.zeros(n, dtype=bool)
    for lo, hi in ranges:
        covered |= (pix >= lo) & (pix < hi)
    assert inside.sum() > 100
    assert np.all(covered[inside]), f"{(~covered[inside]).sum()} in-cone points missed"
    # The pre-filter must also be selective (not the whole sky) for small cones.
    if radius <= 0.5:
        assert covered.mean() < 0.999 or radius < 1e-3 or len(ranges) < 64


def test_separation_matches_astropy() -> None:
    rng = np.random.default_rng(1)
    ra1, dec1 = rng.uniform(0, 360, 500), rng.uniform(-90, 90, 500)
    ref = SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(12.0, -89.5, unit="deg")).deg
    assert np.allclose(angular_separation_deg(ra1, dec1, 12.0, -89.5), ref, atol=1e-9)


def test_cone_pixels_are_the_public_cone_search() -> None:
    """The direct call into astropy-healpix's extension gives its public function's pixels."""
    from astropy_healpix.core import healpix_cone_search

    from astrid.store.sky_index import _cone_pixels

    rng = np.random.default_rng(3)
    for _ in range(500):
        lon, lat = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        radius, nside = float(rng.uniform(1e-4, 5)), 2 ** int(rng.integers(0, 10))
        want = healpix_cone_search(
            lon * u.deg, lat * u.deg, radius * u.deg, nside=nside, order="nested"
        )
        assert np.array_equal(_cone_pixels(lon, lat, radius, nside), want)
