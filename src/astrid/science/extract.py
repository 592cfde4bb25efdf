"""Candidate extraction, features and a transparent rule-based score on a difference.

:func:`extract_candidates` runs SEP on the significance map of a
:class:`~astrid.science.diffimage.DifferenceResult` (S_corr for ZOGY, the decorrelated matched
filter for the classic method), in both signs, and measures for each candidate:

========================  ==============================================================
column                    meaning
========================  ==============================================================
``x, y``                  sub-pixel peak of the score map (0-based pixels, ref grid);
                          ``snr`` and ``flux`` are interpolated to that peak
``ra, dec``               ICRS degrees (NaN without a WCS)
``snr``                   \\|significance\\| in sigma at the peak
``sign``                  +1 brightening (new brighter), -1 fading
``flux, flux_err``        PSF-photometry flux (signed) and 1-sigma error, reference units
``mag, mag_err``          ``zero_point - 2.5 log10(|flux|)``; NaN without a zero point
``fwhm``                  FWHM of the candidate on D from second moments (pixels)
``elongation``            a/b of those moments
``sharpness``             D at the peak / the PSF-fit prediction there (1 = PSF-like)
``neg_frac``              opposite-sign fraction of the significant flux around it
``ref_star_dist``         distance to the nearest reference-image star (pixels)
``cr_llr``                z_delta^2 - z_psf^2: > 0 when a single-pixel event in the new
                          image explains D better than a point source (ZOGY section 3.5)
``flag_edge``             within a PSF radius of the image edge
``flag_saturated``        a saturated pixel (either image) within the stamp
``flag_bad``              a masked / NaN pixel within the stamp
``flag_cr``               ``cr_llr > 0``
``score``                 rule-based score in [0, 1] (see :func:`rule_score`)
``extended_sigma``        significance of light on D broader than its PSF at the peak
                          (N(0, 1) for a point source; :mod:`astrid.science.pointsource`)
========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from astrid.science.diffimage import DifferenceResult
from astrid.science.morphology import dilate_cross
from astrid.science.neighbours import nearest
from astrid.science.pointsource import broadened_template, extended_significance
from astrid.science.sepextract import extract_objects
from astrid.science.stats import FWHM_PER_SIGMA, every_nth_valid, robust_sigma

__all__ = [
    "CANDIDATE_COLUMNS",
    "EXTENDED_SIGMA",
    "SHARPNESS_SIGMA",
    "detect_peaks",
    "extract_candidates",
    "rule_score",
    "zero_point_from_header",
    "zero_point_from_stars",
]

CANDIDATE_COLUMNS = (
    "ra",
    "dec",
    "x",
    "y",
    "snr",
    "sign",
    "flux",
    "flux_err",
    "mag",
    "mag_err",
    "fwhm",
    "elongation",
    "sharpness",
    "neg_frac",
    "ref_star_dist",
    "cr_llr",
    "flag_edge",
    "flag_saturated",
    "flag_bad",
    "flag_cr",
    "score",
    # Appended after `score`: readers that take the columns by position keep working.
    "extended_sigma",
)

#: Candidates with more broad light than this (sigma, :mod:`astrid.science.pointsource`) are
#: not point sources: a one-sided 3 sigma test.
EXTENDED_SIGMA = 3.0

_ZP_KEYS = ("MAGZP", "MAGZERO", "MAGZPT", "ZEROPT", "ZP", "PHOTZP", "ZPTMAG")


def zero_point_from_header(header: Mapping[str, object] | None) -> float | None:
    """Photometric zero point (mag of one image unit) from common header keywords.

    Parameters
    ----------
    header : mapping
        FITS header (or dict). Keywords tried: MAGZP, MAGZERO, MAGZPT, ZEROPT, ZP, PHOTZP,
        ZPTMAG.

    Returns
    -------
    float or None
    """
    if header is None:
        return None
    for key in _ZP_KEYS:
        value = header.get(key)
        try:
            if value is not None and np.isfinite(float(value)):  # type: ignore[arg-type]
                return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return None


def zero_point_from_stars(
    fluxes: np.ndarray, catalog_mags: np.ndarray, min_stars: int = 3
) -> float | None:
    """Zero point from instrumental fluxes of stars and their catalogue magnitudes.

    Parameters
    ----------
    fluxes : numpy.ndarray
        Fluxes in image units, shape (n,).
    catalog_mags : numpy.ndarray
        Catalogue magnitudes in the image's band, shape (n,).
    min_stars : int
        Fewest good pairs needed.

    Returns
    -------
    float or None
        Sigma-clipped median of ``mag + 2.5 log10(flux)``; None if too few stars.
    """
    fluxes = np.asarray(fluxes, float)
    mags = np.asarray(catalog_mags, float)
    good = np.isfinite(fluxes) & np.isfinite(mags) & (fluxes > 0)
    if good.sum() < min_stars:
        return None
    zp = mags[good] + 2.5 * np.log10(fluxes[good])
    med = np.median(zp)
    for _ in range(3):
        mad = robust_sigma(zp, centre=med) + 1e-3
        med = np.median(zp[np.abs(zp - med) < 3 * mad])
    return float(med)


#: The centre pixel must depart from the PSF's predicted peak by more than this many sigma
#: of pixel noise before ``sharpness`` counts against a candidate.
SHARPNESS_SIGMA = 3.0

#: E[x; x > 2] for a unit normal x, i.e. phi(2): the mean flux per pixel that noise alone
#: puts beyond +2 sigma (and, likewise, beyond -2 sigma).
_NOISE_TAIL = 0.05399096651318806


def rule_score(
    snr: np.ndarray,
    threshold: float,
    elongation: np.ndarray,
    sharpness: np.ndarray,
    neg_frac: np.ndarray,
    flag_cr: np.ndarray,
    flag_edge: np.ndarray,
    flag_saturated: np.ndarray,
    flag_bad: np.ndarray,
    near_star: np.ndarray,
    extended: np.ndarray | None = None,
    sharpness_sigma: np.ndarray | None = None,
) -> np.ndarray:
    """Transparent candidate score in [0, 1]: a product of simple factors.

    ======================================  =======
    rule                                    factor
    ======================================  =======
    significance (snr from T to 2T)         0.7 → 1
    cosmic-ray hypothesis preferred         0.1
    elongation > 2 (1.5 to 2)               0.3 (0.7)
    opposite-sign fraction > 0.4 (0.2-0.4)  0.3 (0.7)  (dipole: misalignment)
    sharpness outside 0.5-1.8               0.5
    saturated pixel nearby                  0.2
    masked pixel nearby                     0.5
    at the image edge                       0.5
    within one FWHM of a reference star     0.8
    broader than the PSF (``extended``)     0.5
    ======================================  =======

    All inputs are arrays of shape (n,); ``extended`` (bool) and ``sharpness_sigma`` are
    optional. :func:`extract_candidates` passes as ``neg_frac`` the fraction left once the
    flux that noise alone puts beyond ±2 sigma in the measuring disk is taken from both
    sides, and as ``sharpness_sigma`` the centre pixel's departure from the PSF's predicted
    peak in pixel noise: the sharpness rule then needs more than :data:`SHARPNESS_SIGMA`.
    Without both, a faint source under a broad PSF (S/N 7-9, FWHM ~4 px) is penalised for
    its own noise: ~40 % of its > 2 sigma flux is negative and its centre pixel is off by
    ~2 sigma.
    ``extended`` is :data:`EXTENDED_SIGMA` exceeded: broad light at more than 3 sigma, which
    a point source shows once in ~740.

    Returns
    -------
    numpy.ndarray
        Scores, shape (n,).
    """
    s = 0.7 + 0.3 * np.clip((np.asarray(snr) - threshold) / max(threshold, 1e-6), 0, 1)
    s = s * np.where(flag_cr, 0.1, 1.0)
    s = s * np.where(elongation > 2.0, 0.3, np.where(elongation > 1.5, 0.7, 1.0))
    s = s * np.where(neg_frac > 0.4, 0.3, np.where(neg_frac > 0.2, 0.7, 1.0))
    odd = (sharpness < 0.5) | (sharpness > 1.8)
    if sharpness_sigma is not None:  # only where the centre pixel's departure is significant
        odd &= np.abs(sharpness_sigma) > SHARPNESS_SIGMA
    s = s * np.where(odd, 0.5, 1.0)
    s = s * np.where(flag_saturated, 0.2, 1.0)
    s = s * np.where(flag_bad, 0.5, 1.0)
    s = s * np.where(flag_edge, 0.5, 1.0)
    s = s * np.where(near_star, 0.8, 1.0)
    if extended is not None:
        s = s * np.where(extended, 0.5, 1.0)
    return np.asarray(s, dtype=float)


def detect_peaks(score: np.ndarray, threshold: float, minarea: int = 3) -> np.ndarray:
    """SEP objects (``xpeak``, ``ypeak``...) above ``threshold`` on a significance map (ny, nx).

    The one detection step of AstrID: candidates, fake-source recovery and limits use it.
    """
    data = np.ascontiguousarray(score, dtype=np.float32)
    return extract_objects(
        data,
        float(threshold),
        err=None,
        minarea=minarea,
        filter_kernel=None,
        deblend_cont=0.01,
        clean=False,
    )


def _parabola(lo: float, mid: float, hi: float) -> tuple[float, float]:
    """Offset and value of the extremum of a parabola (or a Gaussian when all > 0)."""
    if lo > 0 and mid > 0 and hi > 0:
        a, b, c = np.log(lo), np.log(mid), np.log(hi)
        den = a - 2 * b + c
        if den < 0:
            off = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
            return off, float(np.exp(b - 0.25 * (a - c) * off))
    den = lo - 2 * mid + hi
    if den < 0:
        off = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))
        return off, float(mid - 0.25 * (lo - hi) * off)
    return 0.0, float(mid)


def _subpixel_peak(full: np.ndarray, xp: int, yp: int, sign: int = 1) -> tuple[float, float, float]:
    """Sub-pixel position and peak value of a local maximum of ``sign * full``."""
    ny, nx = full.shape
    y0, x0 = max(yp - 1, 0), max(xp - 1, 0)
    local = sign * full[y0 : yp + 2, x0 : xp + 2].astype(np.float64)
    return _subpixel_local(local, xp - x0, yp - y0, xp, yp, ny, nx)


def _subpixel_local(
    score: np.ndarray, lx: int, ly: int, xp: int, yp: int, ny: int, nx: int
) -> tuple[float, float, float]:
    """Log-parabola peak fits on a 3x3 (or edge-clipped) neighbourhood."""
    mid = float(score[ly, lx])
    dx = dy = 0.0
    gain_x = gain_y = 1.0
    if 0 < xp < nx - 1:
        dx, vx = _parabola(float(score[ly, lx - 1]), mid, float(score[ly, lx + 1]))
        gain_x = vx / mid if mid > 0 else 1.0
    if 0 < yp < ny - 1:
        dy, vy = _parabola(float(score[ly - 1, lx]), mid, float(score[ly + 1, lx]))
        gain_y = vy / mid if mid > 0 else 1.0
    return xp + dx, yp + dy, mid * gain_x * gain_y


def _stamp(arr: np.ndarray, x: int, y: int, h: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    ny, nx = arr.shape
    sl = (slice(max(0, y - h), min(ny, y + h + 1)), slice(max(0, x - h), min(nx, x + h + 1)))
    return arr[sl], sl


def _template_dot(diff: np.ndarray, tmpl: np.ndarray, x: int, y: int) -> float:
    """Normalised match of ``tmpl`` (centred, odd) with ``diff`` at (x, y)."""
    h = tmpl.shape[0] // 2
    ny, nx = diff.shape
    y0, y1, x0, x1 = y - h, y + h + 1, x - h, x + h + 1
    ty0, tx0 = max(0, -y0), max(0, -x0)
    ty1 = tmpl.shape[0] - max(0, y1 - ny)
    tx1 = tmpl.shape[1] - max(0, x1 - nx)
    cut = diff[max(0, y0) : min(ny, y1), max(0, x0) : min(nx, x1)]
    t = tmpl[ty0:ty1, tx0:tx1]
    norm = float(np.sqrt((t.astype(float) ** 2).sum()))
    return float((cut * t).sum()) / norm if norm > 0 else 0.0


def extract_candidates(
    result: DifferenceResult,
    threshold: float = 5.0,
    *,
    wcs: WCS | None = None,
    zero_point: float | None = None,
    minarea: int = 3,
    negative: bool = True,
    max_candidates: int = 100_000,
) -> Table:
    """Detect and measure candidates on a difference.

    Parameters
    ----------
    result : DifferenceResult
        Output of :func:`astrid.science.difference.difference_images` (or ``zogy`` / ``classic``).
    threshold : float
        Detection threshold on ``result.score`` in sigma.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the (reference) grid, for ``ra, dec``.
    zero_point : float, optional
        Magnitude of one reference-image unit of flux (``mag = zp - 2.5 log10 flux``).
    minarea : int
        Minimum connected pixels above threshold on the score map.
    negative : bool
        Also extract fading (negative) candidates.
    max_candidates : int
        Keep at most this many (highest snr) candidates.

    Returns
    -------
    astropy.table.Table
        One row per candidate with the columns of :data:`CANDIDATE_COLUMNS`, sorted by
        decreasing ``snr``; ``meta`` holds the method, threshold, flux ratio, notes.
    """
    score = result.score
    diff = result.diff
    ny, nx = score.shape
    rows: list[tuple[int, int, int]] = []
    for sign in (1, -1) if negative else (1,):
        objs = detect_peaks(score if sign > 0 else -score, threshold, minarea)
        for o in objs:
            rows.append((int(o["xpeak"]), int(o["ypeak"]), sign))
    psf = result.psf
    h = psf.shape[0] // 2
    fwhm_d = float(_psf_fwhm(psf))
    r = int(max(3, np.ceil(1.5 * fwhm_d)))
    dn = _robust_sigma(diff, result.mask)
    sat = (
        result.saturation_mask if result.saturation_mask is not None else np.zeros_like(result.mask)
    )
    sat_grown = dilate_cross(sat, r) if sat.any() else sat
    stars = result.ref_stars
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = np.hypot(xx, yy) <= r
    broad, rho = broadened_template(psf)
    z_point: list[float] = []
    z_broad: list[float] = []
    dipole: list[float] = []
    sharp_dev: list[float] = []
    out: dict[str, list[float]] = {c: [] for c in CANDIDATE_COLUMNS}
    for xp, yp, sign in rows:
        snr = float(sign * score[yp, xp])
        if not np.isfinite(snr) or snr < threshold:
            continue
        x, y, peak = _subpixel_peak(score, xp, yp, sign)
        boost = peak / snr if snr > 0 and np.isfinite(peak) else 1.0
        snr = snr * boost
        f = float(result.flux[yp, xp]) * boost
        fe = float(result.flux_err[yp, xp])
        st, sl = _stamp(diff, xp, yp, r)
        sd = sign * st.astype(float)
        sub_disk = disk[
            sl[0].start - (yp - r) : sl[0].stop - (yp - r),
            sl[1].start - (xp - r) : sl[1].stop - (xp - r),
        ]
        w = np.where(sub_disk, np.clip(sd, 0, None), 0.0)
        fw, el = _moments(w, xp - sl[1].start, yp - sl[0].start)
        pos = float(sd[sub_disk & (sd > 2 * dn)].sum())
        neg = float(-sd[sub_disk & (sd < -2 * dn)].sum())
        neg_frac = neg / (pos + neg) if pos + neg > 0 else 0.0
        # what noise alone puts beyond 2 sigma on each side: n * sigma * phi(2)
        tail = float(sub_disk.sum()) * dn * _NOISE_TAIL
        pos_x, neg_x = max(pos - tail, 0.0), max(neg - tail, 0.0)
        dipole.append(neg_x / (pos_x + neg_x) if pos_x + neg_x > 0 else 0.0)
        z_psf = sign * _template_dot(diff, psf, xp, yp)
        z_cr = sign * _template_dot(diff, result.cr_template, xp, yp)
        amp_psf = z_psf / float(np.sqrt((psf.astype(float) ** 2).sum()))
        pred_peak = amp_psf * float(psf[h, h])
        centre = float(sd[yp - sl[0].start, xp - sl[1].start])
        sharp = centre / pred_peak if pred_peak > 0 else 0.0
        # how far the centre pixel is from the PSF's prediction, in pixel noise
        sharp_dev.append((centre - pred_peak) / dn if dn > 0 else 0.0)
        cr_llr = (z_cr**2 - z_psf**2) if z_cr > 0 else -(z_psf**2)
        z_point.append(z_psf)
        z_broad.append(sign * _template_dot(diff, broad, xp, yp))
        bad = bool(_stamp(result.mask, xp, yp, r)[0].any())
        satf = bool(sat_grown[yp, xp])
        edge = bool(x < h or y < h or x > nx - 1 - h or y > ny - 1 - h)
        out["x"].append(x)
        out["y"].append(y)
        out["snr"].append(snr)
        out["sign"].append(sign)
        out["flux"].append(f)
        out["flux_err"].append(fe)
        out["fwhm"].append(fw)
        out["elongation"].append(el)
        out["sharpness"].append(sharp)
        out["neg_frac"].append(neg_frac)
        out["cr_llr"].append(cr_llr)
        out["flag_edge"].append(edge)
        out["flag_saturated"].append(satf)
        out["flag_bad"].append(bad)
        out["flag_cr"].append(cr_llr > 0)
    n = len(out["x"])
    cols: dict[str, np.ndarray] = {}
    for c in CANDIDATE_COLUMNS:
        if c in ("ra", "dec", "mag", "mag_err", "score", "ref_star_dist", "extended_sigma"):
            continue
        dtype = bool if c.startswith("flag_") else (int if c == "sign" else float)
        cols[c] = np.asarray(out[c], dtype=dtype)
    xs, ys = cols["x"], cols["y"]
    cols["extended_sigma"] = extended_significance(
        np.asarray(z_point, float), np.asarray(z_broad, float), rho, cols["snr"]
    )
    # distance to the nearest reference star, all candidates at once
    cols["ref_star_dist"] = np.full(n, np.inf)
    if stars is not None and len(stars) and n:
        cols["ref_star_dist"] = nearest(np.column_stack([stars.x, stars.y]),
                                        np.column_stack([xs, ys]))[0]  # fmt: skip
    if wcs is not None and n:
        ra, dec = wcs.pixel_to_world_values(xs, ys)
        cols["ra"], cols["dec"] = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    else:
        cols["ra"] = cols["dec"] = np.full(n, np.nan)
    flux, ferr = cols["flux"], cols["flux_err"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if zero_point is not None:
            cols["mag"] = zero_point - 2.5 * np.log10(np.abs(flux))
            cols["mag_err"] = 2.5 / np.log(10) * ferr / np.abs(flux)
        else:
            cols["mag"] = cols["mag_err"] = np.full(n, np.nan)
    near = cols["ref_star_dist"] < max(fwhm_d, 1.0)
    cols["score"] = rule_score(
        cols["snr"],
        threshold,
        cols["elongation"],
        cols["sharpness"],
        np.asarray(dipole, float),
        cols["flag_cr"],
        cols["flag_edge"],
        cols["flag_saturated"],
        cols["flag_bad"],
        near,
        cols["extended_sigma"] > EXTENDED_SIGMA,
        np.asarray(sharp_dev, float),
    )
    table = Table([cols[c] for c in CANDIDATE_COLUMNS], names=CANDIDATE_COLUMNS)
    if n:
        table.sort("snr", reverse=True)
        table = table[:max_candidates]
    table.meta.update(
        {
            "method": result.method,
            "threshold": float(threshold),
            "flux_ratio": result.flux_ratio,
            "score_scale": result.score_scale,
            "zero_point": zero_point,
            "notes": list(result.notes),
        }
    )
    return table


def _psf_fwhm(psf: np.ndarray) -> float:
    h = psf.shape[0] // 2
    fw, _ = _moments(np.clip(psf.astype(float), 0, None), h, h)
    return fw if np.isfinite(fw) else 3.0


def _moments(w: np.ndarray, xc: float, yc: float) -> tuple[float, float]:
    total = w.sum()
    if total <= 0:
        return float("nan"), float("nan")
    yy, xx = np.indices(w.shape)
    mx, my = (w * xx).sum() / total, (w * yy).sum() / total
    cxx = (w * (xx - mx) ** 2).sum() / total
    cyy = (w * (yy - my) ** 2).sum() / total
    cxy = (w * (xx - mx) * (yy - my)).sum() / total
    tr, det = cxx + cyy, cxx * cyy - cxy**2
    disc = np.sqrt(max(tr**2 / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
    fwhm = FWHM_PER_SIGMA * np.sqrt((l1 + l2) / 2)
    return float(fwhm), float(np.sqrt(l1 / l2))


def _robust_sigma(arr: np.ndarray, mask: np.ndarray) -> float:
    n_valid = mask.size - int(np.count_nonzero(mask))
    # the sample vals = arr[~mask][::step] without the copy of every valid pixel first
    vals = every_nth_valid(arr, mask, n_valid // 500_000 if n_valid > 1_000_000 else 1)
    if vals.size == 0:
        return 1.0
    s = robust_sigma(vals)
    return s if s > 0 else 1.0
