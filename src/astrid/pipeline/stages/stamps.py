"""Cutouts of the detect stage, stored as blobs: one FITS (NEW, REF, DIFF) and PNGs.

Cutting and rendering are :mod:`astrid.science.cutouts` (the one stamp convention:
nearest-pixel centre, NaN off the image; zscale + asinh display); this module only
stores what it makes.
"""

from __future__ import annotations

import copy
import io
import threading
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from astrid.pipeline.stages.products import data_unit, header_unit
from astrid.runtime import Runtime
from astrid.science.cutouts import display_limits, to_png, triplet_png

__all__ = ["store_cutouts"]


#: cards of a stamp's WCS that differ from candidate to candidate of one observation (the
#: reference pixel moved into the stamp, see the detect stage)
_MOVING = ("CRPIX1", "CRPIX2")


class _Template:
    """A verified stamp header and WCS, reused for the candidates of one observation.

    ``key``: everything the extension header depends on except the reference pixel (the
    stamps' shape, their names, the other cards' images). ``header``: the extension header
    bytes astropy writes for the first name, ``extname_at``/``crpix_at``: the byte offsets
    of the cards that change. ``wcs``: ``WCS(header)`` of the first candidate.
    """

    def __init__(
        self,
        key: tuple[Any, ...],
        header: bytes,
        extname_at: int,
        crpix_at: tuple[int, int],
        comment: str,
        wcs: WCS | None,
    ) -> None:
        self.key = key
        self.header = header
        self.extname_at = extname_at
        self.crpix_at = crpix_at
        self.comment = comment
        self.wcs = wcs


_TEMPLATE: _Template | None = None
_TEMPLATE_LOCK = threading.Lock()


def _template_key(
    arrays: dict[str, np.ndarray], wcs_header: fits.Header
) -> tuple[tuple[Any, ...], tuple[str, str]] | None:
    """(the template key of these stamps and header, the images of the moving cards), or
    None when the header has not exactly one of each moving card."""
    moving: dict[str, str] = {}
    others: list[str] = []
    for card in wcs_header.cards:
        if card.keyword in _MOVING:
            if card.keyword in moving:
                return None
            moving[card.keyword] = card.image
        else:
            others.append(card.image)
    if len(moving) != len(_MOVING):
        return None
    shapes = tuple(a.shape for a in arrays.values())
    return (shapes, tuple(arrays), tuple(others)), (moving["CRPIX1"], moving["CRPIX2"])


def _card_at(header: bytes, image: str) -> int:
    """Byte offset of the 80-character card ``image`` in header bytes (-1 if absent)."""
    old = image.encode("ascii")
    return next((i for i in range(0, len(header), 80) if header[i : i + 80] == old), -1)


def _build_template(
    arrays: dict[str, np.ndarray],
    wcs_header: fits.Header,
    key: tuple[Any, ...],
    moving: tuple[str, str],
    with_wcs: bool,
) -> _Template | None:
    """Build and verify the first extension's header as astropy writes it; None when it is
    not the common case (unequal shapes, a renamed EXTNAME, moving cards astropy
    reformats), which is written by astropy's ``writeto`` instead."""
    first = next(iter(arrays))
    hdu = fits.ImageHDU(arrays[first], header=wcs_header, name=first)
    hdu.verify("exception")  # what writeto checks; the other extensions differ only in name
    if len({a.shape for a in arrays.values()}) != 1 or hdu.header.get("EXTNAME") != first:
        return None
    header = header_unit(hdu.header)
    extname_at = _card_at(header, hdu.header.cards["EXTNAME"].image)
    crpix_at = (_card_at(header, moving[0]), _card_at(header, moving[1]))
    if extname_at < 0 or min(crpix_at) < 0:
        return None
    wcs = WCS(wcs_header) if with_wcs else None
    comment = hdu.header.cards["EXTNAME"].comment
    return _Template(key, header, extname_at, crpix_at, comment, wcs)


def _template(
    arrays: dict[str, np.ndarray], wcs_header: fits.Header, with_wcs: bool
) -> tuple[_Template, tuple[str, str]] | None:
    """The kept template for these stamps and header (built when the last one does not
    fit), with the header's moving cards; None for the uncommon cases."""
    global _TEMPLATE
    found = _template_key(arrays, wcs_header)
    if found is None:
        return None
    key, moving = found
    with _TEMPLATE_LOCK:
        kept = _TEMPLATE
    if kept is None or kept.key != key or (with_wcs and kept.wcs is None):
        kept = _build_template(arrays, wcs_header, key, moving, with_wcs)
        if kept is None:
            return None
        with _TEMPLATE_LOCK:
            _TEMPLATE = kept
    return kept, moving


def _header_with(template: _Template, moving: tuple[str, str], name: str) -> bytes:
    """The template's header with this candidate's moving cards and the EXTNAME ``name``."""
    out = bytearray(template.header)
    for at, image in zip(template.crpix_at, moving, strict=True):
        out[at : at + 80] = image.encode("ascii")
    image = fits.Card("EXTNAME", name, template.comment).image.encode("ascii")
    out[template.extname_at : template.extname_at + 80] = image
    return bytes(out)


def _astropy_fits_bytes(arrays: dict[str, np.ndarray], wcs_header: fits.Header) -> bytes:
    hdus: list[Any] = [fits.PrimaryHDU()]
    hdus += [fits.ImageHDU(a, header=wcs_header, name=n) for n, a in arrays.items()]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


_PRIMARY = header_unit(fits.PrimaryHDU().header)


def _fits_bytes(stamps: dict[str, np.ndarray], wcs_header: fits.Header) -> bytes:
    """The bytes ``fits.HDUList([PrimaryHDU(), ImageHDU(stamp, wcs_header, NAME)…]).writeto``
    writes, for float32 stamps of one shape.

    Astropy builds and verifies one extension header (its card order and formatting) per
    observation: the candidates' headers differ only in the reference pixel (``CRPIX1``,
    ``CRPIX2``, whose card images are the caller's header's) and the extensions only in
    the EXTNAME card (:class:`_Template`). The data are big-endian float32 zero-padded to
    2880 bytes (:func:`~astrid.pipeline.stages.products.header_unit` and
    :func:`~astrid.pipeline.stages.products.data_unit`, as the stages' other products).
    Three HDUs and a verified ``writeto`` per candidate were most of the detect stage's
    cutout time; a verified header per candidate was ~4 ms of it.
    """
    arrays = {name.upper(): np.asarray(st, dtype=np.float32) for name, st in stamps.items()}
    found = _template(arrays, wcs_header, with_wcs=False)
    if found is None:  # not the common case: let astropy write it
        return _astropy_fits_bytes(arrays, wcs_header)
    template, moving = found
    parts: list[bytes | memoryview] = [_PRIMARY]
    for name, arr in arrays.items():
        parts.append(_header_with(template, moving, name))
        parts.extend(data_unit(arr))
    return b"".join(parts)


def _stamp_wcs(stamps: dict[str, np.ndarray], wcs_header: fits.Header) -> WCS:
    """``WCS(wcs_header)``: a copy of the observation's template WCS with this header's
    reference pixel (parsing the header is ~2 ms, a copy ~0.1 ms), else parsed."""
    arrays = {name.upper(): np.asarray(st, dtype=np.float32) for name, st in stamps.items()}
    found = _template(arrays, wcs_header, with_wcs=True)
    if found is None or found[0].wcs is None:
        return WCS(wcs_header)
    wcs = copy.deepcopy(found[0].wcs)
    # the values as the cards print them (WCS(header) parses the cards' text)
    wcs.wcs.crpix = [float(fits.Card.fromstring(image).value) for image in found[1]]
    wcs.wcs.set()
    return wcs


def store_cutouts(
    runtime: Runtime, stamps: dict[str, np.ndarray], wcs_header: fits.Header
) -> dict[str, str]:
    """Store the ``new``, ``ref`` and ``diff`` stamps; their blob keys.

    Keys: ``fits`` (one FITS with ``NEW``, ``REF``, ``DIFF`` extensions carrying
    ``wcs_header``), ``new_png``, ``ref_png``, ``diff_png`` (each stamp) and ``png`` (the
    triplet new | reference | difference with a crosshair and a north arrow).
    """
    keys = {"fits": runtime.blobs.put(_fits_bytes(stamps, wcs_header))}
    limits = {}  # zscale once per stamp: the single PNGs and the triplet share them
    for name, st in stamps.items():
        limits[name] = display_limits(st)
        keys[f"{name}_png"] = runtime.blobs.put(to_png(st, limits=limits[name]))
    triplet = [stamps["new"], stamps["ref"], stamps["diff"]]
    lims = [limits["new"], limits["ref"], limits["diff"]]
    wcs = _stamp_wcs(stamps, wcs_header)
    keys["png"] = runtime.blobs.put(triplet_png(triplet, wcs=wcs, limits=lims))
    return keys
