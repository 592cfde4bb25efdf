"""Stamps: the cutout convention, stretches and PNG rendering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from PIL import Image

from astrid.science.cutouts import (
    CutoutError,
    CutoutOutsideError,
    cutout,
    display_limits,
    normalize,
    stamp,
    to_png,
    triplet_png,
)
from astrid.science.simulate_image import simulate_star_field


def _read(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


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
    assert np.array_equal(cut.outside, np.isnan(cut.data))
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
    img = _read(png)
    assert img.shape[:2] == (240, 200)
    # FITS orientation: row 0 of the data is the bottom row of the picture
    bright = np.unravel_index(np.argmax(field.data), field.data.shape)
    assert img[239 - 2 * bright[0], 2 * bright[1]] == 255
    blank = to_png(np.full((5, 5), np.nan))
    assert _read(blank).shape[:2] == (5, 5)
    with pytest.raises(CutoutError):
        to_png(np.zeros((2, 2, 2)))


def test_triplet(field) -> None:
    a = field.data[:30, :30]
    png = triplet_png([a, a, a - a], scale=1, gap=2, crosshair=False)
    img = _read(png)
    assert img.shape[:2] == (30, 94)
    with pytest.raises(CutoutError):
        triplet_png([a, a[:10]])


@pytest.mark.parametrize("size", [5, 6, 21, 64])
def test_stamp_convention_centre_pixel(size: int) -> None:
    """The nearest pixel lands on stamp index [size // 2, size // 2], odd or even size."""
    img = np.arange(100 * 80, dtype=np.float64).reshape(100, 80)
    for x, y in [(40.0, 50.0), (40.49, 49.51), (39.5, 50.4999), (3.2, 97.8)]:
        xc, yc = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        st = stamp(img, x, y, size)
        assert st.dtype == np.float32 and st.shape == (size, size)
        assert st[size // 2, size // 2] == pytest.approx(img[yc, xc], rel=1e-6)
        cut = cutout(img, (x, y), size)
        assert np.array_equal(cut.data, st, equal_nan=True)
        assert cut.position == pytest.approx((x - cut.origin[0], y - cut.origin[1]))
        assert cut.origin == (xc - size // 2, yc - size // 2)
    assert stamp(img, 40, 50, 7, dtype=np.float64).dtype == np.float64


def test_nan_inside_is_not_flagged_outside() -> None:
    img = np.ones((20, 20))
    img[0, 0] = np.nan
    cut = cutout(img, (1.0, 1.0), 5)
    assert np.isnan(cut.data).sum() == 5 * 5 - 4 * 4 + 1
    assert cut.outside.sum() == 5 * 5 - 4 * 4
    assert not cut.outside[1, 1] and np.isnan(cut.data[1, 1])
    with pytest.raises(CutoutOutsideError):
        stamp(img, float("nan"), 3.0, 5)
    assert np.isnan(stamp(img, -50.0, 3.0, 5)).all()  # the fast path pads without raising


def test_stamp_wcs_follows_the_shift(field) -> None:
    cut = cutout(field.data, (1.0, 2.0), 9, wcs=field.wcs, sky=False)
    assert cut.wcs is not None
    # the stamp's pixel (i, j) and the image's (i + x0, j + y0) are the same sky point
    for i, j in [(0, 0), (4, 4), (8, 3)]:
        a = cut.wcs.pixel_to_world(i, j)
        b = field.wcs.pixel_to_world(i + cut.origin[0], j + cut.origin[1])
        assert a.separation(b).arcsec < 1e-6


def _north_wcs(angle_deg: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [16.0, 16.0]
    t = np.radians(angle_deg)
    scale = 0.25 / 3600
    w.wcs.cd = scale * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    return w


def test_triplet_crosshair_leaves_centre_clear_and_north_arrow_points_north() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (31, 31))
    a[15, 15] = -100.0  # centre pixel: black under an asinh/zscale stretch
    plain = _read(triplet_png([a, a, a], scale=1, crosshair=False))
    marked = _read(triplet_png([a, a, a], scale=1))
    changed = np.argwhere(plain != marked)
    assert len(changed) > 0 and np.all(marked[changed[:, 0], changed[:, 1]] == 255)
    row_c = 30 - 15  # display row of image row 15
    for x0 in (0, 33, 66):  # each panel gets ticks, the centre pixel stays as drawn
        assert marked[row_c, x0 + 15] == plain[row_c, x0 + 15] == 0
        assert (marked[row_c, x0 : x0 + 31] == 255).sum() >= 4
        assert (marked[:, x0 + 15] == 255).sum() >= 4

    def arrow(angle: float) -> tuple[float, float]:
        png = triplet_png([a, a, a], scale=4, crosshair=False, wcs=_north_wcs(angle))
        base = _read(triplet_png([a, a, a], scale=4, crosshair=False))
        pts = np.argwhere(_read(png) != base)
        assert len(pts) > 5
        rows, cols = pts[:, 0], pts[:, 1]
        # direction from the arrow's tail (its lowest-left extreme) to its mean, display axes
        return float(np.ptp(cols)), float(np.ptp(rows))

    w_up, h_up = arrow(0.0)  # north up: a vertical arrow
    assert h_up > 2 * w_up
    w_side, h_side = arrow(90.0)  # north along x: a horizontal arrow
    assert w_side > 2 * h_side
