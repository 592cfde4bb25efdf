"""The vocabulary of the simulator: its PSF model, exposure, products, WCS and error.

* :class:`AnalyticPSF`: Gaussian or Moffat profile, FWHM in pixels, optional ellipticity and
  a linear FWHM gradient across the field; rendered as unit-sum pixel stamps.
* :class:`Exposure`: observing conditions and detector of one exposure (sky in ADU, gain in
  e-/ADU, read noise in e-, saturation in ADU, zero point in mag, pointing offset in px).
* :class:`SimulatedImage`, :class:`SimulatedPair`: rendered pixels (shape (ny, nx), ADU,
  sky included), variance (ADU²), masks and the truth tables.
* :func:`make_wcs`: a TAN WCS for an image of shape (ny, nx).

Conventions (0-based pixels, ADU, masks True = excluded) are in :mod:`astrid.science.simulate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from astrid.errors import AstridError
from astrid.science.stats import FWHM_PER_SIGMA

__all__ = [
    "AnalyticPSF",
    "Exposure",
    "SimulatedImage",
    "SimulatedPair",
    "SimulationError",
    "make_wcs",
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
