"""Cutouts of the detect stage: stamps around a candidate, stored as FITS and PNG blobs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from PIL import Image

from astrid.runtime import Runtime

__all__ = ["cutout", "store_cutouts"]


def cutout(arr: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """A ``size`` × ``size`` stamp centred on pixel (round(x), round(y)); NaN off the image."""
    half = size // 2
    xc, yc = int(round(x)), int(round(y))
    out = np.full((size, size), np.nan, dtype=np.float32)
    ny, nx = arr.shape
    x0, x1 = max(0, xc - half), min(nx, xc + half + 1)
    y0, y1 = max(0, yc - half), min(ny, yc + half + 1)
    if x0 < x1 and y0 < y1:
        out[y0 - (yc - half) : y1 - (yc - half), x0 - (xc - half) : x1 - (xc - half)] = arr[
            y0:y1, x0:x1
        ]
    return out


def _panel(stamp: np.ndarray) -> np.ndarray:
    """8-bit grey rendering of a stamp (z-scale limits; NaN black)."""
    finite = np.isfinite(stamp)
    if not finite.any():
        return np.zeros(stamp.shape, np.uint8)
    try:
        lo, hi = ZScaleInterval().get_limits(stamp[finite])
    except Exception:  # pragma: no cover - degenerate stamps
        lo, hi = float(np.nanmin(stamp)), float(np.nanmax(stamp))
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(stamp, nan=lo) - lo) / (hi - lo), 0, 1)
    return np.flipud((scaled * 255).astype(np.uint8))  # north (row +y) up


def _png(panel: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(panel, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def store_cutouts(
    runtime: Runtime, stamps: dict[str, np.ndarray], wcs_header: fits.Header
) -> dict[str, str]:
    """Store the stamps as one FITS (NEW, REF, DIFF) and PNGs (each and a triptych)."""
    hdus: list[Any] = [fits.PrimaryHDU()]
    for name, st in stamps.items():
        hdus.append(fits.ImageHDU(st.astype(np.float32), header=wcs_header, name=name.upper()))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    keys = {"fits": runtime.blobs.put(buf.getvalue())}
    panels = {name: _panel(st) for name, st in stamps.items()}
    for name, panel in panels.items():
        keys[f"{name}_png"] = runtime.blobs.put(_png(panel))
    gap = np.full((next(iter(panels.values())).shape[0], 3), 255, np.uint8)
    strip = [panels["new"], gap, panels["ref"], gap, panels["diff"]]
    keys["png"] = runtime.blobs.put(_png(np.hstack(strip)))
    return keys
