"""Image pairs from a simulator that is not AstrID's: photutils' own image makers.

AstrID's simulator (:mod:`astrid.science.simulate`) and its differencing were written by the
same people, so agreement between them can hide shared assumptions. These pairs come from
``photutils.datasets.make_model_image`` with photutils' PSF models and noise, and with
conventions AstrID's simulator never uses:

- the reference is an elliptical, rotated **Gaussian** (``GaussianPSF``); the new image a
  circular **Moffat** (``MoffatPSF``, beta 2.5: broad wings) of another width;
- the reference keeps its sky (electrons); the new image is **sky-subtracted** and in
  **electrons per second**; neither header has GAIN, SATURATE, a zero point or MJD;
- the new image is shifted by a sub-pixel offset, its WCS says so (``make_wcs``'s TAN).

:func:`zogy_limit` gives each transient's best attainable S/N on the difference (Zackay,
Ofek & Gal-Yam 2016, eq. 12 without source noise) from the true PSFs and noise levels, so
recovery can be measured against theory rather than against AstrID's own answer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from photutils.datasets import make_model_image, make_wcs
from photutils.psf import GaussianPSF, MoffatPSF

__all__ = ["PeerPair", "match_transients", "peer_pair", "zogy_factor", "zogy_limit"]

SHAPE = (1024, 1024)
EXPTIME = 60.0  # s
SKY = 1500.0  # e- per pixel in an exposure
READ_NOISE = 6.0  # e-
REF_FWHM = (3.1, 2.6)  # px, x and y, rotated by REF_THETA
REF_THETA = 25.0  # deg
NEW_FWHM = 4.0  # px (Moffat)
NEW_BETA = 2.5
SHIFT = (0.37, -0.23)  # px: the new image's grid against the reference's


@dataclass(frozen=True)
class PeerPair:
    """A simulated pair: the FITS bytes of both images and the truth."""

    new: bytes
    ref: bytes
    transients: Table  # x, y (reference pixels, 0-based), flux (e-), limit (ZOGY S/N)
    stars: Table  # x, y (reference pixels, 0-based), flux (e-)


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _ref_psf(fwhm: tuple[float, float] = REF_FWHM) -> GaussianPSF:
    return GaussianPSF(x_fwhm=fwhm[0], y_fwhm=fwhm[1], theta=REF_THETA)


def _new_psf(fwhm: float = NEW_FWHM, beta: float = NEW_BETA) -> MoffatPSF:
    return MoffatPSF(alpha=_moffat_alpha(fwhm, beta), beta=beta)


def _render(model: object, table: QTable, size: int) -> np.ndarray:
    return np.asarray(
        make_model_image(SHAPE, model, table, model_shape=(size, size),
                         discretize_method="oversample", discretize_oversample=4),
        dtype=float,
    )  # fmt: skip


def _fits(data: np.ndarray, shift: tuple[float, float], extra: dict[str, object]) -> bytes:
    wcs = make_wcs(SHAPE)
    wcs.wcs.crpix = [wcs.wcs.crpix[0] + shift[0], wcs.wcs.crpix[1] + shift[1]]
    header = wcs.to_header()
    header.update(extra)
    buf = io.BytesIO()
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(buf)
    return buf.getvalue()


def _psf_grid(model: object, size: int = 63) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    m = model.copy()  # type: ignore[attr-defined]
    m.x_0, m.y_0, m.flux = size // 2, size // 2, 1.0
    grid = np.asarray(m(xx, yy), dtype=float)
    return grid / grid.sum()


def zogy_factor(
    new_psf: np.ndarray, ref_psf: np.ndarray, sigma_new: float, sigma_ref: float
) -> float:
    """S/N of a unit-flux point source on the ZOGY difference (eq. 12 of Zackay, Ofek &
    Gal-Yam 2016, background-limited, flux ratio 1): ``sqrt(sum |Pn|^2 |Pr|^2 / (sn^2
    |Pr|^2 + sr^2 |Pn|^2))`` over the Fourier plane of unit-sum PSFs on the same grid."""
    pn = np.abs(np.fft.fft2(new_psf)) ** 2
    pr = np.abs(np.fft.fft2(ref_psf)) ** 2
    return float(np.sqrt(np.sum(pn * pr / (sigma_new**2 * pr + sigma_ref**2 * pn)) / pn.size))


def zogy_limit(
    flux: np.ndarray,
    ref_fwhm: tuple[float, float] = REF_FWHM,
    new_fwhm: float = NEW_FWHM,
    new_beta: float = NEW_BETA,
) -> np.ndarray:
    """Best attainable difference S/N of the peer pairs' point sources of ``flux`` (e-);
    both exposures have the same sky and read noise."""
    sigma = float(np.sqrt(SKY + READ_NOISE**2))  # e- per pixel
    new_psf = _psf_grid(_new_psf(new_fwhm, new_beta))
    k = zogy_factor(new_psf, _psf_grid(_ref_psf(ref_fwhm)), sigma, sigma)
    return np.asarray(flux, dtype=float) * k


def peer_pair(
    seed: int,
    n_stars: int = 700,
    n_transients: int = 40,
    *,
    dated: bool = False,
    ref_fwhm: tuple[float, float] = REF_FWHM,
    new_fwhm: float = NEW_FWHM,
    new_beta: float = NEW_BETA,
) -> PeerPair:
    """A reference and a new image of one field; ``n_transients`` point sources appear in
    the new one, away from the edges, with fluxes spanning ~3 to ~30 sigma (for the default
    PSFs). ``dated``: the headers get MJD-OBS (60000 and 60010), which the pipeline needs
    to order them. ``ref_fwhm`` (x, y) and ``new_fwhm`` (px) change the PSFs' widths, e.g.
    to undersampled ones (~1.5 px) as space telescopes have; ``new_beta`` the Moffat's."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    stars = QTable()
    stars["x_0"] = rng.uniform(8, nx - 8, n_stars)
    stars["y_0"] = rng.uniform(8, ny - 8, n_stars)
    stars["flux"] = 10 ** rng.uniform(2.5, 5.5, n_stars)
    trans = QTable()
    trans["x_0"] = rng.uniform(40, nx - 40, n_transients)
    trans["y_0"] = rng.uniform(40, ny - 40, n_transients)
    trans["flux"] = np.geomspace(1200.0, 12000.0, n_transients)[rng.permutation(n_transients)]

    ref_e = _render(_ref_psf(ref_fwhm), stars, 41) + SKY
    ref = rng.poisson(ref_e).astype(float) + rng.normal(0.0, READ_NOISE, SHAPE)

    # the new image's pixel p sees the sky of the reference's pixel p - SHIFT
    moved, trans_new = QTable(stars, copy=True), QTable(trans, copy=True)
    for table, src in ((moved, stars), (trans_new, trans)):
        table["x_0"] = src["x_0"] + SHIFT[0]
        table["y_0"] = src["y_0"] + SHIFT[1]
    psf_new = _new_psf(new_fwhm, new_beta)
    new_e = _render(psf_new, moved, 61) + _render(psf_new, trans_new, 61) + SKY
    new = rng.poisson(new_e).astype(float) + rng.normal(0.0, READ_NOISE, SHAPE)
    new = (new - SKY) / EXPTIME  # sky-subtracted, e-/s

    common: dict[str, object] = {"EXPTIME": EXPTIME, "FILTER": "r"}
    ref_time = {"MJD-OBS": 60000.0} if dated else {}
    new_time = {"MJD-OBS": 60010.0} if dated else {}
    ref_bytes = _fits(ref, (0.0, 0.0), {"BUNIT": "electron", **common, **ref_time})
    new_bytes = _fits(new, SHIFT, {"BUNIT": "electron/s", **common, **new_time})
    truth = Table(
        {
            "x": np.asarray(trans["x_0"], float),
            "y": np.asarray(trans["y_0"], float),
            "flux": np.asarray(trans["flux"], float),
            "limit": zogy_limit(np.asarray(trans["flux"], float), ref_fwhm, new_fwhm, new_beta),
        }
    )
    star_table = Table(
        {k: np.asarray(stars[c], float) for k, c in (("x", "x_0"), ("y", "y_0"), ("flux", "flux"))}
    )
    return PeerPair(new_bytes, ref_bytes, truth, star_table)


def match_transients(
    candidates: Table, truth: Table, radius: float = 2.5, min_score: float = 0.5
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per transient, the measured S/N of the positive candidate within ``radius`` px with
    score ≥ ``min_score`` (NaN: missed); per candidate, whether it matched a transient; and
    the number of such candidates that match none (false detections)."""
    good = (np.asarray(candidates["sign"]) > 0) & (np.asarray(candidates["score"]) >= min_score)
    cx, cy = np.asarray(candidates["x"], float), np.asarray(candidates["y"], float)
    snr = np.full(len(truth), np.nan)
    matched = np.zeros(len(candidates), bool)
    for i, row in enumerate(truth):
        d = np.hypot(cx - row["x"], cy - row["y"])
        d[~good] = np.inf
        if len(d) and d.min() <= radius:
            j = int(np.argmin(d))
            snr[i] = float(candidates["snr"][j])
            matched[j] = True
    false = int(np.sum(good & ~matched))
    return snr, matched, false
