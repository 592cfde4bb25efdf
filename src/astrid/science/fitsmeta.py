"""Observation metadata normalised from a FITS header (:class:`ImageMetadata`).

:func:`image_metadata` turns a header and an image shape (ny, nx) into RA/Dec of the centre
and the footprint corners (degrees, from the WCS), MJD (UTC), exposure (s), gain (e-/unit),
read noise, saturation (image units), pixel scale (arcsec/pixel), band and zero point.
:func:`detect_survey` names the convention a header follows.

Metadata knows the conventions of a few instruments (``survey`` in the result):

* ``decam`` — band from the first word of ``FILTER``, gain/saturation from the per-amplifier
  ``GAINA/B``, ``SATURATA/B`` when ``GAIN``/``SATURATE`` are absent;
* ``nircam`` (JWST) — ``BUNIT`` MJy/sr, pixel area ``PIXAR_SR``, AB zero point of one pixel
  value ``-2.5 log10(1e6 · PIXAR_SR / 3631)``, exposure ``EXPTIME``, else
  ``XPOSURE``/``EFFEXPTM``, MJD from ``MJD-OBS``, else ``MJD-AVG``/``MJD-BEG``;
* ``ztf`` — ``MAGZP``, ``READNOI``, ``OBSMJD``, band from ``FILTER`` ('ZTF_r' → 'r');
* ``dss`` — photographic plates: exposure ``EXPOSURE`` in minutes, plate scale from
  ``PLTSCALE`` × ``XPIXELSZ``; a plate solution (``AMDX``/``AMDY``, no FITS WCS) is turned
  into a TAN-SIP WCS by :func:`celestial_wcs`;
* ``generic`` — everything else.

The observation time, for every convention: ``MJD-OBS`` (or ``MJD_OBS``, ``MJD``), else
``MJD-BEG``/``MJD-AVG``/``OBSMJD``, else a JD (``JD``, ``JD-OBS``), else ``DATE-OBS`` (or
``DATE-BEG``, ``DATE-AVG``; ISO, or the old ``DD/MM/YY`` of 19YY) with ``TIME-OBS``/``UT``;
an MJD outside 1 … 100 000 (a placeholder 0, say) counts as missing.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from erfa import ErfaWarning

from astrid.science.fitswcs import celestial_wcs

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["ImageMetadata", "detect_survey", "image_metadata"]


@dataclass(frozen=True)
class ImageMetadata:
    """Observation metadata normalised from a FITS header.

    Angles in degrees, exposure in seconds, times as MJD (UTC), pixel scale in
    arcsec/pixel. ``None`` where the header does not say. ``survey`` is the recognised
    instrument convention ('decam', 'nircam', 'ztf', 'dss' or 'generic'), ``band`` the short
    band name, ``zeropoint`` the magnitude of a source of total flux 1 image unit (AB for
    NIRCam), ``pixel_area_sr`` the nominal pixel area in steradians.
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
    survey: str = "generic"
    band: str | None = None
    zeropoint: float | None = None
    pixel_area_sr: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the record as a plain dict (JSON-serialisable)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


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


#: MJDs outside this range are placeholders (MJD-OBS = 0) or garbage, not observation times:
#: 1 = 1858-11-18, 100 000 = 2132-09-01 (photographic plates from the 1890s are ~12 000).
_MJD_RANGE = (1.0, 100_000.0)
#: The deprecated FITS date of before 1999, 'DD/MM/YY' for 19YY (FITS standard 4.0, §9.1.1).
_OLD_DATE = re.compile(r"^\s*(\d{2})/(\d{2})/(\d{2})\s*$")


def _plausible(mjd: float | None) -> float | None:
    return mjd if mjd is not None and _MJD_RANGE[0] <= mjd <= _MJD_RANGE[1] else None


def _mjd(header: fits.Header) -> float | None:
    """MJD (UTC) of the observation: an MJD keyword, else a JD one, else an ISO or old-style
    date (``DATE-OBS``, ``DATE-BEG``, ``DATE-AVG``) with ``TIME-OBS``/``UT`` when the date
    has no time; None when none gives a plausible time."""
    for keys in (("MJD-OBS", "MJD_OBS", "MJD"), ("MJD-BEG", "MJD-AVG", "OBSMJD")):
        mjd = _plausible(_float(header, *keys))
        if mjd is not None:
            return mjd
    jd = _float(header, "JD", "JD-OBS", "JD_OBS", "JULIAN")
    mjd = _plausible(jd - 2_400_000.5 if jd is not None else None)
    if mjd is not None:
        return mjd
    date = _str(header, "DATE-OBS", "DATE_OBS", "DATE-BEG", "DATE-AVG")
    if date is None:
        return None
    old = _OLD_DATE.match(date)
    if old:
        day, month, year = old.groups()
        date = f"19{year}-{month}-{day}"
    time = _str(header, "TIME-OBS", "UT", "UTSTART", "UT-START", "TIME_OBS")
    if time and "T" not in date:
        date = f"{date}T{time}"
    try:
        with warnings.catch_warnings():  # ERFA's "dubious year" for dates before 1960
            warnings.simplefilter("ignore", ErfaWarning)
            return _plausible(float(Time(date, scale="utc").mjd))
    except ValueError:
        return None


def image_metadata(
    header: fits.Header, shape: tuple[int, int], *, wcs: WCS | None = None
) -> ImageMetadata:
    """Normalise the metadata of an image from its header.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header with a celestial WCS.
    shape : tuple of int
        Image shape (ny, nx) in pixels.
    wcs : astropy.wcs.WCS, optional
        ``celestial_wcs(header)`` when the caller has it already (parsing it again costs
        ~7 ms); by default parsed here.

    Returns
    -------
    ImageMetadata
        RA/Dec of the image centre from the WCS (degrees), MJD, filter, etc.
    """
    wcs = celestial_wcs(header) if wcs is None else wcs
    ny, nx = shape
    centre = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    corners_x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    corners_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    cra, cdec = wcs.pixel_to_world_values(corners_x, corners_y)
    try:
        scales = wcs.proj_plane_pixel_scales()
        pixel_scale: float | None = float(np.mean([s.to_value("arcsec") for s in scales]))
    except Exception:  # non-linear or degenerate WCS
        pixel_scale = None
    survey = detect_survey(header)
    filt = _str(header, "FILTER", "FILTNAM", "FILTER1", "BAND")
    exposure = _float(header, "EXPTIME", "EXPOSURE", "XPOSURE", "EFFEXPTM")
    gain = _float(header, "GAIN", "EGAIN", "CCDGAIN")
    read_noise = _float(header, "RDNOISE", "READNOIS", "RON", "READNOISE")
    saturation = _float(header, "SATURATE", "SATURATION", "SATLEVEL")
    mjd = _mjd(header)
    telescope = _str(header, "TELESCOP", "OBSERVAT")
    instrument = _str(header, "INSTRUME", "DETECTOR")
    zeropoint = _float(header, "MAGZERO", "MAGZPT", "MAGZP", "ZP", "ZEROPT", "PHOTZP")
    pixel_area = _float(header, "PIXAR_SR")
    band = _short_band(filt)
    if survey == "decam":
        gains = [g for g in (_float(header, "GAINA"), _float(header, "GAINB")) if g]
        gain = gain if gain is not None else (float(np.mean(gains)) if gains else None)
        sats = [v for v in (_float(header, "SATURATA"), _float(header, "SATURATB")) if v]
        saturation = saturation if saturation is not None else (min(sats) if sats else None)
        if read_noise is None:
            rns = [v for v in (_float(header, "RDNOISEA"), _float(header, "RDNOISEB")) if v]
            read_noise = max(rns) if rns else None
        telescope = telescope or "CTIO 4.0-m Blanco"
        instrument = "DECam"
    elif survey == "nircam":
        exposure = _float(header, "EXPTIME", "XPOSURE", "EFFEXPTM")
        mjd = mjd if mjd is not None else _float(header, "MJD-AVG", "MJD-BEG", "EXPSTART")
        telescope = telescope or "JWST"
        instrument = "NIRCam"
        bunit = (_str(header, "BUNIT") or "").replace(" ", "").lower()
        if zeropoint is None and pixel_area and bunit in ("mjy/sr", "mjy/steradian"):
            zeropoint = float(-2.5 * np.log10(1e6 * pixel_area / 3631.0))
        if pixel_area is None and pixel_scale:
            pixel_area = float((pixel_scale / 206264.80624709636) ** 2)
    elif survey == "ztf":
        read_noise = read_noise if read_noise is not None else _float(header, "READNOI")
        mjd = mjd if mjd is not None else _float(header, "OBSMJD")
        telescope = telescope or "Palomar 48-inch"
        instrument = "ZTF"
        if band is None:
            fid = _float(header, "FILTERID", "FID")
            band = {1.0: "g", 2.0: "r", 3.0: "i"}.get(fid) if fid is not None else None
    elif survey == "dss":
        minutes = _float(header, "EXPOSURE")
        exposure = minutes * 60.0 if minutes is not None else exposure
        plate_scale = _float(header, "PLTSCALE")
        pix_um = _float(header, "XPIXELSZ")
        if plate_scale and pix_um:
            pixel_scale = plate_scale * pix_um / 1000.0
        telescope = telescope or _str(header, "SURVEY", "PLTLABEL")
        instrument = instrument or "photographic plate"
        band = band or _short_band(_str(header, "EMULSION", "BANDPASS"))
    return ImageMetadata(
        ra=float(centre[0]) % 360.0,
        dec=float(centre[1]),
        width=int(nx),
        height=int(ny),
        mjd=mjd,
        filter=filt,
        exposure_time=exposure,
        telescope=telescope,
        instrument=instrument,
        gain=gain,
        read_noise=read_noise,
        saturation=saturation,
        pixel_scale=pixel_scale,
        bunit=_str(header, "BUNIT"),
        footprint=[(float(r) % 360.0, float(d)) for r, d in zip(cra, cdec, strict=True)],
        survey=survey,
        band=band,
        zeropoint=zeropoint,
        pixel_area_sr=pixel_area,
    )


def detect_survey(header: fits.Header) -> str:
    """Which instrument convention a header follows: decam, nircam, ztf, dss or generic."""
    instrume = (_str(header, "INSTRUME") or "").lower()
    telescop = (_str(header, "TELESCOP") or "").lower()
    origin = (_str(header, "ORIGIN") or "").lower()
    if "decam" in instrume or (_str(header, "FPA") or "").lower().startswith("decam"):
        return "decam"
    if "nircam" in instrume or (telescop == "jwst" and "PIXAR_SR" in header):
        return "nircam"
    if (
        "ztf" in instrume
        or "zwicky" in origin
        or "ztf" in origin
        or "ZTF" in str(header.get("FILTER", ""))
    ):
        return "ztf"
    if "PLTLABEL" in header or "PLATEID" in header or "AMDX1" in header:
        return "dss"
    return "generic"


def _short_band(filt: str | None) -> str | None:
    """'i DECam SDSS c0003 7835.0 1470.0' → 'i', 'ZTF_r' → 'r', 'F200W' → 'F200W'."""
    if not filt:
        return None
    word = filt.strip().split()[0]
    if word.upper().startswith("ZTF_"):
        word = word[4:]
    return word or None
