"""The L.A.Cosmic mask on crops equals astroscrappy's full-frame passes; OpenMP thread limit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from astrid.science.background import estimate_background
from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF


def test_tiled_second_cosmic_ray_pass_equals_full_lacosmic() -> None:
    # the second L.A.Cosmic iteration runs only in tiles around first-pass hits: it must flag
    # exactly the pixels that astroscrappy's own two full iterations flag
    import astroscrappy

    from astrid.science.cosmics import cosmic_ray_mask

    im = simulate_star_field(
        (640, 640), n_stars=400, seed=14, psf=AnalyticPSF(fwhm=3.2), cosmic_rays=14
    )
    bkg = estimate_background(im.data, im.mask)
    got = cosmic_ray_mask(im.data, mask=im.mask, background=bkg, gain=im.gain, saturation=60000.0)
    arr = np.where(im.mask, 0.0, im.data.astype(np.float64))
    var = bkg.rms**2 + np.clip(arr - bkg.background, 0, None) / im.gain
    kwargs = dict(
        inmask=im.mask,
        invar=var.astype(np.float32),
        sigclip=5.0,
        objlim=5.0,
        gain=1.0,
        readnoise=0.0,
        satlevel=60000.0,
        verbose=False,
    )
    first, _ = astroscrappy.detect_cosmics(arr.astype(np.float32), niter=1, **kwargs)
    full, _ = astroscrappy.detect_cosmics(arr.astype(np.float32), niter=2, **kwargs)
    # this field's second iteration adds a pixel (measured 50 -> 51): the test can fail
    assert full.sum() > first.sum()
    np.testing.assert_array_equal(got, np.asarray(full, bool) & ~im.mask)
    truth = im.cosmic_ray_mask & ~im.mask
    assert (got & truth).sum() / truth.sum() > 0.9


def test_first_cosmic_ray_pass_on_candidate_crops_equals_full_frame() -> None:
    # L.A.Cosmic's first pass runs only on crops around pixels whose Laplacian could pass its
    # threshold: same mask and cleaned pixels as the full frame, rays on the edges included
    import astroscrappy

    from astrid.science.cosmics import _first_pass_on_candidates, _lacosmic_candidates

    im = simulate_star_field(
        (512, 480), n_stars=300, seed=17, psf=AnalyticPSF(fwhm=3.0), cosmic_rays=40
    )
    data = im.data.astype(np.float32)
    edge_hits = ((3, 100), (200, 476), (508, 37), (4, 250), (300, 3), (4, 4), (0, 300))
    for y, x in edge_hits:
        data[y, x] += 4000.0  # hits near (and one on) the edges: their crops are cut by them
    bad = np.zeros(data.shape, bool)
    bkg = estimate_background(data, bad)
    var = (bkg.rms**2 + np.clip(data - bkg.background, 0, None) / im.gain).astype(np.float32)

    def lacosmic(d: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crm, clean = astroscrappy.detect_cosmics(
            np.ascontiguousarray(d), inmask=np.ascontiguousarray(m),
            invar=np.ascontiguousarray(v), sigclip=5.0, objlim=5.0, gain=1.0, readnoise=0.0,
            satlevel=1e9, niter=1, sepmed=True, verbose=False,
        )  # fmt: skip
        return np.asarray(crm, bool), np.asarray(clean, np.float32)

    full, full_clean = lacosmic(data, bad, var)
    # the crops are a small part of the frame (else the function runs the full frame itself)
    assert _lacosmic_candidates(data, var, 5.0)[1:-1, 1:-1].mean() < 0.02

    def variance(rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        return var[rows, cols]

    got, got_clean, hits = _first_pass_on_candidates(lacosmic, data, bad, variance, var, 5.0, 10)
    assert sum(bool(full[y, x]) for y, x in edge_hits) >= 4  # most edge hits are found
    np.testing.assert_array_equal(got, full)
    # the boxes of hits hold every hit (the second pass crops around them)
    assert hits is not None
    held = np.zeros(got.shape, bool)
    for y0, y1, x0, x1 in hits:
        held[y0:y1, x0:x1] = True
    assert not (got & ~held).any()
    np.testing.assert_allclose(got_clean[full], full_clean[full], rtol=1e-6)
    truth = im.cosmic_ray_mask
    assert (got & truth).sum() / truth.sum() > 0.9


def test_lacosmic_flags_nothing_within_three_pixels_of_the_edge() -> None:
    """The premise of leaving the border's candidates out: astroscrappy's separable median
    filters copy a 3-pixel border, so L.A.Cosmic (two iterations) flags nothing there,
    however bright the ray; at 3 px and beyond it does, and cosmic_ray_mask agrees."""
    import astroscrappy

    from astrid.science.cosmics import _BORDER, cosmic_ray_mask

    rng = np.random.default_rng(5)
    n = 160
    data = rng.normal(500.0, 16.0, (n, n)).astype(np.float32)
    for d in range(6):  # rays at distance d from each of the four edges
        for x in range(12, n - 12, 29):
            data[d, x + d] += 3000.0
            data[x + d, d] += 3000.0
            data[n - 1 - d, x] += 3000.0
            data[x, n - 1 - d] += 3000.0
    var = np.full(data.shape, 256.0, np.float32)
    crm, _ = astroscrappy.detect_cosmics(data, invar=var, sigclip=5.0, objlim=5.0, gain=1.0,
                                         readnoise=0.0, satlevel=1e9, niter=2, sepmed=True,
                                         verbose=False)  # fmt: skip
    full = np.asarray(crm, bool)
    ys, xs = np.nonzero(full)
    distance = np.minimum(np.minimum(ys, xs), np.minimum(n - 1 - ys, n - 1 - xs))
    assert distance.min() == _BORDER == 3
    assert set(distance.tolist()) >= {3, 4, 5}  # the rays beyond the border are found
    bkg = estimate_background(data, None)
    got = cosmic_ray_mask(data, background=bkg, gain=None, saturation=1e9)
    want, _ = astroscrappy.detect_cosmics(
        data, invar=(bkg.rms**2).astype(np.float32), sigclip=5.0, objlim=5.0, gain=1.0,
        readnoise=0.0, satlevel=1e9, niter=2, sepmed=True, verbose=False,
    )  # fmt: skip
    assert np.asarray(want, bool)[_BORDER:-_BORDER, _BORDER:-_BORDER].sum() > 20
    np.testing.assert_array_equal(got, np.asarray(want, bool))


def test_candidate_groups_hold_every_candidate() -> None:
    """The groups, found on 8-pixel blocks, hold every candidate pixel, with tight boxes."""
    from astrid.science.cosmics import _candidate_groups

    rng = np.random.default_rng(9)
    for shape in ((64, 64), (203, 150)):
        cand = rng.random(shape) < 0.004
        cand[10:13, 20:22] = True
        boxes = _candidate_groups(cand)
        held = np.zeros(shape, bool)
        for y0, y1, x0, x1 in boxes:
            held[y0:y1, x0:x1] = True
            sub = cand[y0:y1, x0:x1]
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
        assert not (cand & ~held).any()
        assert len(boxes) >= 5


def test_block_minimum_bounds_the_7x7_minimum_filter() -> None:
    """The cheap bound behind the L.A.Cosmic candidates is never above the true 7×7 minimum
    (so the candidate set stays a superset), on a shape that is not a multiple of 8."""
    from scipy import ndimage

    from astrid.science.cosmics import _block_minimum

    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 10.0, size=(203, 150)).astype(np.float32)
    bound = _block_minimum(values, 8)
    assert bound.shape == values.shape
    assert np.all(bound <= ndimage.minimum_filter(values, size=7, mode="nearest"))


def test_single_openmp_thread_limits_and_restores() -> None:
    """L.A.Cosmic runs on one OpenMP thread inside the block; the limit is undone after."""
    from threadpoolctl import threadpool_info

    from astrid.science.cosmics import single_openmp_thread

    def omp() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]

    before = omp()
    assert before, "astroscrappy's OpenMP runtime is loaded with astrid.science.cosmics"
    with single_openmp_thread():
        assert omp() == [1] * len(before)
    assert omp() == before


def test_lacosmic_candidates_block_paths_agree() -> None:
    """The block-by-block comparison (sides multiple of 8) flags what the per-pixel bound
    does (other sides), and every pixel L.A.Cosmic itself flags is a candidate."""
    import astroscrappy

    from astrid.science.cosmics import _lacosmic_candidates

    rng = np.random.default_rng(8)
    data = rng.normal(100.0, 5.0, (64, 64)).astype(np.float32)
    data[rng.integers(2, 62, 12), rng.integers(2, 62, 12)] += 400.0  # one-pixel hits
    var = np.full(data.shape, 25.0, np.float32)
    fast = _lacosmic_candidates(data, var, 5.0)
    slow = _lacosmic_candidates(np.pad(data, ((0, 1), (0, 1)), mode="edge"),
                                np.pad(var, ((0, 1), (0, 1)), mode="edge"), 5.0)  # fmt: skip
    np.testing.assert_array_equal(fast[:-1, :-1], slow[:-2, :-2])
    crm, _ = astroscrappy.detect_cosmics(data, invar=var, sigclip=5.0, objlim=5.0, gain=1.0,
                                         readnoise=0.0, satlevel=1e9, niter=1, sepmed=True,
                                         verbose=False)  # fmt: skip
    flagged = np.asarray(crm, bool)
    assert flagged.sum() >= 10
    grown = ndimage.binary_dilation(fast, structure=np.ones((3, 3), bool), iterations=2)
    assert not (flagged & ~grown).any()


def _candidates_whole_image(data32: np.ndarray, var32: np.ndarray, sigclip: float) -> np.ndarray:
    """_lacosmic_candidates as it was before it went by bands of rows (sides multiple of 8):
    the whole image at once."""
    from astrid.science.cosmics import _block_minimum

    x = np.pad(np.asarray(data32, dtype=np.float32), 1)
    c = x[1:-1, 1:-1]
    up, down = c - x[:-2, 1:-1], c - x[2:, 1:-1]
    left, right = c - x[1:-1, :-2], c - x[1:-1, 2:]
    four_lplus = np.maximum(up + left, 0.0)
    tmp = np.empty_like(four_lplus)
    for a, b in ((up, right), (down, left), (down, right)):
        np.add(a, b, out=tmp)
        np.maximum(tmp, 0.0, out=tmp)
        four_lplus += tmp
    k4 = 4.0 * 0.9 * sigclip * 2.0
    np.square(four_lplus, out=four_lplus)
    ny, nx = four_lplus.shape
    bound = np.float32(k4 * k4) * np.maximum(_block_minimum(var32, 8, spread=False), 1e-5)
    over = four_lplus.reshape(ny // 8, 8, nx // 8, 8) > bound[:, None, :, None]
    return over.reshape(ny, nx)


@pytest.mark.parametrize(("ny", "nx"), [(8, 8), (64, 2048), (520, 264), (1032, 136)])
def test_lacosmic_candidates_by_bands_equal_the_whole_image(ny: int, nx: int) -> None:
    """Bands of rows (one, several, a short last one) flag exactly the pixels the
    whole-image computation flags, edges included (zero beyond them)."""
    from astrid.science.cosmics import _lacosmic_candidates

    rng = np.random.default_rng(ny + nx)
    data = rng.normal(100.0, 5.0, (ny, nx)).astype(np.float32)
    n = max(ny * nx // 200, 1)
    data[rng.integers(0, ny, n), rng.integers(0, nx, n)] += rng.uniform(20.0, 400.0, n)
    var = rng.uniform(16.0, 36.0, (ny, nx)).astype(np.float32)
    got = _lacosmic_candidates(data, var, 5.0)
    want = _candidates_whole_image(data, var, 5.0)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(got, want)
