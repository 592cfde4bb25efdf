"""The ZOGY algebra on one pair of arrays (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27).

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

No tiling and no masks here: :func:`zogy_core` takes two background-subtracted,
zero-padded float32 arrays of the same shape (ny, nx) and their centred, unit-sum PSFs;
:func:`astrid.science.zogy.zogy` cuts images into sub-images and calls it on each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

__all__ = ["KernelSpectra", "kernel_spectra", "zogy_core"]


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


@dataclass
class KernelSpectra:
    """What :func:`zogy_core` computes from the PSFs, noises and flux ratio alone, on one
    padded shape: the same for every sub-image of that shape with the same PSFs (the usual
    case: one pair of whole-image PSFs), so :func:`astrid.science.zogy.zogy` computes it
    once per shape (:func:`kernel_spectra`) instead of once per sub-image.

    Attributes: ``pn``, ``pr`` (rfft2 of the PSFs, complex64), ``inv_den`` (1 / den,
    float32), ``wn``, ``wr`` (``F_n F_r^2 |P_r|^2 / den^2`` and ``F_r F_n^2 |P_n|^2 /
    den^2``, float32), ``kn2_hat``, ``kr2_hat`` (rfft2 of k_n^2, k_r^2; None without the
    source-noise terms), ``f_s``, ``var0`` (the background part of V(S)) and the small
    real-space kernels.
    """

    shape: tuple[int, int]
    fn: float
    pn: np.ndarray
    pr: np.ndarray
    inv_den: np.ndarray
    wn: np.ndarray
    wr: np.ndarray
    kn2_hat: np.ndarray | None
    kr2_hat: np.ndarray | None
    f_s: float
    var0: float
    small: _Small


def kernel_spectra(
    new_psf: np.ndarray,
    ref_psf: np.ndarray,
    new_noise: float,
    ref_noise: float,
    shape: tuple[int, int],
    *,
    flux_ratio: float = 1.0,
    source_noise: bool = True,
    workers: int = 1,
    kernel_size: int | None = None,
) -> KernelSpectra:
    """The PSF-only part of :func:`zogy_core` on arrays of ``shape`` (see
    :class:`KernelSpectra`); arguments as for :func:`zogy_core`. ``source_noise``: also the
    spectra of k_n^2 and k_r^2 (needed when source-variance maps are given)."""
    ny, nx = shape
    fr, fn = 1.0, float(flux_ratio)
    sn, sr = float(new_noise), float(ref_noise)
    # Every spectrum below is single precision (complex64/float32): scipy.fft keeps the
    # precision of float32 input, and the constants are applied as float32 scalars.
    pn = _rfft2_compact(new_psf, shape, workers)
    pr = _rfft2_compact(ref_psf, shape, workers)
    # (the element-wise steps below reuse their temporaries: each is the same float32
    # operation, in the same order, as the plain expression in its comment, so the same
    # bits, with fewer passes over fresh half-spectrum-sized arrays)
    apn2 = _abs2(pn)  # pn.real**2 + pn.imag**2
    apr2 = _abs2(pr)
    # den2 = (sn^2 fr^2) apr2 + (sr^2 fn^2) apn2
    den2 = np.multiply(apr2, np.float32(sn**2 * fr**2))
    tmp = np.multiply(apn2, np.float32(sr**2 * fn**2))
    den2 += tmp
    np.maximum(den2, np.float32(1e-12 * float(den2.max())), out=den2)
    inv_den = np.sqrt(den2, out=tmp)  # 1 / sqrt(den2)
    np.divide(np.float32(1.0), inv_den, out=inv_den)
    del tmp, den2
    inv_den2 = inv_den * inv_den
    # k_n = F_n F_r^2 conj(P_n) |P_r|^2 / den^2 = wn conj(P_n) (and k_r alike)
    wn = np.multiply(apr2, np.float32(fn * fr**2))  # (fn fr^2) apr2 inv_den2
    wn *= inv_den2
    wr = np.multiply(apn2, np.float32(fr * fn**2))  # (fr fn^2) apn2 inv_den2
    wr *= inv_den2
    # F_S, with rfft half-plane weights
    weights = np.full(apn2.shape[1], 2.0, dtype=np.float64)
    weights[0] = 1.0
    if nx % 2 == 0:
        weights[-1] = 1.0
    prod = np.multiply(apn2, apr2, out=apn2)
    prod *= inv_den2
    f_s = float((fn**2 * fr**2) * (prod.sum(axis=0, dtype=np.float64) * weights).sum() / (ny * nx))
    del prod, apn2, apr2, inv_den2
    # Real-space kernels and templates on a small grid (they are compact; computing them at
    # full size would cost four more FFTs per tile).
    small = _small_kernels(new_psf, ref_psf, sn, sr, fn, fr, min(ny, nx), kernel_size)
    kn2 = small.kn**2
    kr2 = small.kr**2
    var0 = sn**2 * float(kn2.sum()) + sr**2 * float(kr2.sum())
    kn2_hat = kr2_hat = None
    if source_noise:
        kn2_hat = _rfft2_compact(kn2, shape, workers, centred=False)
        kr2_hat = _rfft2_compact(kr2, shape, workers, centred=False)
    return KernelSpectra((int(ny), int(nx)), fn, pn, pr, inv_den, wn, wr, kn2_hat, kr2_hat,
                         f_s, var0, small)  # fmt: skip


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
    spectra: KernelSpectra | None = None,
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
    spectra : KernelSpectra, optional
        :func:`kernel_spectra` of these PSFs, noises, flux ratio and ``kernel_size`` on this
        shape (with ``source_noise`` when variance maps are given), computed once for
        several sub-images; computed here when omitted. The result is the same (the same
        float32 operations).

    Returns
    -------
    _CoreOut
        D, S, V(S) (source, background and astrometric terms), min(|S_N|, |S_R|) (the
        score of sources present in both images), F_S and the small templates;
        S_corr = S / sqrt(V).
    """
    shape = new.shape
    has_source = new_var_source is not None or ref_var_source is not None
    if spectra is None:
        spectra = kernel_spectra(new_psf, ref_psf, new_noise, ref_noise, shape,
                                 flux_ratio=flux_ratio, source_noise=has_source,
                                 workers=workers, kernel_size=kernel_size)  # fmt: skip
    elif spectra.shape != tuple(shape) or (has_source and spectra.kn2_hat is None):
        raise ValueError("kernel spectra of another shape, or without the source-noise terms")
    fn = spectra.fn
    rfft2 = sfft.rfft2
    n_hat = rfft2(new, workers=workers)
    r_hat = rfft2(ref, workers=workers)
    # D = (F_r P_r N - F_n P_n R) / den
    d_hat = spectra.pr * n_hat
    t = np.multiply(spectra.pn, np.float32(fn))  # d_hat -= (fn pn) r_hat
    t *= r_hat
    d_hat -= t
    d_hat *= spectra.inv_den
    diff = _irfft2_consume(d_hat, shape, workers)
    del d_hat
    # S = S_N - S_R with k_n = wn conj(P_n), k_r = wr conj(P_r)
    n_hat *= spectra.wn
    r_hat *= spectra.wr
    n_hat *= np.conjugate(spectra.pn, out=t)
    r_hat *= np.conjugate(spectra.pr, out=t)
    del t
    s_n = _irfft2_consume(n_hat, shape, workers)
    s_r = _irfft2_consume(r_hat, shape, workers)
    del n_hat, r_hat
    s_map = s_n - s_r
    var = np.full(shape, spectra.var0, dtype=np.float32)
    if has_source:
        assert spectra.kn2_hat is not None and spectra.kr2_hat is not None
        acc = None
        if new_var_source is not None:
            acc = rfft2(new_var_source, workers=workers)
            acc *= spectra.kn2_hat
        if ref_var_source is not None:
            term = rfft2(ref_var_source, workers=workers)
            term *= spectra.kr2_hat
            if acc is None:
                acc = term
            else:
                acc += term
        assert acc is not None
        conv = _irfft2_consume(acc, shape, workers)
        var += np.clip(conv, 0, None, out=conv)  # in place: the same values, no temporary
    sx, sy = astrometric_sigma
    if sx > 0 or sy > 0:
        for sm in (s_n, s_r):
            _add_squared_gradient(var, sm, sx**2, axis=1)
            _add_squared_gradient(var, sm, sy**2, axis=0)
    s_static = np.minimum(np.abs(s_n), np.abs(s_r)) if keep_static else None
    del s_n, s_r
    small = spectra.small
    return _CoreOut(diff, s_map, var, s_static, spectra.f_s, small.psf_d, small.cr)


def _abs2(z: np.ndarray) -> np.ndarray:
    """``z.real**2 + z.imag**2`` (float32 for complex64 ``z``) with one temporary."""
    out = np.square(z.real)
    out += np.square(z.imag)
    return out


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
    # w ((a[2:] - a[:-2]) / 2)^2 with the 1/4 folded into w: scaling by a power of two is
    # exact in floating point, so these are the same float32 values with one pass fewer
    d *= d
    d *= w * np.float32(0.25)
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
