"""Per-image detection limits by injecting fake point sources into a difference's own pixels.

:func:`detection_limits` answers "how faint a transient would this difference have found?"
with the difference's own noise, masks and PSF, not a formula:

1. fake point sources are placed at random unmasked positions at least ``avoid_radius`` px
   from every real source (the candidates and stars passed in ``avoid_xy``): random draws
   tested with an integral image of the mask and a k-d tree of the sources (cost independent
   of the image size), all free positions enumerated only when draws do not find enough;
2. each is added to the significance map as it would appear there: a source of flux ``f``
   at ``(x, y)`` has peak S/N ``f / flux_err(x, y)`` and the profile of the map's response to a
   point source, the normalised autocorrelation of the difference PSF (the score is the PSF
   matched filter of D);
3. the stamps around all fakes, each with the real map's noise underneath, are laid out in one
   mosaic and run through the same detection as the candidates
   (:func:`astrid.science.extract.detect_peaks`, same threshold and ``minarea``); a fake is
   recovered when a detection peaks within ``match_radius`` px of it;
4. the completeness per magnitude bin is fitted with the form a Gaussian-noise detection has,
   ``P = Φ(a·flux − b)`` (a probit fit, linear in ``Φ⁻¹(P)`` over the bins between 2 % and
   98 %), which gives the 50 % and 90 % limits as the magnitudes of ``flux = b / a`` and
   ``(b + 1.2816) / a``; with fewer than two such bins they are interpolated on the curve.

Theory check (tests): on a map of unit-variance correlated noise with constant ``flux_err``
the 50 % limit is the magnitude of S/N = threshold and the 90 % limit that of
S/N = threshold + 1.28 (one-sided Gaussian), within 0.1 mag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astrid.errors import AstridError
from astrid.science.extract import detect_peaks
from astrid.science.stats import median_float64

__all__ = ["DetectionLimits", "DetectionLimitsError", "detection_limits"]


class DetectionLimitsError(AstridError):
    """Detection limits cannot be measured (no usable area, bad inputs)."""


@dataclass(frozen=True)
class DetectionLimits:
    """Completeness of fake point sources against magnitude, and the limits it implies.

    Attributes
    ----------
    mag : numpy.ndarray
        Bin magnitudes, shape (k,), ``zero_point - 2.5 log10(flux)``.
    completeness : numpy.ndarray
        Fraction recovered per bin, shape (k,).
    n_injected : numpy.ndarray
        Fakes per bin, shape (k,).
    m50, m90 : float
        Magnitudes at 50 % and 90 % completeness (NaN when the curve does not cross).
    threshold : float
        Detection threshold in sigma of the significance map.
    """

    mag: np.ndarray
    completeness: np.ndarray
    n_injected: np.ndarray
    m50: float
    m90: float
    threshold: float


def _profile(psf: np.ndarray) -> np.ndarray:
    """Peak-1 response of a PSF matched filter to a point source (PSF autocorrelation)."""
    p = np.asarray(psf, float)
    n = p.shape[0]
    m = 2 * n - 1
    f = np.fft.rfft2(p, (m, m))
    ac = np.fft.irfft2(f * np.conj(f), (m, m))
    c = n // 2
    start = n - 1 - c  # zero lag sits at (n - 1, n - 1) after fftshift of the odd size m
    ac = np.fft.fftshift(ac)[start : start + n, start : start + n]
    return ac / ac[c, c]


def _box_sums(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray, half: int) -> np.ndarray:
    """Sums of the (2 half + 1)² boxes centred on (ys, xs) from an integral image."""
    y0, y1, x0, x1 = ys - half, ys + half + 1, xs - half, xs + half + 1
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


#: pixel lookups up to which a draw's stamps are tested directly, not with an integral image
#: (two cumulative sums over the whole image, ~30 ms at 4 Mpix)
_DIRECT_LOOKUPS = 2_000_000


def _integral(bad: np.ndarray) -> np.ndarray:
    """Integral image of ``bad`` (counts of bad pixels), shape (ny + 1, nx + 1)."""
    ny, nx = bad.shape
    # int32 holds any image under 2**31 pixels (half the int64 traffic)
    itype = np.int32 if bad.size < 2**31 else np.int64
    integral = np.zeros((ny + 1, nx + 1), itype)
    integral[1:, 1:] = bad.cumsum(axis=0, dtype=itype).cumsum(axis=1, dtype=itype)
    return integral


def _box_free(bad: np.ndarray, ys: np.ndarray, xs: np.ndarray, half: int) -> np.ndarray:
    """Whether the (2 half + 1)² box centred on each (ys, xs) holds no bad pixel, by
    looking the boxes up (``_box_sums(_integral(bad), ys, xs, half) == 0``)."""
    d = np.arange(-half, half + 1)
    boxes = bad[(ys[:, None] + d)[:, :, None], (xs[:, None] + d)[:, None, :]]
    return np.asarray(~boxes.any(axis=(1, 2)), dtype=bool)


def _sample_free(
    bad: np.ndarray,
    half: int,
    avoid_xy: np.ndarray | None,
    avoid_radius: float,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to ``count`` distinct flat indices of random positions whose stamp (side
    ``2 half + 1``) holds no bad pixel, farther than ``avoid_radius`` from every avoided
    (rounded) position: drawn at random and tested by looking their stamps up (the first
    draw) or with an integral image (further draws) and a k-d tree, so the cost does not
    grow with the image size."""
    from scipy.spatial import cKDTree

    ny, nx = bad.shape
    integral: np.ndarray | None = None
    tree = None
    if avoid_xy is not None and len(avoid_xy):
        ax = np.clip(np.round(np.asarray(avoid_xy, float)), 0, [nx - 1, ny - 1])
        tree = cKDTree(ax)
    found = np.empty(0, np.int64)
    for attempt in range(20):
        m = max(4 * count, 1000)
        ys = rng.integers(half, ny - half, m)
        xs = rng.integers(half, nx - half, m)
        if attempt == 0 and m * (2 * half + 1) ** 2 <= _DIRECT_LOOKUPS:
            keep = _box_free(bad, ys, xs, half)  # the first draw, usually the only one
        else:
            if integral is None:  # more draws: one integral image serves them all
                integral = _integral(bad)
            keep = _box_sums(integral, ys, xs, half) == 0
        if tree is not None and keep.any():
            dist, _ = tree.query(np.column_stack([xs[keep], ys[keep]]))
            keep[keep] = dist > avoid_radius
        idx = np.concatenate([found, ys[keep] * nx + xs[keep]])
        _, first = np.unique(idx, return_index=True)
        found = idx[np.sort(first)]
        if found.size >= count:
            return found[:count]
    return found


def _all_free(
    bad: np.ndarray, half: int, size: int, avoid_xy: np.ndarray | None, avoid_radius: float
) -> np.ndarray:
    """Every free position (flat indices), by morphology over the whole image."""
    ny, nx = bad.shape
    ok = ~bad
    ok[:half, :] = ok[-half:, :] = False
    ok[:, :half] = ok[:, -half:] = False
    if avoid_xy is not None and len(avoid_xy):
        seeds = np.zeros(bad.shape, bool)
        ax = np.clip(np.round(np.asarray(avoid_xy, float)).astype(int), 0, [nx - 1, ny - 1])
        seeds[ax[:, 1], ax[:, 0]] = True
        ok &= ndimage.distance_transform_edt(~seeds) > avoid_radius
    # a fake's stamp must not touch a masked pixel: erode the usable area by the stamp
    ok &= ~ndimage.binary_dilation(bad, structure=np.ones((size, size), bool))
    return np.flatnonzero(ok)


def _crossing(mag: np.ndarray, comp: np.ndarray, level: float) -> float:
    """Magnitude where the completeness (bright to faint) first drops below ``level``."""
    for i in range(len(mag) - 1):
        if comp[i] >= level > comp[i + 1]:
            t = (comp[i] - level) / (comp[i] - comp[i + 1])
            return float(mag[i] + t * (mag[i + 1] - mag[i]))
    return float("nan")


def detection_limits(
    score: np.ndarray,
    flux_err: np.ndarray,
    psf: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    zero_point: float = 0.0,
    threshold: float = 5.0,
    minarea: int = 3,
    avoid_xy: np.ndarray | None = None,
    avoid_radius: float = 10.0,
    n_per_bin: int = 100,
    mag: np.ndarray | None = None,
    match_radius: float = 2.0,
    seed: int = 0,
) -> DetectionLimits:
    """Completeness curve and 50 % / 90 % limiting magnitudes of one difference.

    Parameters
    ----------
    score : numpy.ndarray
        Significance map (ny, nx) in sigma (e.g. ``DifferenceResult.score``, ZOGY S_corr).
    flux_err : numpy.ndarray
        1-sigma PSF-flux error map (ny, nx), in the flux units of ``zero_point``.
    psf : numpy.ndarray
        PSF of the difference (odd square, centred).
    mask : numpy.ndarray, optional
        Bool (ny, nx), True = unusable (no fake placed where its stamp touches one).
    zero_point : float
        ``mag = zero_point - 2.5 log10(flux)``.
    threshold, minarea : float, int
        The detection's threshold (sigma) and minimum area (pixels), as for the candidates.
    avoid_xy : numpy.ndarray, optional
        Shape (m, 2): (x, y) of real sources to keep away from.
    avoid_radius : float
        Minimum distance in pixels from those sources.
    n_per_bin : int
        Fakes per magnitude bin.
    mag : numpy.ndarray, optional
        Bin magnitudes (bright to faint); default 0.1-mag steps from 1.5 mag brighter to
        1 mag fainter than the S/N = ``threshold`` magnitude at the median ``flux_err``.
    match_radius : float
        Recovery radius in pixels.
    seed : int
        Random seed for the positions.

    Returns
    -------
    DetectionLimits

    Raises
    ------
    DetectionLimitsError
        If shapes disagree, ``flux_err`` has no positive finite value, or no position is free.
    """
    score = np.asarray(score, np.float32)
    # float32 stays float32 (a float64 copy is 32 MB at 4 Mpix): the mask, the median and
    # each S/N (a float64 flux over a float32 error: a float64 quotient) are the same
    ferr = np.asarray(flux_err)
    if ferr.dtype != np.float32:
        ferr = np.asarray(ferr, float)
    if score.shape != ferr.shape or score.ndim != 2:
        raise DetectionLimitsError(f"score {score.shape} and flux_err {ferr.shape} differ")
    bad = ~np.isfinite(score) | ~np.isfinite(ferr) | (ferr <= 0)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    prof = _profile(psf)
    h = prof.shape[0] // 2
    half = max(h, int(math.ceil(match_radius)) + 3)
    size = 2 * half + 1
    ny, nx = score.shape
    if ny <= 2 * half or nx <= 2 * half or bool(bad.all()):
        raise DetectionLimitsError("no unmasked area for fake sources", hint="check the mask")
    if mag is None:
        inner = ~bad[half:-half, half:-half]
        if not inner.any():
            raise DetectionLimitsError("no unmasked area for fake sources", hint="check the mask")
        m_t = zero_point - 2.5 * math.log10(
            threshold * median_float64(ferr[half:-half, half:-half][inner], overwrite_input=True)
        )
        mag = np.round(np.arange(m_t - 1.5, m_t + 1.0001, 0.1), 3)
    mag = np.asarray(mag, float)
    rng = np.random.default_rng(seed)
    k, n = len(mag), int(n_per_bin)
    pick = _sample_free(bad, half, avoid_xy, avoid_radius, k * n, rng)
    if pick.size < k * n:  # crowded or heavily masked: enumerate every free position
        free = _all_free(bad, half, size, avoid_xy, avoid_radius)
        if free.size == 0:
            raise DetectionLimitsError("no position is free of masks and real sources")
        pick = rng.choice(free, size=k * n, replace=free.size < k * n)
    ys, xs = np.divmod(pick, nx)
    flux = np.repeat(10.0 ** (-0.4 * (mag - zero_point)), n)
    cell = size + 2
    ncol = int(math.ceil(math.sqrt(k * n)))
    nrow = int(math.ceil(k * n / ncol))
    mosaic = np.zeros((nrow * cell, ncol * cell), np.float32)
    for i in range(k * n):
        r0, c0 = (i // ncol) * cell + 1, (i % ncol) * cell + 1
        st = score[ys[i] - half : ys[i] + half + 1, xs[i] - half : xs[i] + half + 1].copy()
        snr = flux[i] / ferr[ys[i], xs[i]]
        st[half - h : half + h + 1, half - h : half + h + 1] += np.float32(snr) * prof
        mosaic[r0 : r0 + size, c0 : c0 + size] = st
    objs = detect_peaks(mosaic, threshold, minarea)
    found = np.zeros(k * n, bool)
    for o in objs:
        px, py = int(o["xpeak"]), int(o["ypeak"])
        row, col = py // cell, px // cell
        i = row * ncol + col
        if i >= k * n:
            continue
        cy, cx = row * cell + 1 + half, col * cell + 1 + half
        if math.hypot(px - cx, py - cy) <= match_radius:
            found[i] = True
    comp = found.reshape(k, n).mean(axis=1)
    m50, m90 = _probit_limits(mag, comp, n, zero_point)
    return DetectionLimits(
        mag=mag,
        completeness=comp,
        n_injected=np.full(k, n),
        m50=m50,
        m90=m90,
        threshold=float(threshold),
    )


def _probit_limits(mag: np.ndarray, comp: np.ndarray, n: int, zp: float) -> tuple[float, float]:
    """50 % and 90 % magnitudes from a weighted probit fit ``Φ⁻¹(P) = a·flux − b``."""
    from scipy.special import ndtri  # inverse normal CDF

    flux = 10.0 ** (-0.4 * (mag - zp))
    use = (comp > 0.02) & (comp < 0.98)
    if use.sum() >= 2:
        z = ndtri(comp[use])
        # binomial variance of P mapped through Φ⁻¹: var(z) = P(1-P) / (n φ(z)²)
        phi = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
        w = np.sqrt(n * phi**2 / (comp[use] * (1.0 - comp[use])))
        design = np.column_stack([flux[use], -np.ones(int(use.sum()))])
        (a, b), *_ = np.linalg.lstsq(design * w[:, None], z * w, rcond=None)
        if a > 0:
            to_mag = lambda f: zp - 2.5 * math.log10(f) if f > 0 else float("nan")  # noqa: E731
            return to_mag(b / a), to_mag((b + 1.2816) / a)
    mono = np.minimum.accumulate(comp)  # completeness cannot rise towards the faint end
    return _crossing(mag, mono, 0.5), _crossing(mag, mono, 0.9)
