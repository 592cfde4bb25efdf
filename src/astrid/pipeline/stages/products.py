"""FITS blobs of the stages' products: write an array with a header, read one back."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from astrid.runtime import Runtime
from astrid.science.fitswcs import celestial_wcs

__all__ = ["extension", "fits_bytes", "read_array", "wcs_header"]


def fits_bytes(
    data: np.ndarray, header: fits.Header | None = None, extra: Mapping[str, Any] | None = None
) -> bytes:
    """One primary HDU holding ``data`` with ``header``'s cards (layout cards rewritten)."""
    hdr = fits.Header() if header is None else header.copy()
    hdr.strip()  # layout keywords (SIMPLE, BITPIX, NAXISn, EXTEND, CHECKSUM...) are rewritten
    for key in ("BZERO", "BSCALE", "EXTNAME"):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    for key, value in (extra or {}).items():
        hdr[key] = value
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
    return buf.getvalue()


def read_array(runtime: Runtime, key: str) -> tuple[np.ndarray, fits.Header]:
    """The primary array and header of the FITS blob ``key``."""
    with fits.open(io.BytesIO(runtime.blobs.get(key))) as hdul:
        return np.array(hdul[0].data), hdul[0].header.copy()


def extension(hdul: fits.HDUList, name: str) -> np.ndarray | None:
    """The 2-d data of the extension called ``name`` (e.g. ``MASK``), or None."""
    for hdu in hdul[1:]:
        if hdu.name == name and hdu.data is not None and np.ndim(hdu.data) == 2:
            return np.array(hdu.data)
    return None


def wcs_header(header: fits.Header) -> fits.Header:
    """The celestial WCS cards of ``header`` alone."""
    return celestial_wcs(header).to_header(relax=True)
