"""ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27).

The equations (D, P_D, F_D, S, S_corr with its source and astrometric noise terms, the
PSF flux S / F_S) are written out in :mod:`~astrid.science.zogy_algebra`, which applies them
to one pair of arrays. Flux zero points: ``F_r = 1`` and ``F_n`` the fitted flux ratio, so
fluxes are in the reference image's units.

Spatial PSF variation is handled by sub-images (tiles) with overlapping borders, each with
its own PSFs; each tile is zero-padded so that FFT wrap-around never folds one edge onto the
other. Masks (True = excluded) are propagated and dilated by the PSF radius.

This module is the driver over sub-images; the pieces it uses live in
:mod:`~astrid.science.diffimage` (inputs, results), :mod:`~astrid.science.flux_ratio`
(F_n and registration noise), :mod:`~astrid.science.zogy_algebra` (the equations, on
one sub-image) and :mod:`~astrid.science.zogy_masks` (mask growth, PSF-error term).
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft as sfft

from astrid.science.diffimage import (
    DifferenceResult,
    PreparedImage,
    _check_shapes,
    _robust_std,
    prepare_image,
)
from astrid.science.flux_ratio import fit_flux_ratio
from astrid.science.psf import PSFEstimate
from astrid.science.psf_spatial import PSFGrid, estimate_psf_grid
from astrid.science.zogy_algebra import KernelSpectra, kernel_spectra, zogy_core
from astrid.science.zogy_masks import _grow_mask, _psf_error_fraction

__all__ = ["zogy"]


def _tiles(n: int, tile: int) -> list[tuple[int, int]]:
    k = max(1, int(np.round(n / tile)))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


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
    renormalize: bool | float = True,
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
    renormalize : bool or float
        Divide the score by its robust standard deviation (correlated-noise correction,
        e.g. after resampling), recorded in ``score_scale``. A number is taken as that scale
        instead of measuring it (a second pass over the same pair keeps the first one's).
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
    # the sub-images' cores tile the image (edges from 0 to n), so every pixel of these is
    # written once below: no fill pass first
    diff = np.empty((ny, nx), np.float32)
    s_all = np.empty((ny, nx), np.float32)
    var_all = np.empty((ny, nx), np.float32)
    sr_all = np.zeros((ny, nx), np.float32) if psf_error else None
    # F_S is one number per sub-image: (core region, F_S as float32) instead of a map
    fs_tiles: list[tuple[tuple[slice, slice], np.float32]] = []
    psf_d = cr_t = None
    # the PSF-only spectra of a sub-image (PSF transforms, 1/den, the k_n, k_r weights, the
    # source-variance kernels) depend on its padded shape and PSFs alone: with whole-image
    # PSFs the sub-images share a few shapes (edge and inner ones), so they are computed
    # once per shape and reused (the same float32 values); two kept, which covers a row
    # of sub-images (edge, inner..., edge) at a few tens of MB
    spectra: dict[tuple[int, int, bytes, bytes], KernelSpectra] = {}
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
            # (copied, then zeroed and scaled in place: no temporary per sub-image)
            tn[sl] = pn_.data[region]
            tn[sl][local_mask] = 0.0
            tr[sl] = pr_.data[region]
            tr[sl][local_mask] = 0.0
            vn = vr = None
            if source_noise:
                vn = np.zeros((fy, fx), np.float32)
                vr = np.zeros((fy, fx), np.float32)
                np.clip(tn[sl], 0, None, out=vn[sl])
                vn[sl] /= np.float32(pn_.gain)
                np.clip(tr[sl], 0, None, out=vr[sl])
                vr[sl] /= np.float32(pr_.gain)
            key = (fy, fx, psfs[0].tobytes(), psfs[1].tobytes())
            spec = spectra.pop(key, None)
            if spec is None:
                spec = kernel_spectra(psfs[0], psfs[1], pn_.noise, pr_.noise, (fy, fx),
                                      flux_ratio=flux_ratio, source_noise=source_noise,
                                      workers=workers)  # fmt: skip
                while len(spectra) >= 2:
                    del spectra[next(iter(spectra))]
            spectra[key] = spec  # (re)inserted last: the most recently used
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
                spectra=spec,
            )
            cy = slice(size + y0 - ey0, size + y1 - ey0)
            cx = slice(size + x0 - ex0, size + x1 - ex0)
            diff[y0:y1, x0:x1] = out.diff[cy, cx]
            s_all[y0:y1, x0:x1] = out.s_map[cy, cx]
            var_all[y0:y1, x0:x1] = out.var[cy, cx]
            if sr_all is not None and out.s_ref is not None:
                sr_all[y0:y1, x0:x1] = out.s_ref[cy, cx]
            fs_tiles.append(((slice(y0, y1), slice(x0, x1)), np.float32(out.f_s)))
            if psf_d is None or (y0 <= ny // 2 < y1 and x0 <= nx // 2 < x1):
                psf_d, cr_t = out.psf_d, out.cr_template
    del spectra
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
    # in place where an input is not needed any more (each full-size float32 map is 16 MB
    # at 4 Mpix); the same float32 operations as on whole maps
    sd = np.sqrt(var_all, out=var_all)
    score = s_all / sd
    flux, flux_err = s_all, sd
    for core, f_s in fs_tiles:
        flux[core] /= f_s
        flux_err[core] /= f_s
    del s_all, sd, var_all
    scale = 1.0
    if not isinstance(renormalize, bool):
        scale = float(renormalize) if np.isfinite(renormalize) and renormalize > 0 else 1.0
    elif renormalize:
        # a regular sub-grid of ~250k pixels is plenty for a robust scale
        step = max(1, int(np.sqrt(score.size / 250_000)))
        scale = _robust_std(score[::step, ::step][~grown[::step, ::step]])
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
    if scale != 1.0:
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
