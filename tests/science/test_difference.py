"""The facade: method choice, alignment of pairs on different grids, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from astrid.science.difference import (
    DifferenceError,
    ShapeMismatchError,
    UnknownMethodError,
    detect_pair,
    difference_images,
    subtract_pair,
)
from astrid.science.pair_alignment import FilterMismatchError, NoOverlapError, align_to_reference
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure


@pytest.fixture(scope="module")
def offset_pair():  # type: ignore[no-untyped-def]
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, offset=(5.3, -3.6), rotation=0.4)
    ref = Exposure(psf=AnalyticPSF(fwhm=3.0))
    return simulate_pair((384, 384), 250, seed=31, new=new, ref=ref, n_transients=25,
                         transient_flux_range=(600, 4000))  # fmt: skip


@pytest.mark.parametrize("method", ["zogy", "classic"])
def test_detect_pair_on_different_grids(offset_pair, method: str) -> None:  # type: ignore[no-untyped-def]
    p = offset_pair
    table = detect_pair(write_simulated(p.new), write_simulated(p.ref), method)
    assert {"ra", "dec", "x", "y", "snr", "flux", "flux_err", "mag", "score"} <= set(table.colnames)
    assert any("resampled" in n for n in table.meta["notes"])
    tr = p.truth[p.truth["kind"] == "transient"]
    strong = np.asarray(tr["ideal_snr"]) >= 7
    d, j = cKDTree(np.c_[table["x"], table["y"]]).query(np.c_[tr["x_ref"], tr["y_ref"]])
    assert (d[strong] < 2).mean() >= 0.9
    ratio = (
        np.asarray(table["snr"])[j[strong & (d < 2)]]
        / np.asarray(tr["ideal_snr"])[strong & (d < 2)]
    )
    assert np.median(ratio) >= 0.85
    # nearly nothing else above 5 sigma with a good score
    ok = table["score"] > 0.5
    d2, _ = cKDTree(np.c_[tr["x_ref"], tr["y_ref"]]).query(np.c_[table["x"], table["y"]])
    assert ((d2 > 3) & ok).sum() <= 2
    assert np.all(np.isfinite(table["mag"][d2 < 2]))


def test_difference_facade_and_unknown_method(offset_pair) -> None:  # type: ignore[no-untyped-def]
    p = offset_pair
    res = difference_images(p.ref.data, p.ref.data, "zogy")
    assert np.abs(res.score).max() < 6  # an image minus itself: noise-free difference
    with pytest.raises(UnknownMethodError):
        difference_images(p.ref.data, p.ref.data, "hotpants")


def test_moved_names_stay_importable_from_difference() -> None:
    # the alignment moved to pair_alignment: callers of astrid.science.difference keep the
    # same objects (an ``except NoOverlapError`` there must catch what the aligner raises)
    import astrid.science.difference as difference
    import astrid.science.pair_alignment as pair_alignment

    for name in ("AlignedPair", "FilterMismatchError", "NoOverlapError", "align_to_reference"):
        assert name in difference.__all__
        assert getattr(difference, name) is getattr(pair_alignment, name)


def test_non_overlapping_images_are_refused() -> None:
    a = simulate_pair((128, 128), 30, seed=1, n_transients=0)
    b = simulate_pair((128, 128), 30, seed=2, n_transients=0, ra=151.0)
    with pytest.raises(NoOverlapError):
        align_to_reference(write_simulated(a.new), write_simulated(b.ref))


def test_masked_or_nan_pixels_stay_local_when_resampling() -> None:
    # regression: one masked (or NaN) pixel in a new image that needs resampling used to
    # spread NaN over the whole image through the spline and raise NoOverlapError (0.0%).
    p = simulate_pair((128, 128), 50, seed=3, n_transients=0, new=Exposure(offset=(1.3, -0.7)))
    clean = align_to_reference(write_simulated(p.new), write_simulated(p.ref))
    assert clean.resampled and clean.overlap > 0.95
    m = np.zeros((128, 128), bool)
    m[40, 40] = True
    nan_new = p.new.data.copy()
    nan_new[90, 70] = np.nan
    p.new.data = nan_new
    pair = align_to_reference(write_simulated(p.new), write_simulated(p.ref), new_mask=m)
    assert pair.overlap > clean.overlap - 0.005  # ~full: only a few pixels lost
    extra = pair.new_mask & ~clean.new_mask
    assert 4 <= extra.sum() <= 40
    # the extra masked pixels all lie within 3 px of where the two bad pixels land
    # (new pixel (x, y) sits at (x - 1.3, y + 0.7) on the reference grid)
    yy, xx = np.nonzero(extra)
    r = np.minimum(np.hypot(xx - 38.7, yy - 40.7), np.hypot(xx - 68.7, yy - 90.7))
    assert r.max() <= 3.0
    assert np.any(r <= 1.0) and np.any(np.hypot(xx - 68.7, yy - 90.7) <= 1.0)
    good = ~pair.new_mask
    assert np.all(np.isfinite(pair.new[good]))
    # away from the bad pixels the resampled values are those of the clean run
    far = good & (np.hypot(*np.indices(m.shape)[::-1] - np.array([38.7, 40.7])[:, None, None]) > 8)
    far &= np.hypot(*np.indices(m.shape)[::-1] - np.array([68.7, 90.7])[:, None, None]) > 8
    np.testing.assert_allclose(pair.new[far], clean.new[far], atol=0.05)


def test_different_filters_are_refused_unless_forced() -> None:
    p = simulate_pair((128, 128), 60, seed=3, n_transients=0,
                      new=Exposure(filter="g", mjd=60030), ref=Exposure(filter="r"))  # fmt: skip
    with pytest.raises(FilterMismatchError, match="filter"):
        align_to_reference(write_simulated(p.new), write_simulated(p.ref))
    pair = align_to_reference(write_simulated(p.new), write_simulated(p.ref), force_filter=True)
    assert pair.overlap > 0.9


def test_plain_arrays_must_be_aligned() -> None:
    with pytest.raises(ShapeMismatchError):
        rng = np.random.default_rng(0)  # noise: a constant array is refused for that first
        align_to_reference(rng.normal(size=(10, 10)), rng.normal(size=(10, 12)))
    p = simulate_pair((128, 128), 30, seed=1, n_transients=0)
    with pytest.raises(ShapeMismatchError):
        align_to_reference(write_simulated(p.new), p.ref.data)


def test_bad_inputs_give_documented_fallbacks_not_garbage() -> None:
    # too few stars -> Gaussian PSF fallback, said in the notes; NaN region; saturated cores;
    # a reference ten times deeper.
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, saturation=20000.0)
    ref = Exposure(psf=AnalyticPSF(fwhm=3.0), sky=100.0, read_noise=1.0, exptime=600.0)
    p = simulate_pair((256, 256), 4, seed=9, new=new, ref=ref, n_transients=5,
                      transient_flux_range=(3000, 5000), flux_range=(1e5, 3e5))  # fmt: skip
    data = p.new.data.copy()
    data[:40, :40] = np.nan
    table = detect_pair(data, p.ref.data, "zogy")
    notes = " ".join(table.meta["notes"])
    assert "PSF fallback" in notes
    tr = p.truth[p.truth["kind"] == "transient"]
    tr = tr[(tr["x_ref"] > 45) | (tr["y_ref"] > 45)]
    d, _ = cKDTree(np.c_[table["x"], table["y"]]).query(np.c_[tr["x_ref"], tr["y_ref"]])
    assert (d < 2).sum() >= len(tr) - 1
    assert not np.any((table["x"] < 38) & (table["y"] < 38))  # nothing from the NaN block


def test_affine_resampling_shortcut_leaves_detections_unchanged(offset_pair) -> None:  # type: ignore[no-untyped-def]
    # the same pair through the general per-pixel map: a real SIP distortion of at most
    # 0.04 px makes the new-to-reference map non-affine, so resampling takes pixel_map
    # instead of the affine shortcut; the same transients are recovered, S/N within 2 %
    from astrid.science.fitswcs import celestial_wcs
    from astrid.science.resample import affine_pixel_map

    p = offset_pair
    shape = p.ref.data.shape
    assert affine_pixel_map(p.new.wcs, p.ref.wcs, shape) is not None  # the shortcut
    sip = p.new.header.copy()
    sip["CTYPE1"], sip["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    sip["A_ORDER"] = sip["B_ORDER"] = 2
    sip["A_2_0"] = sip["B_0_2"] = 1e-6  # px per px²: 0.037 px at the corners
    assert affine_pixel_map(celestial_wcs(sip), p.ref.wcs, shape) is None  # the general map
    distorted = dataclasses.replace(p.new, header=sip)
    fast = detect_pair(write_simulated(p.new), write_simulated(p.ref), "zogy")
    slow = detect_pair(write_simulated(distorted), write_simulated(p.ref), "zogy")
    tr = p.truth[p.truth["kind"] == "transient"]
    strong = np.asarray(tr["ideal_snr"]) >= 7
    xy = np.c_[tr["x_ref"], tr["y_ref"]][strong]
    df, jf = cKDTree(np.c_[fast["x"], fast["y"]]).query(xy)
    ds, js = cKDTree(np.c_[slow["x"], slow["y"]]).query(xy)
    np.testing.assert_array_equal(df < 2, ds < 2)
    assert (df < 2).mean() >= 0.9
    ok = df < 2
    ratio = np.asarray(fast["snr"])[jf[ok]] / np.asarray(slow["snr"])[js[ok]]
    np.testing.assert_allclose(ratio, 1.0, atol=0.02)
    assert abs(len(fast) - len(slow)) <= 2


def test_background_rms_is_the_noise_of_background_and_noise() -> None:
    # the new image's pre-resampling noise is taken without building the background map:
    # the same SEP global RMS as background_and_noise, masked and non-finite pixels excluded
    from astrid.science.pair_alignment import _background_rms
    from astrid.science.psf_stars import background_and_noise

    rng = np.random.default_rng(3)
    img = (100.0 + 7.0 * rng.standard_normal((300, 260))).astype(np.float32)
    img[10:20, 30:40] = np.nan
    mask = np.zeros(img.shape, bool)
    mask[200:230, 100:180] = True
    img[200:230, 100:180] = 5000.0  # masked: must not lift the noise
    _, expected = background_and_noise(img, mask | ~np.isfinite(img))
    assert _background_rms(img, mask) == pytest.approx(expected, rel=1e-12)
    assert _background_rms(img, mask) == pytest.approx(7.0, rel=0.05)


def test_an_image_masked_everywhere_names_why() -> None:
    """A saturation level below the data (a SATURATE card left over after scaling) or an
    image that is NaN or masked everywhere: the error says which and how many."""
    from astrid.science.difference import DifferenceError
    from astrid.science.diffimage import prepare_image

    rng = np.random.default_rng(2)
    data = rng.normal(1e7, 100.0, (64, 64)).astype(np.float32)
    with pytest.raises(DifferenceError) as err:
        prepare_image(data, saturation=60000.0)
    assert "4096 of 4096 are at or within 2 px of the saturation level 60000" in str(err.value)
    assert "SATURATE keyword" in str(err.value)
    nan = np.full((64, 64), np.nan, np.float32)
    with pytest.raises(DifferenceError, match="4096 of 4096 pixels are NaN or infinite"):
        prepare_image(nan)
    with pytest.raises(DifferenceError, match="4096 of 4096 are masked"):
        prepare_image(data, mask=np.ones((64, 64), bool))


def test_scattered_infinite_pixels_are_masked_like_nan_not_grown_as_saturation() -> None:
    """Scattered +inf pixels (a hot-pixel or overflow convention of some pipelines) used to
    count as saturated and be grown by the PSF half-size: 182 of them masked 47 % of a
    512² difference and lost half the transients. They must cost what NaNs cost."""
    p = simulate_pair((256, 256), 120, seed=21, n_transients=6,
                      transient_flux_range=(2500, 5000))  # fmt: skip
    found, masked = {}, {}
    for bad in (np.nan, np.inf):
        data = p.new.data.copy()
        data[5::29, 7::31] = bad
        image = dataclasses.replace(p.new, data=data)
        table = detect_pair(write_simulated(image), write_simulated(p.ref), "zogy")
        result, _ = subtract_pair(write_simulated(image), write_simulated(p.ref), "zogy")
        masked[str(bad)] = float(result.mask.mean())
        found[str(bad)] = np.column_stack([table["x"], table["y"]])
    # the image border and the holes' own disks; the old growth took ~50 % more here
    assert masked["inf"] == pytest.approx(masked["nan"], abs=0.002), masked
    tr = p.truth[p.truth["kind"] == "transient"]
    truth = np.column_stack([tr["x_ref"], tr["y_ref"]])
    for pts in found.values():
        d, _ = cKDTree(pts).query(truth)
        assert (d < 1.5).sum() >= len(tr) - 1
    d, _ = cKDTree(found["nan"]).query(found["inf"])
    assert len(found["inf"]) == len(found["nan"]) and np.all(d < 0.01)


def test_images_in_tiny_or_huge_units_give_the_same_candidates_or_a_named_error() -> None:
    """ZOGY is invariant to the images' units, float32 only over a range: inside it the
    candidates and S/N do not change; outside (images in erg/s/cm²/Hz, say) the score map
    used to come out empty without a word."""
    p = simulate_pair((256, 256), 120, seed=23, n_transients=6,
                      transient_flux_range=(2500, 5000))  # fmt: skip

    def scaled(image, factor: float) -> bytes:  # type: ignore[no-untyped-def]
        header = image.header.copy()
        for key in ("SATURATE", "GAIN"):  # in ADU and e-/ADU: they would no longer apply
            header.remove(key, ignore_missing=True)
        data = (image.data * factor).astype(np.float32)
        return write_simulated(dataclasses.replace(image, data=data, header=header),
                               extensions=False)  # fmt: skip

    base = detect_pair(scaled(p.new, 1.0), scaled(p.ref, 1.0), "zogy")
    assert len(base) >= 4
    for factor in (1e-9, 1e8):
        table = detect_pair(scaled(p.new, factor), scaled(p.ref, factor), "zogy")
        d, j = cKDTree(np.c_[table["x"], table["y"]]).query(np.c_[base["x"], base["y"]])
        assert len(table) == len(base) and np.all(d < 0.01)
        snr = np.asarray(table["snr"])[j]
        assert np.allclose(snr, base["snr"], rtol=5e-3)
        assert np.allclose(np.asarray(table["flux"])[j], base["flux"] * factor, rtol=5e-3)
    for factor in (1e-14, 1e12):
        with pytest.raises(DifferenceError, match=r"background noise is .* image units, outside"):
            detect_pair(scaled(p.new, factor), scaled(p.ref, factor), "zogy")


@pytest.mark.parametrize(
    "grid", ["mirrored (east to the right)", "rotated by 90 degrees", "binned 2x2"]
)
def test_a_new_image_on_another_pixel_grid_gives_the_same_candidates(grid: str) -> None:
    """Cameras differ in parity, orientation and pixel size: the same sky written on a
    mirrored, rotated or coarser pixel grid (its WCS saying so) gives the same candidates
    on the reference grid."""
    p = simulate_pair((256, 256), 120, seed=29, n_transients=6,
                      transient_flux_range=(2500, 5000))  # fmt: skip
    d = np.asarray(p.new.data, np.float32)
    ny, nx = d.shape
    w = WCS(p.new.header)
    cd, (cx, cy) = w.pixel_scale_matrix, w.wcs.crpix
    if grid.startswith("mirrored"):
        data, cd2, crpix = d[:, ::-1], cd @ np.diag([-1.0, 1.0]), (nx + 1 - cx, cy)
    elif grid.startswith("rotated"):
        data, cd2, crpix = np.rot90(d), cd @ np.array([[0.0, -1.0], [1.0, 0.0]]), (cy, nx + 1 - cx)
    else:
        data = d.reshape(ny // 2, 2, nx // 2, 2).sum(axis=(1, 3))
        cd2, crpix = cd * 2, ((cx - 0.5) / 2 + 0.5, (cy - 0.5) / 2 + 0.5)
    header = p.new.header.copy()
    for key in [k for k in header if k.startswith(("CD", "PC", "CDELT"))]:
        del header[key]
    header["CRPIX1"], header["CRPIX2"] = crpix
    for i in range(2):
        for j in range(2):
            header[f"CD{i + 1}_{j + 1}"] = float(cd2[i, j])
    image = dataclasses.replace(p.new, data=np.ascontiguousarray(data, np.float32),
                                header=header)  # fmt: skip
    base = detect_pair(write_simulated(p.new, extensions=False), write_simulated(p.ref), "zogy")
    table = detect_pair(write_simulated(image, extensions=False), write_simulated(p.ref), "zogy")
    assert len(base) >= 4
    d_pix, j = cKDTree(np.c_[table["x"], table["y"]]).query(np.c_[base["x"], base["y"]])
    # the binned image is resampled (bicubic) onto the finer grid: centroids move a little
    assert np.all(d_pix < (0.3 if grid.startswith("binned") else 0.01))
    ratio = np.asarray(table["snr"])[j] / np.asarray(base["snr"])
    assert np.all(np.abs(ratio - 1) < (0.05 if grid.startswith("binned") else 0.005)), ratio
