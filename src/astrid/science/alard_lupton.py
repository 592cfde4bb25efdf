"""Classic PSF-matched subtraction (Alard & Lupton 1998; Alard 2000) with decorrelation.

The sharper image is convolved with a kernel ``K(u, v; x, y) = sum_k a_k(x, y) B_k(u, v)``
built from Gaussian basis functions times polynomials in the kernel coordinates
(``B = G_sigma(u, v) u^i v^j``, ``i + j <= degree``), whose coefficients vary across the
image as a polynomial in (x, y) of ``spatial_order``; the first basis carries the flux
scaling and is kept spatially constant, the others have zero sum. A differential
background (constant + linear) is fitted at the same time. The fit uses stamps around
isolated bright stars, weighted by their inverse variance, with iterative rejection of
stamps that fit badly.

Noise decorrelation (Kaiser 2004; Reiss & Lupton 2016): the difference of the blurrier
image T and the convolved sharper image S has the noise power ``s_T^2 + s_S^2 |K(k)|^2``;
convolving it with ``phi(k) = sqrt((s_T^2 + s_S^2 kappa^2) / (s_T^2 + s_S^2 |K(k)|^2))``
(``kappa`` = kernel sum) makes it white again, with PSF ``phi (x) P_T``. The significance
map is then the PSF matched filter of the decorrelated difference, with the source-noise
variance of both images added, exactly as the ZOGY score is built.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from astrid.errors import AstridError
from astrid.science.diffimage import (
    DifferenceError,
    DifferenceResult,
    PreparedImage,
    _check_shapes,
    _robust_std,
    prepare_image,
)
from astrid.science.flux_ratio import fit_flux_ratio
from astrid.science.psf import PSFEstimate
from astrid.science.stats import SIGMA_PER_FWHM, robust_sigma

__all__ = ["KernelFitError", "KernelSolution", "classic", "fit_kernel", "gaussian_basis"]


class KernelFitError(DifferenceError, AstridError):
    """Too few usable stars to fit a PSF-matching kernel."""


class KernelSolution:
    """A fitted, spatially varying convolution kernel.

    Attributes
    ----------
    basis : numpy.ndarray
        Basis kernels, shape (nb, 2 hw + 1, 2 hw + 1).
    coeffs : numpy.ndarray
        Coefficients, shape (nb, nspatial): kernel = sum_k sum_m coeffs[k, m] p_m(x, y) B_k.
    bkg : numpy.ndarray
        Differential background coefficients for (1, x, y), shape (3,).
    shape : tuple of int
        Image shape (ny, nx) the spatial coordinates refer to.
    spatial_order : int
        Polynomial order of the spatial variation.
    n_stamps : int
        Stamps kept in the final fit.
    """

    def __init__(
        self,
        basis: np.ndarray,
        coeffs: np.ndarray,
        bkg: np.ndarray,
        shape: tuple[int, int],
        spatial_order: int,
        n_stamps: int,
    ) -> None:
        self.basis = basis
        self.coeffs = coeffs
        self.bkg = bkg
        self.shape = shape
        self.spatial_order = spatial_order
        self.n_stamps = n_stamps

    def kernel_at(self, x: float, y: float) -> np.ndarray:
        """The kernel at pixel (x, y), shape (2 hw + 1, 2 hw + 1)."""
        p = _spatial_terms(np.array([x]), np.array([y]), self.shape, self.spatial_order)[:, 0]
        return np.tensordot(self.coeffs @ p, self.basis, axes=1)

    def convolve(self, image: np.ndarray) -> np.ndarray:
        """Convolve an image of ``shape`` with the spatially varying kernel, add background."""
        from scipy import signal  # ~2.5 s to import; only the classic method needs it

        ny, nx = self.shape
        u = _norm(np.arange(nx, dtype=float), nx)[None, :]
        v = _norm(np.arange(ny, dtype=float), ny)[:, None]
        powers = [
            (i, j) for i in range(self.spatial_order + 1) for j in range(self.spatial_order + 1 - i)
        ]
        out = np.zeros(self.shape, np.float64)
        for m, (i, j) in enumerate(powers):
            km = np.tensordot(self.coeffs[:, m], self.basis, axes=1)
            if not np.any(km):
                continue
            out += signal.oaconvolve(image, km, mode="same") * (u**i * v**j)
        out += self.bkg[0] + self.bkg[1] * u + self.bkg[2] * v
        return out.astype(np.float32)


def _norm(c: np.ndarray, n: int) -> np.ndarray:
    return (2.0 * c / max(n - 1, 1)) - 1.0


def _spatial_terms(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    ny, nx = shape
    u, v = _norm(np.asarray(x, float), nx), _norm(np.asarray(y, float), ny)
    return np.array([u**i * v**j for i in range(order + 1) for j in range(order + 1 - i)])


def gaussian_basis(
    half_width: int, sigmas: tuple[float, ...], degrees: tuple[int, ...]
) -> np.ndarray:
    """Alard-Lupton basis: Gaussians times polynomials; first has unit sum, others zero sum.

    Parameters
    ----------
    half_width : int
        Kernel half-width in pixels (kernel side ``2 * half_width + 1``).
    sigmas : tuple of float
        Gaussian widths in pixels.
    degrees : tuple of int
        Maximum polynomial degree for each Gaussian.

    Returns
    -------
    numpy.ndarray
        Shape (nb, 2 half_width + 1, 2 half_width + 1).
    """
    v, u = np.mgrid[-half_width : half_width + 1, -half_width : half_width + 1].astype(float)
    out = []
    for sigma, deg in zip(sigmas, degrees, strict=True):
        g = np.exp(-(u**2 + v**2) / (2 * sigma**2))
        for i in range(deg + 1):
            for j in range(deg + 1 - i):
                b = g * u**i * v**j
                out.append(b / np.abs(b).sum())
    basis = np.array(out)
    basis[0] /= basis[0].sum()
    for k in range(1, basis.shape[0]):
        basis[k] -= basis[k].sum() * basis[0]
    return basis


def fit_kernel(
    target: PreparedImage,
    source: PreparedImage,
    *,
    half_width: int,
    sigma_match: float,
    spatial_order: int = 2,
    max_stamps: int = 150,
) -> KernelSolution:
    """Fit the kernel that turns ``source`` (sharper) into ``target`` (blurrier).

    Parameters
    ----------
    target, source : PreparedImage
        Background-subtracted images on the same grid.
    half_width : int
        Kernel half-width in pixels.
    sigma_match : float
        Gaussian width (pixels) of the PSF-matching blur, to scale the basis.
    spatial_order : int
        Spatial polynomial order of the kernel coefficients (0 = constant kernel).
    max_stamps : int
        Use at most this many of the brightest isolated stars.

    Returns
    -------
    KernelSolution
    """
    from scipy import signal  # ~2.5 s to import; only the classic method needs it

    s0 = max(sigma_match, 0.5)
    basis = gaussian_basis(half_width, (0.5 * s0, s0, 2.0 * s0), (4, 3, 2))
    nb = basis.shape[0]
    shape = target.data.shape
    ny, nx = shape
    from scipy.spatial import cKDTree

    ts, ss = target.stars, source.stars
    if len(ts) == 0 or len(ss) == 0:
        raise KernelFitError("no stars found to fit the PSF-matching kernel")
    tree = cKDTree(np.column_stack([ss.x, ss.y]))
    dist, j = tree.query(np.column_stack([ts.x, ts.y]), distance_upper_bound=2.0)
    ok = np.isfinite(dist) & ts.usable
    i = np.flatnonzero(ok)
    j = j[ok]
    ok2 = ss.usable[j] & (ts.snr[i] > 20)
    i, j = i[ok2], j[ok2]
    hs = half_width + 2
    edge = hs + half_width + 1
    inside = (
        (ts.x[i] > edge) & (ts.x[i] < nx - 1 - edge) & (ts.y[i] > edge) & (ts.y[i] < ny - 1 - edge)
    )
    i = i[inside]
    if i.size < 3:
        raise KernelFitError(
            f"only {i.size} usable star(s) in common to fit the PSF-matching kernel",
            hint="use --method zogy, which needs no kernel fit",
        )
    i = i[np.argsort(ts.flux[i])[::-1][:max_stamps]]
    xs = np.round(ts.x[i]).astype(int)
    ys = np.round(ts.y[i]).astype(int)
    ns = xs.size
    big = hs + half_width
    src = np.stack(
        [
            source.data[y - big : y + big + 1, x - big : x + big + 1]
            for x, y in zip(xs, ys, strict=False)
        ]
    )
    tgt = np.stack(
        [
            target.data[y - hs : y + hs + 1, x - hs : x + hs + 1]
            for x, y in zip(xs, ys, strict=False)
        ]
    )
    smask = np.stack(
        [
            target.mask[y - big : y + big + 1, x - big : x + big + 1].any()
            | source.mask[y - big : y + big + 1, x - big : x + big + 1].any()
            for x, y in zip(xs, ys, strict=False)
        ]
    )
    conv = np.stack(
        [signal.fftconvolve(src, b[None], mode="valid", axes=(1, 2)) for b in basis], axis=1
    )  # (ns, nb, 2hs+1, 2hs+1)
    sp = _spatial_terms(xs, ys, shape, spatial_order)  # (nsp, ns)
    nsp = sp.shape[0]
    npx = tgt.shape[1] * tgt.shape[2]
    cols = [conv[:, 0].reshape(ns, npx)]
    for k in range(1, nb):
        ck = conv[:, k].reshape(ns, npx)
        for m in range(nsp):
            cols.append(ck * sp[m][:, None])
    ones = np.ones((ns, npx))
    cols.append(ones)
    cols.append(ones * _norm(xs.astype(float), nx)[:, None])
    cols.append(ones * _norm(ys.astype(float), ny)[:, None])
    design = np.stack(cols, axis=-1)  # (ns, npx, ncoef)
    rhs = tgt.reshape(ns, npx)
    var = target.noise**2 + np.clip(rhs, 0, None) / target.gain
    wts = 1.0 / var
    keep = ~smask
    sol = None
    for _ in range(3):
        if keep.sum() < 3:
            raise KernelFitError("too few clean stamps remain after rejection to fit the kernel")
        a = design[keep].reshape(-1, design.shape[-1])
        b = rhs[keep].ravel()
        w = np.sqrt(wts[keep].ravel())
        sol, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
        chi2 = (((design @ sol) - rhs) ** 2 * wts).mean(axis=1)
        med = np.median(chi2[keep])
        mad = robust_sigma(chi2[keep], centre=med) + 1e-9
        new_keep = keep & (chi2 < med + 4 * mad)
        if (new_keep == keep).all():
            break
        keep = new_keep
    assert sol is not None
    coeffs = np.zeros((nb, nsp))
    coeffs[0, 0] = sol[0]
    coeffs[1:, :] = sol[1 : 1 + (nb - 1) * nsp].reshape(nb - 1, nsp)
    bkg = sol[-3:]
    return KernelSolution(basis, coeffs, bkg, shape, spatial_order, int(keep.sum()))


def _fft_kernel(kernel: np.ndarray, n: int) -> np.ndarray:
    pad = np.zeros((n, n))
    h = kernel.shape[0] // 2
    pad[: kernel.shape[0], : kernel.shape[1]] = kernel
    return sfft.rfft2(np.roll(pad, (-h, -h), axis=(0, 1)))


def _centre_crop(full: np.ndarray, size: int) -> np.ndarray:
    h = size // 2
    return np.roll(full, (h, h), axis=(0, 1))[:size, :size]


def classic(
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
    spatial_order: int = 2,
    decorrelate: bool = True,
    source_noise: bool = True,
    renormalize: bool = True,
    default_fwhm: float = 3.0,
    new_prepared: PreparedImage | None = None,
    ref_prepared: PreparedImage | None = None,
) -> DifferenceResult:
    """Alard-Lupton difference of two aligned images, decorrelated, with a score map.

    Parameters
    ----------
    new, ref : numpy.ndarray
        New and reference images, same shape (ny, nx), with their sky.
    new_mask, ref_mask : numpy.ndarray of bool, optional
        True = excluded.
    new_psf, ref_psf : PSFEstimate or numpy.ndarray, optional
        Known PSFs; estimated if omitted (used for choosing the sharper image and for the
        matched filter).
    new_gain, ref_gain, new_saturation, ref_saturation : float, optional
        As in :func:`astrid.science.zogy.zogy`.
    spatial_order : int
        Spatial polynomial order of the kernel.
    decorrelate : bool
        Whiten the difference's noise (recommended).
    source_noise : bool
        Add the source (Poisson) variance of both images to the score's denominator.
    renormalize : bool
        Divide the score by its robust standard deviation (recorded in ``score_scale``).
    default_fwhm : float
        FWHM in pixels of the fallback PSF.
    new_prepared, ref_prepared : PreparedImage, optional
        Re-use :func:`astrid.science.diffimage.prepare_image` outputs.

    Returns
    -------
    DifferenceResult
        ``diff`` in reference-image units; ``method == "classic"``.

    Raises
    ------
    KernelFitError
        If too few stars are shared by both images to fit the kernel.
    """
    from scipy import signal  # ~2.5 s to import; only the classic method needs it

    new = np.asarray(new)
    ref = np.asarray(ref)
    _check_shapes(new, ref)
    notes: list[str] = []
    pn = new_prepared or prepare_image(
        new, new_mask, gain=new_gain, saturation=new_saturation, psf=new_psf,
        default_fwhm=default_fwhm,
    )  # fmt: skip
    pr = ref_prepared or prepare_image(
        ref, ref_mask, gain=ref_gain, saturation=ref_saturation, psf=ref_psf,
        default_fwhm=default_fwhm,
    )  # fmt: skip
    for label, prep in (("new", pn), ("reference", pr)):
        if prep.psf.fallback:
            notes.append(f"{label} PSF fallback: {prep.psf.reason}")
        if source_noise and not np.isfinite(prep.gain):
            notes.append(f"{label} source noise left out: no gain given and the sky is too low")
    ratio, _, sig_xy = fit_flux_ratio(pn, pr)
    ref_sharper = pr.psf.fwhm <= pn.psf.fwhm
    target, source = (pn, pr) if ref_sharper else (pr, pn)
    notes.append(f"convolved the {'reference' if ref_sharper else 'new image'} (sharper)")
    fw_t, fw_s = target.psf.fwhm, source.psf.fwhm
    sigma_match = float(np.sqrt(max(fw_t**2 - fw_s**2, 0.25))) * SIGMA_PER_FWHM
    hw = int(np.clip(np.ceil(3.0 * max(fw_t, fw_s) * SIGMA_PER_FWHM + 3 * sigma_match) + 2, 5, 25))
    sol = fit_kernel(target, source, half_width=hw, sigma_match=sigma_match,
                     spatial_order=spatial_order)  # fmt: skip
    ny, nx = new.shape
    conv = sol.convolve(source.data)
    d_raw = (target.data - conv) if ref_sharper else (conv - target.data)
    k0 = sol.kernel_at((nx - 1) / 2.0, (ny - 1) / 2.0)
    kappa = float(k0.sum())
    if not np.isfinite(kappa) or kappa <= 0:
        raise KernelFitError(f"the fitted kernel has a non-positive sum ({kappa:.3g})")
    # noise PSD of d_raw = s_t^2 + s_s^2 |K|^2, white after decorrelation: s_t^2 + s_s^2 kappa^2
    s_t, s_s = target.noise, source.noise
    psf_t = target.psf.array.astype(float)
    size = int(max(psf_t.shape[0], 2 * hw + 1)) | 1
    nfft = int(sfft.next_fast_len(max(64, 4 * size), real=True))
    k_hat = _fft_kernel(k0, nfft)
    sig_d2 = s_t**2 + s_s**2 * kappa**2
    if decorrelate:
        phi_hat = np.sqrt(sig_d2 / (s_t**2 + s_s**2 * np.abs(k_hat) ** 2))
        phi = _centre_crop(sfft.irfft2(phi_hat, s=(nfft, nfft)), size)
        diff = signal.oaconvolve(d_raw, phi, mode="same").astype(np.float32)
    else:
        phi = np.zeros((size, size))
        phi[size // 2, size // 2] = 1.0
        diff = d_raw.astype(np.float32)
    pt = np.zeros((size, size))
    c = (size - psf_t.shape[0]) // 2
    pt[c : c + psf_t.shape[0], c : c + psf_t.shape[0]] = psf_t
    psf_d = signal.fftconvolve(pt, phi, mode="same")
    psf_d /= psf_d.sum()
    # response to a delta in the new image
    cr = phi if ref_sharper else signal.fftconvolve(_pad_to(k0, size), phi, mode="same")
    cr = cr / np.sqrt((cr**2).sum())
    # matched filter, in d_raw units
    sum_p2 = float((psf_d**2).sum())
    mf = signal.oaconvolve(diff, psf_d[::-1, ::-1], mode="same") / sum_p2
    var = np.full(
        diff.shape, (sig_d2 if decorrelate else s_t**2 + s_s**2 * float((k0**2).sum())) / sum_p2
    )
    if source_noise:
        v_src = np.clip(target.data, 0, None) / target.gain
        v_src = v_src + signal.oaconvolve(
            np.clip(source.data, 0, None) / source.gain, k0**2, mode="same"
        )
        var += np.clip(signal.oaconvolve(v_src, psf_d**2, mode="same"), 0, None) / sum_p2**2
    sx, sy = sig_xy
    if sx > 0 or sy > 0:
        for img in (target.data, conv):
            sm = signal.oaconvolve(img, psf_d[::-1, ::-1], mode="same") / sum_p2
            gy, gx = np.gradient(sm)
            var += sx**2 * gx**2 + sy**2 * gy**2
    err = np.sqrt(var)
    score = (mf / err).astype(np.float32)
    to_ref = 1.0 / kappa if ref_sharper else 1.0
    flux = (mf * to_ref).astype(np.float32)
    flux_err = (err * to_ref).astype(np.float32)
    diff = (diff * to_ref).astype(np.float32)
    mask = pn.mask | pr.mask
    half = size // 2
    grown = ndimage.binary_dilation(mask, iterations=half) if mask.any() else mask.copy()
    grown[:half, :] = grown[-half:, :] = True
    grown[:, :half] = grown[:, -half:] = True
    scale = 1.0
    if renormalize:
        scale = _robust_std(score[~grown])
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
        score /= np.float32(scale)
        flux_err *= np.float32(scale)
    score[grown] = 0.0
    flux[grown] = 0.0
    sat = np.zeros_like(mask)
    for prep in (pn, pr):
        if prep.saturated is not None:
            sat |= prep.saturated
    if not np.isfinite(ratio):
        ratio = float(1.0 / kappa if not ref_sharper else kappa)
    notes.append(f"kernel fitted on {sol.n_stamps} stamps, half-width {hw} px, sum {kappa:.4g}")
    return DifferenceResult(
        diff=diff,
        score=score,
        flux=flux,
        flux_err=flux_err,
        psf=psf_d.astype(np.float32),
        cr_template=cr.astype(np.float32),
        mask=grown,
        new_psf=pn.psf,
        ref_psf=pr.psf,
        flux_ratio=float(kappa if ref_sharper else 1.0 / kappa),
        new_noise=pn.noise,
        ref_noise=pr.noise,
        method="classic",
        score_scale=float(scale),
        astrometric_sigma=sig_xy,
        ref_stars=pr.stars,
        saturation_mask=sat,
        notes=notes,
    )


def _pad_to(k: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size))
    c = (size - k.shape[0]) // 2
    out[c : c + k.shape[0], c : c + k.shape[0]] = k
    return out
