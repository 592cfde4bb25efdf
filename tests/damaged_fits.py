"""Damaged FITS files of the kinds a real archive sends, generated (never committed).

Each case starts from a valid simulated star field with a TAN WCS and breaks one thing.
``DAMAGED`` maps a file name to (bytes, the words the one-line refusal must contain).
"""

from __future__ import annotations

import gzip
import io
from functools import cache

import numpy as np
from astropy.io import fits

from astrid.science.fitsio import write_image
from astrid.science.simulate_image import simulate_star_field

BLOCK = 2880


@cache
def good_fits() -> bytes:
    """A valid 40 × 50 float32 star field with a celestial WCS."""
    sim = simulate_star_field((40, 50), n_stars=10, seed=2)
    return write_image(None, sim.data, header=sim.header)


def set_card(raw: bytes, keyword: str, value_text: str) -> bytes:
    """Replace the value of ``keyword`` in the primary header by raw text (e.g. ``NAN``)."""
    end = raw.index(b"END" + b" " * 77)
    for start in range(0, end, 80):
        if raw[start : start + 8].decode("latin-1").strip() == keyword:
            card = f"{keyword:<8}= {value_text:>20}".ljust(80).encode("latin-1")
            return raw[:start] + card + raw[start + 80 :]
    raise KeyError(keyword)


def _with_pixels(data: np.ndarray) -> bytes:
    sim = simulate_star_field((40, 50), n_stars=10, seed=2)
    return write_image(None, data, header=sim.header)


def _singular_cd() -> bytes:
    sim = simulate_star_field((40, 50), n_stars=10, seed=2)
    header = sim.header.copy()
    for key in [k for k in header if k.startswith(("PC", "CD", "CDELT"))]:
        del header[key]
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        header[key] = 2.0e-4  # both rows equal: determinant 0
    return write_image(None, sim.data, header=header)


def _no_wcs() -> bytes:
    sim = simulate_star_field((40, 50), n_stars=10, seed=2)
    return write_image(None, sim.data)


def _cube() -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(np.random.default_rng(1).normal(size=(3, 20, 20)).astype(np.float32)).writeto(
        buf
    )
    return buf.getvalue()


def _header_only() -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU().writeto(buf)
    return buf.getvalue()


def _mosaic() -> bytes:
    """Three CCDs of one exposure (DECam-style EXTNAMEs) and a weight plane, no SCI name,
    no CCD with a WCS: a mosaic is ingested per CCD, and here every CCD is refused."""
    sim = simulate_star_field((40, 50), n_stars=10, seed=2)
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for name in ("N4", "N5", "S1"):
        hdus.append(fits.ImageHDU(sim.data, name=name))
    hdus.append(fits.ImageHDU(np.ones((40, 50), np.float32), name="WEIGHT"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def damaged_files() -> dict[str, tuple[bytes, str]]:
    """File name → (bytes, text the refusal names)."""
    good = good_fits()
    header_len = good.index(b"END" + b" " * 77) // BLOCK * BLOCK + BLOCK
    nan = np.full((40, 50), np.nan, dtype=np.float32)
    return {
        "bad_bitpix.fits": (set_card(good, "BITPIX", "12"), "BITPIX = 12"),
        "all_nan.fits": (_with_pixels(nan), "NaN"),
        "all_zero.fits": (_with_pixels(np.zeros((40, 50), np.float32)), "zero"),
        "truncated.fits": (good[: header_len + BLOCK], "truncated"),
        "crval_nan.fits": (set_card(good, "CRVAL1", "NAN"), "CRVAL1"),
        "singular_cd.fits": (_singular_cd(), "singular"),
        "no_wcs.fits": (_no_wcs(), "no celestial WCS"),
        "cube.fits": (_cube(), "no 2-D image"),
        "header_only.fits": (_header_only(), "header only"),
        "mosaic.fits": (_mosaic(), "no celestial WCS"),
        "cdelt_inf.fits": (set_card(good, "CDELT1", "INF"), "CDELT1"),
        "not_fits.fits.gz": (gzip.compress(b"plain text, not FITS\n" * 100), "not FITS"),
    }
