"""Flux ratio F_n / F_r and registration scatter of two prepared images (ZOGY section 3.3).

Stars matched by position are cross-convolved with the other image's PSF (whole-image or
per PSF-grid cell) so both carry the same PSF; the sigma-clipped ratio of those values is
the new image's flux scale in reference units (dimensionless), and the scatter of bright
stars' position differences the per-image registration noise (sigma_x, sigma_y) in pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from astrid.science.diffimage import PreparedImage
from astrid.science.neighbours import nearest
from astrid.science.psf_spatial import PSFGrid
from astrid.science.stats import robust_sigma

__all__ = ["fit_flux_ratio"]


def _cross_values(
    image: PreparedImage, other_psf: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Values of ``image (x) other_psf`` at sub-pixel positions (NaN near masks/edges)."""
    kern = other_psf.astype(np.float64)[::-1, ::-1]
    h = kern.shape[0] // 2
    ny, nx = image.data.shape
    out = np.full(x.size, np.nan)
    for k, (xi, yi) in enumerate(
        zip(np.round(x).astype(int), np.round(y).astype(int), strict=False)
    ):
        if h <= xi < nx - h and h <= yi < ny - h:
            sl = (slice(yi - h, yi + h + 1), slice(xi - h, xi + h + 1))
            if mask[sl].any():
                continue
            shifted = ndimage.shift(kern, (y[k] - yi, x[k] - xi), order=3, mode="constant")
            out[k] = float((image.data[sl] * shifted[::-1, ::-1][::-1, ::-1]).sum())
    return out


def fit_flux_ratio(
    new: PreparedImage,
    ref: PreparedImage,
    *,
    radius: float = 2.0,
    min_snr: float = 10.0,
    max_stars: int = 150,
    new_grid: PSFGrid | None = None,
    ref_grid: PSFGrid | None = None,
) -> tuple[float, int, tuple[float, float]]:
    """Robust flux ratio F_n / F_r and registration scatter from stars matched by position.

    Each image is cross-convolved with the other's PSF at the reference positions of the
    stars (ZOGY section 3.3), which gives both the same PSF; after 3-sigma clipping of the
    log ratios the ratio is ``sum(N (x) P_r) / sum(R (x) P_n)`` over the kept stars.

    Parameters
    ----------
    new, ref : PreparedImage
        The two prepared images (same pixel grid).
    radius : float
        Matching radius in pixels.
    min_snr : float
        Minimum aperture S/N in both images.
    max_stars : int
        Use at most this many of the brightest matched stars.
    new_grid, ref_grid : PSFGrid, optional
        Position-dependent PSFs: each star is cross-convolved with the PSFs of its cell
        (with a PSF that varies across the field, whole-image PSFs bias the ratio: 0.90
        instead of 1.00 on the ``moffat_varying`` family case).

    Returns
    -------
    ratio : float
        Sigma-clipped median of the flux ratios (NaN if fewer than 3 matches).
    n_used : int
        Number of stars used.
    sigma_xy : tuple of float
        Robust scatter of the position differences (x, y) in pixels, per image (divided by
        sqrt 2), from stars with S/N > 50; (0, 0) when too few.
    """
    new_stars, ref_stars = new.stars, ref.stars
    if len(new_stars) == 0 or len(ref_stars) == 0:
        return float("nan"), 0, (0.0, 0.0)
    dist, j = nearest(np.column_stack([ref_stars.x, ref_stars.y]),
                      np.column_stack([new_stars.x, new_stars.y]), radius)  # fmt: skip
    ok = np.isfinite(dist)
    i = np.flatnonzero(ok)
    j = j[ok]
    good = (
        (new_stars.snr[i] > min_snr)
        & (ref_stars.snr[j] > min_snr)
        & ((new_stars.flags[i] & ~1) == 0)
        & ((ref_stars.flags[j] & ~1) == 0)
        & (new_stars.flux[i] > 0)
        & (ref_stars.flux[j] > 0)
    )
    if new.saturation is not None:
        good &= new_stars.peak[i] < 0.8 * new.saturation
    if ref.saturation is not None:
        good &= ref_stars.peak[j] < 0.8 * ref.saturation
    i, j = i[good], j[good]
    if i.size < 3:
        return float("nan"), int(i.size), (0.0, 0.0)
    order = np.argsort(new_stars.snr[i])[::-1][:max_stars]
    i, j = i[order], j[order]
    # Cross-convolution: N (x) P_r and R (x) P_n have the same PSF, so their values at a
    # star's position are in the ratio F_n / F_r whatever the seeing difference.
    xs, ys = ref_stars.x[j], ref_stars.y[j]
    both = new.mask | ref.mask
    if new_grid is None or ref_grid is None:
        fn = _cross_values(new, ref.psf.array, xs, ys, both)
        fr = _cross_values(ref, new.psf.array, xs, ys, both)
    else:
        fn = np.full(xs.size, np.nan)
        fr = np.full(xs.size, np.nan)
        cells = np.array([new_grid.cell_of(a, b) for a, b in zip(xs, ys, strict=True)])
        for ci, cj in {(int(a), int(b)) for a, b in cells}:
            at = (cells[:, 0] == ci) & (cells[:, 1] == cj)
            fn[at] = _cross_values(new, ref_grid.cells[ci][cj].array, xs[at], ys[at], both)
            fr[at] = _cross_values(ref, new_grid.cells[ci][cj].array, xs[at], ys[at], both)
    okf = np.isfinite(fn) & np.isfinite(fr) & (fn > 0) & (fr > 0)
    if okf.sum() < 3:
        return float("nan"), int(okf.sum()), (0.0, 0.0)
    lr = np.log(fn[okf] / fr[okf])
    keep = np.ones(lr.size, bool)
    for _ in range(5):
        med = np.median(lr[keep])
        mad = robust_sigma(lr[keep], centre=med) + 1e-3
        new_keep = np.abs(lr - med) < 3.0 * mad
        if new_keep.sum() < 3 or (new_keep == keep).all():
            break
        keep = new_keep
    ratio = float(fn[okf][keep].sum() / fr[okf][keep].sum())
    bright = (new_stars.snr[i] > 50) & (ref_stars.snr[j] > 50)
    sig = (0.0, 0.0)
    if bright.sum() >= 5:
        dx = new_stars.x[i][bright] - ref_stars.x[j][bright]
        dy = new_stars.y[i][bright] - ref_stars.y[j][bright]
        sx = robust_sigma(dx) / np.sqrt(2.0)
        sy = robust_sigma(dy) / np.sqrt(2.0)
        sig = (float(min(sx, 1.0)), float(min(sy, 1.0)))
    return ratio, int(keep.sum()), sig
