"""Reading FITS images, their celestial WCS and normalised metadata.

The entry points are :func:`read_image` (bytes or path in, :class:`FitsImage` out) and
:func:`image_metadata` (header + WCS in, :class:`ImageMetadata` out). Errors are
:class:`FitsError` subclasses naming what was wrong.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from astrid.errors import AstridError

__all__ = [
    "FitsError",
    "FitsImage",
    "ImageMetadata",
    "InvalidFitsError",
    "NoCelestialWCSError",
    "NoImageDataError",
    "celestial_wcs",
    "image_metadata",
    "read_image",
]


class FitsError(AstridError):
    """Base class of FITS reading errors."""


class InvalidFitsError(FitsError):
    """The bytes are not a readable FITS file (corrupt, truncated or another format)."""


class NoImageDataError(FitsError):
    """The FITS file has no 2-D image HDU."""


class NoCelestialWCSError(FitsError):
    """The image header has no usable celestial (RA/Dec) WCS."""


@dataclass(frozen=True)
class FitsImage:
    """One 2-D image read from a FITS file.

    Attributes
    ----------
    data : numpy.ndarray
        Image pixels, shape (ny, nx), native-endian float32 (BSCALE/BZERO applied).
    header : astropy.io.fits.Header
        Header of the chosen HDU merged over the primary header's keywords.
    hdu_index : int
        Index of the chosen HDU in the file.
    hdu_name : str
        EXTNAME of the chosen HDU ("PRIMARY" for the primary).
    """

    data: np.ndarray
    header: fits.Header
    hdu_index: int
    hdu_name: str

    @property
    def wcs(self) -> WCS:
        """The celestial WCS (raises :class:`NoCelestialWCSError` if absent)."""
        return celestial_wcs(self.header)


@dataclass(frozen=True)
class ImageMetadata:
    """Observation metadata normalised from a FITS header.

    Angles in degrees, exposure in seconds, times as MJD (UTC), pixel scale in
    arcsec/pixel. ``None`` where the header does not say.
    """

    ra: float
    dec: float
    width: int
    height: int
    mjd: float | None = None
    filter: str | None = None
    exposure_time: float | None = None
    telescope: str | None = None
    instrument: str | None = None
    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None
    pixel_scale: float | None = None
    bunit: str | None = None
    footprint: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the record as a plain dict (JSON-serialisable)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _open(source: str | Path | bytes) -> fits.HDUList:
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            hdul = fits.open(io.BytesIO(bytes(source)), memmap=False)
        else:
            hdul = fits.open(Path(source), memmap=False)
        hdul.verify("silentfix")
        # Touch every HDU so that truncation shows up here, not later.
        for hdu in hdul:
            _ = hdu.data
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, IndexError, fits.VerifyError) as exc:
        name = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)
        raise InvalidFitsError(
            f"{name} is not a readable FITS file: {exc}",
            hint="check that the file is complete and really FITS",
        ) from exc
    return hdul


def _pick_hdu(hdul: fits.HDUList) -> int:
    """Index of the science HDU: an image HDU named SCI, else the first 2-D image."""
    candidates = [
        i
        for i, hdu in enumerate(hdul)
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU)
        and hdu.data is not None
        and hdu.data.ndim == 2
    ]
    for i in candidates:
        if hdul[i].name.upper() in {"SCI", "SCIENCE"}:
            return i
    if candidates:
        return candidates[0]
    raise NoImageDataError(
        "the FITS file has no 2-D image HDU", hint="AstrID reads 2-D images, not tables or cubes"
    )


def read_image(source: str | Path | bytes, hdu: int | str | None = None) -> FitsImage:
    """Read the science image of a FITS file.

    Parameters
    ----------
    source : str, pathlib.Path or bytes
        Path to a FITS file (plain, gzipped or tile-compressed) or its bytes.
    hdu : int or str, optional
        HDU index or EXTNAME; by default an HDU named SCI, else the first 2-D image.

    Returns
    -------
    FitsImage
        Pixels as native-endian float32, shape (ny, nx).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdul = _open(source)
        with hdul:
            index = _pick_hdu(hdul) if hdu is None else hdul.index_of(hdu)
            chosen = hdul[index]
            if chosen.data is None or chosen.data.ndim != 2:
                raise NoImageDataError(f"HDU {hdu!r} is not a 2-D image")
            data = np.asarray(chosen.data, dtype=np.float32)
            header = fits.Header()
            if index != 0:
                for card in hdul[0].header.cards:
                    if card.keyword not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", ""):
                        header[card.keyword] = (card.value, card.comment)
            header.update(chosen.header)
            name = chosen.name or ("PRIMARY" if index == 0 else str(index))
    return FitsImage(data=np.ascontiguousarray(data), header=header, hdu_index=index, hdu_name=name)


def celestial_wcs(header: fits.Header) -> WCS:
    """Return the celestial WCS of ``header`` (TAN, TPV, SIP... as astropy reads them).

    Raises
    ------
    NoCelestialWCSError
        If the header has no RA/Dec axes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, relax=True)
        except Exception as exc:  # astropy raises many types for broken WCS keywords
            raise NoCelestialWCSError(f"the WCS keywords cannot be parsed: {exc}") from exc
    if not wcs.has_celestial:
        raise NoCelestialWCSError(
            "the image has no celestial WCS (no RA/Dec CTYPE keywords)",
            hint="solve its astrometry first, e.g. with astrometry.net",
        )
    return wcs.celestial


def _first(header: fits.Header, *keys: str) -> Any:
    for key in keys:
        value = header.get(key)
        if value not in (None, ""):
            return value
    return None


def _float(header: fits.Header, *keys: str) -> float | None:
    value = _first(header, *keys)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _str(header: fits.Header, *keys: str) -> str | None:
    value = _first(header, *keys)
    return str(value).strip() or None if value is not None else None


def _mjd(header: fits.Header) -> float | None:
    mjd = _float(header, "MJD-OBS", "MJD_OBS", "MJD")
    if mjd is not None:
        return mjd
    date = _str(header, "DATE-OBS", "DATE_OBS")
    if date is None:
        return None
    time = _str(header, "TIME-OBS", "UT", "UTSTART")
    if time and "T" not in date:
        date = f"{date}T{time}"
    try:
        return float(Time(date, scale="utc").mjd)
    except ValueError:
        return None


def image_metadata(header: fits.Header, shape: tuple[int, int]) -> ImageMetadata:
    """Normalise the metadata of an image from its header.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header with a celestial WCS.
    shape : tuple of int
        Image shape (ny, nx) in pixels.

    Returns
    -------
    ImageMetadata
        RA/Dec of the image centre from the WCS (degrees), MJD, filter, etc.
    """
    wcs = celestial_wcs(header)
    ny, nx = shape
    centre = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    corners_x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    corners_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    cra, cdec = wcs.pixel_to_world_values(corners_x, corners_y)
    try:
        scales = wcs.proj_plane_pixel_scales()
        pixel_scale = float(np.mean([s.to_value("arcsec") for s in scales]))
    except Exception:  # non-linear or degenerate WCS
        pixel_scale = None
    return ImageMetadata(
        ra=float(centre[0]) % 360.0,
        dec=float(centre[1]),
        width=int(nx),
        height=int(ny),
        mjd=_mjd(header),
        filter=_str(header, "FILTER", "FILTNAM", "FILTER1", "BAND"),
        exposure_time=_float(header, "EXPTIME", "EXPOSURE", "XPOSURE", "EFFEXPTM"),
        telescope=_str(header, "TELESCOP", "OBSERVAT"),
        instrument=_str(header, "INSTRUME", "DETECTOR"),
        gain=_float(header, "GAIN", "EGAIN", "CCDGAIN"),
        read_noise=_float(header, "RDNOISE", "READNOIS", "RON", "READNOISE"),
        saturation=_float(header, "SATURATE", "SATURATION", "SATLEVEL"),
        pixel_scale=pixel_scale,
        bunit=_str(header, "BUNIT"),
        footprint=[(float(r) % 360.0, float(d)) for r, d in zip(cra, cdec, strict=True)],
    )
