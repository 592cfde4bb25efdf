"""Drawing one simulated exposure: stars, sky, noise and detector defects on a pixel grid.

:func:`simulate_star_field` renders stars from a power-law flux distribution (catalogue
fluxes in ADU) convolved with an :class:`~astrid.science.simulate_model.AnalyticPSF`, a flat
or tilted sky, Poisson + read noise, saturation, cosmic rays and bad columns, with a TAN WCS;
the shared renderer :func:`_render` also draws galaxies for
:func:`astrid.science.simulate.simulate_pair`. :func:`write_simulated` writes an image to
FITS with ``VARIANCE`` (ADU²) and ``MASK`` extensions. Images have shape (ny, nx), ADU, sky
included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from astrid.science.simulate_effects import bleed_columns, galaxy_stamp
from astrid.science.simulate_model import (
    AnalyticPSF,
    Exposure,
    SimulatedImage,
    SimulationError,
    make_wcs,
)

__all__ = ["simulate_star_field", "write_simulated"]


def _power_law_fluxes(
    rng: np.random.Generator, n: int, flux_range: tuple[float, float], slope: float
) -> np.ndarray:
    """Draw ``n`` fluxes with N(>F) ∝ F^-slope truncated to ``flux_range``."""
    lo, hi = flux_range
    if not (0 < lo < hi):
        raise SimulationError(f"flux_range={flux_range} must satisfy 0 < min < max (ADU)")
    u = rng.uniform(size=n)
    if slope == 0:
        return np.asarray(lo * (hi / lo) ** u)
    a, b = lo**-slope, hi**-slope
    return np.asarray((a - u * (a - b)) ** (-1.0 / slope))


def _bad_columns(rng: np.random.Generator, spec: int | Sequence[int], nx: int) -> list[int]:
    if isinstance(spec, int | np.integer):
        return sorted(rng.choice(nx, size=min(int(spec), nx), replace=False).tolist())
    return [int(c) for c in spec if 0 <= int(c) < nx]


def _add_stamp(img: np.ndarray, stamp: np.ndarray, x0: int, y0: int, scale: float) -> None:
    ny, nx = img.shape
    sy, sx = stamp.shape
    ya, yb = max(y0, 0), min(y0 + sy, ny)
    xa, xb = max(x0, 0), min(x0 + sx, nx)
    if ya >= yb or xa >= xb:
        return
    img[ya:yb, xa:xb] += scale * stamp[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _sky_map(exposure: Exposure, shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    gx, gy = exposure.sky_gradient
    fx = 2.0 * np.arange(nx) / max(nx - 1, 1) - 1.0
    fy = 2.0 * np.arange(ny) / max(ny - 1, 1) - 1.0
    return exposure.sky * (1.0 + gx * fx[None, :] + gy * fy[:, None])


def _render(
    rng: np.random.Generator,
    shape: tuple[int, int],
    exposure: Exposure,
    wcs: WCS,
    sources: Table,
    galaxies: Table | None = None,
) -> tuple[SimulatedImage, Table]:
    """Render point sources (``ra``, ``dec``, catalogue ``flux``) and galaxies (also
    ``r_eff`` px, ``ellipticity``, ``angle`` deg on the reference grid) into one exposure."""
    ny, nx = shape
    x, y = wcs.world_to_pixel_values(np.asarray(sources["ra"]), np.asarray(sources["dec"]))
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    flux = np.asarray(sources["flux"], dtype=float) * exposure.flux_scale
    r = exposure.psf.radius
    inside = (x > -r) & (x < nx - 1 + r) & (y > -r) & (y < ny - 1 + r) & (flux > 0)
    model = np.zeros(shape)
    for xi, yi, fi in zip(x[inside], y[inside], flux[inside], strict=True):
        stamp, x0, y0 = exposure.psf.stamp(float(xi), float(yi), shape)
        _add_stamp(model, stamp, x0, y0, fi)
    for g in galaxies if galaxies is not None else []:
        gx, gy = wcs.world_to_pixel_values(float(g["ra"]), float(g["dec"]))
        kern = exposure.psf.kernel(None, float(gx), float(gy), shape)
        angle = float(g["angle"]) + exposure.rotation
        gal, x0, y0 = galaxy_stamp(
            float(gx), float(gy), float(g["r_eff"]), float(g["ellipticity"]), angle, kern
        )
        _add_stamp(model, gal, x0, y0, float(g["flux"]) * exposure.flux_scale)
    model_e = model * exposure.gain + _sky_map(exposure, shape)
    counts = rng.poisson(np.clip(model_e, 0, None)).astype(float)
    counts += rng.normal(0.0, exposure.read_noise, size=shape)
    # cosmic rays: short straight tracks of a few pixels, not blurred by the PSF
    crmask = np.zeros(shape, dtype=bool)
    cr_rows: list[tuple[float, float, float]] = []
    for _ in range(int(exposure.cosmic_rays)):
        length = int(rng.integers(1, 7))
        cx, cy = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        ang = rng.uniform(0, math.pi)
        total = 0.0
        for k in range(length):
            px = int(round(cx + k * math.cos(ang)))
            py = int(round(cy + k * math.sin(ang)))
            if 0 <= px < nx and 0 <= py < ny:
                dep = float(rng.uniform(30.0, 150.0) * exposure.noise_sigma * exposure.gain)
                counts[py, px] += dep
                crmask[py, px] = True
                total += dep
        cr_rows.append((cx, cy, total / exposure.gain))
    data = counts / exposure.gain
    variance = (np.clip(model_e, 0, None) + exposure.read_noise**2) / exposure.gain**2
    mask = np.zeros(shape, dtype=bool)
    if exposure.bleed:
        sat = bleed_columns(data, exposure.saturation)
    else:
        sat = data >= exposure.saturation
    data[data >= exposure.saturation] = exposure.saturation
    mask |= sat
    for col in _bad_columns(rng, exposure.bad_columns, nx):
        data[:, col] = 0.0
        mask[:, col] = True
    header = fits.Header()
    header.update(wcs.to_header())
    header["BUNIT"] = ("adu", "image units")
    header["GAIN"] = (exposure.gain, "e-/ADU")
    header["RDNOISE"] = (exposure.read_noise, "read noise, e-")
    header["SATURATE"] = (exposure.saturation, "saturation level, ADU")
    header["EXPTIME"] = (exposure.exptime, "s")
    header["MJD-OBS"] = (exposure.mjd, "MJD (UTC) of exposure start")
    header["FILTER"] = (exposure.filter, "band")
    header["MAGZERO"] = (exposure.magzero, "mag = MAGZERO - 2.5 log10(ADU)")
    header["SKYLEVEL"] = (exposure.sky / exposure.gain, "sky at centre, ADU")
    header["SEEING"] = (exposure.psf.fwhm, "PSF FWHM at centre, px")
    header["TELESCOP"] = ("AstrID-sim", "simulated by astrid.science.simulate")
    peak_sat = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(inside):
        ix, iy = int(round(x[i])), int(round(y[i]))
        if 0 <= ix < nx and 0 <= iy < ny:
            peak_sat[i] = bool(sat[iy, ix])
    with np.errstate(divide="ignore"):
        mags = exposure.magzero - 2.5 * np.log10(flux)
    stars = Table(
        {
            "ra": np.asarray(sources["ra"], dtype=float),
            "dec": np.asarray(sources["dec"], dtype=float),
            "x": x,
            "y": y,
            "flux": flux,
            "mag": mags,
            "saturated": peak_sat,
        }
    )
    keep = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    if "injected" in sources.colnames:
        keep &= ~np.asarray(sources["injected"], dtype=bool)
    stars = stars[keep]
    cr = Table(rows=cr_rows, names=("x", "y", "flux"), dtype=(float, float, float))
    image = SimulatedImage(
        data=data.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        cosmic_ray_mask=crmask,
        wcs=wcs,
        header=header,
        psf=exposure.psf,
        exposure=exposure,
        stars=stars,
        model=(model + _sky_map(exposure, shape) / exposure.gain).astype(np.float32),
    )
    return image, cr


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 16:
        raise SimulationError(f"shape={shape} must be (ny, nx) with both >= 16 pixels")
    return int(shape[0]), int(shape[1])


def _star_catalog(
    rng: np.random.Generator,
    wcs: WCS,
    shape: tuple[int, int],
    n_stars: int,
    flux_range: tuple[float, float],
    flux_slope: float,
    margin: float,
) -> Table:
    ny, nx = shape
    xs = rng.uniform(-margin, nx - 1 + margin, size=n_stars)
    ys = rng.uniform(-margin, ny - 1 + margin, size=n_stars)
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    flux = _power_law_fluxes(rng, n_stars, flux_range, flux_slope)
    return Table({"ra": np.atleast_1d(ra) % 360.0, "dec": np.atleast_1d(dec), "flux": flux})


def simulate_star_field(
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 200,
    seed: int | np.random.Generator | None = None,
    *,
    psf: AnalyticPSF | None = None,
    sky: float = 1000.0,
    gain: float = 2.0,
    read_noise: float = 5.0,
    saturation: float = 60000.0,
    zeropoint: float = 25.0,
    exptime: float = 60.0,
    mjd: float = 60000.0,
    filter: str = "r",
    flux_range: tuple[float, float] = (100.0, 3.0e5),
    flux_slope: float = 1.0,
    cosmic_rays: int = 0,
    bad_columns: int | Sequence[int] = 0,
    sky_gradient: tuple[float, float] = (0.0, 0.0),
    ra: float = 150.0,
    dec: float = 2.0,
    pixel_scale: float = 0.5,
    rotation: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    catalog: Table | None = None,
) -> SimulatedImage:
    """Simulate one star-field exposure.

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx) in pixels.
    n_stars : int
        Number of stars drawn over the image (plus a margin of one PSF radius).
    seed : int or numpy.random.Generator, optional
        Random seed; the same seed gives the same image.
    psf : AnalyticPSF, optional
        PSF (default: Gaussian, FWHM 3 px).
    sky : float
        Sky in electrons per pixel.
    gain, read_noise, saturation : float
        e-/ADU, e-, ADU.
    zeropoint : float
        mag of 1 ADU.
    exptime, mjd, filter :
        Header values.
    flux_range : tuple of float
        Smallest and largest star flux in ADU.
    flux_slope : float
        Power-law slope of the cumulative counts, N(>F) ∝ F^-slope.
    cosmic_rays : int
        Number of cosmic-ray tracks.
    bad_columns : int or sequence of int
        Number (or x indices) of dead columns.
    sky_gradient : tuple of float
        Fractional sky change from centre to the right / top edge.
    ra, dec : float
        Pointing in degrees.
    pixel_scale : float
        Arcsec per pixel.
    rotation : float
        Degrees.
    offset : tuple of float
        Pixels.
    catalog : astropy.table.Table, optional
        Use these stars (``ra``, ``dec`` in degrees, ``flux`` in ADU) instead of drawing
        ``n_stars``; e.g. ``other.stars`` to observe the same field again with new noise,
        pointing or PSF.

    Returns
    -------
    SimulatedImage
    """
    shape = _check_shape(shape)
    rng = np.random.default_rng(seed)
    exposure = Exposure(
        psf=psf or AnalyticPSF(),
        sky=sky,
        gain=gain,
        read_noise=read_noise,
        saturation=saturation,
        zeropoint=zeropoint,
        exptime=exptime,
        mjd=mjd,
        filter=filter,
        cosmic_rays=cosmic_rays,
        bad_columns=bad_columns,
        sky_gradient=sky_gradient,
        offset=offset,
        rotation=rotation,
    )
    wcs = make_wcs(shape, ra, dec, pixel_scale, rotation, offset)
    if catalog is None:
        catalog = _star_catalog(
            rng, wcs, shape, n_stars, flux_range, flux_slope, float(exposure.psf.radius)
        )
    else:
        catalog = Table(
            {
                "ra": np.asarray(catalog["ra"], dtype=float),
                "dec": np.asarray(catalog["dec"], dtype=float),
                "flux": np.asarray(catalog["flux"], dtype=float),
            }
        )
    image, _ = _render(rng, shape, exposure, wcs, catalog)
    return image


def write_simulated(
    image: SimulatedImage, path: str | Path | None = None, *, extensions: bool = True
) -> bytes:
    """Write a simulated image to FITS.

    Parameters
    ----------
    image : SimulatedImage
        The image.
    path : str or pathlib.Path, optional
        Where to write; the bytes are returned either way.
    extensions : bool
        Also write ``VARIANCE`` (ADU², float32) and ``MASK`` (uint8, 1 = excluded) extensions.

    Returns
    -------
    bytes
        The FITS file. The primary HDU holds the data (ADU) and the full header.
    """
    from astrid.science.fitsio import write_image

    extra: list[fits.ImageHDU] = []
    if extensions:
        extra = [
            fits.ImageHDU(image.variance, name="VARIANCE"),
            fits.ImageHDU(image.mask.astype(np.uint8), name="MASK"),
        ]
    return write_image(path, image.data, header=image.header, extra_hdus=extra)
