"""Simulated star fields and image pairs with known truth, for tests and benchmarks.

This module holds the pair and its truth; the pieces live in
:mod:`~astrid.science.simulate_model` (PSF, exposure, result types, WCS),
:mod:`~astrid.science.simulate_image` (drawing one exposure, writing FITS),
:mod:`~astrid.science.simulate_effects` (galaxies, bleeding) and
:mod:`~astrid.science.simfamily` (the family of cases). Two entry points:

* :func:`~astrid.science.simulate_image.simulate_star_field` renders one image: stars from a
  power-law flux distribution convolved with a (possibly elliptical, spatially varying)
  Gaussian or Moffat PSF, a flat or tilted sky, Poisson + read noise, saturation, cosmic
  rays and bad columns, with a TAN WCS.
* :func:`simulate_pair` renders two epochs (``new`` and ``ref``) of the same sky with their own
  PSF, sky, noise and pointing, and injects transients, variable stars and moving objects whose
  truth (positions in both images, flux change, ideal S/N) is returned as a table.

Conventions
-----------
* Pixel coordinates are 0-based (numpy/astropy ``pixel_to_world_values`` convention); ``x`` is
  the column, ``y`` the row; images have shape ``(ny, nx)``.
* Image values are in ADU, *not* sky-subtracted (the sky level is included). ``variance`` is the
  expected (noise-free-model) variance in ADU²: ``(model_e + read_noise²) / gain²``.
* Catalogue fluxes are total ADU of a star in an exposure with ``flux_scale = 1``. An exposure
  records ``flux_scale * flux``; its zero point (header ``MAGZERO``) is
  ``zeropoint + 2.5 log10(flux_scale)`` so that ``mag = MAGZERO - 2.5 log10(flux_ADU)``.
* Masks: True = excluded (bad columns and saturated pixels). Cosmic-ray hits are *not* in
  ``mask`` (a detector does not know them); they are in ``cosmic_ray_mask`` and the truth.
* The PSF is rendered by integrating the analytic profile over each pixel (5×5 sub-samples)
  inside a stamp of radius ``AnalyticPSF.radius`` and normalising the stamp to unit sum; that
  pixelated stamp *is* the PSF the ideal S/N uses.

Ideal S/N (truth column ``ideal_snr``)
--------------------------------------
For a point-source change of flux ``f`` (ADU of the new image) the best possible S/N from the
two images, with white background noise ``σ_n``, ``σ_r`` (ADU, sky + read noise of each image,
at the source position), PSFs ``P_n``, ``P_r`` (unit sum, at the source position, both on the new
pixel grid) and flux ratio ``s = F_n / F_r`` (new over ref ``flux_scale``) is the ZOGY proper-
subtraction limit (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27, eqs. 13-17, 26)::

    S/N² = f² · (1/N) Σ_k |P̂_n(k)|² |P̂_r(k)|² / (σ_n² |P̂_r(k)|² + s² σ_r² |P̂_n(k)|²)

(``P̂ = numpy.fft.fft2`` of the PSF on an ``N``-pixel stamp, so ``(1/N) Σ_k |P̂|² = Σ_x P²``).
It reduces to the single-image PSF-fit limit ``f² Σ_x P_n² / σ_n²`` when the reference is
noiseless. It neglects the shot noise of the source and of any star underneath; the column
``ideal_snr_local`` uses the same formula with ``σ²`` replaced by the PSF²-weighted mean of the
true variance maps around the position (so it includes that shot noise); use it for bright
variables. Registration is assumed perfect; the reference PSF is rotated by the pointing
rotation so that it is expressed on the new image's grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from astrid.science.simulate_effects import satellite_trail
from astrid.science.simulate_image import (
    _check_shape,
    _render,
    _star_catalog,
)
from astrid.science.simulate_model import (
    AnalyticPSF,
    Exposure,
    SimulatedPair,
    SimulationError,
    make_wcs,
)

__all__ = ["ideal_snr", "simulate_pair"]


def _fft_snr2_per_flux2(
    p_new: np.ndarray, p_ref: np.ndarray, var_new: float, var_ref_scaled: float
) -> float:
    """ZOGY S/N² per unit flux² for unit-sum PSFs on the same odd-sized grid."""
    pn = np.fft.fft2(np.fft.ifftshift(p_new))
    pr = np.fft.fft2(np.fft.ifftshift(p_ref))
    an, ar = np.abs(pn) ** 2, np.abs(pr) ** 2
    denom = var_new * ar + var_ref_scaled * an
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(denom > 0, an * ar / denom, 0.0)
    return float(term.sum() / p_new.size)


def ideal_snr(
    flux: float,
    psf_new: np.ndarray,
    psf_ref: np.ndarray,
    sigma_new: float,
    sigma_ref: float,
    flux_ratio: float = 1.0,
) -> float:
    """ZOGY ideal S/N of a point-source flux change (see the module docstring).

    Parameters
    ----------
    flux : float
        Flux change in ADU of the new image.
    psf_new, psf_ref : numpy.ndarray
        Unit-sum PSFs of the new and reference images on the new pixel grid, same odd shape,
        centred.
    sigma_new, sigma_ref : float
        Background noise per pixel of each image in its own ADU.
    flux_ratio : float
        ``F_n / F_r``, new over reference photometric scale.

    Returns
    -------
    float
        The S/N (≥ 0).
    """
    if psf_new.shape != psf_ref.shape:
        raise SimulationError(f"PSF shapes differ: {psf_new.shape} vs {psf_ref.shape}")
    pn = psf_new / psf_new.sum()
    pr = psf_ref / psf_ref.sum()
    s2 = _fft_snr2_per_flux2(pn, pr, sigma_new**2, (flux_ratio * sigma_ref) ** 2)
    return float(abs(flux) * math.sqrt(s2))


def _weighted_var(var: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> float:
    """PSF²-weighted mean of ``var`` under ``stamp`` placed at (x0, y0)."""
    ny, nx = var.shape
    sy, sx = stamp.shape
    ya, yb = max(y0, 0), min(y0 + sy, ny)
    xa, xb = max(x0, 0), min(x0 + sx, nx)
    if ya >= yb or xa >= xb:
        return float("nan")
    w = stamp[ya - y0 : yb - y0, xa - x0 : xb - x0] ** 2
    return float((w * var[ya:yb, xa:xb]).sum() / w.sum())


def _galaxy_catalog(
    rng: np.random.Generator,
    wcs: WCS,
    shape: tuple[int, int],
    n: int,
    flux_range: tuple[float, float],
    radius_range: tuple[float, float],
    edge: float,
) -> Table:
    """Random static galaxies on the reference grid (see :func:`simulate_pair`)."""
    ny, nx = shape
    xs = rng.uniform(edge, nx - 1 - edge, n)
    ys = rng.uniform(edge, ny - 1 - edge, n)
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    return Table(
        {
            "ra": np.atleast_1d(ra) % 360.0,
            "dec": np.atleast_1d(dec),
            "flux": np.exp(rng.uniform(math.log(flux_range[0]), math.log(flux_range[1]), n)),
            "r_eff": rng.uniform(*radius_range, n),
            "ellipticity": rng.uniform(0.0, 0.6, n),
            "angle": rng.uniform(0.0, 180.0, n),
        }
    )


def _hosted_positions(
    rng: np.random.Generator,
    wcs_new: WCS,
    stars: Table,
    galaxies: Table,
    n_on_galaxies: int,
    n_on_stars: int,
    star_offsets: tuple[float, float],
) -> list[tuple[tuple[float, float], str]]:
    """New-grid positions of transients on galaxies and next to bright stars."""
    out: list[tuple[tuple[float, float], str]] = []
    if n_on_galaxies > 0:
        if not len(galaxies):
            raise SimulationError("transients on galaxies need n_galaxies > 0")
        for i in rng.integers(0, len(galaxies), n_on_galaxies):
            g = galaxies[int(i)]
            gx, gy = wcs_new.world_to_pixel_values(float(g["ra"]), float(g["dec"]))
            r, a = rng.uniform(0.0, 1.5) * float(g["r_eff"]), rng.uniform(0, 2 * math.pi)
            out.append(((float(gx) + r * math.cos(a), float(gy) + r * math.sin(a)), "galaxy"))
    if n_on_stars > 0:
        bright = np.flatnonzero(stars["flux"] >= np.quantile(stars["flux"], 0.75))
        for i in rng.choice(bright, size=n_on_stars, replace=len(bright) < n_on_stars):
            sx, sy = wcs_new.world_to_pixel_values(float(stars["ra"][i]), float(stars["dec"][i]))
            r, a = rng.uniform(*star_offsets), rng.uniform(0, 2 * math.pi)
            out.append(((float(sx) + r * math.cos(a), float(sy) + r * math.sin(a)), "star"))
    return out


def simulate_pair(
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 200,
    seed: int | np.random.Generator | None = None,
    *,
    new: Exposure | None = None,
    ref: Exposure | None = None,
    n_transients: int = 5,
    transient_positions: Sequence[tuple[float, float]] | None = None,
    transient_fluxes: Sequence[float] | None = None,
    transient_flux_range: tuple[float, float] = (300.0, 5000.0),
    n_variables: int = 0,
    variable_fraction: tuple[float, float] = (0.3, 1.0),
    n_moving: int = 0,
    moving_distance: tuple[float, float] = (8.0, 30.0),
    moving_flux_range: tuple[float, float] = (500.0, 5000.0),
    flux_range: tuple[float, float] = (100.0, 3.0e5),
    flux_slope: float = 1.0,
    edge: int = 12,
    ra: float = 150.0,
    dec: float = 2.0,
    pixel_scale: float = 0.5,
    n_galaxies: int = 0,
    galaxy_flux_range: tuple[float, float] = (2000.0, 30000.0),
    galaxy_radius_range: tuple[float, float] = (1.5, 5.0),
    n_host_transients: int = 0,
    n_star_transients: int = 0,
    star_offset_range: tuple[float, float] = (0.5, 2.5),
    n_streaks: int = 0,
    streak_dotted_fraction: float = 0.5,
    streak_spacing_range: tuple[float, float] = (8.0, 40.0),
    streak_flux_range: tuple[float, float] = (300.0, 5000.0),
) -> SimulatedPair:
    """Simulate a reference and a new epoch of one field with injected changes.

    Both epochs see the same star catalogue (catalogue fluxes scaled by each exposure's
    ``flux_scale``), rendered with each exposure's PSF, sky, noise and pointing
    (``Exposure.offset``/``rotation``; the reference pointing defines the catalogue frame).

    Parameters
    ----------
    shape : tuple of int
        Shape (ny, nx) of both images.
    n_stars : int
        Number of stars over the field.
    seed : int or numpy.random.Generator, optional
        Random seed.
    new, ref : Exposure, optional
        Conditions of each epoch. Defaults: new = FWHM 3.5 px Gaussian, offset (0, 0);
        ref = FWHM 2.5 px Gaussian, sky 1000 e-, ``mjd`` 30 days earlier.
    n_transients : int
        Number of new point sources at random positions (ignored if positions are given).
    transient_positions : sequence of (x, y), optional
        Pixel positions in the new image.
    transient_fluxes : sequence of float, optional
        Their fluxes in ADU of the new image (default: log-uniform in
        ``transient_flux_range``).
    transient_flux_range : tuple of float
        ADU of the new image.
    n_variables : int
        Number of existing stars whose flux changes.
    variable_fraction : tuple of float
        Range of ``|ΔF|/F`` for variables; the sign is random (ΔF ≥ -F·0.9).
    n_moving : int
        Number of moving objects (present in both epochs at different positions).
    moving_distance : tuple of float
        Range of their displacement between epochs in pixels.
    moving_flux_range : tuple of float
        ADU of the new image.
    flux_range, flux_slope :
        Star flux distribution (see :func:`simulate_star_field`).
    edge : int
        Minimum distance in pixels of injected objects from the borders of both images.
    ra, dec, pixel_scale :
        Pointing (degrees) and scale (arcsec/px) of the reference.
    n_galaxies : int
        Static faint galaxies (exponential disks, PSF-convolved in each epoch).
    galaxy_flux_range, galaxy_radius_range : tuple of float
        Log-uniform catalogue flux (ADU) and uniform half-light radius (px) of the galaxies.
    n_host_transients : int
        Transients placed on galaxies, within 1.5 half-light radii of a centre (needs
        ``n_galaxies > 0``); truth ``host`` = 'galaxy'.
    n_star_transients : int
        Transients placed ``star_offset_range`` px from one of the brighter quarter of the
        stars; truth ``host`` = 'star'.
    star_offset_range : tuple of float
        Their distance from the star in pixels.
    n_streaks : int
        Satellite trails crossing the new image from border to border
        (:func:`~astrid.science.simulate_effects.satellite_trail`); truth ``kind`` =
        'streak', one row per spot of light, ``epoch`` 'new', ``trail`` = the trail's number.
    streak_dotted_fraction : float
        Probability that a trail is dotted (a glinting satellite: spots ``streak_spacing_range``
        px apart, uniform); otherwise it is continuous (spots 0.5 px apart).
    streak_spacing_range : tuple of float
        Spacing of the spots of a dotted trail, pixels.
    streak_flux_range : tuple of float
        Log-uniform flux (ADU of the new image) per spot of a dotted trail, or per PSF
        FWHM of length of a continuous one (the same for every spot of one trail).

    Returns
    -------
    SimulatedPair
        ``truth`` columns: ``id``, ``kind`` ('transient', 'variable', 'moving',
        'cosmic_ray'), ``epoch`` ('new', 'ref' or 'both': where the object is seen),
        ``ra``, ``dec`` (deg, new-epoch position), ``x_new``, ``y_new``, ``x_ref``, ``y_ref``
        (px; for a moving object its position in each epoch; NaN where not applicable),
        ``flux`` (ADU of the new image, at the new epoch), ``flux_ref`` (ADU of the reference
        image at the reference epoch), ``delta_flux`` (new minus reference, in ADU of the new
        image, i.e. ``flux - flux_ref * F_n / F_r``; for a moving object the flux appearing at
        the new position), ``mag`` (of ``|delta_flux|`` with the new ``MAGZERO``),
        ``ideal_snr`` and ``ideal_snr_local`` (see the module docstring; NaN for cosmic rays),
        ``host`` ('galaxy', 'star' or '' for a transient on empty sky and other kinds),
        ``trail`` (the streak's number, -1 for other kinds).
    """
    shape = _check_shape(shape)
    ny, nx = shape
    rng = np.random.default_rng(seed)
    new = new or Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0)
    ref = ref or Exposure(psf=AnalyticPSF(fwhm=2.5), mjd=60000.0)
    ratio = new.flux_scale / ref.flux_scale
    wcs_ref = make_wcs(shape, ra, dec, pixel_scale, ref.rotation, ref.offset)
    wcs_new = make_wcs(shape, ra, dec, pixel_scale, new.rotation, new.offset)
    margin = (
        float(max(new.psf.radius, ref.psf.radius))
        + float(np.hypot(*np.subtract(new.offset, ref.offset)))
        + abs(new.rotation - ref.rotation) * math.pi / 180.0 * max(shape)
    )
    stars = _star_catalog(rng, wcs_ref, shape, n_stars, flux_range, flux_slope, margin)
    stars_ref = stars.copy()
    stars_new = stars.copy()

    def usable(xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
        xr, yr = wcs_ref.world_to_pixel_values(*wcs_new.pixel_to_world_values(xn, yn))
        ok = (xn >= edge) & (xn <= nx - 1 - edge) & (yn >= edge) & (yn <= ny - 1 - edge)
        ok &= (xr >= edge) & (xr <= nx - 1 - edge) & (yr >= edge) & (yr <= ny - 1 - edge)
        return np.asarray(ok)

    rows: list[dict[str, Any]] = []
    new_extra: list[tuple[float, float, float]] = []  # ra, dec, catalogue flux
    ref_extra: list[tuple[float, float, float]] = []

    # transients
    if transient_positions is not None:
        pos = np.asarray(transient_positions, dtype=float).reshape(-1, 2)
    else:
        pos = np.empty((0, 2))
        while len(pos) < n_transients:
            cand = np.column_stack(
                [
                    rng.uniform(edge, nx - 1 - edge, 4 * n_transients + 4),
                    rng.uniform(edge, ny - 1 - edge, 4 * n_transients + 4),
                ]
            )
            cand = cand[usable(cand[:, 0], cand[:, 1])]
            pos = np.vstack([pos, cand])[:n_transients]
    if transient_fluxes is not None:
        tflux = np.asarray(transient_fluxes, dtype=float)
        if len(tflux) != len(pos):
            raise SimulationError(
                f"{len(tflux)} transient fluxes for {len(pos)} transient positions"
            )
    else:
        lo, hi = transient_flux_range
        tflux = np.exp(rng.uniform(math.log(lo), math.log(hi), len(pos)))
    for (xt, yt), ft in zip(pos, tflux, strict=True):
        rat, dect = wcs_new.pixel_to_world_values(xt, yt)
        new_extra.append((float(rat), float(dect), float(ft) / new.flux_scale))
        rows.append(
            {
                "kind": "transient",
                "epoch": "new",
                "ra": float(rat),
                "dec": float(dect),
                "flux": float(ft),
                "flux_ref": 0.0,
                "delta_flux": float(ft),
            }
        )

    galaxies = _galaxy_catalog(
        rng, wcs_ref, shape, n_galaxies, galaxy_flux_range, galaxy_radius_range, float(edge)
    )
    hosted = _hosted_positions(
        rng, wcs_new, stars, galaxies, n_host_transients, n_star_transients, star_offset_range
    )
    lo, hi = transient_flux_range
    for (xt, yt), host in hosted:
        if not usable(np.array([xt]), np.array([yt]))[0]:
            continue
        ft = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
        rat, dect = wcs_new.pixel_to_world_values(xt, yt)
        new_extra.append((float(rat), float(dect), ft / new.flux_scale))
        rows.append(
            {
                "kind": "transient",
                "epoch": "new",
                "ra": float(rat),
                "dec": float(dect),
                "flux": ft,
                "flux_ref": 0.0,
                "delta_flux": ft,
                "host": host,
            }
        )

    # variable stars: change the new-epoch flux of existing stars
    if n_variables > 0:
        xs, ys = wcs_new.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
        cand_idx = np.flatnonzero(usable(np.atleast_1d(xs), np.atleast_1d(ys)))
        if len(cand_idx) < n_variables:
            raise SimulationError(
                f"only {len(cand_idx)} stars can be variables, {n_variables} requested",
                hint="increase n_stars or reduce edge",
            )
        chosen = rng.choice(cand_idx, size=n_variables, replace=False)
        for i in chosen:
            f0 = float(stars["flux"][i])
            frac = rng.uniform(*variable_fraction) * (1 if rng.uniform() < 0.5 else -1)
            frac = max(frac, -0.9)
            stars_new["flux"][i] = f0 * (1 + frac)
            rows.append(
                {
                    "kind": "variable",
                    "epoch": "both",
                    "ra": float(stars["ra"][i]),
                    "dec": float(stars["dec"][i]),
                    "flux": f0 * (1 + frac) * new.flux_scale,
                    "flux_ref": f0 * ref.flux_scale,
                    "delta_flux": f0 * frac * new.flux_scale,
                }
            )

    # moving objects: at one place in the reference, another in the new image
    for _ in range(n_moving):
        for _try in range(1000):
            xn, yn = rng.uniform(edge, nx - 1 - edge), rng.uniform(edge, ny - 1 - edge)
            d = rng.uniform(*moving_distance)
            ang = rng.uniform(0, 2 * math.pi)
            xo, yo = xn - d * math.cos(ang), yn - d * math.sin(ang)  # earlier position, new grid
            if usable(np.array([xn, xo]), np.array([yn, yo])).all():
                break
        else:  # pragma: no cover - only for absurd edge/shape combinations
            raise SimulationError("no room for a moving object", hint="reduce edge")
        fm = float(np.exp(rng.uniform(*np.log(moving_flux_range))))
        ran, decn = wcs_new.pixel_to_world_values(xn, yn)
        rao, deco = wcs_new.pixel_to_world_values(xo, yo)
        new_extra.append((float(ran), float(decn), fm / new.flux_scale))
        ref_extra.append((float(rao), float(deco), fm / new.flux_scale))
        rows.append(
            {
                "kind": "moving",
                "epoch": "both",
                "ra": float(ran),
                "dec": float(decn),
                "ra_ref": float(rao),
                "dec_ref": float(deco),
                "flux": fm,
                "flux_ref": fm / ratio,
                "delta_flux": fm,
            }
        )

    # satellite trails: spots of light in the new image only
    streak_spots: list[tuple[int, float, float]] = []  # trail number, x, y (new grid)
    for s_ in range(n_streaks):
        dotted = rng.uniform() < streak_dotted_fraction
        spacing = rng.uniform(*streak_spacing_range) if dotted else 0.5
        per = float(np.exp(rng.uniform(*np.log(streak_flux_range))))
        if not dotted:  # flux per FWHM of length spread over the spots of that length
            per *= spacing / float(new.psf.fwhm)
        for xs_, ys_ in satellite_trail(rng, shape, float(edge), spacing):
            rs_, ds_ = wcs_new.pixel_to_world_values(xs_, ys_)
            new_extra.append((float(rs_), float(ds_), per / new.flux_scale))
            streak_spots.append((s_, float(xs_), float(ys_)))

    def with_extra(base: Table, extra: list[tuple[float, float, float]]) -> Table:
        out = base.copy()
        out["injected"] = np.zeros(len(out), dtype=bool)
        for r_, d_, f_ in extra:
            out.add_row((r_, d_, f_, True))
        return out

    gal = galaxies if len(galaxies) else None
    new_img, cr_new = _render(rng, shape, new, wcs_new, with_extra(stars_new, new_extra), gal)
    ref_img, cr_ref = _render(rng, shape, ref, wcs_ref, with_extra(stars_ref, ref_extra), gal)

    # truth positions and ideal S/N
    truth_rows = []
    sig_n, sig_r = new.noise_sigma, ref.noise_sigma
    rot = new.rotation - ref.rotation
    for k, row in enumerate(rows):
        xn, yn = wcs_new.world_to_pixel_values(row["ra"], row["dec"])
        ra_r = row.get("ra_ref", row["ra"])
        dec_r = row.get("dec_ref", row["dec"])
        xr, yr = wcs_ref.world_to_pixel_values(ra_r, dec_r)
        radius = max(new.psf.radius, ref.psf.radius)
        pn, x0, y0 = new.psf.stamp(float(xn), float(yn), shape, radius=radius)
        # reference PSF at the reference position, rotated onto the new grid
        fwhm_r = ref.psf.fwhm_at(float(xr), float(yr), shape)
        ref_psf_here = replace(ref.psf, fwhm=fwhm_r, fwhm_gradient=(0.0, 0.0)).rotated(rot)
        pr, _, _ = ref_psf_here.stamp(float(xn), float(yn), shape, radius=radius)
        s2 = _fft_snr2_per_flux2(pn, pr, sig_n**2, (ratio * sig_r) ** 2)
        vn = _weighted_var(new_img.variance, pn, x0, y0)
        pr_r, xr0, yr0 = ref_psf_here.stamp(float(xr), float(yr), shape, radius=radius)
        vr = _weighted_var(ref_img.variance, pr_r, xr0, yr0)
        s2l = _fft_snr2_per_flux2(pn, pr, vn, ratio**2 * vr)
        df = float(row["delta_flux"])
        truth_rows.append(
            {
                "id": k,
                "kind": row["kind"],
                "epoch": row["epoch"],
                "ra": float(row["ra"]),
                "dec": float(row["dec"]),
                "x_new": float(xn),
                "y_new": float(yn),
                "x_ref": float(xr),
                "y_ref": float(yr),
                "flux": float(row["flux"]),
                "flux_ref": float(row["flux_ref"]),
                "delta_flux": df,
                "mag": new.magzero - 2.5 * math.log10(abs(df)) if df != 0 else float("nan"),
                "ideal_snr": abs(df) * math.sqrt(s2),
                "ideal_snr_local": abs(df) * math.sqrt(s2l),
                "host": str(row.get("host", "")),
                "trail": -1,
            }
        )
    nan = float("nan")
    for epoch, crs, img in (("new", cr_new, new_img), ("ref", cr_ref, ref_img)):
        for c in crs:
            rac, decc = img.wcs.pixel_to_world_values(c["x"], c["y"])
            truth_rows.append(
                {
                    "id": len(truth_rows),
                    "kind": "cosmic_ray",
                    "epoch": epoch,
                    "ra": float(rac),
                    "dec": float(decc),
                    "x_new": float(c["x"]) if epoch == "new" else nan,
                    "y_new": float(c["y"]) if epoch == "new" else nan,
                    "x_ref": float(c["x"]) if epoch == "ref" else nan,
                    "y_ref": float(c["y"]) if epoch == "ref" else nan,
                    "flux": float(c["flux"]) if epoch == "new" else 0.0,
                    "flux_ref": float(c["flux"]) if epoch == "ref" else 0.0,
                    "delta_flux": nan,
                    "mag": nan,
                    "ideal_snr": nan,
                    "ideal_snr_local": nan,
                    "host": "",
                    "trail": -1,
                }
            )
    for s_, xs_, ys_ in streak_spots:
        rs_, ds_ = wcs_new.pixel_to_world_values(xs_, ys_)
        xr_, yr_ = wcs_ref.world_to_pixel_values(rs_, ds_)
        truth_rows.append(
            {
                "id": len(truth_rows),
                "kind": "streak",
                "epoch": "new",
                "ra": float(rs_),
                "dec": float(ds_),
                "x_new": xs_,
                "y_new": ys_,
                "x_ref": float(xr_),
                "y_ref": float(yr_),
                "flux": nan,
                "flux_ref": 0.0,
                "delta_flux": nan,
                "mag": nan,
                "ideal_snr": nan,
                "ideal_snr_local": nan,
                "host": "",
                "trail": s_,
            }
        )
    names = [
        "id",
        "kind",
        "epoch",
        "ra",
        "dec",
        "x_new",
        "y_new",
        "x_ref",
        "y_ref",
        "flux",
        "flux_ref",
        "delta_flux",
        "mag",
        "ideal_snr",
        "ideal_snr_local",
        "host",
        "trail",
    ]
    dtypes = [int, "U10", "U4"] + [float] * 12 + ["U6", int]
    truth = Table(
        rows=[[r[n] for n in names] for r in truth_rows] or None, names=names, dtype=dtypes
    )
    truth.meta["flux_units"] = "ADU of the new image"
    truth.meta["flux_ratio"] = ratio
    return SimulatedPair(new=new_img, ref=ref_img, truth=truth, galaxies=galaxies)
