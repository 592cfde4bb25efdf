"""Data-quality planes read by mission: JWST's DO_NOT_USE, any bit elsewhere."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from astrid.science.dqmask import dq_mask


def test_jwst_excludes_do_not_use_and_others_any_set_bit() -> None:
    dq = np.array([[0, 1, 4, 5], [2, 1024, 0, 513]], dtype=np.uint32)
    jwst = fits.Header({"TELESCOP": "JWST"})
    assert dq_mask(dq, jwst).tolist() == [[False, True, False, True], [False, False, False, True]]
    hst = fits.Header({"TELESCOP": "HST"})
    assert dq_mask(dq, hst).tolist() == (dq != 0).tolist()
    assert dq_mask(dq).tolist() == (dq != 0).tolist()  # no header: any bit


def test_float_planes_and_nan() -> None:
    plane = np.array([0.0, 1.0, np.nan, 4.0])
    assert dq_mask(plane).tolist() == [False, True, True, True]
    assert dq_mask(plane, fits.Header({"TELESCOP": " jwst "})).tolist() == [
        False,
        True,
        True,
        False,
    ]
