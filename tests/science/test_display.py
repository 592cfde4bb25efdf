"""Cutouts and PNG rendering."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from astrid.science.display import (
    CutoutError,
    CutoutOutsideError,
    cutout,
    display_limits,
    normalize,
    to_png,
    triplet_png,
)
from astrid.science.simulate import simulate_star_field


@pytest.fixture(scope="module")
def field():
    return simulate_star_field((120, 100), n_stars=20, seed=3, flux_range=(5e3, 5e4))


def test_cutout_centred_on_star_by_sky_position(field) -> None:
    star = field.stars[np.argmax(field.stars["flux"])]
    cut = cutout(field.data, SkyCoord(star["ra"] * u.deg, star["dec"] * u.deg), 21, wcs=field.wcs)
    assert cut.data.shape == (21, 21)
    peak = np.unravel_index(np.nanargmax(cut.data), cut.data.shape)
    assert abs(peak[1] - cut.position[0]) <= 1 and abs(peak[0] - cut.position[1]) <= 1
    # the stamp WCS puts the star at the stamp position
    assert cut.wcs is not None
    x, y = cut.wcs.world_to_pixel_values(star["ra"], star["dec"])
    assert (float(x), float(y)) == pytest.approx(cut.position, abs=1e-6)
    same = cutout(field.data, (star["ra"], star["dec"]), 21, wcs=field.wcs)
    assert np.array_equal(same.data, cut.data, equal_nan=True)


def test_partial_overlap_is_nan_padded(field) -> None:
    cut = cutout(field.data, (2.0, 3.0), 11)
    assert cut.data.shape == (11, 11)
    # x from -3 to 7 -> 3 columns outside; y from -2 to 8 -> 2 rows outside
    assert np.isnan(cut.data).sum() == 11 * 11 - 8 * 9
    assert cut.overlap_fraction == pytest.approx(72 / 121)
    assert cut.origin == (-3, -2)
    assert np.array_equal(cut.data[2:, 3:], field.data[0:9, 0:8])


def test_angular_size_and_errors(field) -> None:
    cut = cutout(field.data, (50.0, 60.0), 10 * u.arcsec, wcs=field.wcs, sky=False)
    assert cut.data.shape == (20, 20)  # 0.5 arcsec pixels
    with pytest.raises(CutoutOutsideError):
        cutout(field.data, (500.0, 500.0), 11)
    with pytest.raises(CutoutError, match="WCS"):
        cutout(field.data, SkyCoord(1 * u.deg, 1 * u.deg), 11)
    with pytest.raises(CutoutError):
        cutout(field.data, (5.0, 5.0), 0)


def test_normalize_ranges_and_nan() -> None:
    data = np.linspace(-10, 10, 100).reshape(10, 10)
    data[0, 0] = np.nan
    for stretch in ("linear", "sqrt", "log", "asinh"):
        out = normalize(data, stretch=stretch, interval="minmax")
        assert out.min() >= 0 and out.max() <= 1
        assert out[0, 0] == 0.0
        flat = out.ravel()[1:]
        assert np.all(np.diff(flat) >= -1e-12)  # monotonic stretch
    lin = normalize(data, stretch="linear", limits=(-10, 10))
    assert lin[5, 0] == pytest.approx((data[5, 0] + 10) / 20)
    assert display_limits(np.full((4, 4), np.nan)) == (0.0, 1.0)
    assert display_limits(np.full((4, 4), 3.0)) == (2.5, 3.5)
    with pytest.raises(CutoutError):
        normalize(data, stretch="cubic")


def test_zscale_ignores_outliers(field) -> None:
    lo, hi = display_limits(field.data)
    assert lo < field.sky_level < hi
    assert hi < field.sky_level + 10 * field.noise_sigma < field.data.max()


def test_png_round_trip(field) -> None:
    png = to_png(field.data, scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(io.BytesIO(png))
    assert img.shape[:2] == (240, 200)
    # FITS orientation: row 0 of the data is the bottom row of the picture
    bright = np.unravel_index(np.argmax(field.data), field.data.shape)
    assert img[239 - 2 * bright[0], 2 * bright[1], 0] == pytest.approx(1.0, abs=0.01)
    blank = to_png(np.full((5, 5), np.nan))
    assert matplotlib.image.imread(io.BytesIO(blank)).shape[:2] == (5, 5)
    with pytest.raises(CutoutError):
        to_png(np.zeros((2, 2, 2)))


def test_triplet(field) -> None:
    a = field.data[:30, :30]
    png = triplet_png([a, a, a - a], scale=1, gap=2)
    img = matplotlib.image.imread(io.BytesIO(png))
    assert img.shape[:2] == (30, 94)
    with pytest.raises(CutoutError):
        triplet_png([a, a[:10]])
