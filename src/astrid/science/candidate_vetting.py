"""Vetting the candidates of a differenced pair, in place on their table.

The tests themselves are in :mod:`astrid.science.vetting` (on stamps, by candidate
position); here they are applied to the candidate table of
:func:`astrid.science.difference.detect_pair`:

* :func:`vet_cosmic_rays` runs L.A.Cosmic on the image each candidate comes from (the new
  image for a brightening, ``sign = 1``; the reference for a fading, ``sign = -1``), sets
  ``flag_cr`` and multiplies the score of a fresh hit by 0.1; it returns the rays' pixels
  (bool, shape (ny, nx) of the reference grid, one array per image) for a second pass with
  them masked.
* :func:`vet_star_residuals` sets ``flag_psf_residual`` on point-symmetric residuals and on
  candidates that are a star's own subtraction residual in flux and shape, and multiplies
  their score by 0.2.
* :func:`psf_arrays` gives the whole-image PSFs (new, reference) that set L.A.Cosmic's
  contrast limit.

Pixels are 0-based, x = column, on the reference grid of the :class:`AlignedPair`; masks
True = excluded.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table

from astrid.science.diffimage import DifferenceResult
from astrid.science.pair_alignment import AlignedPair
from astrid.science.psf_stars import StarList
from astrid.science.stats import FWHM_PER_SIGMA
from astrid.science.vetting import (
    cosmic_ray_hits,
    residual_fraction,
    star_residual,
    symmetric_residual,
)

__all__ = ["psf_arrays", "vet_cosmic_rays", "vet_star_residuals"]


def _header_gain(header: fits.Header) -> float | None:
    for key in ("GAIN", "EGAIN", "CCDGAIN"):
        try:
            value = float(header[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value > 0 and np.isfinite(value):
            return value
    return None


def psf_arrays(result: DifferenceResult) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The whole-image PSFs of the new and reference images (None where unknown)."""
    return tuple(  # type: ignore[return-value]
        None if p is None else p.array for p in (result.new_psf, result.ref_psf)
    )


def vet_cosmic_rays(
    table: Table,
    pair: AlignedPair,
    psfs: tuple[np.ndarray | None, np.ndarray | None],
    only: np.ndarray | None = None,
    stars: StarList | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag candidates on a cosmic ray of the image they come from (in place).

    ``psfs`` (new, reference) set L.A.Cosmic's contrast limit per image
    (:func:`~astrid.science.vetting.cosmic_ray_hits`); ``stars`` (the reference's, on the
    common grid, S/N ≥ 10 used) raise an undersampled PSF's limit until none of them is
    taken for a ray in either image. ``only`` (bool, shape (n,)) restricts
    the runs to those candidates. Returns the rays' pixels in the new and in the reference
    image (bool, shape (ny, nx) each)."""
    sign = np.asarray(table["sign"])
    hits = np.zeros(len(table), bool)
    rays = (np.zeros(pair.new.shape, bool), np.zeros(pair.ref.shape, bool))
    sides = ((1, pair.new, pair.new_mask, pair.new_header, rays[0], psfs[0]),
             (-1, pair.ref, pair.ref_mask, pair.ref_header, rays[1], psfs[1]))  # fmt: skip
    star_xy = None
    if stars is not None and len(stars.x):
        keep = np.asarray(stars.snr, float) >= 10.0
        star_xy = (np.asarray(stars.x, float)[keep], np.asarray(stars.y, float)[keep])
    for want, img, msk, hdr, px, psf in sides:
        sel = sign == want
        if only is not None:
            sel &= only
        if sel.any():
            hits[sel] = cosmic_ray_hits(np.asarray(table["x"])[sel], np.asarray(table["y"])[sel],
                                        img, msk, gain=_header_gain(hdr), pixels=px,
                                        psf=psf, stars=star_xy)  # fmt: skip
    fresh = hits & ~np.asarray(table["flag_cr"], bool)
    table["score"][fresh] = np.asarray(table["score"])[fresh] * 0.1
    table["flag_cr"] = np.asarray(table["flag_cr"], bool) | hits
    table.meta.setdefault("notes", []).append(
        f"L.A.Cosmic on candidate stamps: {int(hits.sum())} of {len(table)} on a cosmic ray"
    )
    return rays


def vet_star_residuals(table: Table, result: DifferenceResult) -> None:
    """Flag (``flag_psf_residual``) and damp (score × 0.2) star residuals: point-symmetric
    ones (:func:`~astrid.science.vetting.symmetric_residual`) and ones on a star whose flux
    and shape are those of its subtraction residual
    (:func:`~astrid.science.vetting.star_residual`)."""
    stars = result.ref_stars
    if stars is None or not len(stars):
        table["flag_psf_residual"] = np.zeros(len(table), bool)
        return
    yy, xx = np.indices(result.psf.shape)
    p = result.psf / result.psf.sum()
    c = result.psf.shape[0] // 2
    fwhm = FWHM_PER_SIGMA * float(np.sqrt((p * ((xx - c) ** 2 + (yy - c) ** 2)).sum() / 2.0))
    flag = symmetric_residual(np.asarray(table["x"]), np.asarray(table["y"]),
                              np.asarray(table["sign"]), np.asarray(table["snr"]),
                              result.score, stars.x, stars.y, fwhm)  # fmt: skip
    eps = residual_fraction(result.flux, result.mask, stars.x, stars.y, stars.flux, stars.snr)
    on_star = star_residual(np.asarray(table["x"]), np.asarray(table["y"]),
                            np.asarray(table["flux"]), np.asarray(table["sharpness"]),
                            np.asarray(table["neg_frac"]), stars.x, stars.y, stars.flux, eps,
                            fwhm)  # fmt: skip
    flag = flag | on_star
    table["score"][flag] = np.asarray(table["score"])[flag] * 0.2
    table["flag_psf_residual"] = flag
    if np.isfinite(eps):
        table.meta.setdefault("notes", []).append(
            f"star residuals: typical {eps:.3g} of the star's flux; {int(on_star.sum())} "
            "candidate(s) on a star consistent with its residual in flux and shape"
        )
