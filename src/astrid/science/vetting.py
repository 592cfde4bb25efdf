"""Cosmic-ray vetting of difference-image candidates, single- and multi-pixel.

ZOGY's own test (Zackay et al. 2016, section 3.5; ``cr_llr`` in :mod:`astrid.science.extract`)
compares the difference with its response to a *one-pixel* event, so the 2–6 pixel tracks
that most cosmic rays leave pass it. :func:`cosmic_ray_hits` runs L.A.Cosmic (``astroscrappy``,
van Dokkum 2001) — the same detector that preprocessing uses on whole frames — on the image
the candidate comes from (the new image for a brightening, the reference for a fading), but
only on a small stamp around each candidate: all stamps are laid out in one mosaic, separated
by masked gutters wider than the filters' reach, and cleaned in one call. A candidate is a
cosmic ray when L.A.Cosmic flags a pixel within ``radius`` of its peak.

L.A.Cosmic's ``objlim`` (the contrast a cosmic ray's Laplacian must have over the image's
fine structure) is there to spare the cores of *undersampled* stars: a star's own contrast
falls fast with its FWHM (:func:`psf_contrast`: ~6-11 at 1.5 px, ~2-3 at 2 px, < 1 from 3
px). Given the image's PSF, :func:`cosmic_ray_hits` lowers ``objlim`` to three times that
PSF's own contrast (never below 2, never above the ``objlim`` given), so compact 2-6 pixel
rays on well-sampled images, whose contrast is ~3-5, are no longer let through. When that
raises ``objlim`` above the default (an undersampled PSF) and the image's stars are given,
``objlim`` is raised further until none of those stars is flagged: noise scatters an
undersampled core's contrast far above the noise-free value (a Moffat beta 2.5 of 1.6 px:
limit 7.5-8 from its PSF, 15-23 from its stars; 6 of 120 transients taken for rays before).

With ``pixels=`` (the rays to mask before differencing again) only the pixels that pass
L.A.Cosmic's full threshold are returned, not its neighbour growth down to ``sigfrac`` 0.3
of it, which took in the core of a transient touching a ray (a second L.A.Cosmic run, with
``sigfrac`` 1, on the hits' stamps).

Measured on the ``saturation_defects`` case of :mod:`astrid.science.simfamily` (512², seed 0):
276 of the 278 candidates on a ray flagged, 0 of 9 real transients (the two within 1 px of a
ray excepted); about 15 ms per candidate on one busy core.
"""

from __future__ import annotations

import math

import numpy as np

from astrid.science.cutouts import stamp, stamp_origin
from astrid.science.stats import every_nth_valid, robust_sigma

__all__ = [
    "cosmic_ray_hits",
    "psf_contrast",
    "residual_fraction",
    "star_residual",
    "symmetric_residual",
]

_HALF = 12  # stamp half-size, px (L.A.Cosmic's filters reach ~9 px)
_GUTTER = 10  # masked pixels between stamps
#: ``objlim`` is lowered to this many times the PSF's own contrast, and never below the floor.
OBJLIM_MARGIN = 3.0
OBJLIM_FLOOR = 2.0
#: Factors tried on an undersampled PSF's ``objlim`` until none of the image's stars is flagged.
OBJLIM_LADDER = (1.0, 2.0**0.5, 2.0, 2.0**1.5)
_MAX_STARS = 1000  # stars used for that (every n-th beyond)


def psf_contrast(psf: np.ndarray) -> float:
    """L.A.Cosmic's contrast ``L+ / F`` at the core of a noise-free star with this PSF.

    ``L+`` is the positive Laplacian of the 2x-subsampled image, block-averaged back; ``F``
    the fine-structure image ``med3 - med7(med3)`` (van Dokkum 2001, PASP 113, 1420, sect.
    2.3). Both scale with the flux, so the ratio depends on the PSF's shape only: the largest
    over the central 3x3 pixels is returned.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF image (ny, nx), centred on its central pixel, any normalisation.

    Returns
    -------
    float
        The contrast (dimensionless); ~6-11 for a Gaussian of FWHM 1.5 px, ~1 at 3 px.
    """
    from scipy import ndimage

    arr = np.nan_to_num(np.asarray(psf, np.float64))
    arr = np.pad(arr / max(float(arr.sum()), 1e-30), 4)
    ny, nx = arr.shape
    sub = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
    kernel = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    lap = np.clip(ndimage.convolve(sub, kernel, mode="constant"), 0.0, None)
    lplus = lap.reshape(ny, 2, nx, 2).mean(axis=(1, 3))
    med3 = ndimage.median_filter(arr, 3, mode="constant")
    fine = med3 - ndimage.median_filter(med3, 7, mode="constant")
    cy, cx = ny // 2, nx // 2
    core = np.s_[cy - 1 : cy + 2, cx - 1 : cx + 2]
    peak = float(arr.max())
    ratio = lplus[core] / np.maximum(fine[core], 1e-6 * peak)
    return float(ratio.max())


def cosmic_ray_hits(
    x: np.ndarray,
    y: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    gain: float | None = None,
    radius: int = 1,
    sigclip: float = 5.0,
    objlim: float = 5.0,
    pixels: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    stars: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Whether L.A.Cosmic finds a cosmic ray at each position of an image.

    Parameters
    ----------
    x, y : numpy.ndarray
        Candidate peaks, shape (n,), 0-based pixels of ``image``.
    image : numpy.ndarray
        The image the candidates would come from (ny, nx), sky not subtracted or subtracted.
    mask : numpy.ndarray, optional
        Bool (ny, nx), True = excluded.
    gain : float, optional
        Electrons per image unit, for the sources' Poisson noise (sky noise only without it).
    radius : int
        A flagged pixel within this many pixels (square box) of the peak makes a hit.
    sigclip, objlim : float
        L.A.Cosmic thresholds (as in :func:`astrid.science.cosmics.cosmic_ray_mask`).
    pixels : numpy.ndarray, optional
        Bool (ny, nx), same shape as ``image``: if given, the pixels L.A.Cosmic flags in the
        stamp of each hit (the whole ray, not only the part near the peak) at its full
        threshold are set True in it, so that the caller can mask the rays and look again
        under them.
    psf : numpy.ndarray, optional
        The image's PSF: ``objlim`` is then ``OBJLIM_MARGIN`` times :func:`psf_contrast`
        (at least ``OBJLIM_FLOOR``): lower than the default for a well-sampled PSF, whose
        stars cannot reach the contrast ``objlim`` guards against, and higher for an
        undersampled one (FWHM below ~2 px), whose stars do reach it.
    stars : tuple of numpy.ndarray, optional
        ``(x, y)`` of point sources known to be real in this image (the reference's stars,
        on the same grid). When the PSF raises ``objlim`` above the one given (an
        undersampled PSF), ``objlim`` is raised further along ``OBJLIM_LADDER`` until none
        of them is flagged (:func:`_objlim_from_stars`): noise scatters an undersampled
        core's contrast far above the noise-free :func:`psf_contrast`.

    Returns
    -------
    numpy.ndarray
        Bool, shape (n,).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = len(x)
    if n == 0:
        return np.zeros(0, bool)
    arr = np.asarray(image, dtype=np.float32)
    bad_img = ~np.isfinite(arr) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(arr))
    n_good = bad_img.size - int(np.count_nonzero(bad_img))
    # arr[~bad_img][::step] without copying every valid pixel first
    good = every_nth_valid(arr, bad_img, max(1, n_good // 500_000))
    sky = float(np.median(good)) if good.size else 0.0
    sky_var = robust_sigma(good) ** 2 if good.size else 1.0
    if psf is not None:
        from_psf = max(OBJLIM_FLOOR, OBJLIM_MARGIN * psf_contrast(psf))
        if stars is not None and from_psf > objlim:
            from_psf = _objlim_from_stars(stars, arr, bad_img, sky, sky_var, gain, radius,
                                          sigclip, from_psf)  # fmt: skip
        objlim = from_psf
    crm, mosaic, excluded, var, ncol = _mosaic_cosmics(x, y, arr, bad_img, sky, sky_var, gain,
                                                       sigclip, objlim)  # fmt: skip
    hits = _hits_at_peaks(crm, n, ncol, radius)
    if pixels is not None and hits.any():
        _paint_rays(pixels, mosaic, excluded, var, crm, hits, x, y, ncol, radius,
                    sigclip=sigclip, objlim=objlim)  # fmt: skip
    return hits


def _objlim_from_stars(
    stars: tuple[np.ndarray, np.ndarray],
    arr: np.ndarray,
    bad_img: np.ndarray,
    sky: float,
    sky_var: float,
    gain: float | None,
    radius: int,
    sigclip: float,
    start: float,
) -> float:
    """The lowest ``start`` x ``OBJLIM_LADDER`` at which L.A.Cosmic flags none of the stars.

    The image's own stars are point sources with its PSF, sampling, resampling and noise, as
    a transient is. Stars with a masked pixel within 2 px of the centre are skipped; at most
    ``_MAX_STARS`` (every n-th) are used. The top of the ladder is returned if stars are
    still flagged there (a ray on a star), and ``start`` when there are no stars.
    """
    sx = np.asarray(stars[0], float)
    sy = np.asarray(stars[1], float)
    ny, nx = arr.shape
    xi, yi = np.round(sx).astype(int), np.round(sy).astype(int)
    ok = (xi >= 2) & (yi >= 2) & (xi < nx - 2) & (yi < ny - 2)
    sx, sy, xi, yi = sx[ok], sy[ok], xi[ok], yi[ok]
    clean = np.array([not bad_img[j - 2 : j + 3, i - 2 : i + 3].any()
                      for i, j in zip(xi, yi, strict=True)], bool)  # fmt: skip
    sx, sy = sx[clean], sy[clean]
    if len(sx) == 0:
        return start
    step = max(1, int(math.ceil(len(sx) / _MAX_STARS)))
    sx, sy = sx[::step], sy[::step]
    for factor in OBJLIM_LADDER:
        crm, _, _, _, ncol = _mosaic_cosmics(sx, sy, arr, bad_img, sky, sky_var, gain, sigclip,
                                             start * factor)  # fmt: skip
        if not _hits_at_peaks(crm, len(sx), ncol, radius).any():
            return start * factor
    return start * OBJLIM_LADDER[-1]


def _hits_at_peaks(crm: np.ndarray, n: int, ncol: int, radius: int) -> np.ndarray:
    """Whether the mosaic's ray mask has a pixel within ``radius`` of each stamp's centre."""
    cell = 2 * _HALF + 1 + _GUTTER
    hits = np.zeros(n, bool)
    for i in range(n):
        r0, c0 = (i // ncol) * cell + _HALF, (i % ncol) * cell + _HALF
        hits[i] = bool(crm[r0 - radius : r0 + radius + 1, c0 - radius : c0 + radius + 1].any())
    return hits


def _mosaic_cosmics(
    x: np.ndarray,
    y: np.ndarray,
    arr: np.ndarray,
    bad_img: np.ndarray,
    sky: float,
    sky_var: float,
    gain: float | None,
    sigclip: float,
    objlim: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """L.A.Cosmic on a mosaic of stamps around ``(x, y)``: (ray mask, mosaic, excluded,
    variance, columns)."""
    import astroscrappy  # compiled extension; only needed when there are candidates to vet

    n = len(x)
    size = 2 * _HALF + 1
    cell = size + _GUTTER
    ncol = int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    mosaic = np.zeros((nrow * cell, ncol * cell), np.float32)
    excluded = np.ones(mosaic.shape, bool)
    var = np.full(mosaic.shape, max(sky_var, 1e-12), np.float32)
    for i in range(n):
        st = stamp(arr, x[i], y[i], size) - sky
        # a stamp of the bool mask is 0/1 as float32, NaN (so bad too) beyond the edge
        bad = ~np.isfinite(st) | (stamp(bad_img, x[i], y[i], size) != 0)
        r0, c0 = (i // ncol) * cell, (i % ncol) * cell
        mosaic[r0 : r0 + size, c0 : c0 + size] = np.where(bad, 0.0, st)
        excluded[r0 : r0 + size, c0 : c0 + size] = bad
        if gain and gain > 0:
            src = np.clip(np.nan_to_num(st), 0, None) / float(gain)
            var[r0 : r0 + size, c0 : c0 + size] += src.astype(np.float32)
    crm, _ = astroscrappy.detect_cosmics(
        mosaic,
        inmask=excluded,
        invar=var,
        sigclip=sigclip,
        objlim=objlim,
        gain=1.0,
        readnoise=0.0,
        satlevel=float(np.finfo(np.float32).max),
        niter=2,
        sepmed=True,
        verbose=False,
    )
    return np.asarray(crm, bool), mosaic, excluded, var, ncol


def _paint_rays(
    out: np.ndarray,
    mosaic: np.ndarray,
    excluded: np.ndarray,
    var: np.ndarray,
    crm: np.ndarray,
    hits: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ncol: int,
    radius: int,
    *,
    sigclip: float,
    objlim: float,
) -> None:
    """Set in ``out`` the pixels of the rays that made the hits, at L.A.Cosmic's full threshold.

    L.A.Cosmic's neighbour growth (down to ``sigfrac`` 0.3 of the threshold) also takes the
    core of a source touching a ray, and masking it hid transients 1-2.5 px from rays. The
    stamps of the hits only are run again with ``sigfrac`` 1 and one iteration (a compact
    mosaic: the cost follows the rays found; a second iteration doubled it and changed one
    family candidate's S/N in the 4th digit), and the pixels flagged by both runs are
    painted; the caller grows them by a pixel.
    """
    import astroscrappy

    cell = 2 * _HALF + 1 + _GUTTER
    idx = np.flatnonzero(hits)
    m = len(idx)
    mcol = int(math.ceil(math.sqrt(m)))
    shape = (int(math.ceil(m / mcol)) * cell, mcol * cell)
    sub = np.zeros(shape, np.float32)
    sub_ex = np.ones(shape, bool)
    sub_var = np.full(shape, float(var[cell - 1, cell - 1]), np.float32)  # a gutter's
    first = np.zeros(shape, bool)
    for k, i in enumerate(idx):
        src = np.s_[(i // ncol) * cell : (i // ncol) * cell + cell,
                    (i % ncol) * cell : (i % ncol) * cell + cell]  # fmt: skip
        dst = np.s_[(k // mcol) * cell : (k // mcol) * cell + cell,
                    (k % mcol) * cell : (k % mcol) * cell + cell]  # fmt: skip
        sub[dst], sub_ex[dst], sub_var[dst], first[dst] = (
            mosaic[src], excluded[src], var[src], crm[src])  # fmt: skip
    core, _ = astroscrappy.detect_cosmics(
        sub, inmask=sub_ex, invar=sub_var, sigclip=sigclip, sigfrac=1.0, objlim=objlim,
        gain=1.0, readnoise=0.0, satlevel=float(np.finfo(np.float32).max), niter=1,
        sepmed=True, verbose=False,
    )  # fmt: skip
    core = np.asarray(core, bool) & first
    for k, i in enumerate(idx):
        r0, c0 = (k // mcol) * cell + _HALF, (k % mcol) * cell + _HALF
        box = np.s_[r0 - _HALF : r0 + _HALF + 1, c0 - _HALF : c0 + _HALF + 1]
        _paint_ray(out, first[box], float(x[i]), float(y[i]), radius, core[box])


def _paint_ray(
    out: np.ndarray, flagged: np.ndarray, x: float, y: float, radius: int, core: np.ndarray
) -> None:
    """Set in ``out`` the ``core`` pixels of the flagged ray touching the box of ``radius``.

    Only the ray that made the hit is painted, not other flagged pixels of the stamp (a
    transient beside the ray must stay unmasked).
    """
    from scipy import ndimage

    labels, _ = ndimage.label(flagged, structure=np.ones((3, 3), bool))
    near = labels[_HALF - radius : _HALF + radius + 1, _HALF - radius : _HALF + radius + 1]
    keep = np.isin(labels, np.unique(near[near > 0])) & core
    ys, xs = np.nonzero(keep)
    x0, y0 = stamp_origin(x, y, 2 * _HALF + 1)
    ys, xs = ys + y0, xs + x0
    ny, nx = out.shape
    ok = (ys >= 0) & (ys < ny) & (xs >= 0) & (xs < nx)
    out[ys[ok], xs[ok]] = True


def symmetric_residual(
    x: np.ndarray,
    y: np.ndarray,
    sign: np.ndarray,
    snr: np.ndarray,
    score: np.ndarray,
    star_x: np.ndarray,
    star_y: np.ndarray,
    fwhm: float,
    *,
    fraction: float = 0.5,
    reach: float = 2.5,
) -> np.ndarray:
    """Candidates that are one lobe of a point-symmetric residual around a star.

    A PSF that is wrong in size, ellipticity or wings leaves a residual that is symmetric
    under a 180° rotation about the star (an even function); a registration error leaves an
    odd one (a dipole, caught by ``neg_frac``). A real transient next to a star has no twin
    on the other side. A candidate between 1.5 px and 2.5 FWHM from a star is flagged when
    the score map, with the candidate's sign, reaches ``fraction`` of its S/N within one pixel
    of the mirror point ``(2 x_star - x, 2 y_star - y)``.

    Parameters
    ----------
    x, y, sign, snr : numpy.ndarray
        Candidates (shape (n,)): peak position (px), +1/-1, S/N.
    score : numpy.ndarray
        The significance map (ny, nx) the candidates were detected on.
    star_x, star_y : numpy.ndarray
        Star positions on the same grid (px).
    fwhm : float
        PSF FWHM of the difference in pixels.
    fraction : float
        Twin threshold as a fraction of the candidate's S/N.
    reach : float
        Largest distance from the star tested, in FWHM.

    Returns
    -------
    numpy.ndarray
        Bool, shape (n,).
    """
    from astrid.science.neighbours import nearest

    n = len(x)
    out = np.zeros(n, bool)
    if n == 0 or len(star_x) == 0:
        return out
    d, j = nearest(np.column_stack([star_x, star_y]), np.column_stack([x, y]))
    ny, nx = score.shape
    for i in np.flatnonzero((d >= 1.5) & (d <= reach * fwhm)):
        mx = int(round(2 * float(star_x[j[i]]) - float(x[i])))
        my = int(round(2 * float(star_y[j[i]]) - float(y[i])))
        if not (1 <= mx < nx - 1 and 1 <= my < ny - 1):
            continue
        twin = float(np.nanmax(sign[i] * score[my - 1 : my + 2, mx - 1 : mx + 2]))
        out[i] = twin >= fraction * float(snr[i])
    return out


def star_residual(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    sharpness: np.ndarray,
    neg_frac: np.ndarray,
    star_x: np.ndarray,
    star_y: np.ndarray,
    star_flux: np.ndarray,
    residual_fraction: float,
    fwhm: float,
    *,
    consistency: float = 3.0,
) -> np.ndarray:
    """Candidates on a star that are consistent with that star's subtraction residual.

    Two tests must both hold for a candidate within one FWHM of a star:

    * flux-ratio consistency: ``|flux| <= consistency * residual_fraction * star_flux``,
      where ``residual_fraction`` is the typical (90th percentile) fractional residual left
      on the field's bright stars (a residual scales with its star; a transient does not);
    * shape against the PSF: the candidate is not PSF-like on the difference
      (``sharpness`` outside 0.6-1.4, or an opposite-sign fraction ``neg_frac`` > 0.15, the
      signature of a dipole or ring).

    Parameters
    ----------
    x, y, flux, sharpness, neg_frac : numpy.ndarray
        Candidates, shape (n,): position (px), PSF flux (reference units), the
        :mod:`astrid.science.extract` shape measures.
    star_x, star_y, star_flux : numpy.ndarray
        Reference-image stars (px, reference units), shape (m,).
    residual_fraction : float
        Typical |residual flux| / star flux on bright stars (dimensionless).
    fwhm : float
        PSF FWHM of the difference in pixels.
    consistency : float
        Multiple of ``residual_fraction`` still taken as a residual.

    Returns
    -------
    numpy.ndarray
        Bool, shape (n,).
    """
    from astrid.science.neighbours import nearest

    n = len(x)
    if n == 0 or len(star_x) == 0 or not np.isfinite(residual_fraction):
        return np.zeros(n, bool)
    d, j = nearest(np.column_stack([star_x, star_y]), np.column_stack([x, y]))
    on_star = d <= max(fwhm, 1.0)
    small = (
        np.abs(np.asarray(flux, float))
        <= consistency * residual_fraction * np.asarray(star_flux, float)[j]
    )
    sharp = np.asarray(sharpness, float)
    not_psf = (sharp < 0.6) | (sharp > 1.4) | (np.asarray(neg_frac, float) > 0.15)
    return np.asarray(on_star & small & not_psf, bool)


def residual_fraction(
    flux_map: np.ndarray,
    mask: np.ndarray,
    star_x: np.ndarray,
    star_y: np.ndarray,
    star_flux: np.ndarray,
    star_snr: np.ndarray,
    *,
    min_snr: float = 50.0,
    quantile: float = 0.9,
) -> float:
    """Typical fractional residual |PSF flux on the difference| / star flux on bright stars.

    Parameters
    ----------
    flux_map : numpy.ndarray
        PSF-photometry flux map of the difference (reference units), shape (ny, nx).
    mask : numpy.ndarray of bool
        True = excluded, shape (ny, nx).
    star_x, star_y, star_flux, star_snr : numpy.ndarray
        Reference-image stars, shape (m,).
    min_snr : float
        Stars at least this significant are used.
    quantile : float
        Quantile of the ratios returned.

    Returns
    -------
    float
        The ``quantile`` of ``max |flux_map|`` within 2 px of each star / its flux; NaN with
        fewer than 5 usable stars.
    """
    ny, nx = flux_map.shape
    xi = np.round(np.asarray(star_x, float)).astype(int)
    yi = np.round(np.asarray(star_y, float)).astype(int)
    ok = (xi >= 2) & (yi >= 2) & (xi < nx - 2) & (yi < ny - 2) & (np.asarray(star_snr) > min_snr)
    ok &= np.asarray(star_flux) > 0
    ratios = []
    for k in np.flatnonzero(ok):
        if mask[yi[k], xi[k]]:
            continue
        box = np.abs(flux_map[yi[k] - 2 : yi[k] + 3, xi[k] - 2 : xi[k] + 3])
        ratios.append(float(box.max()) / float(star_flux[k]))
    if len(ratios) < 5:
        return float("nan")
    return float(np.quantile(ratios, quantile))
