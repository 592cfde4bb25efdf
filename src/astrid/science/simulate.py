"""Simulated star fields and image pairs with known truth, for tests and benchmarks.

Two entry points:

* :func:`simulate_star_field` renders one image: stars from a power-law flux distribution
  convolved with a (possibly elliptical, spatially varying) Gaussian or Moffat PSF, a flat or
  tilted sky, Poisson + read noise, saturation, cosmic rays and bad columns, with a TAN WCS.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from astrid.errors import AstridError
from astrid.science.simulate_effects import bleed_columns, galaxy_stamp
from astrid.science.stats import FWHM_PER_SIGMA

__all__ = [
    "AnalyticPSF",
    "Exposure",
    "SimulatedImage",
    "SimulatedPair",
    "SimulationError",
    "ideal_snr",
    "make_wcs",
    "simulate_pair",
    "simulate_star_field",
    "write_simulated",
]

_OVERSAMPLE = 5


class SimulationError(AstridError):
    """The simulation parameters are inconsistent (negative noise, empty field, ...)."""


@dataclass(frozen=True)
class AnalyticPSF:
    """An analytic point-spread function.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in pixels at the image centre; for an elliptical PSF the
        geometric mean ``sqrt(fwhm_major * fwhm_minor)``.
    beta : float or None
        Moffat index; ``None`` for a Gaussian.
    ellipticity : float
        ``1 - b/a`` (0 = round).
    angle : float
        Position angle of the major axis in degrees, counter-clockwise from +x.
    fwhm_gradient : tuple of float
        Fractional change of the FWHM from the image centre to its right edge (x) and top edge
        (y): ``fwhm(x, y) = fwhm * (1 + gx * (2x/(nx-1) - 1) + gy * (2y/(ny-1) - 1))``.
    """

    fwhm: float = 3.0
    beta: float | None = None
    ellipticity: float = 0.0
    angle: float = 0.0
    fwhm_gradient: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not (self.fwhm > 0.3):
            raise SimulationError(f"PSF fwhm={self.fwhm} px is too small (need > 0.3 px)")
        if self.beta is not None and not (self.beta > 1.0):
            raise SimulationError(f"Moffat beta={self.beta} must be > 1")
        if not (0.0 <= self.ellipticity < 0.9):
            raise SimulationError(f"ellipticity={self.ellipticity} must be in [0, 0.9)")

    def fwhm_at(self, x: float, y: float, shape: tuple[int, int]) -> float:
        """FWHM in pixels at pixel ``(x, y)`` of an image of ``shape`` (ny, nx)."""
        ny, nx = shape
        gx, gy = self.fwhm_gradient
        fx = 2.0 * x / max(nx - 1, 1) - 1.0
        fy = 2.0 * y / max(ny - 1, 1) - 1.0
        return float(self.fwhm * max(1.0 + gx * fx + gy * fy, 0.1))

    @property
    def radius(self) -> int:
        """Stamp half-size in pixels used when rendering (covers > 99.7 % of the flux)."""
        major = (
            self.fwhm / math.sqrt(1.0 - self.ellipticity) * (1 + sum(map(abs, self.fwhm_gradient)))
        )
        factor = 2.5 if self.beta is None else 6.0
        return max(int(math.ceil(factor * major)), 4)

    def _profile(self, dx: np.ndarray, dy: np.ndarray, fwhm: float) -> np.ndarray:
        q = math.sqrt(1.0 - self.ellipticity)
        theta = math.radians(self.angle)
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        fa, fb = fwhm / q, fwhm * q
        if self.beta is None:
            sa, sb = fa / FWHM_PER_SIGMA, fb / FWHM_PER_SIGMA
            return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))
        k = 2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0)
        aa, ab = fa / k, fb / k
        return (1.0 + (u / aa) ** 2 + (v / ab) ** 2) ** (-self.beta)

    def stamp(
        self, x: float, y: float, shape: tuple[int, int], radius: int | None = None
    ) -> tuple[np.ndarray, int, int]:
        """Render the unit-sum PSF of a point source at pixel ``(x, y)``.

        Parameters
        ----------
        x, y : float
            Source position in pixels (0-based) of an image of ``shape``.
        shape : tuple of int
            Image shape (ny, nx); sets the position-dependent FWHM.
        radius : int, optional
            Stamp half-size in pixels (default :attr:`radius`).

        Returns
        -------
        stamp : numpy.ndarray
            Shape (2r+1, 2r+1), float64, sums to 1.
        x0, y0 : int
            Image pixel of the stamp's ``[0, 0]`` element.
        """
        r = self.radius if radius is None else int(radius)
        ix, iy = int(round(x)), int(round(y))
        fwhm = self.fwhm_at(x, y, shape)
        n = 2 * r + 1
        sub = (np.arange(n * _OVERSAMPLE) + 0.5) / _OVERSAMPLE - 0.5 - r
        dx = sub[None, :] + (ix - x)
        dy = sub[:, None] + (iy - y)
        fine = self._profile(dx, dy, fwhm)
        pix = fine.reshape(n, _OVERSAMPLE, n, _OVERSAMPLE).sum(axis=(1, 3))
        pix /= pix.sum()
        return pix, ix - r, iy - r

    def kernel(
        self,
        size: int | None = None,
        x: float | None = None,
        y: float | None = None,
        shape: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Centred unit-sum PSF image of odd ``size`` (pixels) at ``(x, y)`` of ``shape``.

        Without a position, the PSF at the image centre (no gradient) is returned.
        """
        r = self.radius if size is None else (int(size) - 1) // 2
        if shape is None or x is None or y is None:
            img, _, _ = self.stamp(0.0, 0.0, (1, 1), radius=r)
            return img
        stamp, _, _ = self.stamp(float(round(x)), float(round(y)), shape, radius=r)
        return stamp

    def rotated(self, degrees: float) -> AnalyticPSF:
        """The same PSF rotated counter-clockwise by ``degrees``."""
        return replace(self, angle=self.angle + degrees)


@dataclass(frozen=True)
class Exposure:
    """Observing conditions and detector of one simulated exposure.

    Parameters
    ----------
    psf : AnalyticPSF
        Point-spread function.
    sky : float
        Sky level in electrons per pixel (at the image centre).
    gain : float
        Electrons per ADU.
    read_noise : float
        Read noise in electrons per pixel.
    saturation : float
        Saturation level in ADU; pixels above are clipped to it and masked.
    zeropoint : float
        Catalogue zero point: magnitude of a 1-ADU source when ``flux_scale = 1``.
    flux_scale : float
        Multiplies the catalogue fluxes (transparency × exposure-time ratio).
    exptime : float
        Exposure time in seconds (header only).
    mjd : float
        Modified Julian date of the exposure (header only).
    filter : str
        Band name (header only).
    cosmic_rays : int
        Number of cosmic-ray hits (short tracks, 1-6 px).
    bad_columns : int or sequence of int
        Number of random dead columns, or their x indices; masked and set to 0 ADU.
    sky_gradient : tuple of float
        Fractional sky change from the centre to the right (x) and top (y) edges.
    offset : tuple of float
        Pointing offset in pixels: a sky position at pixel ``p`` of the unshifted grid lands at
        ``p + offset``.
    rotation : float
        Rotation of the pointing in degrees about the image centre.
    bleed : bool
        Charge above ``saturation`` bleeds along columns (trails above and below saturated
        stars, masked like the saturated pixels); otherwise it is simply clipped.
    """

    psf: AnalyticPSF = field(default_factory=AnalyticPSF)
    sky: float = 1000.0
    gain: float = 2.0
    read_noise: float = 5.0
    saturation: float = 60000.0
    zeropoint: float = 25.0
    flux_scale: float = 1.0
    exptime: float = 60.0
    mjd: float = 60000.0
    filter: str = "r"
    cosmic_rays: int = 0
    bad_columns: int | Sequence[int] = 0
    sky_gradient: tuple[float, float] = (0.0, 0.0)
    offset: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0
    bleed: bool = False

    def __post_init__(self) -> None:
        if self.sky < 0 or self.read_noise < 0 or self.gain <= 0 or self.flux_scale <= 0:
            raise SimulationError(
                "sky and read_noise must be >= 0, gain and flux_scale > 0 "
                f"(got sky={self.sky}, read_noise={self.read_noise}, gain={self.gain}, "
                f"flux_scale={self.flux_scale})"
            )

    @property
    def noise_sigma(self) -> float:
        """Background noise in ADU: ``sqrt(sky + read_noise²) / gain``."""
        return math.sqrt(self.sky + self.read_noise**2) / self.gain

    @property
    def magzero(self) -> float:
        """Zero point of the image: ``mag = magzero - 2.5 log10(flux_ADU)``."""
        return self.zeropoint + 2.5 * math.log10(self.flux_scale)


@dataclass
class SimulatedImage:
    """One simulated exposure and its truth.

    Attributes
    ----------
    data : numpy.ndarray
        Shape (ny, nx), float32, ADU (sky included).
    variance : numpy.ndarray
        Shape (ny, nx), float32, expected variance in ADU².
    mask : numpy.ndarray
        Shape (ny, nx), bool, True = bad column or saturated.
    cosmic_ray_mask : numpy.ndarray
        Shape (ny, nx), bool, True where a cosmic ray deposited charge.
    wcs : astropy.wcs.WCS
        TAN WCS of the image.
    header : astropy.io.fits.Header
        GAIN, RDNOISE, SATURATE, EXPTIME, MJD-OBS, FILTER, MAGZERO, SKYLEVEL, SEEING + WCS.
    psf : AnalyticPSF
        The PSF used.
    exposure : Exposure
        The conditions used.
    stars : astropy.table.Table
        Stars rendered: ``ra``, ``dec`` (deg), ``x``, ``y`` (px), ``flux`` (ADU in this image),
        ``mag``, ``saturated``.
    model : numpy.ndarray
        Noise-free image in ADU (float32), for tests.
    """

    data: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    cosmic_ray_mask: np.ndarray
    wcs: WCS
    header: fits.Header
    psf: AnalyticPSF
    exposure: Exposure
    stars: Table
    model: np.ndarray

    @property
    def psf_fwhm(self) -> float:
        """PSF FWHM at the image centre in pixels."""
        return self.psf.fwhm

    @property
    def sky_level(self) -> float:
        """Sky level at the image centre in ADU."""
        return self.exposure.sky / self.exposure.gain

    @property
    def noise_sigma(self) -> float:
        """Background noise (sky + read noise) in ADU."""
        return self.exposure.noise_sigma

    @property
    def gain(self) -> float:
        """Electrons per ADU."""
        return self.exposure.gain

    @property
    def zeropoint(self) -> float:
        """Magnitude zero point of the image (``MAGZERO``)."""
        return self.exposure.magzero

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (ny, nx)."""
        return (int(self.data.shape[0]), int(self.data.shape[1]))


@dataclass
class SimulatedPair:
    """Two epochs of the same sky and the truth of what changed.

    Attributes
    ----------
    new, ref : SimulatedImage
        The science (new) and reference epochs; each on its own pixel grid.
    truth : astropy.table.Table
        One row per injected change; see :func:`simulate_pair` for the columns.
    galaxies : astropy.table.Table
        The static galaxies (``ra``, ``dec``, catalogue ``flux``, ``r_eff`` px,
        ``ellipticity``, ``angle``); empty when none were simulated.
    """

    new: SimulatedImage
    ref: SimulatedImage
    truth: Table
    galaxies: Table = field(default_factory=Table)


def make_wcs(
    shape: tuple[int, int],
    ra: float = 150.0,
    dec: float = 2.0,
    pixel_scale: float = 0.5,
    rotation: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> WCS:
    """A TAN WCS for an image of ``shape`` (ny, nx).

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx).
    ra, dec : float
        Sky position in degrees of the image centre (before ``offset``).
    pixel_scale : float
        Arcsec per pixel.
    rotation : float
        Degrees, counter-clockwise, of the pixel grid with respect to north-up east-left.
    offset : tuple of float
        Pixels (dx, dy) by which sky positions move on the grid.
    """
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra % 360.0, dec]
    # FITS CRPIX is 1-based; the centre of a 0-based grid is (n-1)/2.
    w.wcs.crpix = [(nx - 1) / 2.0 + 1.0 + offset[0], (ny - 1) / 2.0 + 1.0 + offset[1]]
    s = pixel_scale / 3600.0
    c, si = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    w.wcs.cd = np.array([[-s * c, -s * si], [-s * si, s * c]])
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


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
        ``host`` ('galaxy', 'star' or '' for a transient on empty sky and other kinds).
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
    ]
    dtypes = [int, "U10", "U4"] + [float] * 12 + ["U6"]
    truth = Table(
        rows=[[r[n] for n in names] for r in truth_rows] or None, names=names, dtype=dtypes
    )
    truth.meta["flux_units"] = "ADU of the new image"
    truth.meta["flux_ratio"] = ratio
    return SimulatedPair(new=new_img, ref=ref_img, truth=truth, galaxies=galaxies)


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
