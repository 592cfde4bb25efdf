"""Binary dilations of boolean masks (True = set) by the two small structures used most.

The results of ``scipy.ndimage.binary_dilation`` (pixels beyond the edge are off) with
the default cross-shaped structure iterated, or with a 3x3 square, computed as ORs of the
mask with itself shifted by one pixel: a few ms at 4 Mpix instead of ~20 ms per pass of
scipy's general structuring-element loop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dilate_cross", "dilate_square"]


def dilate_square(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_dilation(mask, structure=np.ones((3, 3)))`` for a 2-D bool mask.

    Two separable passes (along x, then along y); returns a new bool array of the same
    shape.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[1:] |= rows[:-1]
    out[:-1] |= rows[1:]
    return out


def dilate_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=iterations)`` for a 2-D bool mask.

    The default (cross-shaped, 4-connected) structure applied ``iterations`` >= 1 times:
    every pixel within ``iterations`` steps (L1 distance) of a set pixel. Returns a new bool
    array of the same shape.
    """
    if iterations < 1:
        raise ValueError("dilate_cross needs at least one iteration")
    out = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        prev = out
        out = prev.copy()
        out[:, 1:] |= prev[:, :-1]
        out[:, :-1] |= prev[:, 1:]
        out[1:] |= prev[:-1]
        out[:-1] |= prev[1:]
    return out
