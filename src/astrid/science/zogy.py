"""ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27).

For two aligned images N (new) and R (reference) with PSFs P_n, P_r, background noise
sigma_n, sigma_r and flux zero points F_n, F_r, in Fourier space (hats dropped)::

    den^2 = sigma_n^2 F_r^2 |P_r|^2 + sigma_r^2 F_n^2 |P_n|^2
    D     = (F_r P_r N - F_n P_n R) / den                        (eq. 13)
    F_D   = F_r F_n / sqrt(sigma_n^2 F_r^2 + sigma_r^2 F_n^2)    (eq. 15)
    P_D   = F_r F_n P_r P_n / (F_D den)                          (eq. 14)
    S     = F_D D conj(P_D) = k_n N - k_r R                      (eqs. 12, 17-19)
    k_n   = F_n F_r^2 conj(P_n) |P_r|^2 / den^2,  k_r = F_r F_n^2 conj(P_r) |P_n|^2 / den^2
    F_S   = sum F_n^2 F_r^2 |P_n|^2 |P_r|^2 / den^2              (eq. 42)

and in real space the corrected score (eq. 25) divides S by the square root of
``V(S_N) + V(S_R) + V_ast(S_N) + V_ast(S_R)`` where ``V(S_N) = V(N) (x) k_n^2`` carries the
source noise of N (Poisson, from the gain) on top of its background noise and
``V_ast(S_N) = sigma_x^2 (dS_N/dx)^2 + sigma_y^2 (dS_N/dy)^2`` the astrometric noise. The
PSF-photometry flux of a point source is ``S / F_S`` (eq. 41) and its error
``sqrt(V(S)) / F_S``. Flux zero points: ``F_r = 1`` and ``F_n`` the fitted flux ratio, so
fluxes are in the reference image's units.

Spatial PSF variation is handled by sub-images (tiles) with overlapping borders, each with
its own PSFs; each tile is zero-padded so that FFT wrap-around never folds one edge onto the
other. Masks (True = excluded) are propagated and dilated by the PSF radius.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
from scipy.spatial import cKDTree

from astrid.errors import AstridError
from astrid.science.psf import (
    PSFEstimate,
    StarList,
    background_and_noise,
    estimate_psf,
    find_stars,
)
from astrid.science.psf_spatial import PSFGrid, estimate_psf_grid
from astrid.science.stats import robust_sigma

__all__ = [
    "DifferenceError",
    "DifferenceResult",
    "PreparedImage",
    "ShapeMismatchError",
    "fit_flux_ratio",
    "prepare_image",
    "psf_from_array",
    "zogy",
    "zogy_core",
]


class DifferenceError(AstridError):
    """Base class of image-differencing errors."""


class ShapeMismatchError(DifferenceError):
    """The two images (or an image and its mask) do not have the same shape."""


@dataclass
class PreparedImage:
    """A background-subtracted image with its mask, noise, stars and PSF.

    Attributes
    ----------
    data : numpy.ndarray
        Background-subtracted pixels, float32, shape (ny, nx); masked pixels set to 0.
    mask : numpy.ndarray of bool
        True = excluded (non-finite, flagged, saturated), shape (ny, nx).
    noise : float
        Background standard deviation in image units.
    gain : float
        Effective gain in electrons per image unit used for the source-noise term.
    stars : StarList
        Detected stars.
    psf : PSFEstimate
        Whole-image PSF.
    saturation : float or None
        Saturation level above background in image units.
    saturated : numpy.ndarray of bool or None
        Saturated pixels (dilated), shape (ny, nx).
    psf_given : bool
        True when the PSF was supplied by the caller (it is then used for every tile).
    """

    data: np.ndarray
    mask: np.ndarray
    noise: float
    gain: float
    stars: StarList
    psf: PSFEstimate
    saturation: float | None = None
    saturated: np.ndarray | None = None
    psf_given: bool = False


@dataclass
class DifferenceResult:
    """Products of a difference between a new and a reference image (same pixel grid).

    Attributes
    ----------
    diff : numpy.ndarray
        Difference image D, float32, shape (ny, nx). For ``zogy`` the proper difference,
        whose noise is white with unit variance; for ``classic`` the decorrelated
        difference in reference-image units.
    score : numpy.ndarray
        Detection significance in sigma (S_corr for zogy), float32, shape (ny, nx);
        positive where the new image is brighter. 0 where masked.
    flux : numpy.ndarray
        PSF-photometry flux of a point source centred on each pixel, in reference-image
        units, float32, shape (ny, nx).
    flux_err : numpy.ndarray
        1-sigma error of ``flux`` (same units and shape).
    psf : numpy.ndarray
        PSF of ``diff`` (P_D), small odd-sized centred array, unit sum.
    cr_template : numpy.ndarray
        Response of ``diff`` to a single-pixel event (delta function) in the new image,
        small centred array normalised to unit L2 norm (cosmic-ray hypothesis).
    mask : numpy.ndarray of bool
        True = excluded, shape (ny, nx).
    new_psf, ref_psf : PSFEstimate
        PSFs of the two inputs.
    flux_ratio : float
        F_n / F_r, the new image's flux scale relative to the reference.
    new_noise, ref_noise : float
        Background noise of each input in its own units.
    method : str
        ``"zogy"`` or ``"classic"``.
    score_scale : float
        Empirical factor the score was divided by so that its robust standard deviation is
        1 (corrects for correlated noise, e.g. after resampling); 1.0 when not applied.
    astrometric_sigma : tuple of float
        (sigma_x, sigma_y) registration noise in pixels used in the score.
    ref_stars : StarList
        Stars detected on the reference (for nearest-star distances).
    saturation_mask : numpy.ndarray of bool
        True where either input is saturated (dilated), shape (ny, nx).
    notes : list of str
        Fallbacks and warnings taken during the run (PSF fallbacks, default flux ratio...).
    psf_grids : tuple of PSFGrid or None
        (new, reference) PSFs of the sub-images ZOGY used, when it used per-sub-image PSFs.
    """

    diff: np.ndarray
    score: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    psf: np.ndarray
    cr_template: np.ndarray
    mask: np.ndarray
    new_psf: PSFEstimate
    ref_psf: PSFEstimate
    flux_ratio: float
    new_noise: float
    ref_noise: float
    method: str
    score_scale: float = 1.0
    astrometric_sigma: tuple[float, float] = (0.0, 0.0)
    ref_stars: StarList | None = None
    saturation_mask: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    psf_grids: tuple[PSFGrid | None, PSFGrid | None] = (None, None)


def _check_shapes(new: np.ndarray, ref: np.ndarray) -> None:
    if new.ndim != 2 or ref.ndim != 2:
        raise ShapeMismatchError(
            f"images must be 2-D, got shapes {new.shape} and {ref.shape}",
            hint="pass single image planes",
        )
    if new.shape != ref.shape:
        raise ShapeMismatchError(
            f"new image {new.shape} and reference {ref.shape} have different shapes",
            hint="align the new image onto the reference grid first (astrid detect does it)",
        )


def prepare_image(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    gain: float | None = None,
    saturation: float | None = None,
    psf: PSFEstimate | np.ndarray | None = None,
    default_fwhm: float = 3.0,
    min_stars: int = 5,
    noise: float | None = None,
    max_psf_size: int = 61,
) -> PreparedImage:
    """Subtract the background, build the mask, find stars and estimate the PSF.

    Parameters
    ----------
    image : numpy.ndarray
        Image pixels, shape (ny, nx); NaN/inf are masked.
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    gain : float, optional
        Electrons per image unit, for the source-noise term. If omitted it is estimated as
        ``background / noise^2`` when the sky is well above zero (Poisson-limited sky),
        else it is infinite: the source-noise term of that image is then left out (the
        differencing functions say so in their notes).
    saturation : float, optional
        Saturation level in image units (raw, before background subtraction); pixels at or
        above it are masked and stars touching it are not used for the PSF. If omitted and
        at least 3 pixels share the image's maximum value, that value is taken as the
        saturation level (a clipped plateau).
    psf : PSFEstimate or numpy.ndarray, optional
        A known PSF on this image's pixel grid (skips estimation), e.g. a WebbPSF model
        (detector-sampled). An array is recentred, cropped to at most ``max_psf_size``
        pixels and normalised to unit sum; it is used for the whole image (no per-tile
        PSFs).
    default_fwhm : float
        FWHM in pixels for the Gaussian fallback PSF.
    min_stars : int
        Fewest usable stars for an empirical PSF.
    noise : float, optional
        Background noise to use instead of the measured one (e.g. the noise measured
        before resampling, which the matched filter's low frequencies still carry).
    max_psf_size : int
        Largest side in pixels kept of a supplied PSF array (larger ones are cropped
        around their centre; the lost wings are assumed negligible).

    Returns
    -------
    PreparedImage

    Raises
    ------
    PSFError
        If a supplied PSF is not a finite 2-D array with a positive sum.
    """
    data = np.array(image, dtype=np.float32, copy=True)
    bad = ~np.isfinite(data)
    any_nonfinite = bool(bad.any())
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            raise ShapeMismatchError(f"mask {mask.shape} does not match image {data.shape}")
        bad |= mask
    sat = np.zeros(data.shape, bool)
    if saturation is None:
        # No level given: a plateau of >= 3 pixels at the exact maximum is a saturation level.
        finite = data[np.isfinite(data)] if any_nonfinite else data.ravel()
        if finite.size:
            top = float(finite.max())
            if np.count_nonzero(finite == top) >= 3:
                saturation = top
    if saturation is not None and np.isfinite(saturation):
        with np.errstate(invalid="ignore"):
            sat = data >= saturation
        if sat.any():
            sat = ndimage.binary_dilation(sat, iterations=2)
            bad |= sat
    if bad.all():
        raise DifferenceError(
            "the image has no finite, unmasked pixels", hint="check the data and the mask"
        )
    data[bad] = 0.0
    back, measured = background_and_noise(data, bad)
    noise = measured if noise is None else float(noise)
    # the background map is smooth on the mesh scale (>= 16 px): a sparse sample gives its
    # median as well as every pixel does, at a fraction of the cost
    step = 4 if min(data.shape) >= 256 else 1
    sample = back[::step, ::step][~bad[::step, ::step]]
    level = float(np.median(sample if sample.size else back[~bad]))
    data -= back
    data[bad] = 0.0
    if not np.isfinite(noise) or noise <= 0:
        raise DifferenceError(
            "the image background noise is zero or undefined",
            hint="is the image constant or already masked everywhere?",
        )
    if gain is None or not np.isfinite(gain) or gain <= 0:
        gain = level / noise**2 if level > 5 * noise else float("inf")
    sat_above = None if saturation is None else float(saturation) - level
    stars = find_stars(data, noise, bad, saturation=sat_above, psf_size=31)
    if psf is None:
        model = estimate_psf(
            data,
            noise,
            bad,
            stars=stars,
            saturation=sat_above,
            default_fwhm=default_fwhm,
            min_stars=min_stars,
        )
    elif isinstance(psf, PSFEstimate):
        model = psf
    else:
        model = psf_from_array(psf, max_psf_size)
    return PreparedImage(
        data, bad, float(noise), float(gain), stars, model, sat_above, sat, psf is not None
    )


def psf_from_array(psf: np.ndarray, max_size: int = 61) -> PSFEstimate:
    """A :class:`~astrid.science.psf.PSFEstimate` from a supplied PSF image.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF image on the science image's pixel grid, shape (n, m), any normalisation
        (e.g. the primary HDU of a WebbPSF ``*.WebbPSF.fits`` file).
    max_size : int
        Largest side in pixels kept (odd; larger PSFs are cropped around their peak).

    Returns
    -------
    PSFEstimate
        Odd-sized, centred, unit-sum PSF (``reason`` is ``"given"``).

    Raises
    ------
    PSFError
        If the array is not 2-D, not finite, or does not have a positive sum.
    """
    from astrid.science.psf import PSFError, _moments_fwhm, recentre_psf

    arr = np.asarray(psf, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 3 or not np.all(np.isfinite(arr)) or arr.sum() <= 0:
        raise PSFError(
            f"a supplied PSF must be a finite 2-D image with a positive sum (got shape "
            f"{arr.shape})",
            hint="pass the PSF image itself, e.g. fits.getdata('x.WebbPSF.fits')",
        )
    half = (min(min(arr.shape), int(max_size)) - 1) // 2
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    py = int(np.clip(peak[0], half, arr.shape[0] - 1 - half))
    px = int(np.clip(peak[1], half, arr.shape[1] - 1 - half))
    cut = arr[py - half : py + half + 1, px - half : px + half + 1]
    cut = recentre_psf(cut / cut.sum())
    return PSFEstimate(cut, _moments_fwhm(cut), 0, False, "given", "given")


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
    tree = cKDTree(np.column_stack([ref_stars.x, ref_stars.y]))
    dist, j = tree.query(np.column_stack([new_stars.x, new_stars.y]), distance_upper_bound=radius)
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


def _embed(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place a centred PSF in an array of ``shape`` with its centre at pixel (0, 0)."""
    out = np.zeros(shape, dtype=np.float32)
    n = psf.shape[0]
    h = n // 2
    out[:n, :n] = psf
    return np.roll(out, (-h, -h), axis=(0, 1))


def _crop_centre(kernel: np.ndarray, size: int) -> np.ndarray:
    """Crop a kernel whose centre is at pixel (0, 0) to a centred (size, size) array."""
    h = size // 2
    rolled = np.roll(kernel, (h, h), axis=(0, 1))
    return np.ascontiguousarray(rolled[:size, :size])


@dataclass
class _CoreOut:
    diff: np.ndarray
    s_map: np.ndarray
    var: np.ndarray
    s_ref: np.ndarray | None
    f_s: float
    psf_d: np.ndarray
    cr_template: np.ndarray

    @property
    def score(self) -> np.ndarray:
        return self.s_map / np.sqrt(self.var)


def zogy_core(
    new: np.ndarray,
    ref: np.ndarray,
    new_psf: np.ndarray,
    ref_psf: np.ndarray,
    new_noise: float,
    ref_noise: float,
    *,
    flux_ratio: float = 1.0,
    new_var_source: np.ndarray | None = None,
    ref_var_source: np.ndarray | None = None,
    astrometric_sigma: tuple[float, float] = (0.0, 0.0),
    workers: int = 1,
    kernel_size: int | None = None,
    keep_static: bool = True,
) -> _CoreOut:
    """ZOGY on one pair of background-subtracted, zero-padded arrays (no tiling, no masks).

    Parameters
    ----------
    new, ref : numpy.ndarray
        Background-subtracted images, float32, same shape (ny, nx).
    new_psf, ref_psf : numpy.ndarray
        Centred, unit-sum PSFs (odd sizes, smaller than the images).
    new_noise, ref_noise : float
        Background standard deviations in each image's units.
    flux_ratio : float
        F_n (with F_r = 1).
    new_var_source, ref_var_source : numpy.ndarray, optional
        Source (Poisson) variance maps in squared image units, shape (ny, nx); the
        background variance is added internally.
    astrometric_sigma : tuple of float
        Registration noise (sigma_x, sigma_y) in pixels.
    workers : int
        Threads for scipy.fft.
    kernel_size : int, optional
        Side of the returned P_D and cosmic-ray templates.
    keep_static : bool
        Also return ``min(|S_N|, |S_R|)`` (needed only for the PSF-error term).

    Returns
    -------
    _CoreOut
        D, S, V(S) (source, background and astrometric terms), min(|S_N|, |S_R|) (the
        score of sources present in both images), F_S and the small templates;
        S_corr = S / sqrt(V).
    """
    shape = new.shape
    ny, nx = shape
    fr, fn = 1.0, float(flux_ratio)
    sn, sr = float(new_noise), float(ref_noise)
    rfft2 = sfft.rfft2
    # Every spectrum below is single precision (complex64/float32): scipy.fft keeps the
    # precision of float32 input, and the constants are applied as float32 scalars.
    pn = _rfft2_compact(new_psf, shape, workers)
    pr = _rfft2_compact(ref_psf, shape, workers)
    n_hat = rfft2(new, workers=workers)
    r_hat = rfft2(ref, workers=workers)
    apn2 = pn.real**2 + pn.imag**2
    apr2 = pr.real**2 + pr.imag**2
    den2 = np.float32(sn**2 * fr**2) * apr2
    den2 += np.float32(sr**2 * fn**2) * apn2
    np.maximum(den2, np.float32(1e-12 * float(den2.max())), out=den2)
    inv_den = 1.0 / np.sqrt(den2)
    # D = (F_r P_r N - F_n P_n R) / den
    d_hat = pr * n_hat
    d_hat -= np.float32(fn) * pn * r_hat
    d_hat *= inv_den
    diff = _irfft2_consume(d_hat, shape, workers)
    del d_hat
    # S = S_N - S_R with k_n = F_n F_r^2 conj(P_n) |P_r|^2 / den^2 (and k_r alike)
    inv_den2 = inv_den
    inv_den2 *= inv_den  # in place: inv_den is not needed any more
    del inv_den
    wn = np.float32(fn * fr**2) * apr2 * inv_den2  # |k_n| / |P_n|
    wr = np.float32(fr * fn**2) * apn2 * inv_den2
    n_hat *= wn
    n_hat *= np.conj(pn)
    r_hat *= wr
    r_hat *= np.conj(pr)
    s_n = _irfft2_consume(n_hat, shape, workers)
    s_r = _irfft2_consume(r_hat, shape, workers)
    del n_hat, r_hat, wn, wr, pn, pr
    s_map = s_n - s_r
    # F_S, with rfft half-plane weights
    weights = np.full(apn2.shape[1], 2.0, dtype=np.float64)
    weights[0] = 1.0
    if nx % 2 == 0:
        weights[-1] = 1.0
    prod = apn2 * apr2
    prod *= inv_den2
    f_s = float((fn**2 * fr**2) * (prod.sum(axis=0, dtype=np.float64) * weights).sum() / (ny * nx))
    del prod, apn2, apr2, inv_den2, den2
    # Real-space kernels and templates on a small grid (they are compact; computing them at
    # full size would cost four more FFTs per tile).
    small = _small_kernels(new_psf, ref_psf, sn, sr, fn, fr, min(ny, nx), kernel_size)
    kn2 = small.kn**2
    kr2 = small.kr**2
    var = np.full(shape, sn**2 * float(kn2.sum()) + sr**2 * float(kr2.sum()), dtype=np.float32)
    if new_var_source is not None or ref_var_source is not None:
        acc = None
        if new_var_source is not None:
            acc = rfft2(new_var_source, workers=workers)
            acc *= _rfft2_compact(kn2, shape, workers, centred=False)
        if ref_var_source is not None:
            term = rfft2(ref_var_source, workers=workers)
            term *= _rfft2_compact(kr2, shape, workers, centred=False)
            if acc is None:
                acc = term
            else:
                acc += term
        assert acc is not None
        var += np.clip(_irfft2_consume(acc, shape, workers), 0, None)
    sx, sy = astrometric_sigma
    if sx > 0 or sy > 0:
        for sm in (s_n, s_r):
            _add_squared_gradient(var, sm, sx**2, axis=1)
            _add_squared_gradient(var, sm, sy**2, axis=0)
    s_static = np.minimum(np.abs(s_n), np.abs(s_r)) if keep_static else None
    del s_n, s_r
    psf_d, cr = small.psf_d, small.cr
    return _CoreOut(diff, s_map, var, s_static, f_s, psf_d, cr)


def _irfft2_consume(spectrum: np.ndarray, shape: tuple[int, int], workers: int) -> np.ndarray:
    """``irfft2(spectrum, s=shape)``, overwriting ``spectrum`` (the caller drops it).

    Done as a complex inverse along y in place, then a real inverse along x: the same
    result as ``scipy.fft.irfft2`` and about a third faster on one core (no copy of the
    input, contiguous last-axis transforms).
    """
    cols = sfft.ifft(spectrum, axis=0, workers=workers, overwrite_x=True)
    return sfft.irfft(cols, n=shape[1], axis=1, workers=workers, overwrite_x=True)


def _add_squared_gradient(var: np.ndarray, image: np.ndarray, weight: float, axis: int) -> None:
    """``var += weight * (d image / d axis)**2`` in place, as ``np.gradient`` differentiates.

    Central differences inside, one-sided at the two edges, without allocating both
    gradient components at once.
    """
    if weight <= 0 or image.shape[axis] < 2:
        return
    w = np.float32(weight)
    a = np.moveaxis(image, axis, 0)
    v = np.moveaxis(var, axis, 0)
    d = a[2:] - a[:-2]
    d *= np.float32(0.5)
    d *= d
    d *= w
    v[1:-1] += d
    v[0] += w * (a[1] - a[0]) ** 2
    v[-1] += w * (a[-1] - a[-2]) ** 2


def _rfft2_compact(
    kernel: np.ndarray, shape: tuple[int, int], workers: int, *, centred: bool = True
) -> np.ndarray:
    """``rfft2`` of a small kernel placed with its centre at pixel (0, 0) of ``shape``.

    ``centred`` kernels are odd-sized arrays centred on their central pixel (PSFs);
    otherwise the kernel is already centred at its pixel (0, 0) on a small periodic grid
    (the output of :func:`_small_kernels`). Only the few rows the kernel occupies are
    transformed along x, then every column along y: the same result as ``rfft2`` of the
    zero-padded array at about half the cost.
    """
    ny, nx = shape
    k = np.asarray(kernel, dtype=np.float32)
    n = k.shape[0]
    h = n // 2
    wrapped = np.roll(k, (-h, -h), axis=(0, 1)) if centred else k
    a = n - h  # offsets 0..a-1 sit at indices 0..a-1, offsets -h..-1 at a..n-1
    if n > ny or n > nx:  # kernel larger than the grid: fold it (periodic sum)
        off = np.concatenate([np.arange(a), np.arange(-h, 0)])
        full = np.zeros(shape, np.float32)
        np.add.at(full, (off[:, None] % ny, off[None, :] % nx), wrapped)
        return sfft.rfft2(full, workers=workers)
    rows = np.zeros((n, nx), np.float32)
    rows[:, :a] = wrapped[:, :a]
    if h:
        rows[:, nx - h :] = wrapped[:, a:]
    part = sfft.rfft(rows, axis=1, workers=workers)
    out = np.zeros((ny, part.shape[1]), part.dtype)
    out[:a] = part[:a]
    if h:
        out[ny - h :] = part[a:]
    return sfft.fft(out, axis=0, workers=workers, overwrite_x=True)


@dataclass
class _Small:
    kn: np.ndarray
    kr: np.ndarray
    psf_d: np.ndarray
    cr: np.ndarray


def _small_kernels(
    new_psf: np.ndarray,
    ref_psf: np.ndarray,
    sn: float,
    sr: float,
    fn: float,
    fr: float,
    limit: int,
    kernel_size: int | None,
) -> _Small:
    """k_n, k_r (centred at pixel (0, 0)), P_D and the cosmic-ray template on a small grid."""
    size = max(new_psf.shape[0], ref_psf.shape[0])
    n = int(sfft.next_fast_len(min(max(4 * size, 64), limit)))
    pn = sfft.fft2(_embed(new_psf, (n, n)))
    pr = sfft.fft2(_embed(ref_psf, (n, n)))
    apn2, apr2 = np.abs(pn) ** 2, np.abs(pr) ** 2
    den2 = (sn**2 * fr**2) * apr2 + (sr**2 * fn**2) * apn2
    den2 = np.maximum(den2, 1e-12 * float(den2.max()))
    den = np.sqrt(den2)
    f_d = fr * fn / np.sqrt(sn**2 * fr**2 + sr**2 * fn**2)
    kn = sfft.ifft2((fn * fr**2) * np.conj(pn) * apr2 / den2).real
    kr = sfft.ifft2((fr * fn**2) * np.conj(pr) * apn2 / den2).real
    if kernel_size is None:
        kernel_size = size
    kernel_size = int(min(kernel_size, n - 1)) | 1
    psf_d = _crop_centre(sfft.ifft2((fr * fn) * pr * pn / (f_d * den)).real, kernel_size)
    psf_d = (psf_d / psf_d.sum()).astype(np.float32)
    cr = _crop_centre(sfft.ifft2(fr * pr / den).real, kernel_size)
    cr = (cr / np.sqrt((cr**2).sum())).astype(np.float32)
    return _Small(kn, kr, psf_d, cr)


def _tiles(n: int, tile: int) -> list[tuple[int, int]]:
    k = max(1, int(np.round(n / tile)))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _robust_std(values: np.ndarray) -> float:
    if values.size == 0:
        return 1.0
    if values.size > 400_000:
        values = values[:: values.size // 200_000]
    return robust_sigma(values)


def zogy(
    new: np.ndarray,
    ref: np.ndarray,
    *,
    new_mask: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    new_psf: PSFEstimate | np.ndarray | None = None,
    ref_psf: PSFEstimate | np.ndarray | None = None,
    new_gain: float | None = None,
    ref_gain: float | None = None,
    new_saturation: float | None = None,
    ref_saturation: float | None = None,
    flux_ratio: float | None = None,
    astrometric_sigma: tuple[float, float] | None = None,
    tile_size: int | None = None,
    psf_cell: int = 512,
    source_noise: bool = True,
    psf_error: bool = False,
    renormalize: bool = True,
    default_fwhm: float = 3.0,
    workers: int = 1,
    new_prepared: PreparedImage | None = None,
    ref_prepared: PreparedImage | None = None,
) -> DifferenceResult:
    """ZOGY difference of two aligned images (same pixel grid).

    Parameters
    ----------
    new, ref : numpy.ndarray
        New and reference images, shape (ny, nx), any float dtype, with their sky.
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx). NaNs are masked automatically.
    new_psf, ref_psf : PSFEstimate or numpy.ndarray, optional
        Known PSFs (centred, odd-sized); estimated from the images (per tile) if omitted.
    new_gain, ref_gain : float, optional
        Electrons per image unit for the source-noise terms (see :func:`prepare_image`).
    new_saturation, ref_saturation : float, optional
        Saturation levels in image units; saturated pixels are masked.
    flux_ratio : float, optional
        F_n / F_r; fitted on matched stars if omitted (1.0 with a note if it cannot be).
    astrometric_sigma : tuple of float, optional
        Registration noise (sigma_x, sigma_y) in pixels; measured on matched bright stars
        if omitted.
    tile_size : int, optional
        Core size of the sub-images in pixels; each gets its own PSFs (from its stars and a
        margin around it; the whole-image PSF where too few) and is processed with
        overlapping, zero-padded borders. By default (None) the PSFs are first estimated on
        cells of about ``psf_cell`` pixels (:func:`astrid.science.psf_spatial.estimate_psf_grid`):
        if either image's PSF varies across them beyond tolerance, the cells are the
        sub-images, each with its own pair of PSFs; otherwise the whole-image PSFs are used
        on sub-images of 1024 pixels.
    psf_cell : int
        Cell size in pixels of the automatic PSF-variation check.
    source_noise : bool
        Include the source (Poisson) noise terms V(S_N), V(S_R).
    psf_error : bool
        Add a PSF-model-error variance ``(eps min(|S_N|, |S_R|))^2``, with ``eps`` measured
        on bright reference stars so that their residuals stay within 3 sigma (see
        :func:`_psf_error_fraction`); it vanishes where either image is empty, so appearing
        and vanishing transients keep their full significance, but it also damps transients
        on bright hosts (off by default; useful in fields of bright stars with poor PSFs).
    renormalize : bool
        Divide the score by its robust standard deviation (correlated-noise correction,
        e.g. after resampling), recorded in ``score_scale``.
    default_fwhm : float
        FWHM in pixels of the Gaussian fallback PSF when an image has too few stars.
    workers : int
        Threads for scipy.fft.
    new_prepared, ref_prepared : PreparedImage, optional
        Re-use the outputs of :func:`prepare_image`.

    Returns
    -------
    DifferenceResult
    """
    new = np.asarray(new)
    ref = np.asarray(ref)
    _check_shapes(new, ref)
    notes: list[str] = []
    pn_ = new_prepared or prepare_image(
        new,
        new_mask,
        gain=new_gain,
        saturation=new_saturation,
        psf=new_psf,
        default_fwhm=default_fwhm,
    )
    pr_ = ref_prepared or prepare_image(
        ref,
        ref_mask,
        gain=ref_gain,
        saturation=ref_saturation,
        psf=ref_psf,
        default_fwhm=default_fwhm,
    )
    for label, prep in (("new", pn_), ("reference", pr_)):
        if prep.psf.fallback:
            notes.append(f"{label} PSF fallback: {prep.psf.reason}")
        if source_noise and not np.isfinite(prep.gain):
            notes.append(f"{label} source noise left out: no gain given and the sky is too low")
    grids = _psf_grids(pn_, pr_, new.shape, tile_size, psf_cell, notes)
    ratio, n_ratio, sig_xy = fit_flux_ratio(pn_, pr_, new_grid=grids[0], ref_grid=grids[1])
    if flux_ratio is None:
        if not np.isfinite(ratio):
            notes.append(f"flux ratio fallback: only {n_ratio} matched star(s); F_n/F_r set to 1.0")
            flux_ratio = 1.0
        else:
            flux_ratio = ratio
    if astrometric_sigma is None:
        astrometric_sigma = sig_xy
    mask = pn_.mask | pr_.mask
    ny, nx = new.shape
    size = max(pn_.psf.size, pr_.psf.size)
    half = size // 2
    border = 2 * size
    ye, xe = grids[0].y_edges, grids[0].x_edges
    diff = np.zeros((ny, nx), np.float32)
    s_all = np.zeros((ny, nx), np.float32)
    var_all = np.ones((ny, nx), np.float32)
    sr_all = np.zeros((ny, nx), np.float32) if psf_error else None
    fs_all = np.ones((ny, nx), np.float32)
    psf_d = cr_t = None
    for i, (y0, y1) in enumerate(itertools.pairwise(ye)):
        for j, (x0, x1) in enumerate(itertools.pairwise(xe)):
            ey0, ey1 = max(0, y0 - border), min(ny, y1 + border)
            ex0, ex1 = max(0, x0 - border), min(nx, x1 + border)
            region = (slice(ey0, ey1), slice(ex0, ex1))
            psfs = [_pad_psf(g.cells[i][j].array, size) for g in grids]
            local_mask = mask[region]
            # zero-pad against wrap-around
            ty, tx = ey1 - ey0 + 2 * size, ex1 - ex0 + 2 * size
            fy, fx = sfft.next_fast_len(ty, real=True), sfft.next_fast_len(tx, real=True)
            sl = (slice(size, size + ey1 - ey0), slice(size, size + ex1 - ex0))
            tn = np.zeros((fy, fx), np.float32)
            tr = np.zeros((fy, fx), np.float32)
            # masked pixels of either image are zeroed in both, so that a pixel lost in one
            # image only does not leave a hole (or its star) in the difference
            tn[sl] = np.where(local_mask, np.float32(0), pn_.data[region])
            tr[sl] = np.where(local_mask, np.float32(0), pr_.data[region])
            vn = vr = None
            if source_noise:
                vn = np.zeros((fy, fx), np.float32)
                vr = np.zeros((fy, fx), np.float32)
                vn[sl] = np.clip(tn[sl], 0, None) / np.float32(pn_.gain)
                vr[sl] = np.clip(tr[sl], 0, None) / np.float32(pr_.gain)
            out = zogy_core(
                tn,
                tr,
                psfs[0],
                psfs[1],
                pn_.noise,
                pr_.noise,
                flux_ratio=flux_ratio,
                new_var_source=vn,
                ref_var_source=vr,
                astrometric_sigma=astrometric_sigma,
                workers=workers,
                keep_static=psf_error,
            )
            cy = slice(size + y0 - ey0, size + y1 - ey0)
            cx = slice(size + x0 - ex0, size + x1 - ex0)
            diff[y0:y1, x0:x1] = out.diff[cy, cx]
            s_all[y0:y1, x0:x1] = out.s_map[cy, cx]
            var_all[y0:y1, x0:x1] = out.var[cy, cx]
            if sr_all is not None and out.s_ref is not None:
                sr_all[y0:y1, x0:x1] = out.s_ref[cy, cx]
            fs_all[y0:y1, x0:x1] = out.f_s
            if psf_d is None or (y0 <= ny // 2 < y1 and x0 <= nx // 2 < x1):
                psf_d, cr_t = out.psf_d, out.cr_template
    assert psf_d is not None and cr_t is not None
    sat_mask = np.zeros_like(mask)
    for prep in (pn_, pr_):
        if prep.saturated is not None:
            sat_mask |= prep.saturated
    grown = _grow_mask(mask, sat_mask, pn_, pr_, half)
    eps = 0.0
    if sr_all is not None:
        eps = _psf_error_fraction(s_all, var_all, sr_all, pr_.stars, grown)
    if eps > 0 and sr_all is not None:
        var_all += np.float32(eps**2) * sr_all**2
        notes.append(f"PSF-model error term: {eps:.3g} of min(|S_N|, |S_R|)")
    del sr_all
    sd = np.sqrt(var_all)
    del var_all
    score = s_all / sd
    flux = s_all / fs_all
    flux_err = sd / fs_all
    del s_all, sd, fs_all
    scale = 1.0
    if renormalize:
        # a regular sub-grid of ~250k pixels is plenty for a robust scale
        step = max(1, int(np.sqrt(score.size / 250_000)))
        scale = _robust_std(score[::step, ::step][~grown[::step, ::step]])
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
        score /= np.float32(scale)
        flux_err *= np.float32(scale)
    score[grown] = 0.0
    flux[grown] = 0.0
    diff[mask] = 0.0
    return DifferenceResult(
        diff=diff,
        score=score,
        flux=flux,
        flux_err=flux_err,
        psf=psf_d,
        cr_template=cr_t,
        mask=grown,
        new_psf=pn_.psf,
        ref_psf=pr_.psf,
        flux_ratio=float(flux_ratio),
        new_noise=pn_.noise,
        ref_noise=pr_.noise,
        method="zogy",
        score_scale=float(scale),
        astrometric_sigma=(float(astrometric_sigma[0]), float(astrometric_sigma[1])),
        ref_stars=pr_.stars,
        saturation_mask=sat_mask,
        notes=notes,
        psf_grids=(grids[0], grids[1]) if grids[0].shape != (1, 1) else (None, None),
    )


def _psf_grids(
    pn_: PreparedImage,
    pr_: PreparedImage,
    shape: tuple[int, int],
    tile_size: int | None,
    psf_cell: int,
    notes: list[str],
) -> tuple[PSFGrid, PSFGrid]:
    """The sub-images of a ZOGY run and each image's PSF in each of them."""
    ny, nx = shape

    def edges(n: int, tile: int) -> tuple[int, ...]:
        t = _tiles(n, tile)
        return (t[0][0], *(b for _, b in t))

    def grid(prep: PreparedImage, ye: tuple[int, ...], xe: tuple[int, ...]) -> PSFGrid:
        return estimate_psf_grid(prep.data, prep.noise, prep.mask, stars=prep.stars,
                                 whole=prep.psf, y_edges=ye, x_edges=xe,
                                 saturation=prep.saturation)  # fmt: skip

    if tile_size is not None:
        ye, xe = edges(ny, tile_size), edges(nx, tile_size)
        return grid(pn_, ye, xe), grid(pr_, ye, xe)
    ye, xe = edges(ny, psf_cell), edges(nx, psf_cell)
    if len(ye) > 2 or len(xe) > 2:
        gn, gr = grid(pn_, ye, xe), grid(pr_, ye, xe)
        moving = [label for label, g in (("new", gn), ("reference", gr)) if g.varies]
        if moving:
            rows, cols = gn.shape
            notes.append(
                f"PSF varies across the field ({' and '.join(moving)}): {rows}x{cols} "
                f"sub-images with their own PSFs (new {gn.n_own}, reference {gr.n_own} of "
                f"{rows * cols} from their own stars)"
            )
            return gn, gr
    ye, xe = edges(ny, 1024), edges(nx, 1024)
    whole_n = PSFGrid(ye, xe, tuple(tuple(pn_.psf for _ in xe[1:]) for _ in ye[1:]), pn_.psf)
    whole_r = PSFGrid(ye, xe, tuple(tuple(pr_.psf for _ in xe[1:]) for _ in ye[1:]), pr_.psf)
    return whole_n, whole_r


def _grow_mask(
    mask: np.ndarray,
    saturated: np.ndarray,
    pn_: PreparedImage,
    pr_: PreparedImage,
    half: int,
) -> np.ndarray:
    """Pixels whose score is unreliable because of masked pixels or the image edge.

    Saturated pixels, and masked pixels on or next to a static source (> 5 sigma in both
    images), leave residuals as far as the PSF reaches: grown by the PSF radius ``half``. Other
    masked pixels (cosmic rays, bad columns on the sky) are zeroed in both images and only
    remove part of a matched filter's weight (the score there is slightly conservative, as
    its variance counts sky noise in the zeroed pixels): grown by one pixel, against the
    unmasked fringe of a cosmic ray. The outer ``half / 2`` pixels of the image are
    excluded too.
    """
    grown = np.zeros_like(mask)
    if mask.any():
        # a static source (in both images): a hole in it leaves the two PSFs' difference
        on_source = (pn_.data > 5.0 * pn_.noise) & (pr_.data > 5.0 * pr_.noise)
        near = ndimage.binary_dilation(on_source, iterations=2) & mask
        strong = saturated | near
        grown = _dilate_disk(mask, 1)
        if strong.any():
            grown |= _dilate_disk(strong, half)
    edge = max(half // 2, 2)
    grown[:edge, :] = grown[-edge:, :] = True
    grown[:, :edge] = grown[:, -edge:] = True
    return grown


def _dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by a disk of ``radius`` pixels.

    Radius 1 is one 3x3 binary dilation; larger radii take a Euclidean distance transform
    of each connected group of masked pixels within its own bounding box plus the radius
    (the groups are few and small: saturated stars, trails), not of the whole image.
    """
    if radius <= 0 or not mask.any():
        return mask.copy()
    if radius == 1:
        return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool))
    ny, nx = mask.shape
    out = mask.copy()
    # merge groups closer than the radius first so their boxes do not overlap much
    labels, _ = ndimage.label(ndimage.binary_dilation(mask, iterations=2))
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        y0, y1 = max(0, sl[0].start - radius), min(ny, sl[0].stop + radius)
        x0, x1 = max(0, sl[1].start - radius), min(nx, sl[1].stop + radius)
        sub = mask[y0:y1, x0:x1]
        out[y0:y1, x0:x1] |= ndimage.distance_transform_edt(~sub) <= radius
    return out


def _psf_error_fraction(
    s_map: np.ndarray,
    var: np.ndarray,
    s_ref: np.ndarray,
    stars: StarList,
    mask: np.ndarray,
    quantile: float = 0.9,
    cap: float = 0.2,
) -> float:
    """Fraction ``eps`` of S_R that bounds the residuals of bright reference stars.

    For each reference star with ``S_R / sqrt(V) > 20`` the excess of the largest ``|S|``
    within 2 pixels over ``3 sqrt(V)`` is divided by ``S_R``; ``eps`` is the ``quantile`` of
    those ratios (0 when fewer than 5 stars), capped at ``cap``.
    """
    if len(stars) == 0:
        return 0.0
    ny, nx = s_map.shape
    xi = np.round(stars.x).astype(int)
    yi = np.round(stars.y).astype(int)
    inside = (xi >= 2) & (yi >= 2) & (xi < nx - 2) & (yi < ny - 2)
    xi, yi = xi[inside], yi[inside]
    ok = ~mask[yi, xi]
    xi, yi = xi[ok], yi[ok]
    if xi.size == 0:
        return 0.0
    sr = s_ref[yi, xi]
    v = var[yi, xi]
    bright = sr > 20 * np.sqrt(v)
    if bright.sum() < 5:
        return 0.0
    xi, yi, sr, v = xi[bright], yi[bright], sr[bright], v[bright]
    peaks = np.array(
        [np.abs(s_map[y - 2 : y + 3, x - 2 : x + 3]).max() for x, y in zip(xi, yi, strict=True)]
    )
    excess = np.sqrt(np.clip(peaks**2 - 9.0 * v, 0, None)) / sr
    return float(min(np.quantile(excess, quantile), cap))


def _pad_psf(psf: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (or crop) a centred odd PSF to ``size`` and renormalise."""
    n = psf.shape[0]
    if n == size:
        return psf
    if n > size:
        c = (n - size) // 2
        out = psf[c : c + size, c : c + size].copy()
    else:
        c = (size - n) // 2
        out = np.zeros((size, size), np.float32)
        out[c : c + n, c : c + n] = psf
    return (out / out.sum()).astype(np.float32)
