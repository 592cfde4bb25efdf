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

from astrid.runtime import Runtime
from astrid.science.cutouts import to_png, triplet_png

__all__ = ["store_cutouts"]


def store_cutouts(
    runtime: Runtime, stamps: dict[str, np.ndarray], wcs_header: fits.Header
) -> dict[str, str]:
    """Store the ``new``, ``ref`` and ``diff`` stamps; their blob keys.

    Keys: ``fits`` (one FITS with ``NEW``, ``REF``, ``DIFF`` extensions carrying
    ``wcs_header``), ``new_png``, ``ref_png``, ``diff_png`` (each stamp) and ``png`` (the
    triplet new | reference | difference with a crosshair and a north arrow).
    """
    hdus: list[Any] = [fits.PrimaryHDU()]
    for name, st in stamps.items():
        hdus.append(fits.ImageHDU(st.astype(np.float32), header=wcs_header, name=name.upper()))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    keys = {"fits": runtime.blobs.put(buf.getvalue())}
    for name, st in stamps.items():
        keys[f"{name}_png"] = runtime.blobs.put(to_png(st))
    triplet = [stamps["new"], stamps["ref"], stamps["diff"]]
    keys["png"] = runtime.blobs.put(triplet_png(triplet, wcs=WCS(wcs_header)))
    return keys
