"""Reading, validating and writing FITS images: the file layer of the FITS modules.

The entry points are :func:`read_image` (bytes or path in, :class:`FitsImage` out; plain,
multi-extension, gzipped, tile-compressed ``.fz``, big-endian, BZERO/BSCALE-scaled, NaN),
:func:`validate_image` (refuses unusable pixels or WCS) and :func:`write_image` (array +
header/WCS in, FITS bytes out). Errors are :class:`FitsError`
subclasses naming what was wrong. A file of several science images (a mosaic's CCDs, or
HST's chips ``SCI,1``/``SCI,2`` told apart by EXTVER) is listed by :func:`science_hdus`,
each image's own planes by :func:`companion_hdus` (both in :mod:`~astrid.science.fitslayout`,
re-exported here); ``read_image`` then reads one
(``hdu=4``, ``hdu="N4"``, ``hdu="SCI,2"``) and refuses to pick one silently.

The WCS lives in :mod:`~astrid.science.fitswcs` (``celestial_wcs``, ``validate_wcs``,
``dss_plate_wcs``), normalised metadata in :mod:`~astrid.science.fitsmeta`
(``image_metadata``, ``ImageMetadata``, ``detect_survey``), byte-level bounded reading in
:mod:`~astrid.science.fitsscan` and the errors in :mod:`~astrid.science.fitserrors` (re-exported
here, with ``FitsLimits``, as the reading API's errors and limits).
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS

from astrid.science.fitserrors import (
    AmbiguousImageError,
    FitsError,
    ImageTooLargeError,
    InvalidFitsError,
    InvalidWCSError,
    NoCelestialWCSError,
    NoImageDataError,
    UnusableImageError,
)
from astrid.science.fitslayout import (
    COMPANION_KINDS,
    chip_hdus,
    companion_hdus,
    pick_hdu,
    scan_source,
    science_hdus,
    science_names,
    uncompressed,
)
from astrid.science.fitsscan import FitsLimits, ScannedFits
from astrid.science.fitswcs import _is_wcs_key, celestial_wcs, validate_wcs

__all__ = [
    "COMPANION_KINDS",
    "AmbiguousImageError",
    "FitsError",
    "FitsImage",
    "FitsLimits",
    "ImageTooLargeError",
    "InvalidFitsError",
    "InvalidWCSError",
    "NoCelestialWCSError",
    "NoImageDataError",
    "UnusableImageError",
    "companion_hdus",
    "read_image",
    "science_hdus",
    "uncompressed",
    "validate_image",
    "write_image",
]


@dataclass(frozen=True)
class FitsImage:
    """One 2-D image read from a FITS file.

    Attributes
    ----------
    data : numpy.ndarray
        Image pixels, shape (ny, nx), native-endian float32 (BSCALE/BZERO applied; the
        HDU's own type with ``read_image(..., as_float=False)``).
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

    @functools.cached_property
    def wcs(self) -> WCS:
        """The celestial WCS (raises :class:`NoCelestialWCSError` if absent).

        Built once per image (~5 ms each time astropy parses it) and shared: treat it as
        read-only (``.deepcopy()`` it to change it).
        """
        return celestial_wcs(self.header)


def _open(
    source: str | Path | bytes, limits: FitsLimits | None
) -> tuple[fits.HDUList, ScannedFits]:
    """Scan within ``limits`` (nothing big allocated yet), then let astropy parse the file."""
    name = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)
    scanned = scan_source(source, limits)
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


def _hdu_key(hdu: int | str | tuple[str, int]) -> int | str | tuple[str, int]:
    """``"SCI,2"`` (EXTNAME,EXTVER) as astropy's ``("SCI", 2)``; anything else as given."""
    if isinstance(hdu, str):
        match = re.fullmatch(r"\s*([^,]+?)\s*,\s*(\d+)\s*", hdu)
        if match:
            return (match.group(1), int(match.group(2)))
    return hdu


def read_image(
    source: str | Path | bytes,
    hdu: int | str | tuple[str, int] | None = None,
    *,
    limits: FitsLimits | None = None,
    validate: bool | None = None,
    as_float: bool = True,
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
    hdu : int, str or (str, int), optional
        HDU index, EXTNAME, or EXTNAME and EXTVER (``"SCI,2"`` or ``("SCI", 2)``: one chip
        of a multi-chip file); by default an HDU named SCI, else the first 2-D image (a
        mosaic or a multi-chip file then raises :class:`AmbiguousImageError`).
    limits : FitsLimits, optional
        Largest image, file and header accepted (default :class:`FitsLimits`).
    validate : bool, optional
        Refuse pixels and WCS that cannot be a usable image (:func:`validate_image`);
        by default the science image is checked, an HDU asked for by ``hdu`` (a weight or
        mask plane) is not.
    as_float : bool
        False: the HDU's own numbers in native byte order instead of float32 (a mask or DQ
        plane's integers as they are: no 4-byte float copy, and no DQ bits above 2**24
        rounded away by float32).

    Returns
    -------
    FitsImage
        Pixels as native-endian float32 (``as_float``), shape (ny, nx).

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
                index = pick_hdu(scanned) if hdu is None else hdul.index_of(_hdu_key(hdu))
            except (KeyError, IndexError) as exc:
                raise NoImageDataError(f"the FITS file has no HDU {hdu!r}") from exc
            chosen = hdul[index]
            try:
                chosen.verify("silentfix")
                pixels = chosen.data
            except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
                raise InvalidFitsError(f"HDU {index} cannot be read: {exc}") from exc
            if pixels is not None and pixels.ndim > 2 and all(n == 1 for n in pixels.shape[:-2]):
                # degenerate extra axes (frequency, Stokes, a one-plane cube): one image
                pixels = pixels.reshape(pixels.shape[-2:])
            if pixels is None or pixels.ndim != 2:
                raise NoImageDataError(
                    f"HDU {hdu if hdu is not None else index!r} is not a 2-D image"
                )
            data = _native(pixels, np.float32 if as_float else None)
            del pixels
            # The primary's own header object (no copy: copying re-parses every card).
            header = _merged_header(hdul[0].header, chosen.header) if index != 0 else chosen.header
            name = chosen.name or ("PRIMARY" if index == 0 else str(index))
            if chip_hdus(scanned):
                # "SCI,2": one chip of several (or a CCD-named image beside them)
                name = science_names(scanned).get(index, name)
    image = FitsImage(
        data=np.ascontiguousarray(data), header=header, hdu_index=index, hdu_name=name
    )
    if validate or (validate is None and hdu is None):
        validate_image(image)
    return image


def _native(pixels: np.ndarray, dtype: type | None) -> np.ndarray:
    """``pixels`` as native-endian ``dtype`` (None: their own type).

    FITS stores big-endian numbers: a plane already of the wanted type is byte-swapped in
    its own buffer (the one astropy just read for this call, when writeable) instead of
    being copied into a fresh array (16 MB at 4 Mpix of float32, and its first touch).
    The same values either way.
    """
    want = pixels.dtype.newbyteorder("=") if dtype is None else np.dtype(dtype)
    if pixels.dtype == want:
        return pixels
    if pixels.dtype == want.newbyteorder("S") and pixels.flags.writeable:
        return pixels.byteswap(inplace=True).view(want)
    return np.asarray(pixels, dtype=want)


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
    # without a NaN or inf, ``any`` over the whole array needs no 16-MB copy of the finite
    # pixels (4 Mpix) first
    if not (np.any(data) if n_finite == data.size else np.any(data[finite])):
        raise UnusableImageError(
            f"every pixel of the {data.shape[1]} × {data.shape[0]} image is zero",
            hint="the file holds no measurements",
        )
    header = image.header
    if require_wcs or "CTYPE1" in header or "CTYPE2" in header or "AMDX1" in header:
        wcs = validate_wcs(header, (int(data.shape[0]), int(data.shape[1])))
        # the WCS just checked is the image's: kept as its (cached) ``wcs``
        image.__dict__.setdefault("wcs", wcs)


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
