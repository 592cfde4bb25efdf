"""Reading, validating and writing FITS images: the file layer of the FITS modules.

The entry points are :func:`read_image` (bytes or path in, :class:`FitsImage` out; plain,
multi-extension, gzipped, tile-compressed ``.fz``, big-endian, BZERO/BSCALE-scaled, NaN),
:func:`validate_image` (refuses unusable pixels or WCS) and :func:`write_image` (array +
header/WCS in, FITS bytes out). Errors are :class:`FitsError`
subclasses naming what was wrong. A file of several science images (a mosaic's CCDs, or
HST's chips ``SCI,1``/``SCI,2`` told apart by EXTVER) is listed by :func:`science_hdus`,
each image's own planes by :func:`companion_hdus`; ``read_image`` then reads one
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
from astrid.science.fitsscan import FitsLimits, HduLayout, ScannedFits, image_hdus, scan_fits
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
    scanned = _scanned(source, limits)
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


#: EXTNAMEs of planes that accompany a science image (uncertainty, weight, quality, mask,
#: exposure, context), by prefix: HST/JWST (ERR, DQ, WHT, CON, VAR_*), DECam (WEIGHT, MSK),
#: SDSS/LSST-style (VARIANCE, MASK, INVVAR), and AstrID's own products.
_AUXILIARY_PREFIXES = (
    "ERR", "DQ", "WHT", "WEIGHT", "CON", "VAR", "INVVAR", "IVAR", "MASK", "MSK", "BPM",
    "EXP", "NOISE", "RMS", "SIG", "UNC", "FLAG", "SAMP", "TIME", "PSF", "BKG", "BACK",
    "SKY", "HDRTAB", "ASDF",
)  # fmt: skip


def _is_auxiliary(name: str) -> bool:
    """A plane beside a science image: its name, or the part after its last ``_``, ``.`` or
    ``-`` (a mosaic CCD's own plane: ``N4_MASK``, ``N4.VARIANCE``), starts as one does."""
    upper = name.strip().upper()
    last = re.split(r"[_.-]", upper)[-1]
    return upper.startswith(_AUXILIARY_PREFIXES) or last.startswith(_AUXILIARY_PREFIXES)


def _chips(scanned: ScannedFits) -> list[HduLayout]:
    """The chips of an HST-style multi-chip file: the image HDUs named SCI, one per EXTVER
    (``SCI,1``, ``SCI,2``: ACS/WFC and WFC3/UVIS ``_flt``), when there are several EXTVERs;
    else ``[]`` (one SCI, JWST's say, is an ordinary file)."""
    chips: dict[int, HduLayout] = {}
    for h in image_hdus(scanned.hdus):
        if h.name.strip().upper() == "SCI":
            chips.setdefault(h.extver, h)
    return list(chips.values()) if len(chips) > 1 else []


def _chip_name(h: HduLayout) -> str:
    return f"{h.name.strip().upper()},{h.extver}"


def _beside_chips(scanned: ScannedFits, chips: list[HduLayout]) -> list[HduLayout]:
    """The other science images of a multi-chip file: image HDUs of a chip's shape neither
    named SCI nor auxiliary (a file mixing HST-style chips with CCD-named images ``N4``...).
    Images of other shapes (HST's WCSDVARR/D2IMARR distortion arrays) are not science."""
    shapes = {h.shape[-2:] for h in chips}
    taken = {h.index for h in chips}
    return [
        h
        for h in image_hdus(scanned.hdus)
        if h.index not in taken
        and h.name.strip().upper() not in {"SCI", "SCIENCE"}
        and not _is_auxiliary(h.name)
        and h.shape[-2:] in shapes
    ]


def _science_names(scanned: ScannedFits) -> dict[int, str]:
    """HDU index → name of each science image of a multi-image file: ``SCI,n`` for a chip,
    the EXTNAME for a CCD (``NAME,EXTVER`` when that EXTNAME is repeated), the index for an
    unnamed one; ``{}`` for an ordinary file."""
    ccds = _mosaic_ccds(scanned)
    chips = {h.index for h in _chips(scanned)}
    counts: dict[str, int] = {}
    for h in ccds:
        counts[h.name.strip().upper()] = counts.get(h.name.strip().upper(), 0) + 1
    names: dict[int, str] = {}
    for h in ccds:
        if h.index in chips or (h.name.strip() and counts[h.name.strip().upper()] > 1):
            names[h.index] = _chip_name(h)
        else:
            names[h.index] = h.name or str(h.index)
    return names


def _mosaic_ccds(scanned: ScannedFits) -> list[HduLayout]:
    """The CCDs of a mosaic: the chips of a multi-chip file (:func:`_chips`) with any other
    science image of their shape (:func:`_beside_chips`), in file order; else the image
    HDUs of the first image's shape that are not auxiliary planes, when there are several
    and none is named SCI; else ``[]``.

    Decided from the scanned headers, so no data unit is read to choose.
    """
    chips = _chips(scanned)
    if chips:
        return sorted(chips + _beside_chips(scanned, chips), key=lambda h: h.index)
    candidates = image_hdus(scanned.hdus)
    if not candidates or any(h.name.upper() in {"SCI", "SCIENCE"} for h in candidates):
        return []
    first = candidates[0]
    if _is_auxiliary(first.name):
        return []
    # planes beside the image (VARIANCE, MASK...) and images of other shapes are not CCDs
    rivals = [
        h for h in candidates if h.shape[-2:] == first.shape[-2:] and not _is_auxiliary(h.name)
    ]
    return rivals if len(rivals) > 1 else []


def _pick_hdu(scanned: ScannedFits) -> int:
    """Index of the science HDU: an image HDU named SCI, else the first 2-D image, unless
    other images compete with it (a mosaic: images of its shape that are not auxiliary
    planes; or several SCI told apart by EXTVER, HST's two chips): then
    :class:`AmbiguousImageError`.

    Decided from the scanned headers, so no data unit is read to choose.
    """
    candidates = image_hdus(scanned.hdus)
    chips = _chips(scanned)
    if chips:
        science = _science_names(scanned)
        names = ", ".join(f"{index} ({name})" for index, name in science.items())
        others = len(science) - len(chips)
        more = f" and {others} other science image(s)" if others else ""
        raise AmbiguousImageError(
            f"the FITS file holds {len(chips)} chips{more} (HDUs {names}): several SCI "
            "images told apart by EXTVER",
            hint="a multi-chip file (HST ACS/WFC, WFC3/UVIS): `astrid ingest` and the upload "
            "make one observation per chip (and per other science image); to read one, "
            'pass it to read_image (hdu="SCI,2") or to `astrid detect`/`subtract` '
            "(--hdu SCI,2)",
        )
    for layout in candidates:
        if layout.name.upper() in {"SCI", "SCIENCE"}:
            return layout.index
    # a mosaic (DECam's 60 CCD extensions N1...S31, say): the first CCD alone would be a
    # silent loss of the others
    rivals = _mosaic_ccds(scanned)
    if rivals:
        names = ", ".join(f"{h.index} ({h.name or 'unnamed'})" for h in rivals[:6])
        more = f" and {len(rivals) - 6} more" if len(rivals) > 6 else ""
        raise AmbiguousImageError(
            f"the FITS file holds {len(rivals)} science images of the same shape "
            f"(HDUs {names}{more}) and none is named SCI",
            hint="a mosaic: `astrid ingest` and the upload make one observation per CCD; "
            "to read one CCD alone, pass its HDU to read_image (hdu=), split the mosaic "
            "into one file per CCD, or name that CCD's HDU SCI",
        )
    if candidates:
        return candidates[0].index
    shapes = ", ".join(
        f"HDU {h.index} NAXIS = {len(h.shape)}" for h in scanned.hdus if h.kind != "other"
    )
    raise NoImageDataError(
        "the FITS file has no 2-D image HDU" + (f" ({shapes})" if shapes else " (header only)"),
        hint="AstrID reads 2-D images, not tables or cubes",
    )


def _scanned(source: str | Path | bytes, limits: FitsLimits | None) -> ScannedFits:
    name = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)
    try:
        return scan_fits(source, limits)
    except InvalidFitsError as exc:
        what = "not" if name == "<bytes>" else f"{name} is not"
        raise InvalidFitsError(
            f"{what} a readable FITS file: {exc.message}", hint=exc.hint
        ) from exc


def science_hdus(
    source: str | Path | bytes, *, limits: FitsLimits | None = None
) -> list[tuple[int, str]]:
    """The science images of a FITS file, as ``(HDU index, EXTNAME)`` in file order.

    One entry for an ordinary file (the HDU :func:`read_image` reads by default); one per
    CCD for a mosaic (several images of one shape, none named SCI, auxiliary planes such as
    MASK or VARIANCE left out); one per chip, named ``SCI,1``, ``SCI,2``..., for a file of
    several SCI images told apart by EXTVER (HST ACS/WFC, WFC3/UVIS), with any other image
    of the chips' shape that is not an auxiliary plane (a file mixing chips and CCD-named
    images: each is a science image, named by its EXTNAME, or ``NAME,EXTVER`` when the
    name repeats; images of other shapes, such as HST's distortion arrays, are not).
    Decided from the headers alone (no data unit is read); read each with
    ``read_image(source, hdu=index, validate=True)``.

    Raises
    ------
    FitsError
        :class:`InvalidFitsError`, :class:`ImageTooLargeError` (from the header scan) or
        :class:`NoImageDataError` (no 2-D image at all).
    """
    scanned = _scanned(source, limits)
    ccds = _mosaic_ccds(scanned)
    if ccds:
        names = _science_names(scanned)
        return [(h.index, names[h.index]) for h in ccds]
    index = _pick_hdu(scanned)
    name = scanned.hdus[index].name
    return [(index, name or ("PRIMARY" if index == 0 else str(index)))]


def uncompressed(source: bytes, *, limits: FitsLimits | None = None) -> bytes:
    """The FITS bytes of ``source`` with a gzip or bzip2 layer removed (plain bytes are
    returned as they are; tile compression is kept), checked within ``limits``.

    For reading several HDUs of one file (a mosaic's CCDs): each :func:`read_image` call on
    gzipped bytes decompresses the whole file again (16 CCDs of 1024 × 2048 from a gzipped
    file: 17 s of CPU read one by one, 1.2 s after this once; benchmarks/mosaic_ingest.py).
    The pipeline's preprocess also keeps the result for the file's next CCD
    (``astrid.pipeline.stages.products.raw_fits``).
    """
    scanned = _scanned(source, limits)
    where = scanned.source
    return where.getvalue() if isinstance(where, io.BytesIO) else source


#: The planes :func:`companion_hdus` looks for by default.
COMPANION_KINDS = ("MASK", "VARIANCE")


def companion_hdus(
    source: str | Path | bytes,
    hdu: int,
    kinds: Sequence[str] = COMPANION_KINDS,
    *,
    limits: FitsLimits | None = None,
) -> dict[str, int]:
    """The planes (MASK, VARIANCE, ...) that belong to science HDU ``hdu``: kind → index.

    In an ordinary file, the image HDU after the primary named exactly as the kind (the
    rule the pipeline always used). In a mosaic a plane belongs to one CCD by name: for CCD
    ``N4`` and kind ``MASK``, an extension named ``N4_MASK``, ``N4.MASK``, ``N4-MASK``,
    ``MASK_N4``, ``MASK.N4`` or ``MASK-N4`` (case ignored); a plane named just ``MASK``
    belongs to no CCD of a mosaic. In a multi-chip file (``SCI,1``, ``SCI,2``) a plane
    belongs to the chip of its EXTVER: ``DQ,2`` and ``ERR,2`` to ``SCI,2``; a CCD-named
    image beside the chips (:func:`science_hdus`) takes its planes by name, as in a mosaic.
    Only planes of the science image's shape count. Decided from the headers alone.
    """
    scanned = _scanned(source, limits)
    images = image_hdus(scanned.hdus)
    by_index = {h.index: h for h in images}
    if hdu not in by_index:
        return {}
    shape = by_index[hdu].shape[-2:]
    chips = _chips(scanned)
    if chips and any(h.index == hdu for h in chips):
        extver = by_index[hdu].extver
        planes: dict[str, int] = {}
        for kind in (k.upper() for k in kinds):
            for h in images:
                if (h.index > 0 and h.name.strip().upper() == kind and h.extver == extver
                        and h.shape[-2:] == shape):  # fmt: skip
                    planes[kind] = h.index
                    break
        return planes
    # a CCD-named image beside chips takes its planes by name, as in a mosaic
    ccds = _mosaic_ccds(scanned)
    ccd = by_index[hdu].name.strip().upper() if any(h.index == hdu for h in ccds) else None
    if chips and ccd is None:
        return {}
    found: dict[str, int] = {}
    for kind in kinds:
        kind = kind.upper()
        if ccd is None:
            names = {kind}
        elif ccd:
            names = {f"{a}{sep}{b}" for sep in "_.-" for a, b in ((ccd, kind), (kind, ccd))}
        else:
            continue
        for h in images:
            if h.index > 0 and h.name.strip().upper() in names and h.shape[-2:] == shape:
                found[kind] = h.index
                break
    return found


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
                index = _pick_hdu(scanned) if hdu is None else hdul.index_of(_hdu_key(hdu))
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
            data = np.asarray(pixels, dtype=np.float32)
            del pixels
            # The primary's own header object (no copy: copying re-parses every card).
            header = _merged_header(hdul[0].header, chosen.header) if index != 0 else chosen.header
            name = chosen.name or ("PRIMARY" if index == 0 else str(index))
            if _chips(scanned):
                # "SCI,2": one chip of several (or a CCD-named image beside them)
                name = _science_names(scanned).get(index, name)
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
