"""Cosmic-ray mask: L.A.Cosmic (``astroscrappy``) run on crops around its possible hits.

:func:`cosmic_ray_mask` is the entry point; :func:`single_openmp_thread` keeps astroscrappy's
OpenMP kernels on one thread (a pipeline's parallelism comes from worker processes). The
private helpers find the pixels where L.A.Cosmic can fire at all (a cheap upper bound of its
statistic) so that both iterations run on small crops with the same result as full frames.

Masks are True = excluded (here: True = cosmic-ray hit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import astroscrappy
import numpy as np
from scipy import ndimage

from astrid.science.background import BackgroundEstimate, estimate_background, valid_pixels

__all__ = ["cosmic_ray_mask", "single_openmp_thread"]


@contextmanager
def single_openmp_thread() -> Iterator[None]:
    """Run OpenMP kernels (astroscrappy's L.A.Cosmic) on one thread inside the block.

    Why: L.A.Cosmic on small crops spends most of its CPU in OpenMP's thread start-up and
    spin-waiting (on a 32² crop ~4 ms CPU with 2 threads against 0.3 ms with one), and a
    pipeline gets its parallelism from worker processes, not from threads inside a step.
    The per-pixel arithmetic does not depend on the thread count, so the results are the
    same. Every OpenMP runtime loaded so far is limited (finding them costs ~1 ms); the
    previous limits are restored on exit.
    """
    from threadpoolctl import ThreadpoolController

    with ThreadpoolController().select(user_api="openmp").limit(limits=1):
        yield


def cosmic_ray_mask(
    data: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    background: BackgroundEstimate | None = None,
    gain: float | None = None,
    read_noise: float | None = None,
    saturation: float | None = None,
    sigclip: float = 5.0,
    objlim: float = 5.0,
) -> np.ndarray:
    """Cosmic-ray pixels by L.A.Cosmic (``astroscrappy``, van Dokkum 2001), two iterations.

    The noise model is the background rms map squared plus the Poisson noise of sources
    (``(data - background) / gain`` when the gain is known), so the image may be
    sky-subtracted and in any unit.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx).
    mask : numpy.ndarray, optional
        Pixels to ignore (True = excluded).
    background : BackgroundEstimate, optional
        Computed if absent.
    gain : float, optional
        Electrons per image unit.
    read_noise : float, optional
        Unused when the noise model comes from the rms map (kept for API symmetry).
    saturation : float, optional
        Saturation level in image units.
    sigclip, objlim : float
        L.A.Cosmic detection thresholds.

    Returns
    -------
    numpy.ndarray
        Bool, True = cosmic-ray hit.
    """
    arr, bad = valid_pixels(data, mask)
    bkg = background or estimate_background(arr, bad)
    var = bkg.rms**2
    if gain and gain > 0:
        var = var + np.clip(arr - bkg.background, 0, None) / float(gain)
    sat = float(saturation) if saturation is not None else float(np.max(arr[~bad])) * 10 + 1
    data32 = arr.astype(np.float32)
    var32 = var.astype(np.float32)

    def _lacosmic(d: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crm, clean = astroscrappy.detect_cosmics(
            np.ascontiguousarray(d),
            inmask=np.ascontiguousarray(m),
            invar=np.ascontiguousarray(v),
            sigclip=sigclip,
            objlim=objlim,
            gain=1.0,
            readnoise=0.0,
            satlevel=sat,
            niter=1,
            sepmed=True,
            verbose=False,
        )
        return np.asarray(crm, dtype=bool), np.asarray(clean, dtype=np.float32)

    # Two L.A.Cosmic iterations (the third and fourth found no further pixel on simulated
    # 2048² frames with 300 rays). The cleaned image differs from the input only at first-pass
    # hits, and L.A.Cosmic's filters (Laplacian, 5×5 and 7×7 medians, two growth steps) see
    # less than ``reach`` pixels, so the second pass can change the mask only within ``reach``
    # of a first-pass hit: it runs on a crop around each group of hits (their bounding box +
    # ``reach``, with ``reach`` more of context) and is identical to a full second pass (a
    # test checks it against astroscrappy's own two iterations) at a small part of its cost.
    reach = 10
    with single_openmp_thread():
        crmask, clean = _first_pass_on_candidates(_lacosmic, data32, bad, var32, sigclip, reach)
        crmask |= _second_pass(_lacosmic, crmask, clean, bad, var32, reach)
    return np.asarray(crmask, dtype=bool) & ~bad


def _second_pass(
    lacosmic: Any,
    crmask: np.ndarray,
    clean: np.ndarray,
    bad: np.ndarray,
    var32: np.ndarray,
    reach: int,
) -> np.ndarray:
    """L.A.Cosmic's second iteration on ``clean``, on crops around the first pass's hits."""
    ny, nx = crmask.shape
    labels, _ = ndimage.label(crmask, structure=np.ones((3, 3), bool))
    boxes = [
        (max(sy.start - reach, 0), min(sy.stop + reach, ny), max(sx.start - reach, 0),
         min(sx.stop + reach, nx))
        for sy, sx in (b for b in ndimage.find_objects(labels) if b is not None)
    ]  # fmt: skip
    cost = sum((y1 - y0 + 2 * reach) * (x1 - x0 + 2 * reach) for y0, y1, x0, x1 in boxes)
    if cost > crmask.size // 2:  # crops would cost about as much as the whole frame
        return np.asarray(lacosmic(clean, bad, var32)[0], dtype=bool)
    second = np.zeros_like(crmask)
    for y0, y1, x0, x1 in boxes:
        cy0, cy1 = max(y0 - reach, 0), min(y1 + reach, ny)
        cx0, cx1 = max(x0 - reach, 0), min(x1 + reach, nx)
        found = lacosmic(clean[cy0:cy1, cx0:cx1], bad[cy0:cy1, cx0:cx1],
                         var32[cy0:cy1, cx0:cx1])[0]  # fmt: skip
        second[y0:y1, x0:x1] |= found[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    return second


def _lacosmic_candidates(data32: np.ndarray, var32: np.ndarray, sigclip: float) -> np.ndarray:
    """Pixels where L.A.Cosmic's first-pass detection is possible (a superset).

    L.A.Cosmic flags a pixel only if ``s − med(s) > sigclip`` where ``s = L⁺ / (2 noise) ≥ 0``
    (so ``s > sigclip`` is necessary). ``L⁺`` is the Laplacian of the 2×-subsampled image,
    clipped at 0 and rebinned: four clipped 3-point differences per pixel, zero beyond the
    edges as in astroscrappy. ``noise = sqrt(separable 7-px median of the variance)`` is at
    least the square root of the 7×7 minimum, itself at least the minimum over the 8×8
    blocks around the pixel's block (:func:`_block_minimum`), which bounds ``s`` from
    above; 0.9 × sigclip leaves room for float32 rounding (astroscrappy computes in float32
    too).
    """
    data32 = np.asarray(data32, dtype=np.float32)
    ny, nx = data32.shape
    # L⁺ > k sqrt(vmin)  ⇔  (4 L⁺)² > (4 k)² vmin  (both sides ≥ 0)
    k4 = 4.0 * 0.9 * sigclip * 2.0
    if ny % 8 == 0 and nx % 8 == 0:  # compare block by block, without spreading the bound
        blocks = _block_minimum(var32, 8, spread=False)
        bound = np.float32(k4 * k4) * np.maximum(blocks, np.float32(1e-5))
        out = np.empty((ny, nx), dtype=bool)
        # bands of rows, so that the temporaries stay in the cache (the same values)
        step = max(8, (_BAND_PIXELS // max(nx, 1)) // 8 * 8)
        for r0 in range(0, ny, step):
            r1 = min(r0 + step, ny)
            four = _four_lplus_squared(data32, r0, r1)
            b = bound[r0 // 8 : r1 // 8]
            over = four.reshape((r1 - r0) // 8, 8, nx // 8, 8) > b[:, None, :, None]
            out[r0:r1] = over.reshape(r1 - r0, nx)
        return out
    vmin = np.maximum(_block_minimum(var32, 8), np.float32(1e-5))
    return _four_lplus_squared(data32, 0, ny) > np.float32(k4 * k4) * vmin


#: pixels per band of :func:`_lacosmic_candidates` (a few 0.5 MB float32 temporaries)
_BAND_PIXELS = 1 << 17


def _four_lplus_squared(data32: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """``(4 L⁺)²`` of :func:`_lacosmic_candidates` for rows ``r0:r1`` of ``data32`` (float32,
    zero beyond the image's edges): four clipped sums of one-sided differences."""
    ny = data32.shape[0]
    lo, hi = max(r0 - 1, 0), min(r1 + 1, ny)
    x = np.pad(data32[lo:hi], ((1 - (r0 - lo), 1 - (hi - r1)), (1, 1)))
    c = x[1:-1, 1:-1]
    # c2 - a - b = (c - a) + (c - b): four one-sided differences, summed in pairs
    up, down = c - x[:-2, 1:-1], c - x[2:, 1:-1]
    left, right = c - x[1:-1, :-2], c - x[1:-1, 2:]
    four_lplus = np.maximum(up + left, 0.0)
    tmp = np.empty_like(four_lplus)
    for a, b in ((up, right), (down, left), (down, right)):
        np.add(a, b, out=tmp)
        np.maximum(tmp, 0.0, out=tmp)
        four_lplus += tmp
    np.square(four_lplus, out=four_lplus)
    return four_lplus


def _block_minimum(values: np.ndarray, block: int, *, spread: bool = True) -> np.ndarray:
    """A lower bound of the 7×7 minimum filter of ``values`` (2-d), shape of ``values``.

    The minimum over ``block``² blocks (``block`` ≥ 3 px, so a pixel's 7×7 window lies in
    its block and the 8 around it), then over 3×3 blocks, spread back to the pixels: about
    a tenth of the cost of ``ndimage.minimum_filter(size=7)`` on a 4-Mpix image.
    ``spread=False`` returns the per-block values (shape ``ceil(n / block)`` per axis).
    """
    ny, nx = values.shape
    py, px = (-ny) % block, (-nx) % block
    v = np.pad(values, ((0, py), (0, px)), mode="edge") if py or px else values
    blocks = v.reshape(v.shape[0] // block, block, v.shape[1] // block, block).min(axis=(1, 3))
    blocks = ndimage.minimum_filter(blocks, size=3, mode="nearest")
    if not spread:
        return blocks
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:ny, :nx]


def _first_pass_on_candidates(
    lacosmic: Any,
    data32: np.ndarray,
    bad: np.ndarray,
    var32: np.ndarray,
    sigclip: float,
    reach: int,
) -> tuple[np.ndarray, np.ndarray]:
    """L.A.Cosmic's first pass run only on crops around :func:`_lacosmic_candidates`.

    A flagged pixel is a candidate or within 2 px of one (two 3×3 growth steps), so each
    crop keeps its candidates' bounding box + 2 px, computed with ``reach`` px more of
    context (beyond the filters' reach): the same mask and cleaned pixels as a full-frame
    pass (a test compares them). Falls back to the full frame when the crops would cover
    more than half of it (crowded fields).
    """
    ny, nx = data32.shape
    cand = _lacosmic_candidates(data32, var32, sigclip)
    # the outermost rows and columns are all candidates (zero beyond the edge): four strips
    cand[0, :] = cand[-1, :] = cand[:, 0] = cand[:, -1] = False
    labels, _ = ndimage.label(cand, structure=np.ones((3, 3), bool))
    keeps = [(0, 3, 0, nx), (ny - 3, ny, 0, nx), (0, ny, 0, 3), (0, ny, nx - 3, nx)]
    keeps += [
        (max(sy.start - 2, 0), min(sy.stop + 2, ny), max(sx.start - 2, 0), min(sx.stop + 2, nx))
        for sy, sx in (b for b in ndimage.find_objects(labels) if b is not None)
    ]
    cost = sum((y1 - y0 + 2 * reach) * (x1 - x0 + 2 * reach) for y0, y1, x0, x1 in keeps)
    if cost > data32.size // 2:
        crmask, clean = lacosmic(data32, bad, var32)
        return crmask, clean
    crmask = np.zeros(data32.shape, bool)
    clean = data32.copy()
    for y0, y1, x0, x1 in keeps:
        cy0, cy1 = max(y0 - reach, 0), min(y1 + reach, ny)
        cx0, cx1 = max(x0 - reach, 0), min(x1 + reach, nx)
        found, cleaned = lacosmic(data32[cy0:cy1, cx0:cx1], bad[cy0:cy1, cx0:cx1],
                                  var32[cy0:cy1, cx0:cx1])  # fmt: skip
        keep = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
        hit = found[keep]
        if hit.any():
            crmask[y0:y1, x0:x1] |= hit
            clean[y0:y1, x0:x1][hit] = cleaned[keep][hit]
    return crmask, clean
