"""Reading and writing FITS images, their celestial WCS and normalised metadata.

The entry points are :func:`read_image` (bytes or path in, :class:`FitsImage` out; plain,
multi-extension, gzipped, tile-compressed ``.fz``, big-endian, BZERO/BSCALE-scaled, NaN),
:func:`image_metadata` (header + shape in, :class:`ImageMetadata` out) and
:func:`write_image` (array + header/WCS in, FITS bytes out). Errors are :class:`FitsError`
subclasses naming what was wrong.

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
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from astrid.science.fitserrors import (
    FitsError,
    ImageTooLargeError,
    InvalidFitsError,
    InvalidWCSError,
    NoCelestialWCSError,
    NoImageDataError,
    UnusableImageError,
)
from astrid.science.fitsscan import FitsLimits, ScannedFits, image_hdus, scan_fits

__all__ = [
    "FitsError",
    "FitsImage",
    "FitsLimits",
    "ImageMetadata",
    "ImageTooLargeError",
    "InvalidFitsError",
    "InvalidWCSError",
    "NoCelestialWCSError",
    "NoImageDataError",
    "UnusableImageError",
    "celestial_wcs",
    "detect_survey",
    "dss_plate_wcs",
    "image_metadata",
    "read_image",
    "validate_image",
    "validate_wcs",
    "write_image",
]


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


def _open(
    source: str | Path | bytes, limits: FitsLimits | None
) -> tuple[fits.HDUList, ScannedFits]:
    """Scan within ``limits`` (nothing big allocated yet), then let astropy parse the file."""
    name = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)
    try:
        scanned = scan_fits(source, limits)
    except InvalidFitsError as exc:
        what = "not" if name == "<bytes>" else f"{name} is not"
        raise InvalidFitsError(
            f"{what} a readable FITS file: {exc.message}", hint=exc.hint
        ) from exc
    try:
        where = scanned.source
        hdul = fits.open(
            where if isinstance(where, Path | io.BytesIO) else io.BytesIO(where),
            memmap=False,
            lazy_load_hdus=False,
        )
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InvalidFitsError(
            f"{name} is not a readable FITS file: {exc}",
            hint="check that the file is complete and really FITS",
        ) from exc
    return hdul, scanned


def _pick_hdu(scanned: ScannedFits) -> int:
    """Index of the science HDU: an image HDU named SCI, else the first 2-D image.

    Decided from the scanned headers, so no data unit is read to choose.
    """
    candidates = image_hdus(scanned.hdus)
    for layout in candidates:
        if layout.name.upper() in {"SCI", "SCIENCE"}:
            return layout.index
    if candidates:
        return candidates[0].index
    shapes = ", ".join(
        f"HDU {h.index} NAXIS = {len(h.shape)}" for h in scanned.hdus if h.kind != "other"
    )
    raise NoImageDataError(
        "the FITS file has no 2-D image HDU" + (f" ({shapes})" if shapes else " (header only)"),
        hint="AstrID reads 2-D images, not tables or cubes",
    )


_STRUCTURAL = frozenset(("SIMPLE", "BITPIX", "NAXIS", "EXTEND", ""))


def _merged_header(primary: fits.Header, chosen: fits.Header) -> fits.Header:
    """``chosen``'s cards over ``primary``'s keywords, built in one pass.

    ``Header.update`` re-indexes the whole header for every card (quadratic in the number
    of cards); building from a list of cards is linear.
    """
    own = set(chosen.keys())
    cards = [
        card
        for card in primary.cards
        if card.keyword not in _STRUCTURAL
        and not card.keyword.startswith("NAXIS")
        and (card.keyword not in own or card.keyword in ("COMMENT", "HISTORY"))
    ]
    cards.extend(chosen.cards)
    return fits.Header(cards)


def read_image(
    source: str | Path | bytes,
    hdu: int | str | None = None,
    *,
    limits: FitsLimits | None = None,
    validate: bool | None = None,
) -> FitsImage:
    """Read the science image of a FITS file.

    The file is scanned first (:func:`astrid.science.fitsscan.scan_fits`): gzip and bzip2 are
    decompressed in a stream, and a header claiming more pixels, bytes or cards than
    ``limits`` is refused before its data is read; then only the chosen HDU's data is loaded
    and checked by :func:`validate_image`.

    Parameters
    ----------
    source : str, pathlib.Path or bytes
        Path to a FITS file (plain, gzipped, bzip2ed or tile-compressed) or its bytes.
    hdu : int or str, optional
        HDU index or EXTNAME; by default an HDU named SCI, else the first 2-D image.
    limits : FitsLimits, optional
        Largest image, file and header accepted (default :class:`FitsLimits`).
    validate : bool, optional
        Refuse pixels and WCS that cannot be a usable image (:func:`validate_image`);
        by default the science image is checked, an HDU asked for by ``hdu`` (a weight or
        mask plane) is not.

    Returns
    -------
    FitsImage
        Pixels as native-endian float32, shape (ny, nx).

    Raises
    ------
    FitsError
        A subclass naming what was wrong: :class:`InvalidFitsError`,
        :class:`ImageTooLargeError`, :class:`NoImageDataError`, :class:`UnusableImageError`,
        :class:`InvalidWCSError`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdul, scanned = _open(source, limits)
        with hdul:
            try:
                index = _pick_hdu(scanned) if hdu is None else hdul.index_of(hdu)
            except KeyError as exc:
                raise NoImageDataError(f"the FITS file has no HDU {hdu!r}") from exc
            chosen = hdul[index]
            try:
                chosen.verify("silentfix")
                pixels = chosen.data
            except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
                raise InvalidFitsError(f"HDU {index} cannot be read: {exc}") from exc
            if pixels is None or pixels.ndim != 2:
                raise NoImageDataError(
                    f"HDU {hdu if hdu is not None else index!r} is not a 2-D image"
                )
            data = np.asarray(pixels, dtype=np.float32)
            del pixels
            # The primary's own header object (no copy: copying re-parses every card).
            header = _merged_header(hdul[0].header, chosen.header) if index != 0 else chosen.header
            name = chosen.name or ("PRIMARY" if index == 0 else str(index))
    image = FitsImage(
        data=np.ascontiguousarray(data), header=header, hdu_index=index, hdu_name=name
    )
    if validate or (validate is None and hdu is None):
        validate_image(image)
    return image


def validate_image(image: FitsImage, *, require_wcs: bool = False) -> None:
    """Refuse an image that cannot be used: no finite pixel, every pixel zero, or a
    degenerate celestial WCS (non-finite CRVAL/CRPIX/CDELT/CD, singular CD matrix).

    The WCS is checked when the header has one (``CTYPEn`` or a DSS plate solution) or when
    ``require_wcs``.

    Raises
    ------
    UnusableImageError
        Naming the problem with the pixels.
    InvalidWCSError
        Naming the problem with the WCS.
    NoCelestialWCSError
        ``require_wcs`` and there is no celestial WCS.
    """
    data = image.data
    finite = np.isfinite(data)
    n_finite = int(np.count_nonzero(finite))
    if n_finite == 0:
        raise UnusableImageError(
            f"every pixel of the {data.shape[1]} × {data.shape[0]} image is NaN or infinite",
            hint="the file holds no measurements",
        )
    if not np.any(data[finite]):
        raise UnusableImageError(
            f"every pixel of the {data.shape[1]} × {data.shape[0]} image is zero",
            hint="the file holds no measurements",
        )
    header = image.header
    if require_wcs or "CTYPE1" in header or "CTYPE2" in header or "AMDX1" in header:
        validate_wcs(header, (int(data.shape[0]), int(data.shape[1])))


def validate_wcs(header: fits.Header, shape: tuple[int, int]) -> WCS:
    """The celestial WCS of ``header`` if it maps the image of ``shape`` (ny, nx) onto the
    sky; raises :class:`InvalidWCSError` naming the degenerate keyword otherwise."""
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2"):
        value = header.get(key)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidWCSError(f"{key} = {value!r} is not a number") from exc
        if not np.isfinite(number):
            raise InvalidWCSError(f"{key} is {value!r}: the WCS is unusable")
        if key.startswith("CDELT") and number == 0:
            raise InvalidWCSError(f"{key} is zero: the WCS is singular")
    wcs = celestial_wcs(header)
    inner = wcs.wcs
    with warnings.catch_warnings():  # "cdelt will be ignored since cd is present"
        warnings.simplefilter("ignore", RuntimeWarning)
        cdelt = np.array(inner.cdelt, dtype=float)
    for label, values in (("CRVAL", inner.crval), ("CRPIX", inner.crpix), ("CDELT", cdelt)):
        if not np.all(np.isfinite(values)):
            raise InvalidWCSError(f"{label} is not finite ({list(values)}): the WCS is unusable")
    try:
        matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    except Exception as exc:  # astropy raises several types for a broken matrix
        raise InvalidWCSError(f"the CD/PC matrix cannot be evaluated: {exc}") from exc
    if not np.all(np.isfinite(matrix)):
        raise InvalidWCSError("the CD/PC matrix is not finite: the WCS is unusable")
    scale = float(np.max(np.abs(matrix)))
    if scale == 0 or abs(float(np.linalg.det(matrix))) <= 1e-12 * scale * scale:
        raise InvalidWCSError("the CD/PC matrix is singular: pixels do not map onto the sky")
    ny, nx = shape
    centre = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    if not np.all(np.isfinite(np.asarray(centre, dtype=float))):
        raise InvalidWCSError("the image centre does not map onto the sky: the WCS is unusable")
    return wcs


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
            wcs = WCS(_wcs_cards(header), relax=True)
        except Exception as exc:  # astropy raises many types for broken WCS keywords
            raise NoCelestialWCSError(f"the WCS keywords cannot be parsed: {exc}") from exc
    if not wcs.has_celestial and "AMDX1" in header and "PLTRAH" in header:
        return dss_plate_wcs(header)
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


def dss_plate_wcs(header: fits.Header) -> WCS:
    """A TAN-SIP WCS fitted to a Digitized Sky Survey plate solution.

    The plate solution (``PLTRAH``..., ``PPO3``/``PPO6``, ``XPIXELSZ``/``YPIXELSZ``,
    ``CNPIX1/2``, ``AMDX1..13``, ``AMDY1..13``) maps pixels to standard coordinates as in
    WCSTools' ``dsspos``; it is evaluated on a grid and fitted with
    :func:`astropy.wcs.utils.fit_wcs_from_points` (SIP order 3).

    Raises
    ------
    NoCelestialWCSError
        If keywords of the plate solution are missing.
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    try:
        ra0 = 15.0 * (
            float(header["PLTRAH"]) + float(header["PLTRAM"]) / 60 + float(header["PLTRAS"]) / 3600
        )
        sign = -1.0 if str(header["PLTDECSN"]).strip() == "-" else 1.0
        dec0 = sign * (
            float(header["PLTDECD"])
            + float(header["PLTDECM"]) / 60
            + float(header["PLTDECS"]) / 3600
        )
        ppo3, ppo6 = float(header["PPO3"]), float(header["PPO6"])
        xsz, ysz = float(header["XPIXELSZ"]), float(header["YPIXELSZ"])
        cnpix1, cnpix2 = float(header.get("CNPIX1", 0)), float(header.get("CNPIX2", 0))
        amdx = [float(header[f"AMDX{i}"]) for i in range(1, 14)]
        amdy = [float(header[f"AMDY{i}"]) for i in range(1, 14)]
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    except (KeyError, ValueError) as exc:
        raise NoCelestialWCSError(
            f"the DSS plate solution is incomplete: {exc}",
            hint="use a DSS image with a FITS WCS (e.g. from SkyView)",
        ) from exc
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 12), np.linspace(0, ny - 1, 12))
    px, py = gx.ravel(), gy.ravel()
    # plate coordinates in mm (FITS pixel = 0-based + 1)
    x = (ppo3 - xsz * (px + 1 + cnpix1 - 0.5)) / 1000.0
    y = (ysz * (py + 1 + cnpix2 - 0.5) - ppo6) / 1000.0
    r2 = x * x + y * y
    xi = (
        amdx[0] * x
        + amdx[1] * y
        + amdx[2]
        + amdx[3] * x * x
        + amdx[4] * x * y
        + amdx[5] * y * y
        + amdx[6] * r2
        + amdx[7] * x**3
        + amdx[8] * x * x * y
        + amdx[9] * x * y * y
        + amdx[10] * y**3
        + amdx[11] * x * r2
        + amdx[12] * x * r2 * r2
    )
    eta = (
        amdy[0] * y
        + amdy[1] * x
        + amdy[2]
        + amdy[3] * y * y
        + amdy[4] * x * y
        + amdy[5] * x * x
        + amdy[6] * r2
        + amdy[7] * y**3
        + amdy[8] * y * y * x
        + amdy[9] * y * x * x
        + amdy[10] * x**3
        + amdy[11] * y * r2
        + amdy[12] * y * r2 * r2
    )
    xi_r, eta_r = np.radians(xi / 3600.0), np.radians(eta / 3600.0)
    d0, a0 = np.radians(dec0), np.radians(ra0)
    ra = a0 + np.arctan2(xi_r / np.cos(d0), 1.0 - eta_r * np.tan(d0))
    dec = np.arctan(((eta_r + np.tan(d0)) * np.cos(ra - a0)) / (1.0 - eta_r * np.tan(d0)))
    coords = SkyCoord(np.degrees(ra) % 360.0, np.degrees(dec), unit="deg")
    return fit_wcs_from_points((px, py), coords, projection="TAN", sip_degree=3)


def write_image(
    path: str | Path | None,
    data: np.ndarray,
    header: fits.Header | None = None,
    wcs: WCS | None = None,
    extra_hdus: Sequence[fits.ImageHDU | fits.BinTableHDU | fits.CompImageHDU] | None = None,
    *,
    compress: bool = False,
    overwrite: bool = True,
) -> bytes:
    """Write a 2-D image (and optional extra HDUs) as a FITS file.

    Parameters
    ----------
    path : str, pathlib.Path or None
        Where to write (a name ending in ``.gz`` is gzipped); ``None`` writes nothing to disk.
    data : numpy.ndarray
        Image, shape (ny, nx).
    header : astropy.io.fits.Header, optional
        Keywords for the image HDU.
    wcs : astropy.wcs.WCS, optional
        WCS whose keywords replace those of ``header``.
    extra_hdus : sequence of HDUs, optional
        Appended after the image (e.g. ``VARIANCE``, ``MASK``).
    compress : bool
        Store the image as a lossless tile-compressed ``SCI`` extension (``.fz`` style):
        RICE_1 for integers, GZIP_2 without quantisation for floats.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    bytes
        The FITS file's bytes (uncompressed by gzip even when ``path`` ends in ``.gz``).
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise NoImageDataError(
            f"write_image needs a 2-D array, got shape {arr.shape}",
            hint="pass one image plane",
        )
    hdr = fits.Header() if header is None else header.copy()
    if wcs is not None:
        for key in list(hdr.keys()):
            if _is_wcs_key(key):
                del hdr[key]
        hdr.update(wcs.to_header(relax=True))
    for key in (
        "SIMPLE",
        "BITPIX",
        "NAXIS",
        "NAXIS1",
        "NAXIS2",
        "EXTEND",
        "XTENSION",
        "PCOUNT",
        "GCOUNT",
        "ZIMAGE",
        "ZBITPIX",
        "ZNAXIS",
        "ZNAXIS1",
        "ZNAXIS2",
    ):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdus: list[Any]
    if compress:
        if np.issubdtype(arr.dtype, np.integer):
            comp = fits.CompImageHDU(arr, header=hdr, name="SCI", compression_type="RICE_1")
        else:
            comp = fits.CompImageHDU(
                arr, header=hdr, name="SCI", compression_type="GZIP_2", quantize_level=0.0
            )
        hdus = [fits.PrimaryHDU(), comp]
    else:
        hdus = [fits.PrimaryHDU(arr, header=hdr)]
    hdus.extend(extra_hdus or [])
    hdul = fits.HDUList(hdus)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdul.writeto(buffer, output_verify="silentfix")
        if path is not None:
            hdul.writeto(Path(path), overwrite=overwrite, output_verify="silentfix")
    return buffer.getvalue()


_WCS_PREFIXES = (
    "CTYPE",
    "CRVAL",
    "CRPIX",
    "CDELT",
    "CUNIT",
    "CROTA",
    "CD1_",
    "CD2_",
    "PC1_",
    "PC2_",
    "PV1_",
    "PV2_",
    "A_",
    "B_",
    "AP_",
    "BP_",
    "LONPOLE",
    "LATPOLE",
    "RADESYS",
    "EQUINOX",
    "WCSAXES",
    "MJDREF",
    "DATEREF",
)


_WCS_CONTEXT = ("NAXIS", "DATE", "MJD", "WCS", "RADECSYS", "EPOCH", "OBSGEO", "TIME", "TSTART")


def _wcs_cards(header: fits.Header) -> fits.Header:
    """``header`` itself, or for a long header only its WCS cards.

    ``WCS(header)`` serialises and re-parses every card; for a header of many thousands of
    cards (hostile or not) that costs seconds, so only the cards a WCS can use are passed.
    """
    if len(header) <= 1000:
        return header
    return fits.Header(
        [
            card
            for card in header.cards
            if _is_wcs_key(card.keyword) or card.keyword.startswith(_WCS_CONTEXT)
        ]
    )


def _is_wcs_key(key: str) -> bool:
    return key.upper().startswith(_WCS_PREFIXES)
