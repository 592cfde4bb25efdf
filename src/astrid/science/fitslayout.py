"""Which HDUs of a FITS file are science images, and which planes belong to each.

An ordinary file has one science image; a mosaic has one per CCD (several images of one
shape, auxiliary planes such as MASK or VARIANCE left out); HST's two-chip files have
``SCI,1``/``SCI,2`` told apart by EXTVER. :func:`science_hdus` lists them,
:func:`companion_hdus` finds one image's own planes, :func:`uncompressed` removes a gzip
or bzip2 layer once for reading several of them. Decided from the headers alone
(:mod:`~astrid.science.fitsscan`); :mod:`~astrid.science.fitsio` reads the pixels and
re-exports these functions.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

from astrid.science.fitserrors import AmbiguousImageError, InvalidFitsError, NoImageDataError
from astrid.science.fitsscan import FitsLimits, HduLayout, ScannedFits, image_hdus, scan_fits

__all__ = [
    "COMPANION_KINDS",
    "chip_hdus",
    "companion_hdus",
    "pick_hdu",
    "scan_source",
    "science_hdus",
    "science_names",
    "uncompressed",
]


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


def chip_hdus(scanned: ScannedFits) -> list[HduLayout]:
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


def science_names(scanned: ScannedFits) -> dict[int, str]:
    """HDU index → name of each science image of a multi-image file: ``SCI,n`` for a chip,
    the EXTNAME for a CCD (``NAME,EXTVER`` when that EXTNAME is repeated), the index for an
    unnamed one; ``{}`` for an ordinary file."""
    ccds = _mosaic_ccds(scanned)
    chips = {h.index for h in chip_hdus(scanned)}
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
    """The CCDs of a mosaic: the chips of a multi-chip file (:func:`chip_hdus`) with any other
    science image of their shape (:func:`_beside_chips`), in file order; else the image
    HDUs of the first image's shape that are not auxiliary planes, when there are several
    and none is named SCI; else ``[]``.

    Decided from the scanned headers, so no data unit is read to choose.
    """
    chips = chip_hdus(scanned)
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


def pick_hdu(scanned: ScannedFits) -> int:
    """Index of the science HDU: an image HDU named SCI, else the first 2-D image, unless
    other images compete with it (a mosaic: images of its shape that are not auxiliary
    planes; or several SCI told apart by EXTVER, HST's two chips): then
    :class:`AmbiguousImageError`.

    Decided from the scanned headers, so no data unit is read to choose.
    """
    candidates = image_hdus(scanned.hdus)
    chips = chip_hdus(scanned)
    if chips:
        science = science_names(scanned)
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


def scan_source(source: str | Path | bytes, limits: FitsLimits | None) -> ScannedFits:
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
    scanned = scan_source(source, limits)
    ccds = _mosaic_ccds(scanned)
    if ccds:
        names = science_names(scanned)
        return [(h.index, names[h.index]) for h in ccds]
    index = pick_hdu(scanned)
    name = scanned.hdus[index].name
    return [(index, name or ("PRIMARY" if index == 0 else str(index)))]


def uncompressed(source: bytes, *, limits: FitsLimits | None = None) -> bytes:
    """The FITS bytes of ``source`` with a gzip or bzip2 layer removed (plain bytes are
    returned as they are; tile compression is kept), checked within ``limits``.

    For reading several HDUs of one file (a mosaic's CCDs): each :func:`read_image` call on
    gzipped bytes decompresses the whole file again (16 CCDs of 1024 × 2048 from a gzipped
    file: 17 s of CPU read one by one, 1.2 s after this once; benchmarks/mosaic_ingest.py).
    The pipeline's preprocess also keeps the result for the file's next CCD, in memory or,
    for a file larger than its memory cache, decompressed once into a spool file each CCD
    reads its own HDUs from (``astrid.pipeline.stages.products.raw_fits``).
    """
    scanned = scan_source(source, limits)
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
    scanned = scan_source(source, limits)
    images = image_hdus(scanned.hdus)
    by_index = {h.index: h for h in images}
    if hdu not in by_index:
        return {}
    shape = by_index[hdu].shape[-2:]
    chips = chip_hdus(scanned)
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
