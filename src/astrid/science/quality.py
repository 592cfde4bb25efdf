"""Image quality: background and noise maps, masks, PSF size and shape, depth, one score.

Entry point :func:`assess_quality` (array in, :class:`QualityResult` out); the pieces
(:func:`estimate_background`, :func:`detect_stars`, :func:`measure_psf`,
:func:`cosmic_ray_mask`, :func:`saturation_mask`, :func:`limiting_magnitude`,
:func:`quality_score`) are public for reuse. No WCS is needed; a header, when given, supplies
gain, read noise, saturation and zero point.

Quality score (:func:`quality_score`), in [0, 1], the product of five factors, each in [0, 1]:

* ``usable`` — fraction of pixels not masked (bad, saturated, cosmic ray, non-finite);
* ``roundness`` — ``1 - ellipticity`` of the PSF (1 if unknown);
* ``sampling`` — 1 for a PSF FWHM between 1.5 and 8 px, falling as ``fwhm/1.5`` below and
  ``8/fwhm`` above (0 if no star was measured);
* ``flatness`` — ``1 / (1 + flatness)``, where flatness is the standard deviation of the
  background map in units of the pixel noise (a flat sky gives ~0);
* ``sources`` — ``min(1, n_sources / 20)`` with ``n_sources`` the detections above 5σ:
  enough sources to align the image and match its PSF.

Masks are True = excluded. Units: pixels, image units (ADU unless the header says otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import astroscrappy
import numpy as np
import sep
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from scipy import ndimage

from astrid.errors import AstridError
from astrid.science.stats import FWHM_PER_SIGMA, robust_sigma

__all__ = [
    "BackgroundEstimate",
    "ConstantImageError",
    "EmptyImageError",
    "ImageQuality",
    "PSFMeasurement",
    "QualityError",
    "QualityResult",
    "assess_quality",
    "cosmic_ray_mask",
    "detect_stars",
    "estimate_background",
    "header_zeropoint",
    "infer_saturation",
    "limiting_magnitude",
    "measure_psf",
    "quality_score",
    "saturation_mask",
    "single_openmp_thread",
]


class QualityError(AstridError):
    """The image cannot be assessed."""


class EmptyImageError(QualityError):
    """The image has no finite, unmasked pixels."""


class ConstantImageError(QualityError):
    """The image has no noise (all valid pixels equal): not a sky exposure."""


@dataclass
class BackgroundEstimate:
    """Background and noise maps (image units), shape (ny, nx), and global values."""

    background: np.ndarray
    rms: np.ndarray
    global_background: float
    global_rms: float
    flatness: float
    #: Pixels left out of the final mesh statistics (excluded ones and the first pass's
    #: bright sources, dilated), bool (ny, nx); what ``estimate_background(previous=...)``
    #: reuses. None when not known.
    excluded: np.ndarray | None = None
    #: The first pass's bright-source pixels (dilated, not excluded), bool (ny, nx), or None.
    sources: np.ndarray | None = None


@dataclass
class PSFMeasurement:
    """PSF size and shape from isolated stars.

    Attributes
    ----------
    fwhm : float
        Median FWHM in pixels of a pixel-integrated circular Gaussian fitted to each star
        (NaN if no star).
    fwhm_scatter : float
        Robust standard deviation of the per-star FWHM in pixels.
    ellipticity : float
        Median ``1 - b/a`` from the stars' second moments.
    theta : float
        Median position angle of the major axis, degrees counter-clockwise from +x.
    n_stars : int
        Stars used.
    stars : astropy.table.Table
        The stars used (``x``, ``y``, ``flux``, ``fwhm``, ``ellipticity``).
    """

    fwhm: float
    fwhm_scatter: float
    ellipticity: float
    theta: float
    n_stars: int
    stars: Table


@dataclass(frozen=True)
class ImageQuality:
    """Plain record of an image's quality (JSON-friendly via :meth:`as_dict`).

    Pixel quantities in pixels, background and noise in image units, magnitudes in the
    zero point's system; ``None`` where not measurable.
    """

    width: int
    height: int
    background: float
    background_rms: float
    background_flatness: float
    fwhm: float | None
    fwhm_arcsec: float | None
    ellipticity: float | None
    n_stars: int
    n_sources: int
    saturated_fraction: float
    masked_fraction: float
    cosmic_ray_pixels: int
    zeropoint: float | None
    limiting_mag: float | None
    score: float
    score_terms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class QualityResult:
    """Everything :func:`assess_quality` measured.

    Attributes
    ----------
    quality : ImageQuality
        The summary record.
    background : BackgroundEstimate
        Background and noise maps.
    mask : numpy.ndarray
        Union of input mask, non-finite, saturated and cosmic-ray pixels (True = excluded).
    saturated : numpy.ndarray
        Saturated pixels (grown by one pixel).
    cosmic_rays : numpy.ndarray
        Cosmic-ray pixels.
    psf : PSFMeasurement
        PSF measurement.
    """

    quality: ImageQuality
    background: BackgroundEstimate
    mask: np.ndarray
    saturated: np.ndarray
    cosmic_rays: np.ndarray
    psf: PSFMeasurement


def _valid(data: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise QualityError(
            f"image has shape {arr.shape}, not 2-D", hint="pass one image plane (ny, nx)"
        )
    bad = ~np.isfinite(arr)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    if bad.all():
        raise EmptyImageError(
            "the image has no finite unmasked pixels (all NaN/inf or masked)",
            hint="check the file and the mask",
        )
    # min and max over the valid pixels without copying them out (a 4-Mpix image is 32 MB)
    ok = ~bad
    if np.min(arr, where=ok, initial=np.inf) == np.max(arr, where=ok, initial=-np.inf):
        good = arr[ok]
        raise ConstantImageError(
            f"all {good.size} valid pixels equal {good[0]:g}: no sky noise",
            hint="this is not a sky exposure (blank, flat-filled or synthetic frame)",
        )
    return np.ascontiguousarray(np.where(bad, 0.0, arr) if bad.any() else arr), bad


def estimate_background(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int | None = None,
    filter_size: int = 3,
    previous: BackgroundEstimate | None = None,
) -> BackgroundEstimate:
    """Background and noise maps by SExtractor's mesh method (``sep.Background``).

    Parameters
    ----------
    data : numpy.ndarray
        Image, shape (ny, nx).
    mask : numpy.ndarray, optional
        True = excluded.
    box_size : int, optional
        Mesh size in pixels (default: 64, or a quarter of the shorter side if smaller).
    filter_size : int
        Median filter of the mesh, in meshes.
    previous : BackgroundEstimate, optional
        An estimate of the same pixels with the same mesh and fewer pixels excluded (e.g.
        before cosmic rays were added to the mask): its bright-source pixels are reused
        instead of a first pass, and its maps too when the pixels left out of the mesh
        statistics come out the same (the global values are then taken over this mask).

    Returns
    -------
    BackgroundEstimate
        Maps in image units; ``flatness`` = std of the background map / global rms.

    Raises
    ------
    EmptyImageError, ConstantImageError
    """
    arr, bad = _valid(data, mask)
    ny, nx = arr.shape
    box = int(box_size or max(8, min(64, min(ny, nx) // 4)))
    if (
        previous is not None
        and previous.sources is not None
        and previous.sources.shape == bad.shape
    ):
        src = previous.sources & ~bad
    else:
        # a first pass masks bright sources so that they do not lift the background
        bkg0 = sep.Background(arr, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
        src = _dilate_cross((arr - bkg0.back()) > 3.0 * bkg0.rms(), 2) & ~bad
    both = bad | src
    use_mask = both if both.mean() < 0.8 else bad
    if (
        previous is not None
        and previous.excluded is not None
        and np.array_equal(previous.excluded, use_mask)
    ):
        back, rms = previous.background, previous.rms  # the same mesh statistics
    else:
        bkg = sep.Background(arr, mask=use_mask, bw=box, bh=box, fw=filter_size, fh=filter_size)
        back, rms = bkg.back(), bkg.rms()
    ok = ~bad
    # the boolean selections are fresh copies: the medians may partition them in place
    glob_rms = float(np.median(rms[ok], overwrite_input=True))
    if not glob_rms > 0:
        _, _, glob_rms = sigma_clipped_stats(arr[ok], sigma=3.0)
        rms = np.full_like(rms, glob_rms)
    back_ok = back[ok]
    flatness = float(np.std(back_ok) / glob_rms) if glob_rms > 0 else float("nan")
    return BackgroundEstimate(
        background=back,
        rms=rms,
        global_background=float(np.median(back_ok, overwrite_input=True)),
        global_rms=glob_rms,
        flatness=flatness,
        excluded=use_mask,
        sources=src,
    )


def _dilate_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=iterations)`` (3×3 cross, nothing beyond
    the edges) by shifted ORs: the same pixels at a fraction of the cost on 4 Mpix."""
    out = np.array(mask, dtype=bool, copy=True)
    for _ in range(iterations):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def infer_saturation(data: np.ndarray, min_pixels: int = 3) -> float | None:
    """The saturation level implied by a plateau at the image maximum, if there is one.

    A saturated detector (or a clipped integer range, e.g. 65535) leaves several pixels at
    exactly the maximum value; a real peak does not. Returns that maximum when at least
    ``min_pixels`` finite pixels equal it, else None.
    """
    arr = np.asarray(data)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return None
    vmax = float(finite.max())
    return vmax if int((finite == vmax).sum()) >= min_pixels else None


def saturation_mask(data: np.ndarray, saturation: float | None, *, grow: int = 1) -> np.ndarray:
    """Pixels at or above ``saturation`` (image units), grown by ``grow`` pixels."""
    arr = np.asarray(data)
    if saturation is None:
        return np.zeros(arr.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        sat = arr >= float(saturation)
    if grow > 0 and sat.any():
        sat = ndimage.binary_dilation(sat, iterations=grow)
    return sat


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
    arr, bad = _valid(data, mask)
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
    x = np.pad(np.asarray(data32, dtype=np.float32), 1)
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
    # L⁺ > k sqrt(vmin)  ⇔  (4 L⁺)² > (4 k)² vmin  (both sides ≥ 0)
    k4 = 4.0 * 0.9 * sigclip * 2.0
    np.square(four_lplus, out=four_lplus)
    ny, nx = four_lplus.shape
    if ny % 8 == 0 and nx % 8 == 0:  # compare block by block, without spreading the bound
        blocks = _block_minimum(var32, 8, spread=False)
        bound = np.float32(k4 * k4) * np.maximum(blocks, np.float32(1e-5))
        over = four_lplus.reshape(ny // 8, 8, nx // 8, 8) > bound[:, None, :, None]
        return over.reshape(ny, nx)
    vmin = np.maximum(_block_minimum(var32, 8), np.float32(1e-5))
    return four_lplus > np.float32(k4 * k4) * vmin


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


def detect_stars(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    background: BackgroundEstimate | None = None,
    threshold: float = 5.0,
    minarea: int = 5,
    max_sources: int | None = None,
) -> Table:
    """Detect sources above ``threshold`` × rms (``sep.extract``), brightest first.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (pixels, 0-based, windowed centroids), ``flux`` (image units, background
        subtracted), ``peak``, ``a``, ``b`` (second-moment axes, px), ``theta`` (rad),
        ``flag`` (sep flags), ``snr`` and ``npix``.
    """
    arr, bad = _valid(data, mask)
    bkg = background or estimate_background(arr, bad)
    sub = np.ascontiguousarray(arr - bkg.background)
    rms = np.ascontiguousarray(np.where(bkg.rms > 0, bkg.rms, bkg.global_rms))
    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, arr.size))
    try:
        objects = sep.extract(sub, threshold, err=rms, mask=bad, minarea=minarea)
    except Exception as exc:  # sep raises a bare Exception on internal overflow
        raise QualityError(f"source detection failed: {exc}") from exc
    finally:
        sep.set_extract_pixstack(old)
    if len(objects) == 0:
        return Table(
            names=("x", "y", "flux", "peak", "a", "b", "theta", "flag", "snr", "npix"),
            dtype=(float, float, float, float, float, float, float, int, float, int),
        )
    x, y = objects["x"], objects["y"]
    sig = np.clip(2.0 / 2.35 * np.sqrt(objects["a"] ** 2 + objects["b"] ** 2), 0.5, 10.0)
    xw, yw, wflag = sep.winpos(sub, x, y, sig, mask=bad)
    ok = (wflag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < 2.0)
    x = np.where(ok, xw, x)
    y = np.where(ok, yw, y)
    snr = objects["flux"] / (
        rms[
            np.clip(y.astype(int), 0, arr.shape[0] - 1), np.clip(x.astype(int), 0, arr.shape[1] - 1)
        ]
        * np.sqrt(np.maximum(objects["npix"], 1))
    )
    table = Table(
        {
            "x": x,
            "y": y,
            "flux": objects["flux"],
            "peak": objects["peak"],
            "a": objects["a"],
            "b": objects["b"],
            "theta": objects["theta"],
            "flag": objects["flag"].astype(int),
            "snr": snr,
            "npix": objects["npix"].astype(int),
        }
    )
    table.sort("flux", reverse=True)
    if max_sources is not None:
        table = table[:max_sources]
    return table


def measure_psf(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    background: BackgroundEstimate | None = None,
    saturation: float | None = None,
    stars: Table | None = None,
    max_stars: int = 40,
    min_snr: float = 20.0,
) -> PSFMeasurement:
    """FWHM and ellipticity from bright, isolated, unsaturated point sources.

    Each star is fitted with a pixel-integrated circular Gaussian (``photutils.psf.fit_fwhm``);
    the ellipticity comes from its second moments. Galaxies are rejected twice: before the fits
    sources whose half-light radius (``sep.flux_radius``) exceeds 2× the 20th percentile,
    after them fits wider than 1.5× the 20th-percentile FWHM (the stellar locus), followed by a
    sigma-clip of the per-star FWHM. Sources sharper than any PSF (half-light radius < 0.6 px,
    minor axis < 0.35 px, fitted FWHM < 1 px or < 0.6× the 20th percentile) are cosmic rays or hot
    pixels and are dropped first.

    Returns
    -------
    PSFMeasurement
        ``fwhm`` is NaN and ``n_stars`` 0 if no usable star exists.
    """
    arr, bad = _valid(data, mask)
    bkg = background or estimate_background(arr, bad)
    found = stars if stars is not None else detect_stars(arr, bad, background=bkg)
    empty = PSFMeasurement(float("nan"), float("nan"), float("nan"), float("nan"), 0, Table())
    if len(found) == 0:
        return empty
    ny, nx = arr.shape
    sigma = np.sqrt(0.5 * (np.asarray(found["a"]) ** 2 + np.asarray(found["b"]) ** 2))
    # the compact end of the size distribution: in galaxy-rich fields the median is a galaxy
    guess = (
        float(np.percentile(sigma[found["snr"] > min_snr], 25))
        if (found["snr"] > min_snr).any()
        else float(np.median(sigma))
    )
    guess_fwhm = max(FWHM_PER_SIGMA * guess, 1.0)
    half = int(max(3, math.ceil(1.5 * guess_fwhm)))
    xs, ys = np.asarray(found["x"]), np.asarray(found["y"])
    # isolation: no other detection brighter than 5 % of the star within two box half-sizes
    fluxes = np.asarray(found["flux"], dtype=float)
    isolated = np.ones(len(found), dtype=bool)
    if len(found) > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([xs, ys]))
        for i, neighbours in enumerate(tree.query_ball_point(np.column_stack([xs, ys]), 2 * half)):
            others = [j for j in neighbours if j != i]
            if others and np.any(fluxes[others] > 0.05 * fluxes[i]):
                isolated[i] = False
    inside = (xs > half + 1) & (xs < nx - half - 2) & (ys > half + 1) & (ys < ny - half - 2)
    ixs = np.clip(np.round(xs).astype(int), 0, nx - 1)
    iys = np.clip(np.round(ys).astype(int), 0, ny - 1)
    near_bad = _near(bad, iys, ixs, half)
    if saturation is not None:
        with np.errstate(invalid="ignore"):
            near_bad |= _near(arr >= float(saturation), iys, ixs, half)
    good = (
        (np.asarray(found["flag"]) == 0)
        & (np.asarray(found["snr"]) > min_snr)
        & isolated
        & inside
        & ~near_bad
    )
    cand = found[good]
    if len(cand) == 0:
        return empty
    sub = arr - bkg.background
    if len(cand) >= 5:
        # star/galaxy separation: stars are the most compact sources (half-light radius
        # within 2x the 20th percentile); cheap, done before the fits
        r50, _ = sep.flux_radius(
            np.ascontiguousarray(np.where(bad, 0.0, sub)),
            np.asarray(cand["x"], dtype=float),
            np.asarray(cand["y"], dtype=float),
            np.full(len(cand), 3.0 * half),
            0.5,
            mask=bad,
            normflux=None,
            subpix=5,
        )
        # a PSF is never sharper than a pixel: r50 < 0.6 px or a minor axis < 0.35 px is a
        # cosmic ray (dot or track) or a hot pixel
        ok_r = np.isfinite(r50) & (r50 >= 0.6)
        ok_r &= np.asarray(cand["b"], dtype=float) >= 0.35
        if ok_r.sum() >= 5:
            compact = ok_r & (r50 <= 2.0 * np.percentile(r50[ok_r], 20))
            if compact.sum() >= 3:
                cand = cand[compact]
        elif ok_r.sum() >= 1:
            cand = cand[ok_r]
    cand = cand[:max_stars]
    fit_shape = 2 * half + 1
    # photutils costs 1-2 s to import (its optional-dependency scan); only PSF measurement
    # needs it, not the alignment and resampling that import this module
    from photutils.psf import fit_fwhm

    fwhms = np.asarray(
        fit_fwhm(
            sub,
            xypos=np.column_stack([cand["x"], cand["y"]]),
            fwhm=guess_fwhm,
            fit_shape=fit_shape,
            mask=bad,
        ),
        dtype=float,
    )
    ell = 1.0 - np.asarray(cand["b"]) / np.asarray(cand["a"])
    keep = np.isfinite(fwhms) & (fwhms >= 1.0) & (fwhms < 3 * fit_shape)
    if keep.sum() >= 5:
        keep &= fwhms >= 0.6 * np.percentile(fwhms[keep], 20)  # cosmic rays, hot pixels
        keep &= fwhms <= 1.5 * np.percentile(fwhms[keep], 20)  # the stellar locus
    if keep.sum() >= 3:
        med = np.median(fwhms[keep])
        mad = robust_sigma(fwhms[keep], centre=med)
        keep &= np.abs(fwhms - med) <= max(3 * mad, 0.05 * med)
    if not keep.any():
        return empty
    used = cand[keep]
    used["fwhm"] = fwhms[keep]
    used["ellipticity"] = ell[keep]
    theta = np.degrees(np.asarray(used["theta"]))
    return PSFMeasurement(
        fwhm=float(np.median(fwhms[keep])),
        fwhm_scatter=robust_sigma(fwhms[keep]),
        ellipticity=float(np.median(ell[keep])),
        theta=float(np.median(theta)),
        n_stars=int(keep.sum()),
        stars=used,
    )


def _near(mask: np.ndarray, iys: np.ndarray, ixs: np.ndarray, reach: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=reach)[iys, ixs]`` (3×3 cross: pixels
    within city-block distance ``reach``) looked up only around the given pixels."""
    out = np.zeros(len(iys), dtype=bool)
    if len(iys) == 0 or not mask.any():
        return out
    ny, nx = mask.shape
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    diamond = (np.abs(dy) + np.abs(dx)) <= reach
    for i, (y, x) in enumerate(zip(iys.tolist(), ixs.tolist(), strict=True)):
        y0, y1, x0, x1 = (
            max(y - reach, 0),
            min(y + reach + 1, ny),
            max(x - reach, 0),
            min(x + reach + 1, nx),
        )
        win = mask[y0:y1, x0:x1]
        if win.any():
            d = diamond[y0 - y + reach : y1 - y + reach, x0 - x + reach : x1 - x + reach]
            out[i] = bool((win & d).any())
    return out


def limiting_magnitude(fwhm: float, noise: float, zeropoint: float, nsigma: float = 5.0) -> float:
    """Magnitude of a point source detected at ``nsigma`` by PSF fitting on a flat background.

    For a Gaussian PSF the noise of the optimal flux is ``noise * sqrt(4π σ²)`` (``σ`` =
    ``fwhm / 2.3548``), so ``m_lim = zeropoint - 2.5 log10(nsigma · noise · sqrt(4π) σ)``.

    Parameters
    ----------
    fwhm : float
        PSF FWHM in pixels.
    noise : float
        Background noise per pixel in image units.
    zeropoint : float
        Magnitude of a source of total flux 1 image unit.
    nsigma : float
        Detection significance.
    """
    sigma = fwhm / FWHM_PER_SIGMA
    flux = nsigma * noise * math.sqrt(4.0 * math.pi) * sigma
    return float(zeropoint - 2.5 * math.log10(flux))


def header_zeropoint(header: fits.Header | None) -> float | None:
    """Zero point (mag of 1 image unit) from the header, if it says.

    ``MAGZERO``/``MAGZPT``/``MAGZP``/``ZP``/``ZEROPT``/``PHOTZP``; for JWST-style surface
    brightness images (``BUNIT`` MJy/sr with ``PIXAR_SR``) the AB zero point of one pixel's
    value: ``-2.5 log10(1e6 · PIXAR_SR / 3631)``.
    """
    if header is None:
        return None
    for key in ("MAGZERO", "MAGZPT", "MAGZP", "ZP", "ZEROPT", "PHOTZP"):
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    bunit = str(header.get("BUNIT", "")).strip().lower().replace(" ", "")
    pixar = header.get("PIXAR_SR")
    if bunit in ("mjy/sr", "mjy/steradian") and isinstance(pixar, int | float) and pixar > 0:
        return float(-2.5 * math.log10(1e6 * float(pixar) / 3631.0))
    return None


def quality_score(
    *,
    masked_fraction: float,
    ellipticity: float | None,
    fwhm: float | None,
    flatness: float,
    n_sources: int,
) -> tuple[float, dict[str, float]]:
    """The documented quality score in [0, 1] and its factors (see the module docstring)."""
    usable = float(np.clip(1.0 - masked_fraction, 0.0, 1.0))
    roundness = (
        1.0
        if ellipticity is None or not np.isfinite(ellipticity)
        else float(np.clip(1.0 - ellipticity, 0.0, 1.0))
    )
    if fwhm is None or not np.isfinite(fwhm) or fwhm <= 0:
        sampling = 0.0
    else:
        sampling = float(min(1.0, fwhm / 1.5) * min(1.0, 8.0 / fwhm))
    flat = 1.0 / (1.0 + flatness) if np.isfinite(flatness) else 0.0
    sources = float(min(1.0, n_sources / 20.0))
    terms = {
        "usable": usable,
        "roundness": roundness,
        "sampling": sampling,
        "flatness": flat,
        "sources": sources,
    }
    return float(np.prod(list(terms.values()))), terms


def _header_float(header: fits.Header | None, *keys: str) -> float | None:
    if header is None:
        return None
    for key in keys:
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def assess_quality(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    header: fits.Header | None = None,
    gain: float | None = None,
    read_noise: float | None = None,
    saturation: float | None = None,
    zeropoint: float | None = None,
    pixel_scale: float | None = None,
    detect_cosmics: bool = True,
    box_size: int | None = None,
) -> QualityResult:
    """Measure an image's quality.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx), sky included or subtracted, any unit.
    mask : numpy.ndarray, optional
        Known bad pixels, True = excluded.
    header : astropy.io.fits.Header, optional
        Source of ``GAIN``, ``RDNOISE``, ``SATURATE`` and the zero point when the keyword
        arguments are ``None``.
    gain, read_noise, saturation, zeropoint :
        e-/unit, e-, image units, mag of 1 unit. Without a saturation level from either
        place, a plateau of pixels at the image maximum is taken as saturation
        (:func:`infer_saturation`).
    pixel_scale : float, optional
        Arcsec per pixel, to report the FWHM in arcsec.
    detect_cosmics : bool
        Run L.A.Cosmic.
    box_size : int, optional
        Background mesh in pixels.

    Returns
    -------
    QualityResult

    Raises
    ------
    QualityError, EmptyImageError, ConstantImageError
        Not 2-D, all NaN/masked, or constant.
    """
    return _assess_quality(
        data,
        mask,
        header=header,
        gain=gain,
        read_noise=read_noise,
        saturation=saturation,
        zeropoint=zeropoint,
        pixel_scale=pixel_scale,
        detect_cosmics=detect_cosmics,
        box_size=box_size,
        known_background=None,
    )


def _assess_quality(
    data: np.ndarray,
    mask: np.ndarray | None,
    *,
    header: fits.Header | None,
    gain: float | None,
    read_noise: float | None,
    saturation: float | None,
    zeropoint: float | None,
    pixel_scale: float | None,
    detect_cosmics: bool,
    box_size: int | None,
    known_background: tuple[np.ndarray, BackgroundEstimate] | None,
) -> QualityResult:
    """:func:`assess_quality`, reusing ``known_background`` = (exclusion mask, estimate).

    The estimate is used only if its mask equals the one this function would estimate with
    (input mask | non-finite | saturated), i.e. the caller computed it from the same pixels.
    """
    arr, bad = _valid(data, mask)
    gain = gain if gain is not None else _header_float(header, "GAIN", "EGAIN")
    read_noise = (
        read_noise if read_noise is not None else _header_float(header, "RDNOISE", "READNOIS")
    )
    saturation = (
        saturation if saturation is not None else _header_float(header, "SATURATE", "SATLEVEL")
    )
    zeropoint = zeropoint if zeropoint is not None else header_zeropoint(header)
    if saturation is None:
        saturation = infer_saturation(arr[~bad])
    sat = saturation_mask(np.where(np.isfinite(data), data, -np.inf), saturation)
    known = known_background
    if known is not None and box_size is None and np.array_equal(known[0], bad | sat):
        bkg = known[1]  # the caller estimated it from the same pixels and mask
    else:
        bkg = estimate_background(arr, bad | sat, box_size=box_size)
    crs = (
        cosmic_ray_mask(arr, mask=bad | sat, background=bkg, gain=gain, saturation=saturation)
        if detect_cosmics
        else np.zeros(arr.shape, dtype=bool)
    )
    full_mask = bad | sat | crs
    found = detect_stars(arr, full_mask, background=bkg)
    psf = measure_psf(arr, full_mask, background=bkg, saturation=saturation, stars=found)
    fwhm = psf.fwhm if np.isfinite(psf.fwhm) else None
    ellipticity = psf.ellipticity if np.isfinite(psf.ellipticity) else None
    masked_fraction = float(full_mask.mean())
    score, terms = quality_score(
        masked_fraction=masked_fraction,
        ellipticity=ellipticity,
        fwhm=fwhm,
        flatness=bkg.flatness,
        n_sources=len(found),
    )
    lim = (
        limiting_magnitude(fwhm, bkg.global_rms, zeropoint)
        if fwhm is not None and zeropoint is not None and bkg.global_rms > 0
        else None
    )
    quality = ImageQuality(
        width=int(arr.shape[1]),
        height=int(arr.shape[0]),
        background=bkg.global_background,
        background_rms=bkg.global_rms,
        background_flatness=bkg.flatness,
        fwhm=fwhm,
        fwhm_arcsec=fwhm * pixel_scale if fwhm is not None and pixel_scale else None,
        ellipticity=ellipticity,
        n_stars=psf.n_stars,
        n_sources=len(found),
        saturated_fraction=float(sat.mean()),
        masked_fraction=masked_fraction,
        cosmic_ray_pixels=int(crs.sum()),
        zeropoint=zeropoint,
        limiting_mag=lim,
        score=score,
        score_terms=terms,
    )
    return QualityResult(
        quality=quality, background=bkg, mask=full_mask, saturated=sat, cosmic_rays=crs, psf=psf
    )
