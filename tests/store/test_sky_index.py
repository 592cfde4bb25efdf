"""The HEALPix pre-filter never loses a position inside the cone: poles, RA 0/360, all radii."""

from __future__ import annotations

from typing import Any

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


def _separations(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> Any:
    return SkyCoord(lon1, lat1, unit="deg").separation(SkyCoord(lon2, lat2, unit="deg")).deg


def test_a_pixel_lies_within_its_reach_of_its_centre() -> None:
    """PIXEL_REACH bounds the distance from a pixel's centre to any of its points (corners
    and edges sampled, every pixel of orders 0-7): the flood fill's criterion is safe."""
    from astropy_healpix import HEALPix

    from astrid.store.sky_index import PIXEL_REACH

    worst = 0.0
    for order in range(8):
        hp = HEALPix(nside=2**order, order="nested")
        pix = np.arange(hp.npix)
        lon, lat = (a.to_value(u.deg) for a in hp.healpix_to_lonlat(pix))
        size = hp.pixel_resolution.to_value(u.deg)
        for t in np.linspace(0, 1, 5):
            for dx, dy in ((t, 0.0), (t, 1.0), (0.0, t), (1.0, t)):
                elon, elat = (a.to_value(u.deg) for a in hp.healpix_to_lonlat(pix, dx=dx, dy=dy))
                sep = _separations(lon, lat, elon, elat)
                worst = max(worst, float(sep.max()) / size)
    assert 1.0 < worst < PIXEL_REACH, worst


def test_cover_holds_every_pixel_the_cone_meets() -> None:
    """Random cones of every size (poles and RA 0 included): every query-order pixel that
    astropy-healpix's cone search (pixels overlapping the cone) returns is in the ranges,
    and so is every point on the cone's rim."""
    from astropy_healpix.core import healpix_cone_search

    from astrid.store.sky_index import INDEX_ORDER, _query_order

    rng = np.random.default_rng(3)
    for i in range(400):
        lon = float(rng.uniform(0, 360))
        lat = float(np.degrees(np.arcsin(rng.uniform(-1, 1)))) if i % 10 else 89.9 * (-1) ** i
        radius = float(10 ** rng.uniform(-4, 1))
        order = _query_order(radius)
        want = healpix_cone_search(
            lon * u.deg, lat * u.deg, radius * u.deg, nside=2**order, order="nested"
        )
        ranges = cone_ranges(lon, lat, radius)
        shift = 2 * (INDEX_ORDER - order)
        starts = np.asarray(want, dtype=np.int64) << shift
        assert all(any(lo <= s < hi for lo, hi in ranges) for s in starts.tolist())
        rim = SkyCoord(lon, lat, unit="deg").directional_offset_by(
            np.linspace(0, 360, 64) * u.deg, radius * (1 - 1e-9) * u.deg
        )
        pix = np.asarray(healpix_index(rim.ra.deg % 360.0, rim.dec.deg))
        assert all(any(lo <= p < hi for lo, hi in ranges) for p in pix.tolist())
