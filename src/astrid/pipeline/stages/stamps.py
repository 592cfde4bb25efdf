"""Cutouts of the detect stage, stored as blobs: one FITS (NEW, REF, DIFF) and PNGs.

Cutting and rendering are :mod:`astrid.science.cutouts` (the one stamp convention:
nearest-pixel centre, NaN off the image; zscale + asinh display); this module only
stores what it makes.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from astrid.pipeline.stages.products import data_unit, header_unit
from astrid.runtime import Runtime
from astrid.science.cutouts import display_limits, to_png, triplet_png

__all__ = ["store_cutouts"]


def _fits_bytes(stamps: dict[str, np.ndarray], wcs_header: fits.Header) -> bytes:
    """The bytes ``fits.HDUList([PrimaryHDU(), ImageHDU(stamp, wcs_header, NAME)…]).writeto``
    writes, for float32 stamps of one shape.

    Astropy builds one extension header (its card order and formatting); the others differ
    only in the EXTNAME card, and the data are big-endian float32 zero-padded to 2880 bytes
    (:func:`~astrid.pipeline.stages.products.header_unit` and
    :func:`~astrid.pipeline.stages.products.data_unit`, as the stages' other products).
    Three HDUs and a verified ``writeto`` per candidate were most of the detect stage's
    cutout time.
    """
    arrays = {name.upper(): np.asarray(st, dtype=np.float32) for name, st in stamps.items()}
    first = next(iter(arrays))
    shapes = {a.shape for a in arrays.values()}
    hdu = fits.ImageHDU(arrays[first], header=wcs_header, name=first)
    hdu.verify("exception")  # what writeto checks; the other extensions differ only in name
    if len(shapes) != 1 or hdu.header.get("EXTNAME") != first:
        hdus: list[Any] = [fits.PrimaryHDU()]  # not the common case: let astropy write it
        hdus += [fits.ImageHDU(a, header=wcs_header, name=n) for n, a in arrays.items()]
        buf = io.BytesIO()
        fits.HDUList(hdus).writeto(buf)
        return buf.getvalue()
    card = hdu.header.cards["EXTNAME"]
    header = header_unit(hdu.header)
    old = card.image.encode("ascii")
    at = next(i for i in range(0, len(header), 80) if header[i : i + 80] == old)
    parts: list[bytes | memoryview] = [header_unit(fits.PrimaryHDU().header)]
    for name, arr in arrays.items():
        image = fits.Card("EXTNAME", name, card.comment).image.encode("ascii")
        parts.append(header[:at] + image + header[at + len(image) :])
        parts.extend(data_unit(arr))
    return b"".join(parts)


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
    keys["png"] = runtime.blobs.put(triplet_png(triplet, wcs=WCS(wcs_header), limits=lims))
    return keys
