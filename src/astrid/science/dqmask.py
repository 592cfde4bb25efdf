"""Excluded pixels from a data-quality plane (a ``DQ``, ``MASK`` or ``BPM`` extension).

Missions give their DQ bits different meanings. JWST's pipeline sets ``DO_NOT_USE`` (bit
value 1) on every pixel that should not be used, and many other bits are informational: a
``JUMP_DET`` pixel (value 4, a cosmic ray removed from the ramp) keeps a good slope and
is common (several per cent of a long exposure). So a JWST plane excludes ``DO_NOT_USE``
pixels only. Elsewhere (HST's DQ, a MASK or BPM plane) any set bit excludes the pixel.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

__all__ = ["JWST_DO_NOT_USE", "dq_mask"]

#: JWST's DQ bit value for pixels not to be used (jwst.datamodels.dqflags).
JWST_DO_NOT_USE = 1


def dq_mask(plane: np.ndarray, header: fits.Header | None = None) -> np.ndarray:
    """Bool array of ``plane``'s shape, True = excluded.

    Parameters
    ----------
    plane : numpy.ndarray
        The data-quality values (integers; a float plane is read as integers, NaN excluded).
    header : astropy.io.fits.Header, optional
        The image's header: ``TELESCOP = 'JWST'`` selects JWST's meaning of the bits.
    """
    arr = np.asarray(plane)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        arr = np.where(bad, 0, arr).astype(np.int64)
    else:
        bad = np.zeros(arr.shape, bool)
    telescope = str((header or {}).get("TELESCOP", "")).strip().upper()
    if telescope == "JWST":
        return bad | ((arr.astype(np.int64) & JWST_DO_NOT_USE) != 0)
    return bad | (arr != 0)
