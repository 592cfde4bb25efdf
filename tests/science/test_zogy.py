"""ZOGY: noise normalisation, flux scale, S/N against the theoretical limit, recovery."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from astrid.science.diffimage import ShapeMismatchError, psf_from_array
from astrid.science.psf import PSFError, gaussian_psf
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_model import AnalyticPSF, Exposure
from astrid.science.zogy import zogy
from astrid.science.zogy_algebra import zogy_core


def _ideal_fs(psf_n: np.ndarray, psf_r: np.ndarray, sn: float, sr: float, n: int) -> float:
    """F_S of the ZOGY paper, computed independently with numpy.fft on an n x n grid."""

    def embed(p: np.ndarray) -> np.ndarray:
        out = np.zeros((n, n))
        h = p.shape[0] // 2
        out[: p.shape[0], : p.shape[0]] = p
        return np.roll(out, (-h, -h), axis=(0, 1))

    an = np.abs(np.fft.fft2(embed(psf_n))) ** 2
    ar = np.abs(np.fft.fft2(embed(psf_r))) ** 2
    return float((an * ar / (sn**2 * ar + sr**2 * an)).sum() / n**2)


def test_core_flux_and_background_variance_match_theory() -> None:
    n = 128
    psf_n, psf_r = gaussian_psf(2.5, 21), gaussian_psf(3.5, 21)
    new = np.zeros((n, n), np.float32)
    new[54:75, 54:75] = 1000.0 * psf_n  # point source of flux 1000 at (64, 64)
    out = zogy_core(new, np.zeros_like(new), psf_n, psf_r, 10.0, 5.0)
    flux = out.s_map / out.f_s
    assert flux[64, 64] == pytest.approx(1000.0, rel=1e-3)
    fs = _ideal_fs(psf_n, psf_r, 10.0, 5.0, n)
    assert out.f_s == pytest.approx(fs, rel=1e-3)
    # With no source noise, V(S) = F_S everywhere (eq. 42 of the paper).
    assert np.allclose(out.var, fs, rtol=1e-3)
    # D has unit white noise: feed pure noise and check the pixel variance.
    rng = np.random.default_rng(0)
    noise_n = rng.normal(0, 10.0, (256, 256)).astype(np.float32)
    noise_r = rng.normal(0, 5.0, (256, 256)).astype(np.float32)
    out2 = zogy_core(noise_n, noise_r, psf_n, psf_r, 10.0, 5.0)
    assert out2.diff.std() == pytest.approx(1.0, abs=0.03)
    assert out2.score.std() == pytest.approx(1.0, abs=0.03)


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    new = Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030, flux_scale=1.3)
    ref = Exposure(psf=AnalyticPSF(fwhm=2.5), sky=3000.0)
    return simulate_pair((512, 512), 250, seed=11, new=new, ref=ref, n_transients=60,
                         transient_flux_range=(300, 4000))  # fmt: skip


def test_zogy_recovers_transients_at_the_theoretical_snr(pair) -> None:  # type: ignore[no-untyped-def]
    res = zogy(pair.new.data, pair.ref.data, new_mask=pair.new.mask, ref_mask=pair.ref.mask,
               new_gain=2.0, ref_gain=2.0, renormalize=False)  # fmt: skip
    # the fitted flux ratio is the simulated one
    assert res.flux_ratio == pytest.approx(1.3, rel=0.03)
    # the score is calibrated without any empirical renormalisation
    valid = ~res.mask
    score = res.score[valid]
    robust = 1.4826 * np.median(np.abs(score - np.median(score)))
    assert robust == pytest.approx(1.0, abs=0.06)
    tr = pair.truth[pair.truth["kind"] == "transient"]
    from astrid.science.extract import extract_candidates

    cand = extract_candidates(res, 5.0)
    d, j = cKDTree(np.c_[cand["x"], cand["y"]]).query(np.c_[tr["x_ref"], tr["y_ref"]])
    hit = d < 2.0
    ideal = np.asarray(tr["ideal_snr"])
    strong = ideal >= 7
    assert hit[strong].mean() >= 0.95
    ratio = np.asarray(cand["snr"])[j[hit & strong]] / ideal[hit & strong]
    assert np.median(ratio) >= 0.9
    # fluxes in reference units times F_n are the injected new-image fluxes
    flux = np.asarray(cand["flux"])[j[hit & strong]] * res.flux_ratio
    assert np.median(flux / np.asarray(tr["delta_flux"])[hit & strong]) == pytest.approx(
        1, abs=0.05
    )
    # almost nothing else
    all_truth = pair.truth[np.isfinite(pair.truth["x_ref"])]
    d2, _ = cKDTree(np.c_[all_truth["x_ref"], all_truth["y_ref"]]).query(
        np.c_[cand["x"], cand["y"]]
    )
    assert (d2 > 3).sum() <= 2


def test_swapping_images_flips_the_sign(pair) -> None:  # type: ignore[no-untyped-def]
    a = zogy(pair.new.data, pair.ref.data, new_gain=2.0, ref_gain=2.0)
    b = zogy(pair.ref.data, pair.new.data, new_gain=2.0, ref_gain=2.0)
    tr = pair.truth[(pair.truth["kind"] == "transient") & (pair.truth["ideal_snr"] > 15)]
    xs, ys = np.round(tr["x_ref"]).astype(int), np.round(tr["y_ref"]).astype(int)
    assert np.all(a.score[ys, xs] > 8)
    assert np.all(b.score[ys, xs] < -8)


def test_masked_and_nan_regions_give_no_signal(pair) -> None:  # type: ignore[no-untyped-def]
    new = pair.new.data.copy()
    new[100:160, 200:300] = np.nan
    res = zogy(new, pair.ref.data)
    assert np.all(res.score[100:160, 200:300] == 0)
    assert res.mask[100:160, 200:300].all()
    assert np.isfinite(res.score).all() and np.isfinite(res.diff).all()


def test_shape_mismatch_is_a_named_error() -> None:
    with pytest.raises(ShapeMismatchError):
        zogy(np.zeros((10, 10)), np.zeros((12, 10)))


def test_sub_images_follow_a_varying_psf() -> None:
    """With a PSF 60% wider at the edge, per-tile PSFs cut the star residuals and flux bias."""
    new = Exposure(psf=AnalyticPSF(fwhm=3.0, fwhm_gradient=(0.6, 0.6)), mjd=60030)
    ref = Exposure(psf=AnalyticPSF(fwhm=2.6))
    p = simulate_pair((768, 768), 1500, seed=4, new=new, ref=ref, n_transients=60,
                      transient_flux_range=(500, 3000), flux_range=(300, 2e5))  # fmt: skip
    from astrid.science.extract import extract_candidates

    tr = p.truth[p.truth["kind"] == "transient"]
    allt = p.truth[np.isfinite(p.truth["x_ref"])]
    out = {}
    for tile in (4096, 384):
        res = zogy(p.new.data, p.ref.data, new_gain=2.0, ref_gain=2.0, tile_size=tile)
        cand = extract_candidates(res, 5.0)
        d, j = cKDTree(np.c_[cand["x"], cand["y"]]).query(np.c_[tr["x_ref"], tr["y_ref"]])
        strong = (d < 2) & (np.asarray(tr["ideal_snr"]) >= 7)
        flux = np.asarray(cand["flux"])[j[strong]] * res.flux_ratio
        bias = abs(np.median(flux / np.asarray(tr["delta_flux"])[strong]) - 1)
        d2, _ = cKDTree(np.c_[allt["x_ref"], allt["y_ref"]]).query(np.c_[cand["x"], cand["y"]])
        completeness = (d < 2)[np.asarray(tr["ideal_snr"]) >= 7].mean()
        out[tile] = (int((d2 > 3).sum()), bias, completeness)
    assert out[384][0] < 0.7 * out[4096][0]
    assert out[384][1] < 0.03
    assert out[384][2] >= 0.9


def test_supplied_psf_is_cropped_centred_and_used_for_every_tile(pair) -> None:  # type: ignore[no-untyped-def]
    # a WebbPSF-like model: large (205 px), not centred on the array, arbitrary sum
    big = np.zeros((205, 205))
    big[100 - 30 : 100 + 31, 96 - 30 : 96 + 31] = gaussian_psf(3.5, 61) * 0.97
    model = psf_from_array(big, max_size=41)
    assert model.array.shape == (41, 41)
    assert model.array.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(model.array), model.array.shape) == (20, 20)
    assert model.fwhm == pytest.approx(3.5, rel=0.05)  # erf-pixelated Gaussian moments
    assert model.reason == "given" and not model.fallback
    with pytest.raises(PSFError):
        psf_from_array(np.full((9, 9), np.nan))
    # Given PSFs are not replaced by per-tile estimates: P_D is that of a single tile.
    p = pair
    psf_n, psf_r = gaussian_psf(3.5, 205), gaussian_psf(2.5, 205)
    tiled = zogy(p.new.data, p.ref.data, new_psf=psf_n, ref_psf=psf_r, tile_size=256)
    single = zogy(p.new.data, p.ref.data, new_psf=psf_n, ref_psf=psf_r, tile_size=4096)
    np.testing.assert_allclose(tiled.psf, single.psf, atol=1e-6)
    assert tiled.new_psf.size == 61  # cropped from 205 px
    centre = (slice(100, 400), slice(100, 400))
    np.testing.assert_allclose(tiled.score[centre], single.score[centre], atol=0.05)


def test_core_spectra_are_the_plain_expressions_bit_for_bit() -> None:
    # zogy_core reuses its temporaries; D and S must be the very float32 values of the plain
    # expressions (the same operations in the same order), not merely close to them
    from astrid.science.zogy_algebra import _irfft2_consume, _rfft2_compact

    rng = np.random.default_rng(5)
    shape = (96, 80)
    new = rng.normal(0, 3.0, shape).astype(np.float32)
    ref = rng.normal(0, 2.0, shape).astype(np.float32)
    pn_psf, pr_psf = gaussian_psf(3.5, 15), gaussian_psf(2.5, 15)
    sn, sr, fn, fr = 3.0, 2.0, 1.3, 1.0
    vn = np.abs(new) / np.float32(2.0)
    vr = np.abs(ref) / np.float32(3.0)
    out = zogy_core(new, ref, pn_psf, pr_psf, sn, sr, flux_ratio=fn, new_var_source=vn,
                    ref_var_source=vr)  # fmt: skip
    pn = _rfft2_compact(pn_psf, shape, 1)
    pr = _rfft2_compact(pr_psf, shape, 1)
    import scipy.fft as sfft

    n_hat, r_hat = sfft.rfft2(new), sfft.rfft2(ref)
    apn2 = pn.real**2 + pn.imag**2
    apr2 = pr.real**2 + pr.imag**2
    den2 = np.float32(sn**2 * fr**2) * apr2
    den2 += np.float32(sr**2 * fn**2) * apn2
    np.maximum(den2, np.float32(1e-12 * float(den2.max())), out=den2)
    inv_den = 1.0 / np.sqrt(den2)
    d_hat = pr * n_hat
    d_hat -= np.float32(fn) * pn * r_hat
    d_hat *= inv_den
    diff = _irfft2_consume(d_hat, shape, 1)
    inv_den2 = inv_den * inv_den
    s_n = _irfft2_consume(n_hat * (np.float32(fn * fr**2) * apr2 * inv_den2) * np.conj(pn),
                          shape, 1)  # fmt: skip
    s_r = _irfft2_consume(r_hat * (np.float32(fr * fn**2) * apn2 * inv_den2) * np.conj(pr),
                          shape, 1)  # fmt: skip
    assert out.diff.dtype == np.float32 and out.s_map.dtype == np.float32
    np.testing.assert_array_equal(out.diff, diff)
    np.testing.assert_array_equal(out.s_map, s_n - s_r)
    # V(S): background terms plus the source variance maps convolved with k_n^2, k_r^2
    from astrid.science.zogy_algebra import _small_kernels

    small = _small_kernels(pn_psf, pr_psf, sn, sr, fn, fr, min(shape), None)
    kn2, kr2 = small.kn**2, small.kr**2
    var = np.full(shape, sn**2 * float(kn2.sum()) + sr**2 * float(kr2.sum()), np.float32)
    acc = sfft.rfft2(vn) * _rfft2_compact(kn2, shape, 1, centred=False)
    acc += sfft.rfft2(vr) * _rfft2_compact(kr2, shape, 1, centred=False)
    var += np.clip(_irfft2_consume(acc, shape, 1), 0, None)
    np.testing.assert_array_equal(out.var, var)


def test_kernel_spectra_reused_across_sub_images_give_the_same_bits() -> None:
    # zogy() computes the PSF-only spectra once per padded shape and reuses them for every
    # sub-image of that shape: each sub-image's D, S and V(S) must be the very values that
    # zogy_core computes on its own
    from astrid.science.zogy_algebra import kernel_spectra

    rng = np.random.default_rng(11)
    shape = (90, 84)
    pn_psf, pr_psf = gaussian_psf(3.5, 15), gaussian_psf(2.5, 15)
    spec = kernel_spectra(pn_psf, pr_psf, 3.0, 2.0, shape, flux_ratio=1.3)
    for _ in range(2):  # two different sub-images, one set of spectra
        new = rng.normal(0, 3.0, shape).astype(np.float32)
        ref = rng.normal(0, 2.0, shape).astype(np.float32)
        vn, vr = np.abs(new), np.abs(ref)
        kw = dict(flux_ratio=1.3, new_var_source=vn, ref_var_source=vr,
                  astrometric_sigma=(0.05, 0.04))  # fmt: skip
        alone = zogy_core(new, ref, pn_psf, pr_psf, 3.0, 2.0, **kw)  # type: ignore[arg-type]
        shared = zogy_core(new, ref, pn_psf, pr_psf, 3.0, 2.0, spectra=spec, **kw)  # type: ignore[arg-type]
        for name in ("diff", "s_map", "var", "psf_d", "cr_template"):
            np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name))
        assert shared.f_s == alone.f_s
    with pytest.raises(ValueError, match="another shape"):
        zogy_core(new[:-2], ref[:-2], pn_psf, pr_psf, 3.0, 2.0, spectra=spec)


def test_dilate_disk_is_the_binary_dilation_by_a_disk_wherever_the_pixels_are() -> None:
    # _dilate_disk labels its groups within the set pixels' bounding box only; the result
    # must stay the dilation by a disk, at the edges and for groups far apart
    from scipy import ndimage

    from astrid.science.zogy_masks import _dilate_disk

    rng = np.random.default_rng(4)
    for trial in range(12):
        ny, nx = (int(v) for v in rng.integers(30, 200, 2))
        mask = rng.random((ny, nx)) < (0.002, 0.02)[trial % 2]
        if trial % 3 == 0:
            mask[:, int(rng.integers(0, nx))] = True  # a bad column
        mask[0, 0] = trial % 4 == 1  # a corner pixel
        for radius in (2, 5, 13):
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            disk = yy**2 + xx**2 <= radius**2
            expected = ndimage.binary_dilation(mask, structure=disk) if mask.any() else mask
            np.testing.assert_array_equal(_dilate_disk(mask, radius), expected)
