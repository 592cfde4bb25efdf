"""Excluded pixels from a data-quality plane (a ``DQ``, ``MASK`` or ``BPM`` extension).

Missions give their DQ bits different meanings, and some bits are informational: the pixel
holds a good value and only says something about it. Such pixels are kept; every other set
bit excludes the pixel.

JWST (``TELESCOP = 'JWST'``): the pipeline sets ``DO_NOT_USE`` (bit value 1) on every pixel
that should not be used; the rest is informational (a ``JUMP_DET`` pixel, value 4, is a
cosmic ray removed from the ramp and keeps a good slope; several per cent of a long
exposure). Only ``DO_NOT_USE`` excludes.

HST (``TELESCOP = 'HST'``), by ``INSTRUME`` (and ``DETECTOR`` for WFC3):

* a header with ``SDQFLAGS`` (the "serious data quality flags" the STIS and COS pipelines
  write): exactly those bits exclude;
* ACS and WFC3/UVIS: hot (16) and warm (64) pixels are kept, the bits STScI's own pipeline
  drizzles as good (``final_bits = 336`` = 16 + 64 + 256 in drizzlepac's
  ``hap_pars/svm_parameters/acs/wfc/acs_wfc_astrodrizzle_any_n2.json`` and
  ``.../wfc3/uvis/wfc3_uvis_astrodrizzle_any_n4.json``; bit meanings: ACS and WFC3 Data
  Handbooks, DQ tables, as listed in stginga's ``dqflags_acs.txt``/``dqflags_wfc3.txt``).
  Saturation (256) is left excluding: drizzling keeps it to sum a saturated star's flux,
  a difference image cannot use a non-linear core. Cosmic rays (4096 from AstroDrizzle,
  8192 from CR-SPLIT rejection) exclude: the ``_flt`` pixel still holds the ray;
* WFC3/IR: hot (16) and IR "blob" flat-field pixels (512) are kept (``final_bits = 528``,
  ``.../wfc3/ir/wfc3_ir_astrodrizzle_any_n1.json``);
* STIS without ``SDQFLAGS``: calstis's own default, 32767 (all 15 DQ bits serious: every
  set bit excludes). calstis reads the keyword from the primary header with that default
  when it is missing (hstcal ``pkg/stis/calstis/cs8/calstis8.c``, ``GetKeyInfo8``:
  ``Get_KeyI (phdr, "SDQFLAGS", use_default, 32767, ...)``) and starts from it in every
  step (``cs1/calstis1.c``, ``StisInit1``: ``sts->sdqflags = 32767; /* 15 bits set */``).
  31743 (every bit but 1024, a small blemish), the value AstrID used before, is only what
  STScI's pipeline usually *writes* into a STIS header, i.e. the case of the rule above;
  for a file without the keyword no source gives it;
* WFPC2: 1024, a *repaired* warm pixel, is kept (WFPC2 Data Handbook, Table 3.4); 512
  (unrepaired warm) and the rest exclude;
* other HST instruments (NICMOS, FOC...): any set bit, as before.

Elsewhere (a MASK or BPM plane, unknown missions) any set bit excludes the pixel.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

__all__ = ["HST_KEPT_BITS", "JWST_DO_NOT_USE", "STIS_SDQFLAGS", "dq_mask", "excluding_bits"]

#: JWST's DQ bit value for pixels not to be used (jwst.datamodels.dqflags).
JWST_DO_NOT_USE = 1

#: calstis's serious-flags word when a STIS header has no SDQFLAGS: all 15 bits (hstcal
#: ``pkg/stis/calstis/cs8/calstis8.c``, ``Get_KeyI (phdr, "SDQFLAGS", use_default, 32767,
#: ...)``; ``cs1/calstis1.c``: ``sts->sdqflags = 32767; /* 15 bits set */``).
STIS_SDQFLAGS = 32767

#: Informational HST DQ bits, kept, by instrument (``WFC3/IR`` keyed apart: its DETECTOR).
HST_KEPT_BITS: dict[str, int] = {
    "ACS": 16 | 64,  # hot, warm
    "WFC3": 16 | 64,  # UVIS: hot, warm
    "WFC3/IR": 16 | 512,  # hot, IR blob (flagged in the flat)
    "WFPC2": 1024,  # repaired warm pixel
    "STIS": 0,  # no SDQFLAGS: calstis's STIS_SDQFLAGS, every (15-bit) DQ flag serious
}


def _text(header: fits.Header | None, key: str) -> str:
    return str((header or {}).get(key, "")).strip().upper()


def excluding_bits(header: fits.Header | None) -> int | None:
    """The DQ bits that exclude a pixel for the image of ``header`` (module docstring), or
    None when any set bit does (no mission rule applies)."""
    telescope = _text(header, "TELESCOP")
    if telescope == "JWST":
        return JWST_DO_NOT_USE
    if telescope != "HST":
        return None
    serious = (header or {}).get("SDQFLAGS")
    if isinstance(serious, int) and not isinstance(serious, bool) and serious > 0:
        return serious
    instrument = _text(header, "INSTRUME")
    if instrument == "WFC3" and _text(header, "DETECTOR") == "IR":
        instrument = "WFC3/IR"
    kept = HST_KEPT_BITS.get(instrument)
    return None if kept is None else ~kept


def dq_mask(plane: np.ndarray, header: fits.Header | None = None) -> np.ndarray:
    """Bool array of ``plane``'s shape, True = excluded.

    Parameters
    ----------
    plane : numpy.ndarray
        The data-quality values (integers; a float plane is read as integers, NaN excluded).
    header : astropy.io.fits.Header, optional
        The image's header (the primary's keywords merged in, as ``read_image`` gives it):
        ``TELESCOP`` ('JWST', 'HST'), ``INSTRUME``, ``DETECTOR`` and ``SDQFLAGS`` select
        the mission's meaning of the bits (module docstring).
    """
    arr = np.asarray(plane)
    bits = excluding_bits(header)
    if arr.dtype.kind == "f" and bits is None:
        # the float plane read as integers (truncated toward zero), any set bit: a finite
        # value is non-zero as an integer exactly when |value| >= 1, and NaN and inf are
        # excluded, so this is ``~(|value| < 1)`` (NaN < 1 is False) in one pass, without
        # the 8-byte integer copy of the plane (32 MB at 4 Mpix)
        with np.errstate(invalid="ignore"):
            return ~(np.abs(arr) < 1)
    if arr.dtype.kind != "f" and bits is None:
        return np.asarray(arr != 0)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        arr = np.where(bad, 0, arr).astype(np.int64)
    else:
        bad = np.zeros(arr.shape, bool)
    if bits is None:
        return bad | (arr != 0)
    return bad | ((arr.astype(np.int64) & bits) != 0)
