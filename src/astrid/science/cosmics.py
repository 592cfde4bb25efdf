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
    rms2 = bkg.rms**2
    back = bkg.background
    sat = float(saturation) if saturation is not None else float(np.max(arr[~bad])) * 10 + 1
    data32 = arr.astype(np.float32)

    def variance(rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The noise model (float32) of the pixels ``[rows, cols]``, computed elementwise
        the same way for a crop as for the whole frame."""
        var = rms2[rows, cols]
        if gain and gain > 0:
            var = var + np.clip(arr[rows, cols] - back[rows, cols], 0, None) / float(gain)
        return np.asarray(var, dtype=np.float32)

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
    # The noise model is computed only where L.A.Cosmic runs (the crops); the candidates'
    # bound needs only its lower bound, the rms map squared.
    reach = 10
    with single_openmp_thread():
        crmask, clean, hits = _first_pass_on_candidates(
            _lacosmic, data32, bad, variance, rms2, sigclip, reach
        )
        crmask |= _second_pass(_lacosmic, crmask, clean, bad, variance, reach, hits)
    return np.asarray(crmask, dtype=bool) & ~bad


#: L.A.Cosmic's separable median filters (``sepmed``) copy their input on a border of 3
#: pixels (the 7-pixel one, which L.A.Cosmic subtracts from its statistic ``s``), so its
#: ``s − med(s)`` is 0 there: it never flags a pixel within this many pixels of the frame's
#: edge, nor grows a detection from one (a test checks it on rays placed on the edges).
_BORDER = 3

Box = tuple[int, int, int, int]


def _second_pass(
    lacosmic: Any,
    crmask: np.ndarray,
    clean: np.ndarray,
    bad: np.ndarray,
    variance: Any,
    reach: int,
    hits: list[Box] | None = None,
) -> np.ndarray:
    """L.A.Cosmic's second iteration on ``clean``, on crops around the first pass's hits.

    ``hits``: boxes (y0, y1, x0, x1) that hold every first-pass hit (from the first pass's
    crops); None: the groups of 8-connected hits, labelled on the whole mask. Any such
    boxes give the same result: each crop covers its box + ``reach`` with ``reach`` more
    of context.
    """
    ny, nx = crmask.shape
    if hits is None:
        labels, _ = ndimage.label(crmask, structure=np.ones((3, 3), bool))
        hits = [
            (sy.start, sy.stop, sx.start, sx.stop)
            for sy, sx in (b for b in ndimage.find_objects(labels) if b is not None)
        ]
    boxes = [
        (max(y0 - reach, 0), min(y1 + reach, ny), max(x0 - reach, 0), min(x1 + reach, nx))
        for y0, y1, x0, x1 in hits
    ]
    cost = sum((y1 - y0 + 2 * reach) * (x1 - x0 + 2 * reach) for y0, y1, x0, x1 in boxes)
    if cost > crmask.size // 2:  # crops would cost about as much as the whole frame
        return np.asarray(lacosmic(clean, bad, variance())[0], dtype=bool)
    second = np.zeros_like(crmask)
    for y0, y1, x0, x1 in boxes:
        rows = slice(max(y0 - reach, 0), min(y1 + reach, ny))
        cols = slice(max(x0 - reach, 0), min(x1 + reach, nx))
        found = lacosmic(clean[rows, cols], bad[rows, cols], variance(rows, cols))[0]
        second[y0:y1, x0:x1] |= found[y0 - rows.start : y1 - rows.start,
                                      x0 - cols.start : x1 - cols.start]  # fmt: skip
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
    # the minimum of every ``block``-th column, then of every ``block``-th row of that: the
    # same values as ``reshape(...).min(axis=(1, 3))`` at a fifth of its cost
    cols = v[:, 0::block].copy()
    for k in range(1, block):
        np.minimum(cols, v[:, k::block], out=cols)
    blocks = cols[0::block].copy()
    for k in range(1, block):
        np.minimum(blocks, cols[k::block], out=blocks)
    blocks = ndimage.minimum_filter(blocks, size=3, mode="nearest")
    if not spread:
        return blocks
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:ny, :nx]


def _candidate_groups(cand: np.ndarray, block: int = 8) -> list[Box]:
    """Bounding boxes (y0, y1, x0, x1) of groups of candidate pixels, every candidate in
    one: the candidates' ``block``² blocks, 8-connected blocks labelled together (a 256²
    grid for 4 Mpix instead of the pixels), each group's box tightened to its candidates."""
    ny, nx = cand.shape
    py, px = (-ny) % block, (-nx) % block
    c = np.pad(cand, ((0, py), (0, px))) if py or px else cand
    blocks = c.reshape(c.shape[0] // block, block, c.shape[1] // block, block).any(axis=(1, 3))
    labels, _ = ndimage.label(blocks, structure=np.ones((3, 3), bool))
    out: list[Box] = []
    for i, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        sy, sx = found
        y0, x0 = sy.start * block, sx.start * block
        own = np.repeat(np.repeat(labels[sy, sx] == i, block, 0), block, 1)
        sub = c[y0 : sy.stop * block, x0 : sx.stop * block] & own
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        out.append((y0 + int(rows[0]), y0 + int(rows[-1]) + 1,
                    x0 + int(cols[0]), x0 + int(cols[-1]) + 1))  # fmt: skip
    return out


def _first_pass_on_candidates(
    lacosmic: Any,
    data32: np.ndarray,
    bad: np.ndarray,
    variance: Any,
    var_bound: np.ndarray,
    sigclip: float,
    reach: int,
) -> tuple[np.ndarray, np.ndarray, list[Box] | None]:
    """L.A.Cosmic's first pass run only on crops around :func:`_lacosmic_candidates`.

    A flagged pixel is a candidate or within 2 px of one (two 3×3 growth steps), so each
    crop keeps its candidates' bounding box + 2 px, computed with ``reach`` px more of
    context (beyond the filters' reach): the same mask and cleaned pixels as a full-frame
    pass (a test compares them). Candidates within :data:`_BORDER` px of the edge are left
    out (L.A.Cosmic flags nothing there, and the zeros beyond the edge make the outermost
    pixels all candidates). Falls back to the full frame when the crops would cover more
    than half of it (crowded fields).

    ``variance(rows, cols)`` gives the noise model (float32) of a crop (of the whole frame
    without arguments); ``var_bound`` (ny, nx) is a lower bound of it for the candidates.
    Returns the mask, the cleaned image and boxes holding every hit (None after a
    full-frame pass).
    """
    ny, nx = data32.shape
    cand = _lacosmic_candidates(data32, var_bound, sigclip)
    b = _BORDER
    cand[:b, :] = cand[-b:, :] = cand[:, :b] = cand[:, -b:] = False
    keeps = [
        (max(y0 - 2, 0), min(y1 + 2, ny), max(x0 - 2, 0), min(x1 + 2, nx))
        for y0, y1, x0, x1 in _candidate_groups(cand)
    ]
    cost = sum((y1 - y0 + 2 * reach) * (x1 - x0 + 2 * reach) for y0, y1, x0, x1 in keeps)
    if cost > data32.size // 2:
        crmask, clean = lacosmic(data32, bad, variance())
        return crmask, clean, None
    crmask = np.zeros(data32.shape, bool)
    clean = data32.copy()
    hits: list[Box] = []
    for y0, y1, x0, x1 in keeps:
        rows = slice(max(y0 - reach, 0), min(y1 + reach, ny))
        cols = slice(max(x0 - reach, 0), min(x1 + reach, nx))
        found, cleaned = lacosmic(data32[rows, cols], bad[rows, cols], variance(rows, cols))
        keep = (slice(y0 - rows.start, y1 - rows.start), slice(x0 - cols.start, x1 - cols.start))
        hit = found[keep]
        if hit.any():
            crmask[y0:y1, x0:x1] |= hit
            clean[y0:y1, x0:x1][hit] = cleaned[keep][hit]
            hy, hx = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
            hits.append((y0 + int(hy[0]), y0 + int(hy[-1]) + 1,
                         x0 + int(hx[0]), x0 + int(hx[-1]) + 1))  # fmt: skip
    return crmask, clean, hits
