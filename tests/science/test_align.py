"""Alignment, reprojection and coadds on simulated pairs with known pointing offsets."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.align import align_image, register_many
from astrid.science.coadd import coadd
from astrid.science.resample import AlignError, NonOverlappingError, pixel_map, reproject_to
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF, Exposure, make_wcs
from astrid.science.starmatch import TooFewStarsError, match_stars

OFFSET = (3.37, -2.81)
ROTATION = 0.4


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(
        (256, 256),
        n_stars=150,
        seed=1,
        n_transients=0,
        flux_range=(3000.0, 2e5),
        new=Exposure(psf=AnalyticPSF(3.0), offset=OFFSET, rotation=ROTATION, sky=500.0),
        ref=Exposure(psf=AnalyticPSF(2.5), sky=500.0),
    )


def _star_offsets(aligned: np.ndarray, pair) -> np.ndarray:
    """Gaussian-fit positions of bright isolated reference stars in the aligned image minus
    their true reference-grid positions (pixels)."""
    from photutils.psf import fit_2dgaussian
    from scipy.spatial import cKDTree

    st = pair.ref.stars
    xy = np.column_stack([st["x"], st["y"]])
    tree = cKDTree(xy)
    keep = []
    for k, nb in enumerate(tree.query_ball_point(xy, 8.0)):
        others = [j for j in nb if j != k]
        bright = st["flux"][k] > 3000 and not st["saturated"][k]
        inside = 15 < st["x"][k] < 240 and 15 < st["y"][k] < 240
        isolated = not others or np.all(st["flux"][others] < 0.02 * st["flux"][k])
        keep.append(bright and inside and isolated)
    sel = xy[np.asarray(keep)]
    sky = float(np.nanmedian(aligned))
    data = np.nan_to_num(aligned - sky, nan=0.0)
    fit = fit_2dgaussian(data, xypos=sel, fwhm=3.0, fix_fwhm=False, fit_shape=9)
    res = fit.results
    return np.column_stack([res["x_fit"] - sel[:, 0], res["y_fit"] - sel[:, 1]])


def test_reproject_with_true_wcs_puts_stars_on_reference_grid(pair) -> None:
    rp = reproject_to(
        pair.new.data, pair.new.wcs, pair.ref.wcs, pair.ref.shape, variance=pair.new.variance
    )
    assert rp.variance is not None
    # the corner the offset uncovered is masked, the rest is valid
    assert rp.mask.mean() == pytest.approx(1 - rp.footprint.mean(), abs=0.03)
    assert np.isnan(rp.data[rp.mask]).all()
    off = _star_offsets(rp.data, pair)
    assert len(off) >= 8
    assert np.sqrt(np.mean(np.sum(off**2, axis=1))) < 0.06


def test_refinement_recovers_offset_when_wcs_is_wrong(pair) -> None:
    # pretend the new image has the reference's WCS: only the stars can fix it
    res = align_image(
        pair.new.data,
        pair.ref.data,
        wcs=pair.ref.wcs,
        reference_wcs=pair.ref.wcs,
        variance=pair.new.variance,
        mask=pair.new.mask,
    )
    assert res.rotation == pytest.approx(-ROTATION, abs=0.03)
    assert res.scale == pytest.approx(1.0, abs=1e-3)
    # the truth: star positions in the new image map onto their reference positions
    new_xy = np.column_stack([pair.new.stars["x"], pair.new.stars["y"]])
    ref_x, ref_y = pair.ref.wcs.world_to_pixel_values(pair.new.stars["ra"], pair.new.stars["dec"])
    mapped = res.transform @ np.vstack([new_xy.T, np.ones(len(new_xy))])
    err = np.hypot(mapped[0] - ref_x, mapped[1] - ref_y)
    assert np.median(err) < 0.05
    assert res.rms_px < 0.12
    assert res.rms_arcsec == pytest.approx(res.rms_px * 0.5, rel=1e-3)
    assert res.n_matched >= 8
    off = _star_offsets(res.data, pair)
    assert np.sqrt(np.mean(np.sum(off**2, axis=1))) < 0.08
    assert res.variance is not None and np.nanmedian(res.variance) > 0


def test_alignment_without_any_wcs(pair) -> None:
    res = align_image(pair.new.data, pair.ref.data)
    assert res.wcs is None
    assert res.shift[0] ** 2 + res.shift[1] ** 2 > 9  # a real shift was found
    assert res.rms_px < 0.12
    assert res.info["expected_rms_px"] == pytest.approx(res.rms_px, rel=0.6)


def test_large_offset_found_by_asterism_matching() -> None:
    p = simulate_pair(
        (256, 256),
        n_stars=120,
        seed=4,
        n_transients=0,
        flux_range=(2000.0, 1e5),
        new=Exposure(offset=(25.0, -18.0), rotation=3.0),
    )
    res = align_image(p.new.data, p.ref.data)
    assert res.rotation == pytest.approx(-3.0, abs=0.05)
    assert res.rms_px < 0.15


def test_register_many_and_coadd_noise() -> None:
    first = simulate_star_field((128, 128), n_stars=60, seed=0, sky=800.0, flux_range=(2000.0, 1e5))
    frames = [first] + [
        simulate_star_field(
            (128, 128), seed=s, offset=(0.3 * s, -0.2 * s), sky=800.0, catalog=first.stars
        )
        for s in range(1, 4)
    ]
    results = register_many(
        [f.data for f in frames],
        wcs=[f.wcs for f in frames],
        variances=[f.variance for f in frames],
    )
    assert results[0].rms_px == 0.0
    assert all(r.rms_px < 0.15 for r in results[1:])
    stack = coadd(results)
    # the weighted mean of 4 equal-depth frames has half their noise (bicubic smoothing
    # lowers it a little more, so a one-sided bound)
    sigma = frames[0].noise_sigma
    resid = (stack.data - first.model)[20:-20, 20:-20]
    blank = (first.model - first.sky_level)[20:-20, 20:-20] < 0.05 * sigma
    assert np.nanstd(resid[blank]) < 0.55 * sigma
    assert np.nanstd(resid[blank]) > 0.35 * sigma
    assert abs(np.nanmean(resid[blank])) < 0.05 * sigma
    assert np.nanmedian(stack.variance) == pytest.approx(frames[0].noise_sigma ** 2 / 4, rel=0.15)


def test_coadd_inverse_variance_weights() -> None:
    rng = np.random.default_rng(3)
    a = 10 + rng.normal(0, 1, (64, 64))
    b = 10 + rng.normal(0, 3, (64, 64))
    st = coadd([a, b], variances=[np.ones((64, 64)), np.full((64, 64), 9.0)])
    assert st.weights[0] / st.weights[1] == pytest.approx(9.0)
    assert float(np.median(st.variance)) == pytest.approx(0.9, rel=1e-6)
    assert float(np.std(st.data)) == pytest.approx(np.sqrt(0.9), rel=0.05)
    masked = coadd([a, b], masks=[np.ones((64, 64), bool), None], weights="uniform")
    assert np.allclose(masked.data, b.astype(np.float32))
    with pytest.raises(AlignError, match="different shapes"):
        coadd([a, np.zeros((3, 3))])


def test_non_overlapping_raises() -> None:
    w1 = make_wcs((64, 64), ra=10.0, dec=0.0)
    w2 = make_wcs((64, 64), ra=11.0, dec=0.0)
    with pytest.raises(NonOverlappingError):
        reproject_to(np.ones((64, 64)), w1, w2, (64, 64))
    with pytest.raises(NonOverlappingError):
        align_image(np.ones((64, 64)), np.ones((64, 64)), wcs=w1, reference_wcs=w2)


def test_too_few_stars_raises_with_counts() -> None:
    empty = simulate_star_field((96, 96), n_stars=0, seed=1)
    two = simulate_star_field((96, 96), n_stars=2, seed=1, flux_range=(5e4, 6e4))
    with pytest.raises(TooFewStarsError) as info:
        align_image(two.data, empty.data)
    assert info.value.n_reference == 0
    assert "0 in the reference" in str(info.value)
    # refine=False trusts the WCS and needs no stars
    res = align_image(empty.data, empty.data, wcs=empty.wcs, reference_wcs=empty.wcs, refine=False)
    assert np.allclose(res.data[5:-5, 5:-5], empty.data[5:-5, 5:-5], atol=1e-3)


def test_mismatched_wcs_arguments() -> None:
    with pytest.raises(AlignError, match="both"):
        align_image(np.ones((8, 8)), np.ones((8, 8)), wcs=make_wcs((8, 8)))


def test_match_stars_fluxes_follow_photometric_scale() -> None:
    p = simulate_pair(
        (160, 160),
        n_stars=80,
        seed=8,
        n_transients=0,
        flux_range=(3000.0, 1e5),
        new=Exposure(flux_scale=1.3, psf=AnalyticPSF(3.4)),
    )
    m = match_stars(p.new.data, p.ref.data)
    assert len(m) >= 8
    assert np.median(m.flux / m.flux_ref) == pytest.approx(1.3, rel=0.03)
    assert m.sigma is not None and np.all(m.sigma > 0)


def test_masked_pixels_stay_local_after_reprojection(pair) -> None:
    data = pair.new.data.copy()
    data[100, 120] = np.nan
    mask = np.zeros(data.shape, dtype=bool)
    mask[50, 60] = True
    rp = reproject_to(data, pair.new.wcs, pair.ref.wcs, pair.ref.shape, mask=mask)
    inside = rp.footprint > 0
    # each bad pixel masks a few output pixels around its new position, not the image
    extra = rp.mask & inside
    assert 2 <= extra.sum() <= 60
    x, y = pair.ref.wcs.world_to_pixel_values(*pair.new.wcs.pixel_to_world_values(120, 100))
    assert rp.mask[round(float(y)), round(float(x))]


def test_degenerate_images_raise_named_errors(pair) -> None:
    from astrid.science.background import ConstantImageError

    with pytest.raises(AlignError, match="masked or not finite"):
        reproject_to(np.full((64, 64), np.nan), pair.new.wcs, pair.ref.wcs, (64, 64))
    with pytest.raises(AlignError, match="not 2-D"):
        reproject_to(np.zeros((2, 64, 64)), pair.new.wcs, pair.ref.wcs, (64, 64))
    with pytest.raises(ConstantImageError):
        align_image(np.full((64, 64), 3.0), pair.ref.data[:64, :64])


def _exact_pixel_map(wcs, target_wcs, shape) -> np.ndarray:
    """Every target pixel through both WCSs (astropy), (2, ny, nx) as (y, x)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    xin, yin = wcs.world_to_pixel_values(*target_wcs.pixel_to_world_values(xx, yy))
    return np.stack([yin, xin])


def test_pixel_map_matches_exact_map_with_sip_distortion() -> None:
    # a strongly distorted SIP image (corners displaced by ~6 px) onto a rotated TAN grid
    shape = (300, 400)
    target = make_wcs(shape, rotation=0.7, offset=(4.3, -2.2))
    wcs = make_wcs(shape)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[0, 2], a[1, 1], a[3, 0] = 2e-5, -1.5e-5, 1e-5, 3e-8
    b[0, 2], b[2, 0], b[1, 2] = 2.5e-5, -1e-5, 2e-8
    from astropy.wcs import Sip

    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    exact = _exact_pixel_map(wcs, target, shape)
    assert np.max(np.hypot(*(exact - np.mgrid[0:300, 0:400]))) > 5.0  # far from a shift
    fast = pixel_map(wcs, target, shape)
    assert np.max(np.hypot(*(fast - exact))) < 0.01


def test_pixel_map_falls_back_to_exact_evaluation() -> None:
    shape = (160, 160)
    wcs, target = make_wcs(shape), make_wcs(shape, rotation=2.0, offset=(1.5, 0.5))
    # an unreachable tolerance forces the per-pixel path
    fast = pixel_map(wcs, target, shape, tolerance=0.0)
    np.testing.assert_allclose(fast, _exact_pixel_map(wcs, target, shape), atol=1e-9)


def test_reproject_interp_equals_reproject_package(pair) -> None:
    from reproject import reproject_interp

    rp = reproject_to(pair.new.data, pair.new.wcs, pair.ref.wcs, pair.ref.shape)
    expected, footprint = reproject_interp(
        (pair.new.data.astype(float), pair.new.wcs),
        pair.ref.wcs,
        shape_out=pair.ref.shape,
        order="bicubic",
    )
    np.testing.assert_array_equal(rp.footprint > 0, footprint > 0)
    good = ~rp.mask
    assert good.mean() > 0.9
    # float32 output: agreement to float32 rounding of values up to ~1e5 ADU
    np.testing.assert_allclose(rp.data[good], expected[good], rtol=2e-6, atol=1e-3)
    with pytest.raises(AlignError, match="interpolation order"):
        reproject_to(pair.new.data, pair.new.wcs, pair.ref.wcs, pair.ref.shape, order="cubic")


def test_affine_map_used_for_tan_pointings_and_refused_for_distortion() -> None:
    from astrid.science.resample import affine_pixel_map

    shape = (300, 400)
    wcs, target = make_wcs(shape), make_wcs(shape, rotation=0.7, offset=(4.3, -2.2))
    aff = affine_pixel_map(wcs, target, shape)
    assert aff is not None
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    affine = np.stack([aff[0][0, 0] * yy + aff[0][0, 1] * xx + aff[1][0],
                       aff[0][1, 0] * yy + aff[0][1, 1] * xx + aff[1][1]])  # fmt: skip
    # the map it stands for is exact to its 0.005 px tolerance at every pixel
    assert np.max(np.hypot(*(affine - _exact_pixel_map(wcs, target, shape)))) < 0.005
    # a SIP distortion displacing corners by ~6 px is no affine map: the general path is used
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[2, 0], a[0, 2], b[0, 2] = 2e-5, -1.5e-5, 2.5e-5
    from astropy.wcs import Sip

    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    assert affine_pixel_map(wcs, target, shape) is None


@pytest.mark.parametrize(
    ("rotation", "offset"), [(0.4, (3.37, -2.81)), (0.0, (0.37, -0.62)), (0.0, (-40.3, 12.2))]
)
def test_affine_resampling_equals_per_pixel_map(rotation: float, offset: tuple) -> None:
    # the shortcut (no per-pixel coordinates; a pure shift takes scipy's shift path) gives the
    # general path's pixels, border half-pixels and footprint included (offsets away from a
    # half pixel: there, which side of the edge a pixel maps to is within either map's 0.005 px)
    from astrid.science.resample import _resample, _resample_affine, affine_pixel_map

    shape = (200, 260)
    wcs, target = make_wcs(shape, rotation=rotation, offset=offset), make_wcs(shape)
    data = np.random.default_rng(5).normal(100.0, 10.0, shape)
    aff = affine_pixel_map(wcs, target, shape)
    assert aff is not None
    for order in (1, 3):
        fast = _resample_affine(data, aff[0], aff[1], shape, order)
        slow = _resample(data, pixel_map(wcs, target, shape), order)
        np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
        both = np.isfinite(fast)
        assert both.mean() > 0.6
        # the two maps agree to their 0.005 px tolerances: values to a small part of the noise
        np.testing.assert_allclose(fast[both], slow[both], atol=0.1)


def test_pure_pixel_shift_takes_the_shift_path_and_matches() -> None:
    # same tangent point, reference pixel moved: an exact (3.3, -1.7) px shift
    from astrid.science.resample import _resample, _resample_affine, affine_pixel_map

    shape = (120, 150)
    target = make_wcs(shape)
    wcs = target.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix + np.array([3.3, -1.7])
    aff = affine_pixel_map(wcs, target, shape)
    assert aff is not None
    np.testing.assert_allclose(aff[0], np.eye(2), atol=1e-9)
    np.testing.assert_allclose(aff[1], [-1.7, 3.3], atol=1e-6)
    data = np.random.default_rng(2).normal(0.0, 1.0, shape)
    fast = _resample_affine(data, aff[0], aff[1], shape, 3)
    slow = _resample(data, pixel_map(wcs, target, shape), 3)
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
    np.testing.assert_allclose(fast[np.isfinite(fast)], slow[np.isfinite(slow)], atol=1e-3)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize(
    ("offset", "out_shape"),
    [((0.37, -0.62), (90, 110)), ((-2.5, 0.5), (90, 110)), ((7.9, -3.2), (96, 104))],
)
def test_separable_shift_equals_scipys_shift_path(order: int, offset: tuple, out_shape) -> None:
    # a pure shift is computed as two 1-D passes (the border band by scipy): the same
    # pixels (NaN off the image included) as affine_transform, values to rounding
    from scipy import ndimage

    from astrid.science.resample import _shift_separable

    data = np.random.default_rng(9).normal(100.0, 10.0, (90, 110))
    coef = ndimage.spline_filter(data, 3, mode="constant") if order == 3 else data
    kw = {"order": order, "mode": "constant", "cval": np.nan, "prefilter": False}
    ref = ndimage.affine_transform(coef, np.ones(2), np.array(offset), output_shape=out_shape, **kw)
    got = _shift_separable(coef, np.array(offset), out_shape, order, np.float64)
    assert got is not None
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(ref).any() and np.isfinite(ref).mean() > 0.8
    np.testing.assert_allclose(got[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-12)
    # orders without a separable form, and shifts mostly off the image, are left to scipy
    assert _shift_separable(coef, np.array(offset), out_shape, 2, np.float64) is None
    assert _shift_separable(coef, np.array([60.0, 0.0]), out_shape, order, np.float64) is None


@pytest.mark.parametrize("n_bad", [1, 2])  # an odd / even count of usable pixels
def test_float32_image_with_masked_pixels_resamples_as_its_float64_copy(n_bad: int) -> None:
    """A float32 image whose fill value (the median of its usable pixels) is a float32 value
    is resampled in float32: the same output, bit for bit, as its float64 copy (the earlier
    computation); an even count whose middle two average to a non-float32 value goes
    through float64 as before."""
    w_in = make_wcs((64, 64), ra=10.0, dec=0.0)
    w_out = make_wcs((64, 64), ra=10.0 + 1.3e-4, dec=0.7e-4)  # a shift of a few pixels
    rng = np.random.default_rng(n_bad)
    data = rng.normal(100.0, 5.0, (64, 64)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[10, 11] = True
    if n_bad == 2:
        mask[40, 41] = True
        good = np.sort(data[~mask])
        k = good.size // 2
        assert float(np.float32((float(good[k - 1]) + float(good[k])) / 2)) != (
            (float(good[k - 1]) + float(good[k])) / 2
        )
    got = reproject_to(data, w_in, w_out, (64, 64), mask=mask)
    want = reproject_to(data.astype(np.float64), w_in, w_out, (64, 64), mask=mask)
    assert got.data.dtype == want.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert 0 < got.mask.sum() < 1000
